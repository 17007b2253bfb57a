"""The call queue in the database: agent states, offers, claims, transfers, callbacks.

Every change is one transaction. Offers (the routing pass, readying an agent) are
``vwindow.queue_route``: two nodes routing at once never offer one call twice or one
agent two calls. The claim is a conditional ``UPDATE`` that only the offered agent (or,
with no offer standing, an eligible free agent) can win. The rules themselves are in
``vwindow.routing``; what kiosks and dashboards read is ``vwindow.queue_board``; node
heartbeats are ``vwindow.nodes``; what to push to whom is ``signaling.router``'s business.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from vwindow import audit, case_flow, routing
from vwindow.auth import Principal
from vwindow.errors import (
    ConflictError,
    ForbiddenError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from vwindow.models import (
    AgentStatus,
    Call,
    CallStatus,
    CaseNote,
    Kiosk,
    ServiceItem,
    Township,
    User,
    UTCDateTime,
    utcnow,
)
from vwindow.nodes import NodeLife
from vwindow.queue_base import (
    CallQueueBase,
    Offer,
    QueueInfo,
    Withdrawn,
    _slot,
    _waiting,
)
from vwindow.queue_board import QueueBoard
from vwindow.queue_route import CallRouting
from vwindow.views import CallView

__all__ = ["Answered", "CallQueue", "Offer", "QueueInfo", "Withdrawn"]

logger = logging.getLogger(__name__)

_ANSWERED: dict[str, Any] = {
    "status": CallStatus.LIVE, "agent_id": bindparam("agent"),
    "answered_at": func.coalesce(Call.answered_at, bindparam("now")),
    # A transferred call's session goes on where its hub is.
    "hub_node": func.coalesce(Call.hub_node, bindparam("node")),
    "offered_to": None, "offer_expires_at": None, "reserved_for": None,
    "reserved_until": None,
}
_OTHER = aliased(Call)

_CLAIM = (update(Call)
          .where(Call.id == bindparam("call"), Call.status == CallStatus.QUEUED,
                 or_(Call.offered_to.is_(None), Call.offered_to == bindparam("agent")))
          .values(_ANSWERED).returning(Call.case_id, Call.kiosk_id, Call.hub_node))
"""The claim itself: only the offered agent, or anyone while no offer stands, wins."""

_ANSWER_OFFER = (update(Call)
                 .where(Call.id == bindparam("call"), Call.status == CallStatus.QUEUED,
                        Call.offered_to == bindparam("agent"),
                        ~select(_OTHER.id).where(_OTHER.agent_id == bindparam("agent"),
                                                 _OTHER.status == CallStatus.LIVE).exists())
                 .values(_ANSWERED).returning(Call.case_id, Call.kiosk_id, Call.hub_node))
"""The claim of an agent holding the call's offer and in no other call: the checks of
``_claim_checked`` are then all true, so they are not made one by one."""

_SET_IN_CALL = (update(AgentStatus).where(AgentStatus.agent_id == bindparam("agent"))
                .values(state="in_call", since=bindparam("now"), reason=None,
                        node_id=bindparam("node")))


_STATE_LOCKED = (select(AgentStatus.state).where(AgentStatus.agent_id == bindparam("agent"))
                 .with_for_update())

_SET_STATE = (update(AgentStatus).where(AgentStatus.agent_id == bindparam("agent"))
              .values(state=bindparam("state"), reason=bindparam("reason"),
                      since=bindparam("now"), node_id=bindparam("node"),
                      wrap_until=bindparam("wrap"),
                      idle_since=func.coalesce(bindparam("idle", type_=UTCDateTime()),
                                               AgentStatus.idle_since)))
"""An agent's new state (``idle`` None: the idle clock runs on, as from ready to ready)."""

@dataclass(frozen=True)
class Answered:
    """A call an agent took: its view, and where its kiosk and media session are."""

    view: CallView
    kiosk_id: int
    hub_node: str | None
    """The node holding the session (a transferred call's goes on where it was)."""


