"""Offering waiting calls to agents: the routing pass, and an agent's own way to ready.

A routing pass (``route``) plans on an unlocked snapshot and then locks only the calls
it chose (``SELECT … FOR UPDATE SKIP LOCKED``), so two nodes routing at once never
offer one call twice or one agent two calls. An agent who becomes ready (``ready``) is
routed in the same transaction as the state change, so the console's own request rings
it, without a wake and a pass after it; agents readying at once share that transaction.
Core statements throughout: both run on every change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from vwindow import routing
from vwindow.models import AgentStatus, Call, CallStatus, User, UTCDateTime, utcnow
from vwindow.queue_base import CallQueueBase, Offer

logger = logging.getLogger(__name__)

CONTENDED_ROUNDS = 3
"""Plans a routing pass makes when calls it planned were taken meanwhile."""

PLAN_PAGE = 16
"""Waiting calls a routing pass reads at a time, at least (four per free agent): a pass
runs on every change, usually for one agent, and most calls suit most agents."""


def _agents_query(*, chosen: bool) -> Any:
    """Agents with what routing needs of them, their rows locked: this node's ready
    agents (skipping those another pass holds), or the ``chosen`` ones (waiting)."""
    query = (
        select(AgentStatus.agent_id, AgentStatus.state, AgentStatus.idle_since,
               AgentStatus.last_offer_at, User.level, User.county, User.skills,
               User.dialects,
               select(func.count()).where(Call.agent_id == AgentStatus.agent_id,
                                          Call.status == CallStatus.LIVE)
               .correlate(AgentStatus).scalar_subquery().label("live"))
        .join(User, User.id == AgentStatus.agent_id))
    if chosen:
        return (query.where(AgentStatus.agent_id.in_(bindparam("ids", expanding=True)))
                .order_by(AgentStatus.agent_id).with_for_update(of=AgentStatus))
    return (query.where(AgentStatus.state == "ready", AgentStatus.node_id == bindparam("node"))
            .order_by(AgentStatus.agent_id).with_for_update(skip_locked=True, of=AgentStatus))


_READY_HERE = _agents_query(chosen=False)
"""This node's ready agents, locked (another pass on this node skips them meanwhile)."""

_AGENTS = _agents_query(chosen=True)
"""The agents asked for, locked in id order (two batches asking for some of the same
agents cannot deadlock)."""

_OFFERABLE = select(Call.id, Call.kiosk_id).where(Call.id.in_(bindparam("ids", expanding=True)),
                                                  Call.status == CallStatus.QUEUED,
                                                  Call.offered_to.is_(None))

_OFFERABLE_LOCKED = _OFFERABLE.with_for_update(skip_locked=True)
"""Built once: a statement made per pass costs its cache key every time (2 ms here)."""

_OFFER = (update(Call).where(Call.id == bindparam("call"))
          .values(offered_to=bindparam("agent"), offer_expires_at=bindparam("expires")))

_OFFER_ONE = (update(Call)
              .where(Call.id == select(Call.id).where(
                  Call.id == bindparam("call"), Call.status == CallStatus.QUEUED,
                  Call.offered_to.is_(None)).with_for_update(skip_locked=True).scalar_subquery())
              .values(offered_to=bindparam("agent"), offer_expires_at=bindparam("expires"))
              .returning(Call.kiosk_id))
"""One planned call (most passes: one agent became free) locked, checked and offered in
one statement; no row: taken, cancelled or being offered by another node."""

_RINGING = (update(AgentStatus).where(AgentStatus.agent_id == bindparam("agent"))
            .values(state="ringing", since=bindparam("now"), last_offer_at=bindparam("now")))

_READIED = (update(AgentStatus).where(AgentStatus.agent_id == bindparam("agent"))
            .values(state=bindparam("state"), since=bindparam("now"), reason=None,
                    node_id=bindparam("node"), wrap_until=None,
                    idle_since=bindparam("idle"),
                    last_offer_at=func.coalesce(bindparam("offered", type_=UTCDateTime()),
                                                AgentStatus.last_offer_at)))
"""A readied agent: ready, or ringing already with the offer made in the same breath."""


def _slot(row: Row[Any], **changed: Any) -> routing.AgentSlot:
    fields: dict[str, Any] = {
        "id": row.agent_id, "state": row.state, "level": row.level, "county": row.county,
        "skills": frozenset(row.skills or ()), "dialects": frozenset(row.dialects or ()),
        "idle_since": row.idle_since, "last_offer_at": row.last_offer_at,
        "live_calls": row.live}
    return routing.AgentSlot(**(fields | changed))


