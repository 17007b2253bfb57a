"""What kiosks and dashboards see of the queue: places, wait estimates, agent states."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from vwindow import routing
from vwindow.models import AgentStatus, Call, CallStatus, User, utcnow
from vwindow.queue_base import CallQueueBase, QueueInfo
from vwindow.views import CallView

logger = logging.getLogger(__name__)

HANDLE_TIME_SAMPLE = 50
"""Recent answered calls averaged for the handle time of wait estimates."""


class QueueBoard(CallQueueBase):
    """Reads for kiosks and dashboards: positions, wait estimates, who is doing what."""

    async def handle_time_s(self) -> float:
        async with self.db.session() as s:
            rows = (await s.execute(
                select(Call.answered_at, Call.ended_at)
                .where(Call.status == CallStatus.ENDED, Call.answered_at.is_not(None),
                       Call.ended_at.is_not(None))
                .order_by(Call.ended_at.desc()).limit(HANDLE_TIME_SAMPLE))).all()
        spans = [(end - start).total_seconds() for start, end in rows if start and end]
        if len(spans) < 3:
            return self.config.default_handle_s
        return max(1.0, sum(spans) / len(spans))

    async def queue_info(self, kiosks: set[int] | None = None) -> list[QueueInfo]:
        """Position and wait estimate of every waiting call (or of ``kiosks``' calls)."""
        now = utcnow()
        handle = await self.handle_time_s()
        async with self.db.session() as s:
            waiting = await self._waiting_rows(s)
            agents = await self._agents(s)
        places = routing.positions(row.call for row in waiting)
        out = []
        for row in waiting:
            if kiosks is not None and row.kiosk_id not in kiosks:
                continue
            place = places[row.call.id]
            if row.offered_to is not None:
                eta: float | None = 0.0  # ringing at an agent's console right now
            else:
                eta = routing.estimate_wait_s(row.call, place, agents, now, self.rules,
                                              handle)
            out.append(QueueInfo(row.call.id, row.kiosk_id, place, eta, row.callback))
        return out

    async def waiting_views(self) -> list[CallView]:
        async with self.db.session() as s:
            ids = (await s.scalars(select(Call.id).where(Call.status == CallStatus.QUEUED)
                                   .order_by(Call.priority.desc(), Call.queued_at,
                                             Call.id))).all()
            views = await self.cases.views(s, ids)  # one query, not one per waiting call
            return [views[i] for i in ids]

    async def offered_to(self, agent_id: int) -> CallView | None:
        """The call currently offered to ``agent_id``, if any."""
        async with self.db.session() as s:
            call = (await s.scalars(select(Call).where(
                Call.offered_to == agent_id, Call.status == CallStatus.QUEUED))).first()
            return await self.cases.view(s, call) if call else None

    async def dashboard_agents(self) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = (await s.execute(
                select(User, AgentStatus).outerjoin(AgentStatus,
                                                    AgentStatus.agent_id == User.id)
                .where(User.role == "agent", User.active.is_(True))
                .order_by(User.id))).all()
        return [{"id": u.id, "name": u.display_name, "level": u.level,
                 "state": st.state if st else "offline",
                 "reason": st.reason if st else None,
                 "since": st.since.isoformat() if st else None} for u, st in rows]

