"""Keyframe requests to a publisher: throttled, coalesced, cancelled by a keyframe."""

from __future__ import annotations

import asyncio

import pytest

from media.keyframes import KeyframeRequester

INTERVAL = 0.2


class Upstream:
    """Stands for the publisher: records when requests reach it."""

    def __init__(self, *, reachable: bool = True) -> None:
        self.reachable = reachable
        self.times: list[float] = []

    async def send(self) -> bool:
        if self.reachable:
            self.times.append(asyncio.get_running_loop().time())
        return self.reachable


async def test_first_request_goes_at_once_then_one_per_interval() -> None:
    upstream = Upstream()
    requester = KeyframeRequester(upstream.send, min_interval=INTERVAL)
    start = asyncio.get_running_loop().time()
    for _ in range(5):
        requester.request()
    await asyncio.sleep(0.01)
    assert len(upstream.times) == 1 and upstream.times[0] - start < 0.05
    assert requester.pending
    await asyncio.sleep(INTERVAL + 0.05)
    assert len(upstream.times) == 2  # four requests inside the interval became one
    assert upstream.times[1] - upstream.times[0] >= INTERVAL - 0.01
    assert (requester.requested, requester.sent) == (5, 2)
    requester.stop()


async def test_a_keyframe_cancels_the_deferred_request() -> None:
    upstream = Upstream()
    requester = KeyframeRequester(upstream.send, min_interval=INTERVAL)
    requester.request()
    requester.request()
    await asyncio.sleep(0.01)
    requester.keyframe_seen()
    await asyncio.sleep(INTERVAL + 0.05)
    assert len(upstream.times) == 1
    requester.stop()


async def test_unsent_request_does_not_start_the_quiet_interval() -> None:
    upstream = Upstream(reachable=False)
    requester = KeyframeRequester(upstream.send, min_interval=10.0)
    requester.request()
    await asyncio.sleep(0.01)
    upstream.reachable = True
    requester.request()
    await asyncio.sleep(0.01)
    assert len(upstream.times) == 1 and requester.sent == 1
    requester.stop()


async def test_stop_drops_pending_requests() -> None:
    upstream = Upstream()
    requester = KeyframeRequester(upstream.send, min_interval=INTERVAL)
    requester.request()
    await asyncio.sleep(0.01)
    requester.request()
    requester.stop()
    requester.request()
    await asyncio.sleep(INTERVAL + 0.05)
    assert len(upstream.times) == 1


def test_negative_interval_is_refused() -> None:
    async def send() -> bool:
        return True

    with pytest.raises(ValueError, match="-1"):
        KeyframeRequester(send, min_interval=-1)
