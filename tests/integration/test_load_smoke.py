"""The load benchmark, small: 200 kiosks pinging and 20 agents taking calls for 30 s.

``python -m tests.bench.load`` runs the full 1,000 kiosks / 100 agents / 10 minutes; this
runs the same code in CI, so the benchmark cannot rot and a lost message fails the run.
"""

from __future__ import annotations

from tests.bench.load import run


async def test_no_message_is_lost_and_every_call_is_answered() -> None:
    result = await run(kiosks=200, agents=20, seconds=30, db="sqlite")
    print(f"\n{result}")
    assert result["lost"] == 0, result
    assert result["errors"] == 0, result["first_errors"]
    assert result["calls"] >= 20, result
    assert result["answered"] == result["ended"] == result["calls"], result
    assert result["requests"] > result["calls"] * 3, result
