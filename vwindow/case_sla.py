"""A case's SLA clocks, computed on read from what the database records.

When a milestone was met comes from the case's calls and its ``case_milestones`` rows:

- ``contact``: the first of its calls an agent answered;
- ``first_response``: that answer, or the first status change by staff if earlier;
- ``feedback``: the end of the first answered call (the citizen heard back in person),
  or a status change that tells the citizen something (dispatched, returned, booked,
  completed, rejected), whichever came first;
- ``result``: completed, rejected, or booked for a window visit (the remote part of the
  service is then done and the materials travel with the booking).

Pauses (补正) are the ``case_pauses`` rows. ``SlaConfig.clock().evaluate`` does the rest.
``sla_flags`` is the supervisor dashboard's list of open cases near breach or breached:
four set-based queries whatever the number of cases, no personal data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vwindow.db import Database
from vwindow.models import (
    Call,
    Case,
    CaseMilestone,
    CasePause,
    CaseStatus,
    ServiceItem,
    Township,
)
from vwindow.sla import MilestoneStatus, Pause, worst
from vwindow.sla_config import SlaConfig

CLOSED = frozenset({CaseStatus.COMPLETED, CaseStatus.REJECTED})
"""Statuses a case does not leave: no clock of theirs can breach any more."""
FEEDBACK_STATUSES = frozenset({CaseStatus.DISPATCHED, CaseStatus.RETURNED, CaseStatus.BOOKED,
                               CaseStatus.COMPLETED, CaseStatus.REJECTED})
RESULT_STATUSES = frozenset({CaseStatus.COMPLETED, CaseStatus.REJECTED, CaseStatus.BOOKED})


class MilestoneView(BaseModel):
    key: str
    clock: str
    state: str
    deadline: datetime
    remaining_s: int
    """Negative once overdue."""
    budget_s: int
    met_at: datetime | None
    paused: bool


class SlaView(BaseModel):
    rule_set: str
    state: str | None
    """The most severe milestone state (``vwindow.sla.worst``)."""
    flagged: bool
    milestones: list[MilestoneView]


def milestone_view(status: MilestoneStatus) -> MilestoneView:
    return MilestoneView(key=status.key, clock=status.clock, state=status.state,
                         deadline=status.deadline,
                         remaining_s=int(status.remaining.total_seconds()),
                         budget_s=int(status.budget.total_seconds()), met_at=status.met_at,
                         paused=status.paused)


def _earliest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def milestone_events(first_answer: datetime | None, first_end: datetime | None,
                     recorded: Mapping[str, datetime]) -> dict[str, datetime | None]:
    """Milestone key → when it was met (see the module docstring)."""
    events: dict[str, datetime | None] = dict(recorded)
    events["contact"] = first_answer
    events["first_response"] = _earliest(first_answer, recorded.get("first_response"))
    events["feedback"] = _earliest(first_end, recorded.get("feedback"))
    return events


def evaluate(config: SlaConfig, item_code: str, category: str, started_at: datetime,
             events: Mapping[str, datetime | None], pauses: Sequence[Pause],
             now: datetime) -> SlaView:
    rule_set = config.rule_set_for(item_code, category)
    statuses = config.clock().evaluate(rule_set, started_at, events, now, pauses)
    top = worst(statuses)
    return SlaView(rule_set=rule_set.name, state=top.state if top else None,
                   flagged=bool(top and top.flagged),
                   milestones=[milestone_view(s) for s in statuses])


async def case_sla(s: AsyncSession, config: SlaConfig, case: Case, item: ServiceItem,
                   now: datetime) -> SlaView:
    """The SLA view of one case, read within session ``s``."""
    first_answer, first_end = (await s.execute(
        select(func.min(Call.answered_at),
               func.min(Call.ended_at).filter(Call.answered_at.is_not(None)))
        .where(Call.case_id == case.id))).one()
    recorded = {m.key: m.at for m in (await s.scalars(
        select(CaseMilestone).where(CaseMilestone.case_id == case.id))).all()}
    pauses = [(p.started_at, p.ended_at) for p in (await s.scalars(
        select(CasePause).where(CasePause.case_id == case.id))).all()]
    return evaluate(config, item.code, item.category, case.created_at,
                    milestone_events(_aware(first_answer), _aware(first_end), recorded),
                    pauses, now)


def _aware(value: datetime | None) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back naive UTC or even text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def sla_flags(db: Database, config: SlaConfig | None, now: datetime,
                    limit: int = 100) -> list[dict[str, object]]:
    """Open cases whose clocks are near breach or breached, most urgent first.

    For the supervisor's dashboard: case number, service, township, status, the worst
    milestone with its deadline and remaining seconds, the assigned agent's id; nothing
    about the citizen. ``config`` None uses the default ``[sla]`` settings.
    """
    sla = config or SlaConfig()
    open_cases = Case.status.not_in([s.value for s in CLOSED])
    async with db.session() as s:
        rows = (await s.execute(
            select(Case.id, Case.number, Case.status, Case.created_at, Case.assigned_agent_id,
                   ServiceItem.code, ServiceItem.name, ServiceItem.category, Township.name)
            .join(ServiceItem, ServiceItem.id == Case.service_item_id)
            .join(Township, Township.id == Case.township_id)
            .where(open_cases))).all()
        calls = {row[0]: (row[1], row[2]) for row in (await s.execute(
            select(Call.case_id, func.min(Call.answered_at),
                   func.min(Call.ended_at).filter(Call.answered_at.is_not(None)))
            .join(Case, Case.id == Call.case_id).where(open_cases)
            .group_by(Call.case_id))).all()}
        recorded: dict[int, dict[str, datetime]] = {}
        for m in (await s.scalars(select(CaseMilestone).join(
                Case, Case.id == CaseMilestone.case_id).where(open_cases))).all():
            recorded.setdefault(m.case_id, {})[m.key] = m.at
        pauses: dict[int, list[Pause]] = {}
        for p in (await s.scalars(select(CasePause).join(
                Case, Case.id == CasePause.case_id).where(open_cases))).all():
            pauses.setdefault(p.case_id, []).append((p.started_at, p.ended_at))
    flags: list[tuple[tuple[int, int], dict[str, object]]] = []
    for case_id, number, status, created, agent_id, code, name, category, town in rows:
        first_answer, first_end = calls.get(case_id, (None, None))
        view = evaluate(sla, code, category, created,
                        milestone_events(_aware(first_answer), _aware(first_end),
                                         recorded.get(case_id, {})),
                        pauses.get(case_id, []), now)
        if not view.flagged:
            continue
        top = min((m for m in view.milestones if m.state == view.state),
                  key=lambda m: m.remaining_s)
        flags.append(((0 if view.state == "breached" else 1, top.remaining_s), {
            "case_id": case_id, "number": number, "service": {"code": code, "name": name},
            "township": town, "status": status, "state": view.state,
            "milestone": top.key, "deadline": top.deadline.isoformat(),
            "remaining_s": top.remaining_s, "rule_set": view.rule_set,
            "assigned_agent_id": agent_id,
        }))
    flags.sort(key=lambda f: f[0])
    return [f[1] for f in flags[:limit]]
