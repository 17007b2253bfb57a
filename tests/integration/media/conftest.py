"""Fixtures for the forwarding tests: the hook installed around each test, with the
packet-path speed-ups the hub runs with (``MediaService`` starts both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from media.bitrate_estimator import EstimatorSpeedup
from media.forwarding import ForwardingHook
from media.speedups import PacketPathSpeedup


@pytest.fixture
def hook() -> Iterator[ForwardingHook]:
    hook = ForwardingHook()
    speedups = (EstimatorSpeedup(), PacketPathSpeedup())
    hook.start()
    for speedup in speedups:
        speedup.start()
    try:
        yield hook
    finally:
        for speedup in speedups:
            speedup.stop()
        hook.stop()
