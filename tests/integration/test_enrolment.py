"""Kiosk enrolment with one-time codes, over real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from vwindow import accounts
from vwindow.audit import verify_chain
from vwindow.db import Database
from vwindow.enrolment import UNENROLLED, Enrolment, normalise_code
from vwindow.errors import AuthError, ConfigError, ConflictError, NotFoundError, ValidationError
from vwindow.models import AuditEntry, Kiosk
from vwindow.seed import DEMO, seed_demo

SECRET = "enrolment-test-secret-0123456789abcdef"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.start()
    await seed_demo(database)
    yield database
    await database.stop()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_code_is_redeemed_once_for_a_new_device_key(db: Database) -> None:
    enrolment = Enrolment(db, SECRET)
    issued = await enrolment.issue(DEMO.kiosk_code, actor="admin:ops")
    earlier = await enrolment.issue(DEMO.kiosk_code, actor="admin:ops")
    assert len(issued.code) == 19 and issued.code.count("-") == 3
    assert issued.expires_at.timestamp() >= time.time() + 24 * 3600 - 1

    # Typed by hand on the kiosk PC: lower case, spaces instead of dashes.
    enrolled = await enrolment.redeem(DEMO.kiosk_code, issued.code.lower().replace("-", " "))
    assert enrolled.kiosk_code == DEMO.kiosk_code and len(enrolled.device_key) >= 40
    kiosk = await accounts.login_kiosk(db, DEMO.kiosk_code, enrolled.device_key)
    assert kiosk.name == enrolled.kiosk_name
    with pytest.raises(AuthError):  # the PC it replaced is locked out
        await accounts.login_kiosk(db, DEMO.kiosk_code, DEMO.kiosk_key)

    for code in (issued.code, earlier.code):  # used, and issued before the key changed
        with pytest.raises(AuthError, match="already been used"):
            await enrolment.redeem(DEMO.kiosk_code, code)

    async with db.session() as s:
        actions = (await s.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
        assert actions[-3:] == ["kiosk.enrolment_issued", "kiosk.enrolment_issued",
                                "kiosk.enrolled"]
        assert (await verify_chain(s)).ok


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_two_pcs_racing_with_one_code_get_one_key(db: Database) -> None:
    enrolment = Enrolment(db, SECRET)
    issued = await enrolment.issue(DEMO.kiosk_code, actor="admin:ops")
    results = await asyncio.gather(*(enrolment.redeem(DEMO.kiosk_code, issued.code)
                                     for _ in range(3)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, AuthError) for r in results if r not in winners)
    await accounts.login_kiosk(db, DEMO.kiosk_code, winners[0].device_key)


async def test_a_code_for_another_kiosk_or_after_expiry_is_refused(db: Database) -> None:
    now = [time.time()]
    enrolment = Enrolment(db, SECRET, clock=lambda: now[0])
    await enrolment.register_kiosk("kiosk-tx02", "汤口镇 2 号机", "TX", actor="admin:ops")
    issued = await enrolment.issue(DEMO.kiosk_code, actor="admin:ops", ttl_s=3600)
    with pytest.raises(AuthError, match="not valid for this kiosk"):
        await enrolment.redeem("kiosk-tx02", issued.code)
    with pytest.raises(AuthError, match="not valid for this kiosk"):
        await enrolment.redeem("no-such-kiosk", issued.code)
    with pytest.raises(AuthError, match="not valid"):  # another server's secret
        await Enrolment(db, "x" * 40).redeem(DEMO.kiosk_code, issued.code)

    now[0] += 2 * 3600
    with pytest.raises(AuthError, match="expired"):
        await enrolment.redeem(DEMO.kiosk_code, issued.code)
    await accounts.login_kiosk(db, DEMO.kiosk_code, DEMO.kiosk_key)  # key unchanged


async def test_a_new_kiosk_logs_in_only_once_enrolled(db: Database) -> None:
    enrolment = Enrolment(db, SECRET)
    kiosk = await enrolment.register_kiosk("kiosk-tx02", "汤口镇 2 号机", "TX",
                                           actor="admin:ops")
    assert kiosk.key_hash == UNENROLLED
    for key in ("", UNENROLLED, "anything"):
        with pytest.raises(AuthError):
            await accounts.login_kiosk(db, "kiosk-tx02", key)
    with pytest.raises(ConflictError):
        await enrolment.register_kiosk("kiosk-tx02", "again", "TX", actor="admin:ops")
    with pytest.raises(NotFoundError):
        await enrolment.register_kiosk("kiosk-zz01", "nowhere", "ZZ", actor="admin:ops")
    with pytest.raises(NotFoundError):
        await enrolment.issue("kiosk-zz01", actor="admin:ops")

    issued = await enrolment.issue("kiosk-tx02", actor="admin:ops")
    enrolled = await enrolment.redeem("kiosk-tx02", issued.code)
    await accounts.login_kiosk(db, "kiosk-tx02", enrolled.device_key)


async def test_re_enrolment_reactivates_a_disabled_kiosk_and_survives_rotation(
        db: Database) -> None:
    old = Enrolment(db, SECRET)
    issued = await old.issue(DEMO.kiosk_code, actor="admin:ops")
    async with db.session() as s:
        await s.execute(update(Kiosk).where(Kiosk.code == DEMO.kiosk_code)
                        .values(active=False))
    with pytest.raises(AuthError, match="disabled"):
        await accounts.login_kiosk(db, DEMO.kiosk_code, DEMO.kiosk_key)
    rotated = Enrolment(db, "n" * 40, previous=(SECRET,))  # auth.secret was rotated
    enrolled = await rotated.redeem(DEMO.kiosk_code, issued.code)
    assert (await accounts.login_kiosk(db, DEMO.kiosk_code, enrolled.device_key)).active


def test_codes_are_checked_before_any_lookup() -> None:
    assert normalise_code(" abcd-efgh-jkmn-pq0o ") == "ABCDEFGHJKMNPQ00"
    assert normalise_code("iiii llll 0000 1111") == "1111111100001111"
    for bad in ("", "ABCD-EFGH", "ABCD-EFGH-JKMN-PQRS-T", "ABCD-EFGH-JKMN-PQR!",
                "ABCD-EFGH-JKMN-PQRU"):
        with pytest.raises(ValidationError) as caught:
            normalise_code(bad)
        assert caught.value.field == "code"
    with pytest.raises(ConfigError):
        Enrolment(Database("sqlite+aiosqlite:///:memory:"), "")
