"""A subscriber's outgoing pts only move forward, at the pace of real time."""

from __future__ import annotations

from fractions import Fraction

import pytest

from media.timeline import Timeline

VIDEO = Fraction(1, 90000)
FRAME = 6000  # 15 fps


def test_steady_source_keeps_its_spacing_from_zero() -> None:
    timeline = Timeline()
    src = object()
    out = [timeline.map(123_456 + i * FRAME, VIDEO, src, i / 15) for i in range(5)]
    assert out == [0, 6000, 12000, 18000, 24000]
    assert timeline.rebased == 0


def test_dropped_frames_keep_the_gap() -> None:
    timeline = Timeline()
    src = object()
    assert timeline.map(0, VIDEO, src, 0.0) == 0
    assert timeline.map(10 * FRAME, VIDEO, src, 10 / 15) == 10 * FRAME
    assert timeline.rebased == 0


def test_new_source_restarting_at_zero_continues_forward_by_wall_clock() -> None:
    timeline = Timeline()
    old, new = object(), object()
    for i in range(30):
        last = timeline.map(i * FRAME, VIDEO, old, i / 15)
    # The publisher rejoined 1.5 s later; its RTP timestamps start again near zero.
    first_new = timeline.map(500, VIDEO, new, 29 / 15 + 1.5)
    assert first_new == last + 135000
    assert timeline.map(500 + FRAME, VIDEO, new, 29 / 15 + 1.5 + 1 / 15) == first_new + FRAME
    assert timeline.rebased == 1


def test_immediate_switch_still_advances_one_frame() -> None:
    timeline = Timeline()
    a, b = object(), object()
    timeline.map(0, VIDEO, a, 1.0)
    timeline.map(FRAME, VIDEO, a, 1.0 + 1 / 15)
    assert timeline.map(FRAME, VIDEO, b, 1.0 + 1 / 15) == 2 * FRAME


@pytest.mark.parametrize("leap", [-5 * FRAME, 0, 1 << 32, 20 * 90000])
def test_leaps_within_one_source_are_smoothed(leap: int) -> None:
    timeline = Timeline()
    src = object()
    timeline.map(1_000_000, VIDEO, src, 0.0)
    timeline.map(1_000_000 + FRAME, VIDEO, src, 1 / 15)
    out = timeline.map(1_000_000 + FRAME + leap, VIDEO, src, 2 / 15)
    assert out == 2 * FRAME
    assert timeline.rebased == 1


def test_audio_clock_and_time_base_conversion() -> None:
    timeline = Timeline()
    src = object()
    assert timeline.map(960, Fraction(1, 48000), src, 0.0) == 0
    assert timeline.time_base == Fraction(1, 48000)
    # A packet in another time base is converted, not misread.
    assert timeline.map(1920 // 48, Fraction(1, 1000), src, 0.02) == 960
