"""Keyframe requests to one source, throttled and coalesced.

Every subscriber of a forwarded video track may ask for a keyframe (its own PLI/FIR,
a late join, a queue overflow). The publisher only needs to hear it about twice a second:
a request inside the quiet interval is deferred to its end, several deferred requests
become one, and a keyframe that arrives meanwhile cancels the deferred one (it already
satisfies everybody who was waiting).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

SendRequest = Callable[[], Awaitable[bool]]
"""Sends one keyframe request upstream; False if it could not (nothing received yet)."""


class KeyframeRequester:
    """At most one keyframe request per ``min_interval`` seconds to one source."""

    def __init__(self, send: SendRequest, *, min_interval: float = 0.5,
                 label: str = "source") -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must not be negative, got {min_interval}")
        self._send = send
        self.min_interval = min_interval
        self.label = label
        self._last: float | None = None
        self._deferred: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self.requested = 0  # calls to request()
        self.sent = 0  # requests that went upstream

    @property
    def pending(self) -> bool:
        """A deferred request is waiting for the end of the quiet interval."""
        return self._deferred is not None

    def request(self) -> None:
        """Ask the source for a keyframe, now or at the end of the quiet interval."""
        if self._stopped:
            return
        self.requested += 1
        if self._deferred is not None:
            return  # coalesced into the one already waiting
        now = time.monotonic()
        wait = 0.0 if self._last is None else self._last + self.min_interval - now
        if wait <= 0:
            self._fire()
        else:
            self._deferred = asyncio.get_running_loop().call_later(wait, self._fire)

    def keyframe_seen(self) -> None:
        """A keyframe went through: whoever was waiting for the deferred request has it."""
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None

    def _fire(self) -> None:
        self._deferred = None
        if self._stopped:
            return
        self._last = time.monotonic()
        task = asyncio.get_running_loop().create_task(self._run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        try:
            if await self._send():
                self.sent += 1
                logger.debug("%s: keyframe requested", self.label)
            else:
                self._last = None  # nothing went out: the next request may go at once
        except Exception:
            logger.exception("%s: keyframe request failed", self.label)

    def stop(self) -> None:
        self._stopped = True
        self.keyframe_seen()
        for task in tuple(self._tasks):
            task.cancel()
