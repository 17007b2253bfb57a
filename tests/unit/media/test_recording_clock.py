"""Placing frames on the hub's clock: jitter filtered, drift followed, aiortc's receive
hold taken back out, lasting changes adopted after one window."""

from __future__ import annotations

import inspect
import itertools
import random

import pytest
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from media.arrival_clock import AUDIO_RECEIVE_LAG, VIDEO_RECEIVE_LAG, ArrivalClock


def handed_over(reached: list[float], lag: int) -> list[float]:
    """When aiortc's receiver hands each frame over: as frame i + lag arrives."""
    return [reached[min(i + lag, len(reached) - 1)] for i in range(len(reached))]


def run(clock: ArrivalClock, media: list[float], arrivals: list[float]) -> list[float]:
    placed: list[float] = []
    held: list[float] = []
    for m, a in zip(media, arrivals, strict=True):
        at = clock.map(m, a)
        if at is None:
            held.append(m)
            continue
        placed += [clock.place(h) for h in held] + [at]
        held = []
    return placed + [clock.place(h) for h in held]


def test_jitter_does_not_reach_the_timestamps() -> None:
    rnd = random.Random(1)
    media = [i * 0.02 for i in range(3000)]  # one minute of 20 ms frames
    reached = [100.0 + m + 0.05 + rnd.uniform(0, 0.04) for m in media]
    placed = run(ArrivalClock(), media, reached)
    errors = [p - (100.0 + m + 0.05) for p, m in zip(placed, media, strict=True)]
    # Never later than the least delayed frame says, whatever the jitter.
    assert max(abs(e) for e in errors[500:]) < 0.005
    steps = [b - a for a, b in itertools.pairwise(placed[500:])]
    assert min(steps) > 0.015 and max(steps) < 0.025


@pytest.mark.parametrize(("lag", "interval"), [(AUDIO_RECEIVE_LAG, 0.02),
                                               (VIDEO_RECEIVE_LAG, 1 / 15)])
def test_the_receive_hold_is_taken_back_out(lag: int, interval: float) -> None:
    media = [i * interval for i in range(300)]
    reached = [50.0 + m + 0.03 for m in media]
    placed = run(ArrivalClock(lag=lag), media, handed_over(reached, lag))
    for p, r in zip(placed[:-lag], reached, strict=False):
        assert p == pytest.approx(r, abs=1e-6)


def test_first_frames_wait_for_their_pairing_then_land_in_place() -> None:
    clock = ArrivalClock(lag=4)
    reached = [10.0 + i * 0.02 for i in range(8)]
    arrivals = handed_over(reached, 4)
    assert [clock.map(i * 0.02, arrivals[i]) for i in range(4)] == [None] * 4
    at = clock.map(4 * 0.02, arrivals[4])
    assert at == pytest.approx(reached[4])
    assert [clock.place(i * 0.02) for i in range(4)] == pytest.approx(reached[:4])


def test_a_track_that_ends_before_pairing_is_placed_by_its_arrivals() -> None:
    clock = ArrivalClock(lag=4)
    assert clock.map(0.0, 5.08) is None
    assert clock.map(0.02, 5.1) is None
    assert clock.place(0.0) == pytest.approx(5.08)


def test_publisher_clock_drift_is_followed() -> None:
    # A publisher whose clock runs 500 ppm slow: ten minutes of media arrive in 10:00.3.
    media = [i * 0.02 for i in range(30000)]
    reached = [m * 1.0005 + 7.0 for m in media]
    placed = run(ArrivalClock(), media, reached)
    worst = max(abs(p - r) for p, r in zip(placed, reached, strict=True))
    assert worst < 0.01, worst


def test_a_frame_sooner_than_expected_pulls_the_offset_down_at_once() -> None:
    clock = ArrivalClock()
    assert clock.map(0.0, 1.5) == 1.5
    assert clock.map(0.02, 1.3) == pytest.approx(1.3)  # the first one was held up
    assert clock.offset == pytest.approx(1.28)


def test_lasting_lateness_becomes_the_new_anchor_after_one_window() -> None:
    clock = ArrivalClock(window=10.0)
    for i in range(500):
        clock.map(i * 0.02, 100.0 + i * 0.02)
    # From here the media clock says 5 s less than really passed, and stays so.
    placed = {}
    for i in range(500, 2000):
        t = i * 0.02
        placed[i] = clock.map(t, 105.0 + t)
    assert placed[500] == pytest.approx(100.0 + 500 * 0.02)  # one window: still anchored
    assert placed[1999] == pytest.approx(105.0 + 1999 * 0.02)


def test_a_frame_early_for_a_wrong_reason_is_forgotten_after_one_window() -> None:
    clock = ArrivalClock(window=10.0)
    clock.map(0.0, 100.0)
    clock.map(0.02, 99.92)  # looks 100 ms early
    at = None
    for i in range(2, 1000):
        at = clock.map(i * 0.02, 100.0 + i * 0.02)
    assert at == pytest.approx(100.0 + 999 * 0.02)


def test_a_stall_shorter_than_the_window_changes_nothing() -> None:
    clock = ArrivalClock(window=10.0)
    for i in range(100):
        clock.map(i * 0.02, 100.0 + i * 0.02)
    for i in range(100, 400):  # a 6 s network stall, then a burst
        clock.map(i * 0.02, 108.0)
    for i in range(400, 500):
        clock.map(i * 0.02, 100.0 + i * 0.02)
    assert clock.offset == pytest.approx(100.0)


def test_receive_lags_match_aiortcs_jitter_buffers() -> None:
    # AUDIO/VIDEO_RECEIVE_LAG describe how aiortc 1.16 builds its receivers' jitter
    # buffers; an aiortc that changes them would misplace every recorded frame.
    source = inspect.getsource(RTCRtpReceiver.__init__)
    assert f"JitterBuffer(capacity=16, prefetch={AUDIO_RECEIVE_LAG})" in source
    assert "JitterBuffer(capacity=512, is_video=True)" in source  # no prefetch: next frame
    assert VIDEO_RECEIVE_LAG == 1


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="lag must not be negative"):
        ArrivalClock(lag=-1)
    with pytest.raises(ValueError, match="window must be positive"):
        ArrivalClock(window=0)
