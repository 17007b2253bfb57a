"""The call queue's shared part: the rules from config, snapshots of calls and agents,
and the results a routing pass hands to ``signaling.router`` (offers, withdrawn offers,
queue places). ``vwindow.queue.CallQueue`` puts the parts together."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from vwindow import routing
from vwindow.cases import Cases
from vwindow.config import RoutingConfig
from vwindow.db import Database
from vwindow.models import (
    AgentStatus,
    Call,
    CallInvitation,
    CallStatus,
    Kiosk,
    Township,
    User,
    UTCDateTime,
)
from vwindow.views import CallView

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offer:
    call: CallView
    agent_id: int
    expires_at: datetime | None
    """None for ring-all, where nothing is reserved and the first to accept wins."""
    kiosk_id: int


@dataclass(frozen=True)
class Withdrawn:
    """An offer that ended without an answer: ``missed`` (timed out) or ``withdrawn``."""

    call_id: int
    agent_id: int
    reason: str


@dataclass(frozen=True)
class QueueInfo:
    call_id: int
    kiosk_id: int
    position: int
    eta_s: float | None
    """None: no eligible agent is on duty, so no estimate can be made."""
    callback: bool


def rules_of(config: RoutingConfig) -> routing.RoutingRules:
    return routing.RoutingRules(
        strategy=config.strategy, overflow_s=config.overflow_s,
        dialect_overflow_s=config.dialect_overflow_s, elderly_age=config.elderly_age,
        elderly_boost=config.elderly_boost, appointment_boost=config.appointment_boost,
        callback_boost=config.callback_boost)


def _slot(status: AgentStatus, user: User, live_calls: int = 0) -> routing.AgentSlot:
    return routing.AgentSlot(
        id=user.id, state=status.state, level=user.level, county=user.county,
        skills=frozenset(user.skills or ()), dialects=frozenset(user.dialects or ()),
        idle_since=status.idle_since, last_offer_at=status.last_offer_at,
        live_calls=live_calls)


def _waiting(call: Call, county: str, default_dialect: str | None) -> routing.WaitingCall:
    return routing.WaitingCall(
        id=call.id, category=call.category or "", county=county, queued_at=call.queued_at,
        dialect=call.dialect or default_dialect, priority=call.priority,
        excluded=frozenset(call.excluded or ()), reserved_for=call.reserved_for)


@dataclass(frozen=True)
class WaitingRow:
    call: routing.WaitingCall
    kiosk_id: int
    callback: bool
    offered_to: int | None


_WITHDRAW_OFFER = (update(Call)
                   .where(Call.offered_to == bindparam("agent"), Call.status == CallStatus.QUEUED)
                   .values(offered_to=None, offer_expires_at=None).returning(Call.id))


@functools.cache
def _waiting_query(unoffered: bool, paged: bool, limited: bool) -> Select[*tuple[Any, ...]]:
    """The waiting calls in serving order, built once per shape (a routing pass on every
    change would otherwise spend a good part of its time building the same statement)."""
    query: Select[*tuple[Any, ...]] = (
        select(Call.id, Call.category, Township.county, Call.queued_at, Call.dialect,
               Township.default_dialect, Call.priority, Call.excluded,
               Call.reserved_for, Call.kiosk_id, Call.callback, Call.offered_to)
        .join(Kiosk, Kiosk.id == Call.kiosk_id)
        .join(Township, Township.id == Kiosk.township_id)
        # Written out, not a parameter: the planner matches it to ``ix_calls_waiting``'s
        # predicate even in a prepared statement's generic plan.
        .where(Call.status == literal_column(f"'{CallStatus.QUEUED.value}'"))
        .order_by(Call.priority.desc(), Call.queued_at, Call.id))
    if unoffered:
        query = query.where(Call.offered_to.is_(None))
    if paged:
        # Keyset paging in (priority desc, queued_at, id) order.
        priority = bindparam("priority", type_=Integer)
        queued_at = bindparam("queued_at", type_=UTCDateTime())
        query = query.where(or_(
            Call.priority < priority,
            and_(Call.priority == priority, or_(
                Call.queued_at > queued_at,
                and_(Call.queued_at == queued_at, Call.id > bindparam("id", type_=Integer))))))
    if limited:
        query = query.limit(bindparam("limit", type_=Integer))
    return query


class CallQueueBase:
    """What the queue's parts share: the database, the rules, snapshots."""

    def __init__(self, db: Database, cases: Cases, config: RoutingConfig,
                 node_id: str) -> None:
        self.db = db
        self.cases = cases
        self.config = config
        self.rules = rules_of(config)
        self.node_id = node_id

    # -- snapshots ---------------------------------------------------------------------

    async def _waiting_rows(self, s: AsyncSession | AsyncConnection, *,
                            unoffered: bool = False, after: routing.WaitingCall | None = None,
                            limit: int | None = None) -> list[WaitingRow]:
        """The waiting calls as plain rows (no ORM objects), in serving order
        (``routing.serving_order``); ``after`` and ``limit`` read them a page at a time."""
        query = _waiting_query(unoffered, after is not None, limit is not None)
        params: dict[str, object] = {}
        if after is not None:
            params = {"priority": after.priority, "queued_at": after.queued_at, "id": after.id}
        if limit is not None:
            params["limit"] = limit
        out = []
        for (call_id, category, county, queued_at, dialect, default_dialect, priority,
             excluded, reserved_for, kiosk_id, callback, offered_to) in (
                await s.execute(query, params)).all():
            waiting = routing.WaitingCall(
                id=call_id, category=category or "", county=county, queued_at=queued_at,
                dialect=dialect or default_dialect, priority=priority,
                excluded=frozenset(excluded or ()), reserved_for=reserved_for)
            out.append(WaitingRow(waiting, kiosk_id, bool(callback), offered_to))
        return out

    async def _agents(self, s: AsyncSession) -> list[routing.AgentSlot]:
        """Every agent on duty (not offline), for the board and the wait estimates."""
        query = (select(AgentStatus, User).join(User, User.id == AgentStatus.agent_id)
                 .where(AgentStatus.state != "offline"))
        rows = (await s.execute(query.order_by(AgentStatus.agent_id))).all()
        ids = [status.agent_id for status, _ in rows]
        busy: dict[int, int] = {}
        if ids:
            counted = await s.execute(
                select(Call.agent_id, func.count()).where(
                    Call.status == CallStatus.LIVE, Call.agent_id.in_(ids))
                .group_by(Call.agent_id))
            busy = {int(agent or 0): int(n) for agent, n in counted.all()}
        return [_slot(status, user, busy.get(user.id, 0)) for status, user in rows]

    @staticmethod
    async def _in_a_call(s: AsyncSession, agent_id: int) -> bool:
        """Is the agent really in a live call (its own, or one it joined as expert)?"""
        own = (await s.scalars(select(Call.id).where(
            Call.agent_id == agent_id, Call.status == CallStatus.LIVE))).first()
        if own is not None:
            return True
        joined = (await s.scalars(
            select(CallInvitation.id).join(Call, Call.id == CallInvitation.call_id)
            .where(CallInvitation.agent_id == agent_id, CallInvitation.joined_at.is_not(None),
                   Call.status == CallStatus.LIVE))).first()
        return joined is not None

    async def _clear_offer(self, s: AsyncSession, agent_id: int) -> int | None:
        """Withdraw the offer the agent holds, if any; returns its call."""
        conn = await s.connection()
        return (await conn.scalars(_WITHDRAW_OFFER, {"agent": agent_id})).first()
