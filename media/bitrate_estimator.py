"""Cheaper, equivalent versions of two hot loops in aiortc's receive-side bandwidth
estimator (REMB).

Every video receiver runs ``aiortc.rate.RemoteBitrateEstimator.add`` per RTP packet. Two
of its helpers loop in Python where a builtin does the same work:

- ``RateCounter._erase_old`` walks the counter's 1 ms buckets one by one, writing each,
  for every millisecond since the last packet: about a thousand iterations a second per
  video receiver, whatever the bitrate.
- ``OveruseEstimator.update_min_frame_period`` calls ``min()`` once per entry of a
  60-entry history, per frame.

``EstimatorSpeedup`` swaps in versions with the same results (same state, same return
values; ``tests/unit/media/test_bitrate_estimator.py`` checks them against aiortc's on
random inputs) while started (a ``media.speedups.PatchSet``). Measured here they took
about half of ``add()``. Both names are listed in ``media.private_hooks``.
"""

from __future__ import annotations

from typing import Any

from aiortc import rate

from media.private_hooks import RATE_COUNTER_ERASE_OLD, UPDATE_MIN_FRAME_PERIOD
from media.speedups import PatchSet


def erase_old(self: Any, now_ms: int) -> None:
    """``RateCounter._erase_old``: forget the buckets older than the window."""
    new_origin_ms = now_ms - self._window_size + 1
    gap = new_origin_ms - self._origin_ms
    if gap <= 0:
        return
    window = self._window_size
    start = self._origin_index
    total = self._total
    # total is the sum of the buckets, and a bucket's count is 0 only when it is empty.
    if total.count:
        buckets = self._buckets
        if gap >= window:
            cleared = buckets
        elif start + gap <= window:
            cleared = buckets[start:start + gap]
        else:
            cleared = buckets[start:] + buckets[:start + gap - window]
        for bucket in cleared:
            if bucket.count:
                total.count -= bucket.count
                total.value -= bucket.value
                bucket.count = 0
                bucket.value = 0
    self._origin_index = (start + gap) % window
    self._origin_ms = new_origin_ms


def update_min_frame_period(self: Any, ts_delta: float) -> float:
    """``OveruseEstimator.update_min_frame_period``: the smallest of the recent frame
    periods and this one, then remember this one."""
    history = self.ts_delta_hist
    if len(history) >= rate.MIN_FRAME_PERIOD_HISTORY_LENGTH:
        history.pop(0)
    min_frame_period = min(history) if history else ts_delta
    if ts_delta < min_frame_period:
        min_frame_period = ts_delta
    history.append(ts_delta)
    return min_frame_period


class EstimatorSpeedup(PatchSet):
    """While started, aiortc's estimators use ``erase_old`` and
    ``update_min_frame_period`` above (process-wide, like the forwarding hook)."""

    def __init__(self) -> None:
        super().__init__("bandwidth estimator", (
            (rate.RateCounter, RATE_COUNTER_ERASE_OLD.name, erase_old),
            (rate.OveruseEstimator, UPDATE_MIN_FRAME_PERIOD.name, update_min_frame_period),
        ))
