"""The estimator speed-up gives exactly what aiortc's own loops give."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from aiortc import rate

from media.bitrate_estimator import EstimatorSpeedup, erase_old, update_min_frame_period

ORIGINAL_ERASE_OLD = rate.RateCounter.__dict__["_erase_old"]
ORIGINAL_MIN_FRAME_PERIOD = rate.OveruseEstimator.__dict__["update_min_frame_period"]


@pytest.fixture
def speedup() -> Iterator[EstimatorSpeedup]:
    speedup = EstimatorSpeedup()
    speedup.start()
    try:
        yield speedup
    finally:
        speedup.stop()


def counter_state(counter: rate.RateCounter) -> tuple[object, ...]:
    return (counter._origin_index, counter._origin_ms, counter._total.count,
            counter._total.value, [(b.count, b.value) for b in counter._buckets])


@pytest.mark.parametrize("seed", range(6))
def test_erase_old_matches_aiortc(seed: int) -> None:
    rng = random.Random(seed)
    window = rng.choice([5, 50, 1000])
    ours, theirs = rate.RateCounter(window, 8000), rate.RateCounter(window, 8000)
    now = rng.randrange(10**6)
    for _ in range(3000):
        # Mostly forward in small steps; sometimes a leap past the window, a step back,
        # a reset.
        now += rng.choice([0, 1, 3, 16, 66, window - 1, window, window + 7, 3 * window, -4])
        action = rng.random()
        if action < 0.6:
            value = rng.randrange(1500)
            rate.RateCounter.add(theirs, value, now)
            rate.RateCounter._erase_old = erase_old  # type: ignore[method-assign]
            try:
                rate.RateCounter.add(ours, value, now)
            finally:
                rate.RateCounter._erase_old = ORIGINAL_ERASE_OLD  # type: ignore[method-assign]
            continue
        if action < 0.97:
            expected = theirs.rate(now)
            rate.RateCounter._erase_old = erase_old  # type: ignore[method-assign]
            try:
                got = ours.rate(now)
            finally:
                rate.RateCounter._erase_old = ORIGINAL_ERASE_OLD  # type: ignore[method-assign]
            assert got == expected
        else:
            ours.reset()
            theirs.reset()
        assert counter_state(ours) == counter_state(theirs)


def test_update_min_frame_period_matches_aiortc() -> None:
    rng = random.Random(1)
    ours, theirs = rate.OveruseEstimator(), rate.OveruseEstimator()
    for _ in range(500):
        delta = rng.choice([33.3, 66.6, 0.0, 10.0, rng.uniform(0, 200)])
        assert update_min_frame_period(ours, delta) == ORIGINAL_MIN_FRAME_PERIOD(theirs, delta)
        assert ours.ts_delta_hist == theirs.ts_delta_hist


def _remb_run() -> list[object]:
    estimator = rate.RemoteBitrateEstimator()
    rng = random.Random(7)
    out: list[object] = []
    now = 1000
    send = 0
    for _ in range(4000):
        now += rng.choice([0, 0, 1, 2, 5, 33, 66, 400])
        send += rng.choice([0, 1, 2, 5, 33, 66])
        out.append(estimator.add(arrival_time_ms=now, abs_send_time=(send * 262) & 0xFFFFFF,
                                 payload_size=rng.randrange(200, 1200), ssrc=1234))
    return out


def test_remote_bitrate_estimates_do_not_change(speedup: EstimatorSpeedup) -> None:
    fast = _remb_run()
    speedup.stop()
    assert rate.RateCounter.__dict__["_erase_old"] is ORIGINAL_ERASE_OLD
    slow = _remb_run()
    assert any(r is not None for r in slow)
    assert fast == slow


def test_start_and_stop_restore_aiortc() -> None:
    first, second = EstimatorSpeedup(), EstimatorSpeedup()
    first.start()
    second.start()  # already installed: the first one undoes it
    assert rate.RateCounter.__dict__["_erase_old"] is erase_old
    second.stop()
    assert rate.OveruseEstimator.__dict__["update_min_frame_period"] is update_min_frame_period
    first.stop()
    first.stop()  # twice is fine
    assert rate.RateCounter.__dict__["_erase_old"] is ORIGINAL_ERASE_OLD
    assert rate.OveruseEstimator.__dict__["update_min_frame_period"] is ORIGINAL_MIN_FRAME_PERIOD
