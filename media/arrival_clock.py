"""Placing one forwarded track's frames on the hub's clock, by when they arrived.

The tracks of a session have no common timestamp: each RTP stream starts at a random
timestamp, and a subscriber's ``ForwardingTrack`` hands out pts that only keep the
source's own spacing. What the tracks share is the hub's clock. Stamping each frame
with its arrival time alone would carry network jitter, the jitter buffer's hold and
event-loop latency into the recording; keeping the source's spacing alone would drift
with the publisher's clock, and audio and video clocks of one browser do drift apart.

An ``ArrivalClock`` maps media time (the source's spacing) onto the hub's clock with an
offset: the least ``arrival - media time`` seen over the last ``window`` seconds. The
least delayed frame of the window is the one that says when the media really arrived,
whatever jitter or stalls delayed the others; and the window lets the offset follow the
publisher's clock drifting from the hub's (within drift x window: 5 ms for 500 ppm),
take a lasting change (a source whose timestamps leapt) after one window, and forget a
frame that looked early for a wrong reason.

aiortc's receiver hands a frame over only when a later one arrives: audio four frames
later (its jitter buffer prefetches four), video when the next frame's first packet
comes. So the frame handed over ``lag`` frames before this one tells when *this* one
reached the hub, and that is the arrival used. Until ``lag`` frames have followed the
first one there is no such arrival: ``map`` returns None and the caller holds those few
frames until ``place`` can put them where they belong.
"""

from __future__ import annotations

from collections import deque

AUDIO_RECEIVE_LAG = 4  # aiortc 1.16: JitterBuffer(capacity=16, prefetch=4) for audio
VIDEO_RECEIVE_LAG = 1  # video frames leave the jitter buffer when the next one starts


class ArrivalClock:
    """Maps one track's media time (seconds) to hub clock time (seconds)."""

    def __init__(self, *, lag: int = 0, window: float = 10.0) -> None:
        if lag < 0:
            raise ValueError(f"lag must not be negative, got {lag}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.lag = lag
        self.window = window
        self.offset: float | None = None
        self._arrivals: deque[float] = deque(maxlen=lag + 1)
        # (arrival, candidate offset), candidates increasing: the window's minimum first.
        self._lows: deque[tuple[float, float]] = deque()
        self._unpaired = float("inf")  # lowest arrival - media before the first pairing

    def skip(self) -> None:
        """Frames were lost between the last one mapped and the next (or another source
        took over): the frame handed over ``lag`` frames ago is no longer the one whose
        arrival released the next."""
        self._arrivals.clear()

    def map(self, media: float, arrival: float) -> float | None:
        """Hub clock time of the frame at ``media`` seconds that arrived at ``arrival``;
        None while the first frames wait for the ones that tell when they arrived."""
        arrivals = self._arrivals
        arrivals.append(arrival)
        if len(arrivals) == arrivals.maxlen:
            reached = arrivals[0]
        elif self.offset is None:
            self._unpaired = min(self._unpaired, arrival - media)
            return None
        else:
            reached = arrival  # after a skip: late, so it cannot pull the offset down
        candidate = reached - media
        lows = self._lows
        while lows and lows[-1][1] >= candidate:
            lows.pop()
        lows.append((arrival, candidate))
        horizon = arrival - self.window
        while lows[0][0] < horizon:
            lows.popleft()
        offset = self.offset = lows[0][1]
        return media + offset

    def place(self, media: float) -> float:
        """Hub clock time of a frame ``map`` returned None for: with the offset found
        since, or, if the track ended before one was, by the frames' own arrivals."""
        if self.offset is None:
            self.offset = self._unpaired if self._unpaired != float("inf") else -media
        return media + self.offset
