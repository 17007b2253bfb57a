"""Nodes of one deployment: start-up, heartbeats, and what a dead node leaves behind.

Every time here is the database's (``clock_timestamp()`` on PostgreSQL), the one clock
all nodes share: a node whose own clock runs fast cannot declare the others dead.

A node that died leaves rows naming it: agents it served, live calls whose media hub
it was, waiting calls whose media was connecting there. The reaping takes their locks
with SKIP LOCKED only, so it never waits for a request in flight (a ready, a claim, a
cancel lock agents and calls in their own orders; a reaper waiting on them while
holding others' rows deadlocked). What it skipped still names a node that is no longer
registered; the rows naming no registered node are looked for again once per timeout
on every node, so a later beat, on whichever node, takes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from vwindow import audit
from vwindow.models import AgentStatus, Call, CallStatus, Node, utcnow
from vwindow.queue_base import CallQueueBase

logger = logging.getLogger(__name__)

BEATS_PER_TIMEOUT = 5
"""Heartbeats per ``node_timeout_s``: a node is declared dead only after several misses."""
STALL_SHARE = 0.5
"""A node whose own previous beat is older than this share of ``node_timeout_s`` was
stalled itself (the whole machine, likely): it judges no other node in that beat."""


@dataclass(frozen=True)
class LostCall:
    """A live call whose media hub died with its node: it waits again, same case."""

    call_id: int
    case_id: int
    kiosk_id: int
    agent_id: int | None
    waiting: bool = True
    """The call waits in the queue (its kiosk is told so); False when a node that was
    declared dead finds it answered elsewhere or ended meanwhile."""


@dataclass(frozen=True)
class Beat:
    dead: list[str]
    """Nodes found dead in this beat (their rows are gone)."""
    lost: list[LostCall]
    """Live calls queued again because their hub's node is gone."""
    revived: bool
    """This node had been declared dead by another (it stalled too long)."""
    gap_s: float | None
    """Seconds since this node's previous beat, by the database's clock."""


_BEFORE = aliased(Node, name="before")
_BEAT = (update(Node).where(Node.id == bindparam("node"))
         .values(heartbeat_at=func.clock_timestamp())
         .returning(Node.heartbeat_at.label("now"),
                    select(_BEFORE.heartbeat_at).where(_BEFORE.id == bindparam("node"))
                    .scalar_subquery().label("previous")))
"""PostgreSQL: one round trip; the sub-select sees the row as it was before the update."""
_REAP = delete(Node).where(Node.id.in_(
    select(Node.id).where(Node.heartbeat_at < bindparam("cutoff"))
    .with_for_update(skip_locked=True))).returning(Node.id)


