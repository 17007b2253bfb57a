"""Case lifecycle: the transitions table, who may move a case, pauses, SLA flags, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from vwindow.audit import verify_chain
from vwindow.auth import Principal
from vwindow.case_flow import (
    TRANSITIONS,
    Actor,
    CaseFlow,
    MaterialsMissingError,
    TransitionError,
    TransitionForbiddenError,
    call_answered,
    check_transition,
)
from vwindow.case_sla import sla_flags
from vwindow.cases import Cases
from vwindow.db import Database
from vwindow.errors import ForbiddenError, InvalidStateError, NotFoundError, ValidationError
from vwindow.models import (
    AuditEntry,
    Call,
    CallStatus,
    Case,
    CaseMilestone,
    CasePause,
    CaseStatus,
    Kiosk,
    Role,
    User,
)
from vwindow.seed import seed_demo
from vwindow.sla_config import SlaConfig

S = CaseStatus
STAFF = {"agent", "back_office"}
BACK = {"back_office"}
# Written out in full, not derived from the code: every allowed move and who may make it.
EXPECTED: dict[tuple[CaseStatus, CaseStatus], set[str]] = {
    (S.RECEIVED, S.DISPATCHED): STAFF,
    (S.RECEIVED, S.IN_PROGRESS): STAFF,
    (S.RECEIVED, S.REJECTED): STAFF,
    (S.DISPATCHED, S.IN_PROGRESS): BACK,
    (S.DISPATCHED, S.RETURNED): BACK,
    (S.DISPATCHED, S.COMPLETED): BACK,
    (S.DISPATCHED, S.REJECTED): BACK,
    (S.IN_PROGRESS, S.DISPATCHED): STAFF,
    (S.IN_PROGRESS, S.COMPLETED): STAFF,
    (S.IN_PROGRESS, S.RETURNED): STAFF,
    (S.IN_PROGRESS, S.REJECTED): STAFF,
    (S.IN_PROGRESS, S.BOOKED): STAFF,
    (S.RETURNED, S.IN_PROGRESS): STAFF | {"system"},
    (S.RETURNED, S.REJECTED): STAFF,
    (S.RETURNED, S.BOOKED): STAFF,
    (S.BOOKED, S.IN_PROGRESS): STAFF,
    (S.BOOKED, S.COMPLETED): STAFF,
}
ACTORS: tuple[Actor, ...] = ("agent", "back_office", "system")
TZ = ZoneInfo("Asia/Shanghai")
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)


def test_the_table_is_the_documented_one() -> None:
    assert {k: set(v) for k, v in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize("frm", list(CaseStatus))
@pytest.mark.parametrize("to", list(CaseStatus))
@pytest.mark.parametrize("actor", ACTORS)
def test_every_pair(frm: CaseStatus, to: CaseStatus, actor: Actor) -> None:
    allowed = EXPECTED.get((frm, to))
    if allowed is None:
        with pytest.raises(TransitionError) as err:
            check_transition(frm, to, actor)
        assert f"{frm.value!r} to {to.value!r}" in err.value.message
        assert err.value.http_status == 409
    elif actor not in allowed:
        with pytest.raises(TransitionForbiddenError) as denied:
            check_transition(frm, to, actor)
        assert denied.value.http_status == 403
    else:
        check_transition(frm, to, actor)


def test_final_states_have_no_way_out() -> None:
    for final in (S.COMPLETED, S.REJECTED):
        assert not [k for k in TRANSITIONS if k[0] == final]


# -- against a real database --------------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
    await database.start()
    await seed_demo(database)
    try:
        yield database
    finally:
        await database.stop()


async def principals(db: Database) -> tuple[Principal, Principal, Principal, int]:
    async with db.session() as s:
        users = {u.username: u.id for u in (await s.scalars(select(User))).all()}
        kiosk = (await s.scalars(select(Kiosk.id))).one()
    return (Principal(Role.AGENT, str(users["agent1"]), "agent1"),
            Principal(Role.AGENT, str(users["agent2"]), "agent2"),
            Principal(Role.SUPERVISOR, str(users["super1"]), "super1"), kiosk)


async def new_case(db: Database, kiosk: int, code: str = "SB-001",
                   created: datetime = MONDAY_9) -> int:
    view = await Cases(db).start_call(kiosk, code)
    async with db.session() as s:
        await s.execute(update(Case).where(Case.id == view.case_id).values(created_at=created))
        # The call is not what these tests are about: drop it so the kiosk may call again.
        await s.execute(update(Call).where(Call.id == view.call_id)
                        .values(status=CallStatus.CANCELLED))
    return view.case_id


async def test_lifecycle_with_audit_pauses_and_tamper_detection(db: Database) -> None:
    agent1, agent2, boss, kiosk = await principals(db)
    flow = CaseFlow(db, SlaConfig())
    case_id = await new_case(db, kiosk)
    async with db.session() as s:
        await call_answered(s, case_id, int(agent1.subject))
    view = await flow.view(agent1, case_id)
    assert view.status == "in_progress"
    assert set(view.allowed) == {"dispatched", "completed", "returned", "rejected"}
    assert (await flow.view(agent2, case_id)).allowed == []
    with pytest.raises(ForbiddenError):
        await flow.transition(agent2, case_id, "completed")
    with pytest.raises(ValidationError) as bad:
        await flow.transition(agent1, case_id, "done")
    assert bad.value.field == "to"
    with pytest.raises(MaterialsMissingError) as missing:
        await flow.transition(agent1, case_id, "completed")
    assert missing.value.details() == {"missing": ["id_card", "photo"],
                                       "unanswered": ["applicant", "mobility"]}
    with pytest.raises(ValidationError):
        await flow.transition(agent1, case_id, "returned")  # no reason
    with pytest.raises(InvalidStateError):  # booked needs a booking
        await flow.transition(agent1, case_id, "booked")

    await flow.transition(agent1, case_id, "returned", "请补充户口簿")
    view = await flow.view(agent1, case_id)
    assert view.status == "returned" and view.paused
    assert next(m for m in view.sla.milestones if m.key == "result").paused
    # A material arriving ends the pause and puts the case back in progress.
    await Cases(db).add_material("kiosk:1", case_id, sha256="a" * 64, size=3,
                                 content_type="image/jpeg", filename="户口本.jpg",
                                 source="upload", call_id=None)
    view = await flow.view(agent1, case_id)
    assert view.status == "in_progress" and not view.paused
    extras = await flow.case_extras(case_id)  # what GET /cases/{id} adds
    assert set(extras) == {"sla", "checklist", "answers", "lifecycle"}
    assert extras["checklist"]["missing"] == ["id_card", "photo"]
    assert extras["lifecycle"]["paused"] is False
    async with db.session() as s:
        pause = (await s.scalars(select(CasePause))).one()
        assert pause.ended_at is not None and pause.ended_by == "kiosk:1"

    await flow.transition(boss, case_id, "completed", "主任核准，材料后补", override=True)
    view = await flow.view(boss, case_id)
    assert view.status == "completed" and view.allowed == []
    assert view.outcome_note == "主任核准，材料后补"
    with pytest.raises(TransitionError):
        await flow.transition(boss, case_id, "in_progress")

    async with db.session() as s:
        rows = (await s.scalars(select(AuditEntry).where(
            AuditEntry.action == "case.transition").order_by(AuditEntry.id))).all()
        moves = [(r.actor, r.detail["from"], r.detail["to"]) for r in rows]
        assert moves == [
            (agent1.key, "received", "in_progress"),
            (agent1.key, "in_progress", "returned"),
            ("kiosk:1", "returned", "in_progress"),
            (boss.key, "in_progress", "completed"),
        ]
        assert rows[1].detail["reason"] == "请补充户口簿"
        assert rows[3].detail["override"] is True
        assert rows[3].detail["missing"] == ["id_card", "photo"]
        assert (await verify_chain(s)).ok
        # Someone edits who completed the case, straight in the database.
        await s.execute(update(AuditEntry).where(AuditEntry.id == rows[3].id)
                        .values(actor="agent:999"))
    async with db.session() as s:
        report = await verify_chain(s)
        assert not report.ok and report.first_bad_id == rows[3].id


async def test_answers_and_tags(db: Database) -> None:
    agent1, _agent2, _boss, kiosk = await principals(db)
    flow = CaseFlow(db, SlaConfig())
    case_id = await new_case(db, kiosk)
    async with db.session() as s:
        await call_answered(s, case_id, int(agent1.subject))
    with pytest.raises(ValidationError) as bad:
        await flow.set_answers(agent1, case_id, {"applicant": "邻居"})
    assert bad.value.field == "applicant"
    await flow.set_answers(agent1, case_id, {"applicant": "委托他人", "mobility": "能到场或视频"})
    view = await flow.view(agent1, case_id)
    assert view.checklist.missing == ["id_card", "photo", "proxy_letter", "proxy_id"]
    material, _ = await Cases(db).add_material(agent1, case_id, sha256="b" * 64, size=3,
                                               content_type="image/jpeg",
                                               filename="材料1-p1.jpg", source="doccam",
                                               call_id=None, kind="page", document="材料1")
    with pytest.raises(ValidationError) as unknown:
        await flow.tag_material(agent1, material.id, "passport")
    assert unknown.value.field == "material_type"
    with pytest.raises(NotFoundError):
        await flow.tag_material(agent1, 9999, "photo")
    assert await flow.tag_material(agent1, material.id, "proxy_letter") == case_id
    assert "proxy_letter" not in (await flow.view(agent1, case_id)).checklist.missing
    await flow.tag_material(agent1, material.id, "photo")  # re-tagged
    assert (await flow.view(agent1, case_id)).checklist.missing == [
        "id_card", "proxy_letter", "proxy_id"]
    await flow.tag_material(agent1, material.id, None)
    assert "photo" in (await flow.view(agent1, case_id)).checklist.missing


async def test_sla_flags_with_a_controllable_clock(db: Database) -> None:
    agent1, _agent2, boss, kiosk = await principals(db)
    config = SlaConfig(items={"SB-002": "12345"})
    ordinary = await new_case(db, kiosk, "SB-001")
    hotline = await new_case(db, kiosk, "SB-002", created=MONDAY_9 + timedelta(hours=1))
    done = await new_case(db, kiosk, "MZ-001")
    flow = CaseFlow(db, config)
    async with db.session() as s:
        await call_answered(s, done, int(agent1.subject))
    await flow.transition(boss, done, "rejected", "不符合条件")

    # 09:30: the ordinary case's 2 h first response is far off.
    early = await sla_flags(db, config, MONDAY_9 + timedelta(minutes=30))
    assert ordinary not in [f["case_id"] for f in early]
    # 10:45: the ordinary case used 1 h 45 of its 2 h (over 80 %): near breach; the hotline
    # case's contact, due at once at 10:00, is breached.
    flags = await sla_flags(db, config, MONDAY_9 + timedelta(hours=1, minutes=45))
    assert [(f["case_id"], f["state"], f["milestone"]) for f in flags] == [
        (hotline, "breached", "contact"), (ordinary, "near_breach", "first_response")]
    near = flags[1]
    assert near["remaining_s"] == 15 * 60
    assert near["deadline"] == (MONDAY_9 + timedelta(hours=2)).isoformat()
    assert set(near) == {"case_id", "number", "service", "township", "status", "state",
                         "milestone", "deadline", "remaining_s", "rule_set",
                         "assigned_agent_id"}
    # Business hours: due at 11:00; by 14:31 it is 1 h 1 min overdue, not 3 h 31, since the
    # office is closed for lunch from 12:00 to 14:30.
    flags = await sla_flags(db, config, datetime(2026, 3, 2, 14, 31, tzinfo=TZ))
    assert (flags[-1]["case_id"], flags[-1]["state"]) == (ordinary, "breached")
    assert flags[-1]["remaining_s"] == -(3600 + 60)
    # A first response at 14:20 (late) takes the ordinary case off the list.
    async with db.session() as s:
        s.add(CaseMilestone(case_id=ordinary, key="first_response", actor=agent1.key,
                            at=datetime(2026, 3, 2, 14, 20, tzinfo=TZ)))
    later = await sla_flags(db, config, datetime(2026, 3, 2, 14, 31, tzinfo=TZ))
    assert [f["case_id"] for f in later] == [hotline]
    assert done not in [f["case_id"] for f in later]
    assert await sla_flags(db, config, datetime(2026, 3, 2, 14, 31, tzinfo=TZ), limit=0) == []


async def test_a_drawn_case_number_already_used_is_drawn_again(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six random hex digits a day collide every few thousand cases (the 10-minute load
    benchmark met three): a used number is never handed out twice."""
    cases = Cases(db)
    async with db.session() as s:
        demo = (await s.scalars(select(Kiosk))).one()
        for i in (2, 3):
            s.add(Kiosk(code=f"k{i}", name=f"{i} 号机", township_id=demo.township_id,
                        key_hash=demo.key_hash))
        await s.flush()
        kiosks = list((await s.scalars(select(Kiosk.id).order_by(Kiosk.id))).all())
    first = await cases.start_call(kiosks[0], "SB-001")
    taken = (await cases.case_view(first.case_id)).number
    used = taken.split("-")[1].lower()
    draws = iter([used, "abcdef"])
    monkeypatch.setattr("vwindow.cases.secrets.token_hex", lambda n: next(draws))
    second = await cases.start_call(kiosks[1], "SB-001")
    assert (await cases.case_view(second.case_id)).number == taken[:-6] + "ABCDEF"
    # A day so full that every draw is taken gets a longer number, not an error.
    monkeypatch.setattr("vwindow.cases.secrets.token_hex",
                        lambda n: used if n == 3 else "1234567890")
    third = await cases.start_call(kiosks[2], "SB-001")
    assert (await cases.case_view(third.case_id)).number == taken[:-6] + "1234567890"
