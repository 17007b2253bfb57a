"""One subscriber's outgoing timeline for forwarded frames.

aiortc's sender turns a packet's pts into the RTP timestamp (plus a random origin), so
the pts a forwarding track hands out must only move forward, at the pace of real time,
whatever happens upstream: a publisher that rejoins with a new peer connection starts
again near zero, and a new SSRC on the same receiver can jump anywhere. Either would
look to the subscriber's jitter buffer like a wrap or a frozen hour. The timeline keeps
the source's own spacing while the source is steady and re-anchors on wall-clock arrival
time when the source changes or its timestamps leap.
"""

from __future__ import annotations

from fractions import Fraction


class Timeline:
    """Maps source pts (any number of successive sources) to one forward-only pts."""

    def __init__(self, *, max_skew: float = 2.0) -> None:
        if max_skew <= 0:
            raise ValueError(f"max_skew must be positive, got {max_skew}")
        self.max_skew = max_skew
        self.time_base: Fraction | None = None
        self._source: object = None
        self._offset = 0
        self._last: int | None = None
        self._last_arrival = 0.0
        self._step = 1
        self._rate = 1.0  # ticks per second of time_base
        self.rebased = 0  # discontinuities smoothed over

    @property
    def last(self) -> int | None:
        """The last pts handed out."""
        return self._last

    def map(self, pts: int, time_base: Fraction, source: object, arrival: float) -> int:
        """The outgoing pts (in ``self.time_base``) for a frame that arrived at ``arrival``
        (monotonic seconds) from ``source`` with ``pts`` in ``time_base``."""
        # Called for every forwarded packet: integer and float arithmetic only, Fraction
        # arithmetic costs more than the rest of the forwarding path.
        if self.time_base is None:
            self.time_base = time_base
            self._rate = time_base.denominator / time_base.numerator
        elif time_base is not self.time_base and time_base != self.time_base:
            pts = round(pts * time_base / self.time_base)
        if self._last is None:
            self._offset = -pts
            out = 0
        else:
            out = pts + self._offset
            delta = out - self._last
            wall = arrival - self._last_arrival
            if wall < 0.0:
                wall = 0.0
            if (source is not self._source or delta <= 0
                    or delta > (wall + self.max_skew) * self._rate):
                # New source or a leap: continue from where this subscriber is, as far
                # ahead as the wall clock moved (at least one frame's worth).
                out = self._last + max(round(wall * self._rate), self._step)
                self._offset = out - pts
                self.rebased += 1
            else:
                self._step = delta
        self._source = source
        self._last = out
        self._last_arrival = arrival
        return out