class CallQueueOps(CallQueueBase):
    """Changes: agent states, offers, claims, transfers, callbacks."""

    # -- agent states ------------------------------------------------------------------

    async def agent_state(self, agent_id: int) -> AgentStatus | None:
        async with self.db.session() as s:
            return await s.get(AgentStatus, agent_id)

    async def agent_states(self) -> dict[int, str]:
        async with self.db.session() as s:
            rows = (await s.execute(select(AgentStatus.agent_id, AgentStatus.state))).all()
            return {int(a): str(state) for a, state in rows}

    async def set_state(self, agent_id: int, state: str, reason: str | None = None, *,
                        force: bool = False, wrap_s: float | None = None) -> tuple[str, int | None]:
        """Move an agent to ``state``; returns the state now and any call whose offer it dropped.

        An agent in a call stays in it (the call decides) unless ``force``; a ringing
        agent who goes away or offline drops the offer, so the call goes to the next agent.
        """
        if state not in routing.AGENT_STATES:
            raise InvalidStateError(f"unknown agent state {state!r}", field="state")
        now = utcnow()
        dropped: int | None = None
        async with self.db.session() as s:
            conn = await s.connection()
            old = (await conn.execute(_STATE_LOCKED, {"agent": agent_id})).scalar_one_or_none()
            if old is None:
                await conn.execute(insert(AgentStatus).values(
                    agent_id=agent_id, state="offline", since=now, idle_since=now))
                old = "offline"
            if old == "in_call" and not force and await self._in_a_call(s, agent_id):
                return old, None
            if old == "ringing" and state != "ringing":
                dropped = await self._clear_offer(s, agent_id)
            await conn.execute(_SET_STATE, {
                "agent": agent_id, "state": state, "now": now, "node": self.node_id,
                "reason": reason if state == "away" else None,
                "idle": now if state == "ready" and old != "ready" else None,
                "wrap": now + timedelta(seconds=wrap_s) if wrap_s is not None else None})
            logger.info("agent %s is %s%s", agent_id, state, f" ({reason})" if reason else "")
            return state, dropped

    async def finish_wrap_ups(self, connected: set[int]) -> list[int]:
        """Agents of this node whose wrap-up ran out: ready if still connected, else offline."""
        now = utcnow()
        async with self.db.session() as s:
            due = (await s.scalars(select(AgentStatus).where(
                AgentStatus.node_id == self.node_id, AgentStatus.state == "wrap_up",
                AgentStatus.wrap_until <= now))).all()
            for status in due:
                status.state = "ready" if status.agent_id in connected else "offline"
                status.idle_since = status.since = now
                status.wrap_until = None
            return [st.agent_id for st in due if st.state == "ready"]

    # -- calls -------------------------------------------------------------------------

    async def expire_offers(self) -> list[Withdrawn]:
        """Offers past their time: the call goes back to the queue, the agent is set away."""
        now = utcnow()
        async with self.db.session() as s:
            # Only this node's agents: their states are this node's to change.
            calls = (await s.scalars(
                select(Call).join(AgentStatus, AgentStatus.agent_id == Call.offered_to)
                .where(Call.status == CallStatus.QUEUED, Call.offer_expires_at <= now,
                       AgentStatus.node_id == self.node_id)
                .with_for_update(skip_locked=True, of=Call))).all()
            out: list[Withdrawn] = []
            for call in calls:
                agent_id = int(call.offered_to or 0)
                call.offered_to = None
                call.offer_expires_at = None
                if call.reserved_for == agent_id:  # the named colleague is not there
                    call.reserved_for = call.reserved_until = None
                status = await s.get(AgentStatus, agent_id, with_for_update=True)
                if status is not None and status.state == "ringing":
                    status.state = "away"
                    status.reason = "missed"
                    status.since = now
                out.append(Withdrawn(call.id, agent_id, "missed"))
                await audit.append(s, actor="system:router", action="call.offer_missed",
                                   case_id=call.case_id,
                                   detail={"call_id": call.id, "agent_id": agent_id})
                logger.info("call %s: offer to agent %s not answered in %.0f s", call.id,
                            agent_id, self.config.offer_timeout_s)
            lapsed = (await s.scalars(select(Call).where(
                Call.status == CallStatus.QUEUED, Call.offered_to.is_(None),
                Call.reserved_until <= now).with_for_update(skip_locked=True))).all()
            for call in lapsed:
                logger.info("call %s: transfer to agent %s lapsed; back to the queue",
                            call.id, call.reserved_for)
                call.reserved_for = call.reserved_until = None
            return out

    async def decline(self, agent_id: int, call_id: int) -> None:
        """The agent declines: the call goes to someone else and the agent is ready again."""
        async with self.db.session() as s:
            call = await s.get(Call, call_id, with_for_update=True)
            if call is None:
                raise NotFoundError(f"call {call_id} does not exist", field="call_id")
            if call.status != CallStatus.QUEUED:
                raise InvalidStateError(f"call {call_id} is {call.status!r}, not waiting",
                                        field="call_id")
            if call.offered_to not in (None, agent_id):
                raise ConflictError(f"call {call_id} is offered to another agent",
                                    field="call_id")
            call.excluded = sorted({*(call.excluded or ()), agent_id})
            if call.reserved_for == agent_id:
                call.reserved_for = call.reserved_until = None
            status = await s.get(AgentStatus, agent_id, with_for_update=True)
            if call.offered_to == agent_id:
                call.offered_to = None
                call.offer_expires_at = None
                if status is not None and status.state == "ringing":
                    status.state = "ready"
                    status.since = utcnow()
            await audit.append(s, actor=f"agent:{agent_id}", action="call.declined",
                               case_id=call.case_id, detail={"call_id": call_id})

    async def claim(self, agent_id: int, call_id: int) -> Answered:
        """Atomically hand a waiting call to one agent; anyone else gets ConflictError.

        The agent must hold the call's offer, or (no offer standing, e.g. ring-all or a
        pick from the queue list) be free and eligible for it.
        """
        now = utcnow()
        async with self.db.session() as s:
            conn = await s.connection()
            # The common case in one statement: the agent answers the offer it holds.
            taken: Row[int, int, str | None] | None = (await conn.execute(_ANSWER_OFFER, {
                "call": call_id, "agent": agent_id, "now": now, "node": self.node_id,
            })).first()
            if taken is None:
                taken = await self._claim_checked(s, agent_id, call_id, now)
            case_id, kiosk_id, hub_node = taken
            await case_flow.call_answered(s, case_id, agent_id)
            if (await conn.execute(_SET_IN_CALL, {"agent": agent_id, "now": now,
                                                  "node": self.node_id})).rowcount == 0:
                await conn.execute(insert(AgentStatus).values(
                    agent_id=agent_id, state="in_call", since=now, idle_since=now,
                    node_id=self.node_id))
            await audit.append(s, actor=f"agent:{agent_id}", action="call.answered",
                               case_id=case_id, detail={"call_id": call_id})
            logger.info("call %s answered by agent %s", call_id, agent_id)
            return Answered((await self.cases.views(s, [call_id]))[call_id], kiosk_id,
                            hub_node)

    async def _claim_checked(self, s: AsyncSession, agent_id: int, call_id: int,
                             now: datetime) -> Row[int, int, str | None]:
        """The claim with every check spelled out (no offer to this agent stood): a pick
        from the queue or ring-all, or an answer that must be refused with the reason.
        Returns the call's case, kiosk and hub node."""
        busy = (await s.scalars(select(Call.id).where(
            Call.agent_id == agent_id, Call.status == CallStatus.LIVE))).first()
        if busy is not None:
            raise InvalidStateError(f"agent is already in call {busy}")
        call = await s.get(Call, call_id)
        if call is None:
            raise NotFoundError(f"call {call_id} does not exist", field="call_id")
        if call.status != CallStatus.QUEUED:
            raise ConflictError(f"call {call_id} is already {call.status}", field="call_id")
        if call.offered_to is None:
            await self._check_eligible(s, agent_id, call, now)
        conn = await s.connection()
        taken = (await conn.execute(_CLAIM, {"call": call_id, "agent": agent_id, "now": now,
                                             "node": self.node_id})).first()
        if taken is None:
            current = await s.get_one(Call, call_id, populate_existing=True)
            if current.status == CallStatus.QUEUED:
                raise ConflictError(f"call {call_id} is offered to another agent",
                                    field="call_id")
            raise ConflictError(f"call {call_id} is already {current.status}",
                                field="call_id")
        return taken

    async def _check_eligible(self, s: AsyncSession, agent_id: int, call: Call,
                              now: datetime) -> None:
        user = await s.get(User, agent_id)
        if user is None:
            raise NotFoundError(f"agent {agent_id} does not exist")
        row = (await s.execute(select(Township.county, Township.default_dialect)
                               .join(Kiosk, Kiosk.township_id == Township.id)
                               .where(Kiosk.id == call.kiosk_id))).one()
        waiting = _waiting(call, row[0], row[1])
        status = await s.get(AgentStatus, agent_id)
        slot = _slot(status or AgentStatus(state="ready", idle_since=now), user)
        if agent_id in waiting.excluded:
            raise ForbiddenError(f"you declined call {call.id}; it goes to another agent",
                                 field="call_id")
        if waiting.reserved_for is not None:
            if waiting.reserved_for != agent_id:
                raise ForbiddenError(f"call {call.id} was transferred to another agent",
                                     field="call_id")
            return
        if not routing.has_skill(slot, waiting.category):
            raise ForbiddenError(f"call {call.id} needs the skill {waiting.category!r}",
                                 field="call_id")
        if not routing.speaks(slot, waiting, now, self.rules):
            raise ForbiddenError(f"call {call.id} asks for {waiting.dialect}", field="call_id")
        if not routing.level_allows(slot, waiting, now, self.rules):
            raise ForbiddenError(f"call {call.id} is for the agents of {waiting.county} "
                                 "until it overflows", field="call_id")

    async def transfer(self, agent_id: int, call_id: int, *, to_username: str | None,
                       to_category: str | None, note: str, author_name: str
                       ) -> tuple[CallView, str]:
        """Hand a live call on, to a named colleague or to a department's queue.

        The call waits again (served before new calls), its media session goes on with
        the kiosk in it, and the note travels with the case. Returns the call and a label
        of where it went.
        """
        if (to_username is None) == (to_category is None):
            raise ValidationError("transfer to exactly one of an agent or a queue",
                                  field="to_agent")
        now = utcnow()
        async with self.db.session() as s:
            call = await s.get(Call, call_id, with_for_update=True)
            if call is None:
                raise NotFoundError(f"call {call_id} does not exist", field="call_id")
            if call.status != CallStatus.LIVE or call.agent_id != agent_id:
                raise ForbiddenError(f"call {call_id} is not your live call", field="call_id")
            if to_username is not None:
                target = (await s.scalars(select(User).where(
                    User.username == to_username, User.role == "agent",
                    User.active.is_(True)))).first()
                if target is None:
                    raise NotFoundError(f"there is no agent {to_username!r}",
                                        field="to_agent")
                if target.id == agent_id:
                    raise ValidationError("you cannot transfer a call to yourself",
                                          field="to_agent")
                call.reserved_for = target.id
                call.reserved_until = now + timedelta(seconds=self.config.transfer_timeout_s)
                where = target.display_name
            else:
                known = (await s.scalars(select(ServiceItem.category).where(
                    ServiceItem.category == to_category))).first()
                if known is None:
                    raise NotFoundError(f"there is no queue {to_category!r}",
                                        field="to_queue")
                call.category = to_category
                where = str(to_category)
            author = await s.get_one(User, agent_id)
            call.status = CallStatus.QUEUED
            call.agent_id = None
            call.offered_to = None
            call.offer_expires_at = None
            call.excluded = sorted({*(call.excluded or ()), agent_id})
            call.priority += self.config.transfer_boost
            case_note = CaseNote(case_id=call.case_id, call_id=call.id, kind="transfer",
                                 author=f"agent:{agent_id}", author_name=author.display_name,
                                 text=note, created_at=now)
            s.add(case_note)
            await s.flush()
            await audit.append(s, actor=f"agent:{agent_id}", action="call.transferred",
                               case_id=call.case_id,
                               detail={"call_id": call_id, "to_agent": call.reserved_for,
                                       "to_queue": to_category, "note_id": case_note.id})
            logger.info("call %s transferred by agent %s to %s", call_id, agent_id,
                        f"agent {call.reserved_for}" if to_username else f"queue {to_category}")
            return await self.cases.view(s, call), where

    async def cancel(self, principal: Principal, call_id: int) -> tuple[CallView, int | None]:
        """The kiosk gives up waiting; returns the call and the agent whose offer dropped."""
        async with self.db.session() as s:
            call = await s.get(Call, call_id, with_for_update=True)
            if call is None:
                raise NotFoundError(f"call {call_id} does not exist", field="call_id")
            if principal.role.value != "kiosk" or call.kiosk_id != int(principal.subject):
                raise ForbiddenError(f"not allowed to cancel call {call_id}", field="call_id")
            if call.status != CallStatus.QUEUED:
                raise InvalidStateError(f"call {call_id} is {call.status!r}, not queued")
            offered = call.offered_to
            call.status = CallStatus.CANCELLED
            call.ended_at = utcnow()
            call.ended_by = "kiosk"
            call.offered_to = None
            call.offer_expires_at = None
            if offered is not None:
                status = await s.get(AgentStatus, offered, with_for_update=True)
                if status is not None and status.state == "ringing":
                    status.state = "ready"
            await audit.append(s, actor=principal.key, action="call.cancelled",
                               case_id=call.case_id, detail={"call_id": call_id})
            return await self.cases.view(s, call), offered

    async def request_callback(self, principal: Principal, call_id: int) -> CallView:
        """The kiosk stops waiting on screen; an agent calls it back when free."""
        async with self.db.session() as s:
            call = await s.get(Call, call_id, with_for_update=True)
            if call is None:
                raise NotFoundError(f"call {call_id} does not exist", field="call_id")
            if principal.role.value != "kiosk" or call.kiosk_id != int(principal.subject):
                raise ForbiddenError(f"not allowed to ask a callback for call {call_id}",
                                     field="call_id")
            if call.status != CallStatus.QUEUED:
                raise InvalidStateError(f"call {call_id} is {call.status!r}, not waiting",
                                        field="call_id")
            if not call.callback:
                call.callback = True
                call.priority += self.rules.callback_boost
                await audit.append(s, actor=principal.key, action="call.callback_requested",
                                   case_id=call.case_id, detail={"call_id": call_id})
            return await self.cases.view(s, call)

    async def elderly_read(self, case_id: int, birth_date: date) -> int | None:
        """An ID card read while the case's call waits: an elderly caller moves up, once.

        Returns the call boosted, or None (not elderly, no waiting call, boosted already).
        """
        if not routing.is_elderly(birth_date, utcnow().date(), self.rules):
            return None
        async with self.db.session() as s:
            call = (await s.scalars(select(Call).where(
                Call.case_id == case_id, Call.status == CallStatus.QUEUED,
                Call.elderly.is_(False)).with_for_update())).first()
            if call is None:
                return None
            call.elderly = True
            call.priority += self.rules.elderly_boost
            await audit.append(s, actor="system:router", action="call.priority_raised",
                               case_id=case_id,
                               detail={"call_id": call.id, "reason": "elderly",
                                       "boost": self.rules.elderly_boost})
            logger.info("call %s: elderly caller (ID card), priority +%d", call.id,
                        self.rules.elderly_boost)
            return call.id

    async def due_callback_offers(self) -> list[tuple[int, int]]:
        """Calls that have waited long enough to be offered a callback: (call, kiosk)."""
        if self.config.callback_after_s <= 0:
            return []
        cutoff = utcnow() - timedelta(seconds=self.config.callback_after_s)
        async with self.db.session() as s:
            calls = (await s.scalars(select(Call).where(
                Call.status == CallStatus.QUEUED, Call.callback.is_(False),
                Call.callback_offered_at.is_(None), Call.queued_at <= cutoff)
                .with_for_update(skip_locked=True))).all()
            for call in calls:
                call.callback_offered_at = utcnow()
            return [(c.id, c.kiosk_id) for c in calls]


class CallQueue(CallQueueOps, CallRouting, QueueBoard, NodeLife):
    """Queue operations for one node (``node_id``) over the shared database."""
