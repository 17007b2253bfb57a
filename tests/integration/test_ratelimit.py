"""Failed logins are limited per account and per address; successes are not."""

from __future__ import annotations

import pytest

from signaling.ratelimit import LoginLimiter, TooManyAttemptsError
from tests.conftest import Server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_window_and_success_clears() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_account=3, per_address=5, window_s=60, clock=clock)
    for _ in range(3):
        limiter.check("10.0.0.1", "user:a")
        limiter.failed("10.0.0.1", "user:a")
    with pytest.raises(TooManyAttemptsError) as err:
        limiter.check("10.0.0.2", "user:a")  # the account, from anywhere
    assert err.value.retry_after_s == 60
    limiter.check("10.0.0.1", "user:b")  # another account from the same address: fine
    clock.now += 61
    limiter.check("10.0.0.1", "user:a")  # the window moved on
    for account in ("user:c", "user:d", "user:e", "user:f", "user:g"):
        limiter.failed("10.0.0.1", account)
    with pytest.raises(TooManyAttemptsError):
        limiter.check("10.0.0.1", "user:h")  # 5 failures from this address in the window
    limiter.succeeded("user:a")
    limiter.check("10.0.0.3", "user:a")


async def _login(server: Server, password: str) -> tuple[int, dict[str, object]]:
    async with server.http.post(f"{server.url}/api/v1/auth/login",
                                json={"username": "agent2", "password": password}) as r:
        return r.status, await r.json()


async def test_guessing_a_password_is_stopped_and_named(server: Server) -> None:
    for _ in range(5):
        status, _ = await _login(server, "wrong-password")
        assert status == 401
    status, body = await _login(server, "demo1234")  # even the right one must wait now
    assert status == 429
    error = body["error"]
    assert isinstance(error, dict) and error["code"] == "rate_limited"
    assert int(error["retry_after_s"]) > 0 and "try again" in str(error["message"])
    # Other people keep logging in.
    assert await server.login("agent1")
    # One-time surveyor codes cannot be sprayed either.
    statuses = []
    for n in range(6):
        async with server.http.post(f"{server.url}/api/v1/auth/surveyor",
                                    json={"code": f"guess-{n:04d}-xxxxxxxx"}) as r:
            statuses.append(r.status)
    assert statuses == [401] * 5 + [429]
