"""Logins: agents and supervisors by password, kiosks by their device key."""

from __future__ import annotations

import logging

from sqlalchemy import select

from vwindow.auth import check_secret
from vwindow.db import Database
from vwindow.errors import AuthError
from vwindow.models import Kiosk, Role, User

logger = logging.getLogger(__name__)


async def login_user(db: Database, username: str, password: str) -> User:
    async with db.session() as s:
        user = (await s.scalars(select(User).where(User.username == username))).first()
    if user is None or not user.active or not check_secret(password, user.password_hash):
        logger.info("failed login for a user account")
        raise AuthError("wrong user name or password", field="password")
    if user.role not in (Role.AGENT, Role.SUPERVISOR):
        raise AuthError("this account cannot sign in here")
    return user


async def login_kiosk(db: Database, code: str, device_key: str) -> Kiosk:
    async with db.session() as s:
        kiosk = (await s.scalars(select(Kiosk).where(Kiosk.code == code))).first()
    if kiosk is None or not check_secret(device_key, kiosk.key_hash):
        logger.info("failed kiosk login")
        raise AuthError("unknown kiosk or wrong device key", field="device_key")
    if not kiosk.active:
        raise AuthError("this kiosk has been disabled; ask the county office to re-enrol it")
    return kiosk
