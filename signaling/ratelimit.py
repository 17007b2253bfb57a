"""Failed-login limits: a password, device key or one-time code cannot be guessed fast.

Failures are counted per account (a user name, a kiosk code, "surveyor") and per client
address over a sliding window; past either limit that login answers 429 with how long
to wait, before the credentials are even checked. Successful logins are never slowed,
and a success clears its account's failures. Counts live in memory per node: with
several nodes behind a round-robin proxy an attacker gets at most the limit per node.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

from vwindow.errors import VWindowError


class TooManyAttemptsError(VWindowError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def details(self) -> dict[str, object]:
        return {"retry_after_s": self.retry_after_s}


class LoginLimiter:
    def __init__(self, *, per_account: int, per_address: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_account = per_account
        self.per_address = per_address
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def check(self, address: str | None, account: str) -> None:
        """Raise :class:`TooManyAttemptsError` if either key is over its limit."""
        now = self.clock()
        for key, limit in ((f"acct:{account}", self.per_account),
                           (f"addr:{address or '-'}", self.per_address)):
            times = self._recent(key, now)
            if len(times) >= limit:
                wait = max(1, int(times[0] + self.window_s - now + 0.999))
                raise TooManyAttemptsError(
                    f"too many failed logins; try again in {wait} s", retry_after_s=wait)

    def failed(self, address: str | None, account: str) -> None:
        now = self.clock()
        for key in (f"acct:{account}", f"addr:{address or '-'}"):
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 100_000:
            # Bounded memory under a spray of made-up accounts: forget the oldest keys.
            for key in list(self._failures)[:50_000]:
                del self._failures[key]

    def succeeded(self, account: str) -> None:
        self._failures.pop(f"acct:{account}", None)


LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)
