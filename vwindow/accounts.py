"""Logins: agents and supervisors by password, kiosks by their device key.

The scrypt check (~50 ms of CPU) runs on worker threads of its own, at most half the
machine's cores of them: a burst of logins (a shift starting, every kiosk after a power
cut) queues for them instead of taking every core, so the signalling of live calls and
the node's heartbeat keep running (six checks at once on two cores starved the event
loop for seconds, long enough for another node to declare this one dead). An unknown
name is checked against a dummy hash, so it takes as long as a wrong password.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from vwindow.auth import check_secret, hash_secret
from vwindow.db import Database
from vwindow.errors import AuthError
from vwindow.models import Kiosk, Role, User

logger = logging.getLogger(__name__)

_CHECKERS = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) // 2),
                               thread_name_prefix="scrypt")


@functools.cache
def _dummy_hash() -> str:
    return hash_secret(secrets.token_hex(16))


async def _matches(secret: str, stored: str | None) -> bool:
    """``check_secret`` off the event loop; False (after the same work) without a hash."""
    ok = await asyncio.get_running_loop().run_in_executor(
        _CHECKERS, check_secret, secret, stored or _dummy_hash())
    return ok and stored is not None


async def login_user(db: Database, username: str, password: str) -> User:
    async with db.session() as s:
        user = (await s.scalars(select(User).where(User.username == username))).first()
    matches = await _matches(password, user.password_hash if user is not None else None)
    if user is None or not user.active or not matches:
        logger.info("failed login for a user account")
        raise AuthError("wrong user name or password", field="password")
    if user.role not in (Role.AGENT, Role.SUPERVISOR):
        raise AuthError("this account cannot sign in here")
    return user


async def login_kiosk(db: Database, code: str, device_key: str) -> Kiosk:
    async with db.session() as s:
        kiosk = (await s.scalars(select(Kiosk).where(Kiosk.code == code))).first()
    matches = await _matches(device_key, kiosk.key_hash if kiosk is not None else None)
    if kiosk is None or not matches:
        logger.info("failed kiosk login")
        raise AuthError("unknown kiosk or wrong device key", field="device_key")
    if not kiosk.active:
        raise AuthError("this kiosk has been disabled; ask the county office to re-enrol it")
    return kiosk
