"""Nodes of one deployment: start-up, heartbeats, and what a dead node leaves behind."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update

from vwindow import audit
from vwindow.models import AgentStatus, Call, CallStatus, Node, utcnow
from vwindow.queue_base import CallQueueBase

logger = logging.getLogger(__name__)


class NodeLife(CallQueueBase):
    """This node's registration and heartbeat, and the clean-up after nodes that died."""

    async def start(self) -> None:
        """This node (re)starts: its agents' old states are void until they reconnect."""
        now = utcnow()
        async with self.db.session() as s:
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

    async def heartbeat(self) -> tuple[list[str], list[int], bool]:
        """Beat for this node; release what dead nodes held.

        Returns the dead nodes found, the calls re-queued from them (their media hubs
        died with them, so their live calls wait again, same case, for the next agent),
        and whether this node had itself been declared dead (it stalled too long).
        """
        now = utcnow()
        cutoff = now - timedelta(seconds=self.config.node_timeout_s)
        async with self.db.session() as s:
            beat = await s.execute(update(Node).where(Node.id == self.node_id)
                                   .values(heartbeat_at=now))
            revived = beat.rowcount != 1  # type: ignore[attr-defined]
            if revived:
                logger.error("node %s was declared dead by another node (it stalled for "
                             "over %.0f s); registering again", self.node_id,
                             self.config.node_timeout_s)
                s.add(Node(id=self.node_id, started_at=now, heartbeat_at=now))
            dead = list((await s.scalars(select(Node.id).where(
                Node.heartbeat_at < cutoff).with_for_update(skip_locked=True))).all())
            if not dead:
                return [], [], revived
            agents = (await s.scalars(select(AgentStatus).where(
                AgentStatus.node_id.in_(dead), AgentStatus.state != "offline")
                .with_for_update(skip_locked=True))).all()
            for status in agents:
                if status.state == "ringing":
                    await self._clear_offer(s, status.agent_id)
                if status.state != "in_call":
                    status.state = "offline"
                    status.since = now
            requeued = []
            for call in (await s.scalars(select(Call).where(
                    Call.status == CallStatus.LIVE, Call.hub_node.in_(dead))
                    .with_for_update(skip_locked=True))).all():
                holder = await s.get(AgentStatus, call.agent_id) if call.agent_id else None
                if holder is not None and holder.node_id in dead:
                    holder.state = "offline"
                    holder.since = now
                call.status = CallStatus.QUEUED
                call.agent_id = None
                call.hub_node = None
                call.answered_at = None
                requeued.append(call.id)
                await audit.append(s, actor="system:router", action="call.requeued",
                                   case_id=call.case_id,
                                   detail={"call_id": call.id, "dead_node": dead})
            # Waiting calls whose media was connecting at a dead node (see
            # ``Cases.place_hub``): their kiosks connect again wherever they are now.
            await s.execute(update(Call).where(
                Call.status == CallStatus.QUEUED, Call.hub_node.in_(dead)).values(
                hub_node=None))
            for node_id in dead:
                await s.delete(await s.get_one(Node, node_id))
                logger.warning("node %s missed its heartbeat; its agents are offline", node_id)
            return dead, requeued, revived