class NodeLife(CallQueueBase):
    """This node's registration and heartbeat, and the clean-up after nodes that died."""

    _beats = 0

    async def _db_now(self, s: AsyncSession) -> datetime:
        if self.db.is_postgres:
            now: datetime = (await s.scalars(select(func.clock_timestamp()))).one()
            return now
        return utcnow()  # SQLite: one node, one clock

    async def start(self) -> None:
        """This node (re)starts: its agents' old states are void until they reconnect."""
        async with self.db.session() as s:
            now = await self._db_now(s)
            node = await s.get(Node, self.node_id)
            if node is None:
                s.add(Node(id=self.node_id, started_at=now, heartbeat_at=now))
            else:
                node.started_at = node.heartbeat_at = now
            stale = (await s.scalars(select(AgentStatus).where(
                AgentStatus.node_id == self.node_id,
                AgentStatus.state.in_(("ready", "ringing", "wrap_up", "away"))))).all()
            for status in stale:
                if status.state == "ringing":
                    await self._clear_offer(s, status.agent_id)
                status.state = "offline"
                status.since = now

    async def heartbeat(self) -> Beat:
        """Beat for this node; release what dead nodes held (see the module's text).

        A beat that finds nobody dead is two statements (the beat, the reaping), as
        it shares the database with every request; the rows that name no registered
        node are looked for once per timeout, or when a node was found dead."""
        timeout = self.config.node_timeout_s
        self._beats += 1
        async with self.db.lifeline() as s:
            now, previous = await self._beat(s)
            revived = previous is None
            gap = None if previous is None else (now - previous).total_seconds()
            if revived:
                logger.error("node %s was declared dead by another node (it stalled for "
                             "over %.0f s); registering again", self.node_id, timeout)
                s.add(Node(id=self.node_id, started_at=now, heartbeat_at=now))
            if gap is None or gap > timeout * STALL_SHARE:
                if gap is not None:
                    logger.warning("node %s: %.1f s since its previous heartbeat (due every "
                                   "%.1f s); it judges no other node this time",
                                   self.node_id, gap, timeout / BEATS_PER_TIMEOUT)
                return Beat([], [], revived, gap)
            conn = await s.connection()
            dead = list((await conn.scalars(_REAP, {
                "cutoff": now - timedelta(seconds=timeout)})).all())
            for node_id in dead:
                logger.warning("node %s missed its heartbeat; its agents are offline",
                               node_id)
            if not dead and self._beats % BEATS_PER_TIMEOUT:
                return Beat([], [], revived, gap)
            lost = await self._release_orphans(s, now)
            return Beat(dead, lost, revived, gap)

    async def _beat(self, s: AsyncSession) -> tuple[datetime, datetime | None]:
        """Set this node's beat to now; now, and the beat before (None: no row, as
        another node declared this one dead)."""
        if self.db.is_postgres:
            conn = await s.connection()
            row = (await conn.execute(_BEAT, {"node": self.node_id})).one_or_none()
            if row is not None:
                return row.now, row.previous
            return await self._db_now(s), None
        now = utcnow()
        node = await s.get(Node, self.node_id)
        if node is None:
            return now, None
        previous, node.heartbeat_at = node.heartbeat_at, now
        return now, previous

    async def _release_orphans(self, s: AsyncSession, now: datetime) -> list[LostCall]:
        """Rows naming a node no longer registered: just reaped, or skipped earlier."""
        alive = select(Node.id)
        lost: list[LostCall] = []
        for call in (await s.scalars(select(Call).where(
                Call.status == CallStatus.LIVE, Call.hub_node.is_not(None),
                Call.hub_node.not_in(alive)).with_for_update(skip_locked=True))).all():
            lost.append(LostCall(call.id, call.case_id, call.kiosk_id, call.agent_id))
            await audit.append(s, actor="system:router", action="call.requeued",
                               case_id=call.case_id,
                               detail={"call_id": call.id, "dead_node": call.hub_node})
            call.status = CallStatus.QUEUED
            call.agent_id = None
            call.hub_node = None
            call.answered_at = None
        # Waiting calls whose media was connecting at a dead node (see
        # ``Cases.place_hub``): their kiosks connect again wherever they are now.
        connecting = (await s.scalars(select(Call.id).where(
            Call.status == CallStatus.QUEUED, Call.hub_node.is_not(None),
            Call.hub_node.not_in(alive)).with_for_update(skip_locked=True))).all()
        if connecting:
            await s.execute(update(Call).where(Call.id.in_(connecting)).values(hub_node=None))
        agents = (await s.scalars(select(AgentStatus).where(
            AgentStatus.node_id.not_in(alive), AgentStatus.state != "offline")
            .with_for_update(skip_locked=True))).all()
        # An agent in a call whose hub lives on keeps it (the console reconnects to
        # another node); one ringing is let go only with its offer withdrawn.
        talking = [a.agent_id for a in agents if a.state == "in_call"]
        holders = set((await s.scalars(select(Call.agent_id).where(
            Call.status == CallStatus.LIVE, Call.agent_id.in_(talking)))).all()
                      ) if talking else set()
        ringing = [a.agent_id for a in agents if a.state == "ringing"]
        withdrawn = await self._withdraw_offers(s, ringing) if ringing else set()
        for status in agents:
            if status.state == "in_call" and status.agent_id in holders:
                continue
            if status.state == "ringing" and status.agent_id not in withdrawn:
                continue
            status.state = "offline"
            status.since = now
        return lost

    async def _withdraw_offers(self, s: AsyncSession, agents: list[int]) -> set[int]:
        """Withdraw the offers made to ``agents``; those whose offered call a request
        holds (an accept in flight, say) are left for the next beat."""
        offered = (await s.execute(select(Call.id, Call.offered_to).where(
            Call.status == CallStatus.QUEUED, Call.offered_to.in_(agents)))).all()
        locked = set((await s.scalars(select(Call.id).where(
            Call.id.in_([call_id for call_id, _ in offered]))
            .with_for_update(skip_locked=True))).all()) if offered else set()
        blocked = {agent for call_id, agent in offered if call_id not in locked}
        if locked:
            await s.execute(update(Call).where(Call.id.in_(locked),
                                               Call.offered_to.in_(agents)).values(
                offered_to=None, offer_expires_at=None))
        return set(agents) - blocked
