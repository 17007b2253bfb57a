"""Agents readying on two nodes at the same moment all get a call, none the same one
(real PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import pg_database
from tests.multinode import queue_calls, seed
from tests.pgserver import PgServer
from vwindow.cases import Cases
from vwindow.config import RoutingConfig
from vwindow.db import Database
from vwindow.models import AgentStatus, Call, CallStatus, User
from vwindow.queue import CallQueue


@pytest.mark.parametrize("agents", [1, 6])
async def test_agents_readying_on_two_nodes_at_once_each_get_a_different_call(
        pg_server: PgServer | str, tmp_path: Path, agents: int) -> None:
    url = pg_database(pg_server)
    names, _ = await seed(url, agents=2 * agents, kiosks=4 * agents)
    await queue_calls(url, 4 * agents)
    db = Database(url)
    await db.start()
    try:
        config = RoutingConfig(offer_timeout_s=60)
        nodes = [CallQueue(db, Cases(db), config, node) for node in ("node-a", "node-b")]
        async with db.session() as s:
            ids = list((await s.scalars(select(User.id).where(User.username.in_(names))
                                        .order_by(User.id))).all())
        halves = [ids[:agents], ids[agents:]]
        for _ in range(2):  # the second round: every agent readies again from ringing
            done = await asyncio.gather(*(
                node.ready(dict.fromkeys(half, False)) for node, half in zip(nodes, halves,
                                                                             strict=True)))
            for readying, half in zip(done, halves, strict=True):
                assert set(readying.states) == set(half)
                assert all(readying.states[a] == "ringing" for a in half)
                assert not readying.taken
        async with db.session() as s:
            offered = (await s.execute(
                select(Call.offered_to, func.count()).where(Call.status == CallStatus.QUEUED,
                                                            Call.offered_to.is_not(None))
                .group_by(Call.offered_to))).all()
            ringing = (await s.scalars(select(func.count()).select_from(AgentStatus).where(
                AgentStatus.state == "ringing"))).one()
        assert sorted(agent for agent, _ in offered) == ids  # everyone rings
        assert all(n == 1 for _, n in offered)  # with one call each
        assert ringing == 2 * agents
    finally:
        await db.stop()
