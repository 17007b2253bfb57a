"""The relay benchmark, small: two sessions for a few seconds, on one node and on two.

``python -m tests.bench.relay`` measures the hub with up to dozens of sessions; this
runs the same code in CI (the server, the simulated clients in their own processes,
their frame counting), so the benchmark cannot rot, and a frame the hub loses, or one
the clients fail to count, fails the run.
"""

from __future__ import annotations

import pytest

from tests.bench.relay import build_parser, trial


@pytest.mark.parametrize("nodes", [1, 2])
def test_every_stream_arrives_whole_and_is_counted(nodes: int) -> None:
    args = build_parser().parse_args(["--seconds", "4", "--warmup", "1", "--nodes",
                                      str(nodes), "--monitor-every", "2"])
    result = trial("forward", 2, args)
    print(f"\n{result}")
    assert "error" not in result, result["error"]
    assert result["nodes"] == nodes
    # Two sessions, one monitored: 4 streams each way plus the monitor's 4.
    assert result["streams"] == 12
    assert result["streams_matched"] == 12, result
    assert result["loss_max"] <= 0.02, result["worst_streams"]
    assert result["fps_min"] >= 12, result
    assert result["frames_sent_per_stream_min"] >= 50, result
    assert result["clients"].startswith("wire ("), result["clients"]
    counted = int(result["clients"].split("(")[1].split()[0])
    assert counted > 12 * 4 * 15, result["clients"]  # every stream's packets, counted here
    assert result["hub_ice_consent_expired"] == 0
