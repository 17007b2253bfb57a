"""A case's lifecycle: status transitions, situation answers, material tags, pre-check.

received → dispatched → in progress → completed / returned for more material (补正) /
rejected / booked for a window visit. ``TRANSITIONS`` says which moves exist and who may
make each: ``agent`` (the agent assigned to the case), ``back_office`` (a supervisor,
for now) or ``system`` (a material arriving on a returned case). A move not in the table
raises ``TransitionError`` naming from and to.

Every change is written to the hash-chained audit log in its own transaction, with the
actor, from, to and reason. Completing is refused while the checklist
(``vwindow.checklist``) has missing materials or unanswered deciding questions, unless
the caller overrides with a reason (audited with what was missing). Returning a case
opens a pause of its pausable SLA clocks; the first material that arrives afterwards
closes it and puts the case back in progress.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Integer, String, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vwindow import audit
from vwindow.auth import Principal
from vwindow.case_sla import FEEDBACK_STATUSES, RESULT_STATUSES, SlaView, case_sla
from vwindow.catalog import SituationQuestion, applicable_materials
from vwindow.catalog_store import item_of
from vwindow.checklist import Checklist, IdReadFact, MaterialFact, build
from vwindow.db import Database, core
from vwindow.errors import ForbiddenError, InvalidStateError, NotFoundError, ValidationError
from vwindow.models import (
    Appointment,
    Case,
    CaseMilestone,
    CasePause,
    CaseStatus,
    IdRead,
    Kiosk,
    Material,
    MaterialTag,
    Role,
    ServiceItem,
    UTCDateTime,
    utcnow,
)
from vwindow.sla_config import SlaConfig

logger = logging.getLogger(__name__)

Actor = Literal["agent", "back_office", "system"]
_STAFF: frozenset[Actor] = frozenset({"agent", "back_office"})
_BACK: frozenset[Actor] = frozenset({"back_office"})
_S = CaseStatus

TRANSITIONS: Mapping[tuple[CaseStatus, CaseStatus], frozenset[Actor]] = MappingProxyType({
    (_S.RECEIVED, _S.DISPATCHED): _STAFF,
    (_S.RECEIVED, _S.IN_PROGRESS): _STAFF,
    (_S.RECEIVED, _S.REJECTED): _STAFF,
    (_S.DISPATCHED, _S.IN_PROGRESS): _BACK,
    (_S.DISPATCHED, _S.RETURNED): _BACK,
    (_S.DISPATCHED, _S.COMPLETED): _BACK,
    (_S.DISPATCHED, _S.REJECTED): _BACK,
    (_S.IN_PROGRESS, _S.DISPATCHED): _STAFF,
    (_S.IN_PROGRESS, _S.COMPLETED): _STAFF,
    (_S.IN_PROGRESS, _S.RETURNED): _STAFF,
    (_S.IN_PROGRESS, _S.REJECTED): _STAFF,
    (_S.IN_PROGRESS, _S.BOOKED): _STAFF,
    (_S.RETURNED, _S.IN_PROGRESS): frozenset({"agent", "back_office", "system"}),
    (_S.RETURNED, _S.REJECTED): _STAFF,
    (_S.RETURNED, _S.BOOKED): _STAFF,
    (_S.BOOKED, _S.IN_PROGRESS): _STAFF,
    (_S.BOOKED, _S.COMPLETED): _STAFF,
})
"""(from, to) → who may make the move. Completed and rejected are final."""

REASON_REQUIRED = frozenset({CaseStatus.RETURNED, CaseStatus.REJECTED})
"""Moves the citizen must be told the why of: what to bring, why not."""


class TransitionError(InvalidStateError):
    """A move the lifecycle does not have (e.g. completed → in_progress)."""

    code = "transition_not_allowed"


class TransitionForbiddenError(ForbiddenError):
    """A move that exists, but not for this actor."""

    code = "transition_forbidden"


class MaterialsMissingError(InvalidStateError):
    """Completing a case whose checklist is not complete, without an override."""

    code = "materials_missing"

    def __init__(self, message: str, checklist: Checklist) -> None:
        super().__init__(message, field="to")
        self.checklist = checklist

    def details(self) -> dict[str, object]:
        return {"missing": self.checklist.missing, "unanswered": self.checklist.unanswered}


class BookingRequiredError(InvalidStateError):
    code = "booking_required"


def status_of(value: str, field: str = "to") -> CaseStatus:
    try:
        return CaseStatus(value)
    except ValueError:
        raise ValidationError(f"unknown case status {value!r} (one of "
                              f"{', '.join(s.value for s in CaseStatus)})", field=field) from None


def check_transition(current: CaseStatus, to: CaseStatus, actor: Actor) -> None:
    """Raise unless ``actor`` may move a case from ``current`` to ``to``."""
    allowed = TRANSITIONS.get((current, to))
    if allowed is None:
        raise TransitionError(f"a case cannot go from {current.value!r} to {to.value!r}",
                              field="to")
    if actor not in allowed:
        raise TransitionForbiddenError(
            f"{actor} may not move a case from {current.value!r} to {to.value!r}", field="to")


def allowed_targets(current: CaseStatus, actor: Actor | None) -> list[str]:
    if actor is None:
        return []
    return [to.value for (frm, to), who in TRANSITIONS.items()
            if frm == current and actor in who]


def actor_of(principal: Principal, case: Case) -> Actor | None:
    """The principal's part in the lifecycle of ``case`` (None: may not move it)."""
    if principal.role is Role.SUPERVISOR:
        return "back_office"
    if principal.role is Role.AGENT and case.assigned_agent_id == int(principal.subject):
        return "agent"
    return None


