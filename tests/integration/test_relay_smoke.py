"""The relay benchmark, small: two sessions for a few seconds, on one node and on two.

``python -m tests.bench.relay`` measures the hub with up to dozens of sessions; this
runs the same code in CI (the server, the simulated clients in their own processes,
their frame counting), so the benchmark cannot rot, and a frame the hub loses, or one
the clients fail to count, fails the run.
"""

from __future__ import annotations

import pytest

from tests.bench.relay import build_parser, trial


@pytest.mark.parametrize("nodes", [1, pytest.param(2, marks=pytest.mark.postgres)])
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
    clients = result["clients"]
    assert clients["path"] == "wire", clients
    # The packets of the 6 video streams over the window (4 s, 5-6 packets a frame at
    # 15 fps) and more, counted by the clients themselves, not through aiortc.
    assert clients["counted_video"] > 6 * 4 * 60, clients
    assert clients["counted"] > clients["counted_video"] + 6 * 4 * 50, clients  # + audio
    assert clients["to_aiortc"] <= clients["counted"] // 100, clients
    assert result["hub_ice_consent_expired"] == 0
    # A busy CI machine may drop the odd datagram at a full queue; more is a stall.
    assert result["udp_drops_clients"] + result["udp_drops_hub"] <= clients["counted"] // 100