@dataclass(frozen=True)
class Readying:
    """What became of agents asking to be ready."""

    states: dict[int, str]
    """Each agent's state now: "ready", "ringing" (offered a call, here or by a pass
    meanwhile) or "in_call" (still in a call)."""
    offers: list[Offer]
    """The offers made (ring-all: the calls every ready agent of the node is rung for)."""
    taken: bool
    """A call planned was taken meanwhile (by another node): a routing pass should follow."""


class CallRouting(CallQueueBase):
    """Offers: the routing pass and readying agents."""

    async def route(self) -> tuple[list[Offer], bool]:
        """One routing pass: offer waiting calls to this node's free eligible agents.
        Also says whether a call planned was taken meanwhile (by another node) and
        agents were left without one: then another pass should follow at once."""
        now = utcnow()
        async with self.db.session() as s:
            conn = await s.connection()
            agents = [_slot(row) for row in (await conn.execute(
                _READY_HERE, {"node": self.node_id})).all()]
            if not agents:
                return [], False
            return await self._offer(s, conn, agents, now)

    async def ready(self, agents: Mapping[int, bool], *, others: bool = False) -> Readying:
        """Make ``agents`` ready (each: ``force``) and offer them waiting calls, all in
        one transaction.

        Like ``set_state(agent_id, "ready")``, an agent in a call stays in it unless
        ``force``, and a ringing agent stays ringing (the offer is answered by accept or
        decline). Only these agents are planned for, unless ``others`` (this node has
        other ready agents, who may have been idle longer) or ring-all: then the pass
        is over all of this node's ready agents, as ``route`` makes it.
        """
        now = utcnow()
        async with self.db.session() as s:
            conn = await s.connection()
            rows = await self._lock_agents(conn, sorted(agents), now)
            states: dict[int, str] = {}
            slots: list[routing.AgentSlot] = []
            for agent_id, force in agents.items():
                row = rows[agent_id]
                old = str(row.state)
                if old == "ringing" or (old == "in_call" and not force
                                        and await self._in_a_call(s, agent_id)):
                    states[agent_id] = old
                    continue
                slots.append(_slot(row, state="ready",
                                   idle_since=row.idle_since if old == "ready" else now))
                states[agent_id] = "ready"
            if not slots:
                return Readying(states, [], False)
            if others or self.rules.strategy == "ring_all":
                await conn.execute(_READIED, [self._readied(slot, now, offered=False)
                                              for slot in slots])
                pool = [_slot(row) for row in (await conn.execute(
                    _READY_HERE, {"node": self.node_id})).all()]
                offers, taken = await self._offer(s, conn, pool, now)
            else:
                offers, taken = await self._offer(s, conn, slots, now, ringing=False)
                offered = {offer.agent_id for offer in offers}
                await conn.execute(_READIED, [self._readied(slot, now, slot.id in offered)
                                              for slot in slots])
            for offer in offers:
                if offer.expires_at is not None and offer.agent_id in states:
                    states[offer.agent_id] = "ringing"
            logger.info("agents %s ready (%d offered a call)", sorted(a.id for a in slots),
                        sum(1 for o in offers if o.agent_id in states))
            return Readying(states, offers, taken)

    async def _lock_agents(self, conn: AsyncConnection, agent_ids: list[int],
                           now: datetime) -> dict[int, Row[Any]]:
        """The agents' rows, locked (an agent never seen before is added, offline)."""
        rows = {row.agent_id: row for row in (await conn.execute(
            _AGENTS, {"ids": agent_ids})).all()}
        missing = [a for a in agent_ids if a not in rows]
        if missing:
            await conn.execute(insert(AgentStatus), [
                {"agent_id": a, "state": "offline", "since": now, "idle_since": now}
                for a in missing])
            rows |= {row.agent_id: row for row in (await conn.execute(
                _AGENTS, {"ids": missing})).all()}
        return rows

    def _readied(self, slot: routing.AgentSlot, now: datetime, offered: bool
                 ) -> dict[str, Any]:
        return {"agent": slot.id, "state": "ringing" if offered else "ready", "now": now,
                "node": self.node_id, "idle": slot.idle_since,
                "offered": now if offered else None}

    async def _offer(self, s: AsyncSession, conn: AsyncConnection,
                     pool: list[routing.AgentSlot], now: datetime, *, ringing: bool = True
                     ) -> tuple[list[Offer], bool]:
        """Plan waiting calls for ``pool`` and offer them; ``ringing``: set the agents
        offered a call ringing (else the caller does). Also says whether a call planned
        was taken meanwhile.

        The plan is made on an unlocked snapshot; then only the planned calls are locked
        (``FOR UPDATE SKIP LOCKED``) and re-checked, so a node routing at the same time
        is never blocked and never gets the same call: what it has locked is skipped here
        and the agents it was planned for are planned again over the calls after it
        (``CONTENDED_ROUNDS`` times, then on the next pass). The offers' updates are
        each one statement for all of them.
        """
        ring_all = self.rules.strategy == "ring_all"
        expires = None if ring_all else now + timedelta(seconds=self.config.offer_timeout_s)
        planned: list[tuple[int, int]] = []
        free: dict[int, int] = {}
        skipped: set[int] = set()
        lost: set[int] = set()
        # Another node routing at the same moment plans the same first calls: those it
        # locked first are skipped and the agents left planned again over the next ones,
        # a few times, before leaving them to the next pass.
        for _ in range(CONTENDED_ROUNDS):
            chosen = await self._plan(conn, pool, now, skipped)
            lost = set()
            if not chosen:
                break
            got = await self._lock_planned(conn, chosen, expires, ring_all)
            free |= got
            planned += [(call_id, agent_id) for call_id, agent_id in chosen if call_id in got]
            lost = {call_id for call_id, _ in chosen if call_id not in got}
            if not lost or ring_all:
                break
            skipped |= lost
            offered = {agent_id for _, agent_id in planned}
            pool = [a for a in pool if a.id not in offered]
        taken = bool(lost)  # agents left without a call that was there for them
        if not planned:
            return [], taken
        if not ring_all and ringing:
            await conn.execute(_RINGING, [{"agent": a, "now": now} for _, a in planned])
        views = await self.cases.views(s, {call_id for call_id, _ in planned})
        return [Offer(views[call_id], agent_id, expires, free[call_id])
                for call_id, agent_id in planned], taken

    async def _lock_planned(self, conn: AsyncConnection, planned: list[tuple[int, int]],
                            expires: datetime | None, ring_all: bool) -> dict[int, int]:
        """Lock the planned calls still free and offer them (not ring-all): call → kiosk.
        Taken, cancelled or being offered by another node: not in the result."""
        if not ring_all and len(planned) == 1:
            kiosk_id = (await conn.execute(_OFFER_ONE, {
                "call": planned[0][0], "agent": planned[0][1], "expires": expires})).scalar()
            return {} if kiosk_id is None else {planned[0][0]: int(kiosk_id)}
        query = _OFFERABLE if ring_all else _OFFERABLE_LOCKED
        free: dict[int, int] = {row.id: row.kiosk_id for row in (await conn.execute(
            query, {"ids": list({call_id for call_id, _ in planned})})).all()}
        offered = [(c, a) for c, a in planned if c in free]
        if offered and not ring_all:
            await conn.execute(_OFFER, [{"call": c, "agent": a, "expires": expires}
                                        for c, a in offered])
        return free

    async def _plan(self, conn: AsyncConnection, agents: list[routing.AgentSlot],
                    now: datetime, skipped: Set[int] = frozenset()) -> list[tuple[int, int]]:
        """``routing.plan`` over the waiting calls, read a page at a time in serving order
        until every free agent has a call (or the calls run out): with a thousand calls
        waiting, a pass reads the first few dozen instead of all of them. The result is
        the same as planning over all of them at once, because ``plan`` serves calls in
        that order and an agent, once given a call, is out of the pool."""
        pool = [a for a in agents if routing.free(a)]
        ring_all = self.rules.strategy == "ring_all"
        page = max(PLAN_PAGE, 4 * len(pool))
        offers: list[tuple[int, int]] = []
        after: routing.WaitingCall | None = None
        while pool:
            rows = await self._waiting_rows(conn, unoffered=True, after=after, limit=page)
            if not rows:
                break
            planned = routing.plan([w.call for w in rows if w.call.id not in skipped], pool,
                                   now, self.rules).offers
            offers += planned
            if not ring_all:  # ring-all offers every call to every eligible agent
                taken = {agent_id for _, agent_id in planned}
                pool = [a for a in pool if a.id not in taken]
            if len(rows) < page:
                break
            after = rows[-1].call
        return offers