class QuestionView(BaseModel):
    key: str
    text: str
    options: list[str]


class FlowView(BaseModel):
    """What the agent's case panel shows of the lifecycle."""

    case_id: int
    number: str
    status: str
    status_changed_at: datetime | None
    outcome_note: str | None
    allowed: list[str]
    """Statuses this caller may move the case to now."""
    paused: bool
    service_code: str
    instant_approval: bool
    questions: list[QuestionView]
    answers: dict[str, str]
    checklist: Checklist
    sla: SlaView


_ADD_MILESTONE = insert(CaseMilestone).from_select(
    ["case_id", "key", "at", "actor"],
    select(bindparam("case", type_=Integer), bindparam("key", type_=String),
           bindparam("at", type_=UTCDateTime()), bindparam("actor", type_=String))
    .where(~select(CaseMilestone.id).where(CaseMilestone.case_id == bindparam("case"),
                                           CaseMilestone.key == bindparam("key")).exists()))
"""A milestone is recorded the first time only (one statement: it is on every answer)."""

_CLOSE_PAUSE = (update(CasePause)
                .where(CasePause.case_id == bindparam("case"), CasePause.ended_at.is_(None))
                .values(ended_at=bindparam("at"), ended_by=bindparam("actor")))

_SET_STATUS = (update(Case)
               .where(Case.id == bindparam("case"), Case.status == bindparam("current"))
               .values(status=bindparam("to"), status_changed_at=bindparam("at"),
                       outcome_note=bindparam("reason")))

_ASSIGN = (update(Case).where(Case.id == bindparam("case"))
           .values(assigned_agent_id=bindparam("agent")).returning(Case.status))


async def _move(s: AsyncSession, case_id: int, current: CaseStatus, to: CaseStatus,
                actor_key: str, *, reason: str | None,
                detail: dict[str, Any] | None = None) -> None:
    """Change the status (guarded against a concurrent change), pauses, milestones, audit."""
    now = utcnow()
    conn = await core(s)
    result = await conn.execute(_SET_STATUS, {"case": case_id, "current": current,
                                              "to": to, "at": now, "reason": reason})
    if result.rowcount != 1:
        raise InvalidStateError(f"case {case_id} changed meanwhile; reload and try again",
                                field="to")
    if to == CaseStatus.RETURNED:
        s.add(CasePause(case_id=case_id, started_at=now, started_by=actor_key))
    else:
        await conn.execute(_CLOSE_PAUSE, {"case": case_id, "at": now, "actor": actor_key})
    keys = [] if actor_key.startswith("system:") else ["first_response"]
    if to in FEEDBACK_STATUSES:
        keys.append("feedback")
    if to in RESULT_STATUSES:
        keys.append("result")
    for key in keys:
        await conn.execute(_ADD_MILESTONE, {"case": case_id, "key": key, "at": now,
                                            "actor": actor_key})
    await audit.append(s, actor=actor_key, action="case.transition", case_id=case_id,
                       detail={"from": current.value, "to": to.value, "reason": reason or "",
                               **(detail or {})})
    logger.info("case %s: %s -> %s by %s", case_id, current.value, to.value,
                actor_key.partition(":")[0])


async def material_arrived(s: AsyncSession, case_id: int, material_id: int,
                           actor_key: str) -> None:
    """A new material on a case returned for more material: the pause ends, work resumes.

    Runs in the transaction that adds the material.
    """
    case = await s.get(Case, case_id)
    if case is None or case.status != CaseStatus.RETURNED:
        return
    check_transition(CaseStatus.RETURNED, CaseStatus.IN_PROGRESS, "system")
    await _move(s, case.id, CaseStatus.RETURNED, CaseStatus.IN_PROGRESS, actor_key,
                reason="补正材料已收到",
                detail={"material_id": material_id, "automatic": True})


