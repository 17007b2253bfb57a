"""Agents readying on two nodes at the same moment all get a call, none the same one;
a pass whose planned calls another node took routes again at once (real PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from signaling.presence import Presence
from signaling.router import Router
from tests.conftest import pg_database
from tests.multinode import queue_calls, seed
from tests.pgserver import PgServer
from vwindow.cases import Cases
from vwindow.config import RoutingConfig
from vwindow.db import Database
from vwindow.models import AgentStatus, Call, CallStatus, User
from vwindow.queue import CallQueue
from vwindow.queue_route import CONTENDED_ROUNDS


@pytest.mark.parametrize("agents", [1, 6])
async def test_agents_readying_on_two_nodes_at_once_each_get_a_different_call(
        pg_server: PgServer | str, agents: int) -> None:
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


async def test_a_pass_that_lost_its_calls_to_another_node_routes_again_at_once(
        pg_server: PgServer | str) -> None:
    url = pg_database(pg_server)
    names, _ = await seed(url, agents=1, kiosks=CONTENDED_ROUNDS + 1)
    await queue_calls(url, CONTENDED_ROUNDS + 1)
    db = Database(url)
    await db.start()
    queue = CallQueue(db, Cases(db), RoutingConfig(offer_timeout_s=60, tick_s=30), "node-a")
    presence = Presence()
    router = Router(queue, presence, lambda: None)
    await router.start()
    try:
        async with db.session() as s:
            agent = (await s.scalars(select(User.id).where(User.username == names[0]))).one()
            order = [row.call.id for row in await queue._waiting_rows(s, unoffered=True)]
        await queue.set_state(agent, "ready")
        presence.agent_states[agent] = "ready"
        async with db.session() as other:
            # Another node is offering the first calls: each round of the pass plans the
            # next of them and finds it locked; the agent is left without a call.
            await other.execute(select(Call.id).where(Call.id.in_(order[:CONTENDED_ROUNDS]))
                                .with_for_update())
            assert await queue.route() == ([], True)
            router.wake()
            await asyncio.sleep(0.3)
        # The other node let them go (its agents declined, say). The next tick is 30 s
        # away: the pass that lost them is what routes again. (Which call it gets
        # depends on when the locks went: a pass in flight skips those it found locked.)
        async with asyncio.timeout(5):
            while True:
                async with db.session() as s:
                    offered = (await s.scalars(select(Call.id).where(
                        Call.offered_to == agent))).all()
                if offered:
                    break
                await asyncio.sleep(0.05)
        assert len(offered) == 1 and offered[0] in order
    finally:
        await router.stop()
        await db.stop()