async def call_answered(s: AsyncSession, case_id: int, agent_id: int) -> None:
    """An agent answered a call on the case: it is theirs, and in progress unless final.

    For ``CallQueue.accept``, in its transaction (the call's own audit row is written
    there). A case answered from received, dispatched, returned or booked moves through
    ``_move``, so a 补正 pause ends and the move is audited like any other.
    """
    conn = await core(s)
    status = (await conn.execute(_ASSIGN, {"case": case_id, "agent": agent_id})
              ).scalar_one_or_none()
    if status is None:
        raise NotFoundError(f"case {case_id} does not exist", field="case_id")
    current = CaseStatus(status)
    if current in (CaseStatus.IN_PROGRESS, CaseStatus.COMPLETED, CaseStatus.REJECTED):
        return
    if current == CaseStatus.DISPATCHED:
        # The back office owns a dispatched case; a call on it is the citizen asking.
        return
    await _move(s, case_id, current, CaseStatus.IN_PROGRESS, f"agent:{agent_id}",
                reason=None, detail={"call_answered": True})


async def open_case_for_call(s: AsyncSession, number: str, kiosk: Kiosk,
                             item: ServiceItem) -> Case:
    """The case a later call continues: open, of the same item, from the kiosk's township.

    The number is printed on the citizen's slip, so another township's kiosk is refused
    as if the case did not exist (no probing for numbers).
    """
    case = (await s.scalars(select(Case).where(Case.number == number.strip().upper()))).first()
    if case is None or case.township_id != kiosk.township_id:
        raise NotFoundError(f"no case {number!r} at this service point", field="case_number")
    if case.service_item_id != item.id:
        raise ValidationError(f"case {case.number} is for another service item",
                              field="service_code")
    if case.status in (CaseStatus.COMPLETED, CaseStatus.REJECTED):
        raise InvalidStateError(f"case {case.number} is {case.status}; start a new one",
                                field="case_number")
    return case


def _paper_facts(materials: list[Material], tags: Mapping[int, str]) -> list[MaterialFact]:
    return [MaterialFact(id=m.id, kind=m.kind, source=m.source, filename=m.filename,
                         document=m.document, material_type=tags.get(m.id))
            for m in materials]


class CaseFlow:
    """Lifecycle operations on cases, each in its own transaction."""

    def __init__(self, db: Database, sla: SlaConfig) -> None:
        self.db = db
        self.sla = sla

    async def _case(self, s: AsyncSession, case_id: int, *, lock: bool = False) -> Case:
        case = await s.get(Case, case_id, with_for_update=lock, populate_existing=lock)
        if case is None:
            raise NotFoundError(f"case {case_id} does not exist", field="case_id")
        return case

    async def _checklist(self, s: AsyncSession, case: Case, item: ServiceItem) -> Checklist:
        mats = list((await s.scalars(select(Material).where(
            Material.case_id == case.id).order_by(Material.id))).all())
        tags = {t.material_id: t.material_type for t in (await s.scalars(
            select(MaterialTag).where(MaterialTag.case_id == case.id))).all()}
        reads = [IdReadFact(id=r.id, card_type=r.card_type, number_valid=r.number_valid)
                 for r in (await s.scalars(select(IdRead).where(
                     IdRead.case_id == case.id).order_by(IdRead.id))).all()]
        return build(item_of(item), dict(case.answers or {}), _paper_facts(mats, tags), reads)

    async def transition(self, principal: Principal, case_id: int, to_value: str,
                         reason: str | None = None, override: bool = False) -> None:
        """Move the case; see the module docstring for the rules."""
        to = status_of(to_value)
        reason = (reason or "").strip() or None
        async with self.db.session() as s:
            case = await self._case(s, case_id, lock=True)
            actor = actor_of(principal, case)
            if actor is None:
                raise ForbiddenError(f"not allowed to change case {case_id}", field="case_id")
            check_transition(CaseStatus(case.status), to, actor)
            if to in REASON_REQUIRED and reason is None:
                raise ValidationError(f"moving a case to {to.value!r} needs a reason",
                                      field="reason")
            detail: dict[str, Any] = {}
            if to == CaseStatus.BOOKED:
                booking = (await s.scalars(select(Appointment.id).where(
                    Appointment.active_case_id == case_id))).first()
                if booking is None:
                    raise BookingRequiredError("book a window slot for the case first "
                                               "(预约窗口办理)", field="to")
            if to == CaseStatus.COMPLETED:
                item = await s.get_one(ServiceItem, case.service_item_id)
                checklist = await self._checklist(s, case, item)
                if not checklist.complete:
                    if not override:
                        raise MaterialsMissingError(
                            "materials are missing: "
                            + "、".join(checklist.names(checklist.missing) + checklist.unanswered),
                            checklist)
                    if reason is None:
                        raise ValidationError("completing with missing materials needs a "
                                              "reason", field="reason")
                    detail = {"override": True, "missing": checklist.missing,
                              "unanswered": checklist.unanswered}
            await _move(s, case.id, CaseStatus(case.status), to, principal.key, reason=reason,
                        detail=detail)

    async def set_answers(self, principal: Principal, case_id: int,
                          answers: Mapping[str, str]) -> None:
        """Replace the case's situation answers (validated against its item's questions)."""
        async with self.db.session() as s:
            case = await self._case(s, case_id, lock=True)
            if case.status in (CaseStatus.COMPLETED, CaseStatus.REJECTED):
                raise InvalidStateError(f"case {case_id} is {case.status}; its answers are "
                                        "final", field="answers")
            item = await s.get_one(ServiceItem, case.service_item_id)
            applicable_materials(item_of(item), answers)  # raises naming a bad answer
            case.answers = dict(answers)
            await audit.append(s, actor=principal.key, action="case.answers", case_id=case_id,
                               detail={"answers": dict(answers)})

    async def tag_material(self, principal: Principal, material_id: int,
                           material_type: str | None) -> int:
        """Tag (or with None untag) a material as a checklist entry; returns its case id."""
        async with self.db.session() as s:
            material = await s.get(Material, material_id)
            if material is None:
                raise NotFoundError(f"material {material_id} does not exist",
                                    field="material_id")
            case = await self._case(s, material.case_id)
            if material_type is not None:
                item = item_of(await s.get_one(ServiceItem, case.service_item_id))
                keys = [m.key for m in item.required_materials]
                if material_type not in keys:
                    raise ValidationError(f"{material_type!r} is not a material of item "
                                          f"{item.code} (one of {', '.join(keys)})",
                                          field="material_type")
            tag = await s.get(MaterialTag, material_id)
            if material_type is None:
                if tag is not None:
                    await s.delete(tag)
            elif tag is None:
                s.add(MaterialTag(material_id=material_id, case_id=case.id,
                                  material_type=material_type, tagged_by=principal.key))
            else:
                tag.material_type = material_type
                tag.tagged_by = principal.key
                tag.tagged_at = utcnow()
            try:
                await s.flush()
            except IntegrityError as err:
                raise InvalidStateError("the material was tagged concurrently; retry",
                                        field="material_id") from err
            await audit.append(s, actor=principal.key, action="material.tagged",
                               case_id=case.id,
                               detail={"material_id": material_id,
                                       "material_type": material_type})
            return case.id

    async def view(self, principal: Principal | None, case_id: int,
                   now: datetime | None = None) -> FlowView:
        """Status, allowed moves (for ``principal``), questions, checklist and SLA."""
        at = now or utcnow()
        async with self.db.session() as s:
            case = await self._case(s, case_id)
            item = await s.get_one(ServiceItem, case.service_item_id)
            entry = item_of(item)
            checklist = await self._checklist(s, case, item)
            status = CaseStatus(case.status)
            allowed = allowed_targets(status, actor_of(principal, case) if principal else None)
            if CaseStatus.BOOKED.value in allowed:
                booking = (await s.scalars(select(Appointment.id).where(
                    Appointment.active_case_id == case_id))).first()
                if booking is None:
                    allowed.remove(CaseStatus.BOOKED.value)
            paused = (await s.scalars(select(CasePause.id).where(
                CasePause.case_id == case_id, CasePause.ended_at.is_(None)))).first()
            return FlowView(
                case_id=case.id, number=case.number, status=status.value,
                status_changed_at=case.status_changed_at, outcome_note=case.outcome_note,
                allowed=allowed, paused=paused is not None, service_code=entry.code,
                instant_approval=entry.instant_approval,
                questions=[_question(q) for q in entry.questions],
                answers=dict(case.answers or {}), checklist=checklist,
                sla=await case_sla(s, self.sla, case, item, at))

    async def case_extras(self, case_id: int, now: datetime | None = None) -> dict[str, Any]:
        """``sla``, ``checklist``, ``answers`` and ``lifecycle`` for ``GET /cases/{id}``."""
        view = await self.view(None, case_id, now)
        return {"sla": view.sla.model_dump(mode="json"),
                "checklist": view.checklist.model_dump(mode="json"),
                "answers": view.answers,
                "lifecycle": {"status_changed_at": view.model_dump(mode="json")[
                    "status_changed_at"], "outcome_note": view.outcome_note,
                    "paused": view.paused}}


def _question(q: SituationQuestion) -> QuestionView:
    return QuestionView(key=q.key, text=q.text, options=list(q.options))
