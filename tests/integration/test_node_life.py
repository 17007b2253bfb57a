"""Heartbeats on real PostgreSQL: the database's clock decides, a node that stalled itself
judges nobody, and the reaping of a dead node never waits for a request's locks (what
it skips is taken by the next beat)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

import vwindow.nodes
from tests.conftest import pg_database
from tests.multinode import queue_calls, seed
from tests.pgserver import PgServer
from vwindow.cases import Cases
from vwindow.config import RoutingConfig
from vwindow.db import Database
from vwindow.models import AgentStatus, AuditEntry, Call, CallStatus, Node, User, utcnow
from vwindow.nodes import BEATS_PER_TIMEOUT, STALL_SHARE, LostCall
from vwindow.queue import CallQueue

pytestmark = pytest.mark.postgres

TIMEOUT_S = 10.0


@dataclass
class World:
    db: Database
    a: CallQueue
    b: CallQueue
    agents: list[int]
    calls: list[int]


@pytest.fixture
async def world(pg_server: PgServer | str) -> AsyncIterator[World]:
    url = pg_database(pg_server)
    names, _ = await seed(url, agents=2, kiosks=3)
    await queue_calls(url, 3)
    db = Database(url)
    await db.start()
    config = RoutingConfig(node_timeout_s=TIMEOUT_S, offer_timeout_s=60)
    a, b = (CallQueue(db, Cases(db), config, node) for node in ("node-a", "node-b"))
    await a.start()
    await b.start()
    async with db.session() as s:
        agents = list((await s.scalars(select(User.id).where(User.username.in_(names))
                                       .order_by(User.id))).all())
        calls = list((await s.scalars(select(Call.id).order_by(Call.id))).all())
    try:
        yield World(db, a, b, agents, calls)
    finally:
        await db.stop()


async def _age(db: Database, node_id: str, seconds: float) -> None:
    """Set the node's last beat ``seconds`` before the database's now."""
    async with db.session() as s:
        await s.execute(update(Node).where(Node.id == node_id).values(
            heartbeat_at=func.clock_timestamp() - timedelta(seconds=seconds)))


async def _nodes(db: Database) -> set[str]:
    async with db.session() as s:
        return set((await s.scalars(select(Node.id))).all())


async def test_the_database_clock_decides_not_the_node_s(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # This host's clock runs an hour fast: with its own clock it would find every other
    # node's beat an hour old.
    monkeypatch.setattr(vwindow.nodes, "utcnow", lambda: utcnow() + timedelta(hours=1))
    beat = await world.a.heartbeat()
    assert beat.dead == [] and not beat.revived
    assert await _nodes(world.db) == {"node-a", "node-b"}
    async with world.db.session() as s:
        skew = (await s.scalars(select(func.clock_timestamp() - Node.heartbeat_at)
                                .where(Node.id == "node-a"))).one()
    assert abs(skew.total_seconds()) < 5  # the beat is the database's time
    await _age(world.db, "node-b", TIMEOUT_S + 1)
    assert (await world.a.heartbeat()).dead == ["node-b"]


async def test_a_node_that_stalled_judges_no_other_in_that_beat(world: World) -> None:
    # The whole machine stalled: node B's beat lapsed, and so did node A's own.
    await _age(world.db, "node-a", TIMEOUT_S * (STALL_SHARE + 0.1))
    await _age(world.db, "node-b", TIMEOUT_S + 1)
    beat = await world.a.heartbeat()
    assert beat.dead == [] and beat.gap_s is not None
    assert beat.gap_s > TIMEOUT_S * STALL_SHARE
    assert await _nodes(world.db) == {"node-a", "node-b"}
    # Node B got no beat in since: A, beating on time now, finds it dead.
    beat = await world.a.heartbeat()
    assert beat.dead == ["node-b"] and beat.gap_s is not None and beat.gap_s < 2


async def test_reaping_skips_locked_rows_and_the_next_beat_takes_them(world: World) -> None:
    ringing, talking = world.agents
    live, connecting, offered = world.calls
    async with world.db.session() as s:
        # Node B served both agents: one rings with the third call, one talks in the
        # first, whose media hub is at B; the second call's media was connecting at B.
        for agent, state in ((ringing, "ringing"), (talking, "in_call")):
            await s.merge(AgentStatus(agent_id=agent, state=state, node_id="node-b"))
        await s.execute(update(Call).where(Call.id == live).values(
            status=CallStatus.LIVE, agent_id=talking, hub_node="node-b",
            answered_at=utcnow()))
        await s.execute(update(Call).where(Call.id == connecting).values(hub_node="node-b"))
        await s.execute(update(Call).where(Call.id == offered).values(
            offered_to=ringing, offer_expires_at=utcnow() + timedelta(seconds=60)))
    await _age(world.db, "node-b", TIMEOUT_S + 1)

    async with world.db.session() as other:
        # Requests in flight hold the three calls (an accept, a cancel...). The beat
        # does not wait for them: it would have held the agents' rows meanwhile.
        await other.execute(select(Call.id).where(Call.id.in_(world.calls))
                            .with_for_update())
        beat = await asyncio.wait_for(world.a.heartbeat(), 10)
        assert beat.dead == ["node-b"] and beat.lost == []
    async with world.db.session() as s:
        assert (await s.get_one(Call, live)).status == CallStatus.LIVE
        assert (await s.get_one(AgentStatus, ringing)).state == "ringing"
        assert (await s.get_one(AgentStatus, talking)).state == "in_call"

    # Node B is gone, but the rows still name it: a beat within the next timeout's
    # worth takes them (they are looked for once per timeout when nobody died).
    for _ in range(BEATS_PER_TIMEOUT):
        beat = await world.a.heartbeat()
        assert beat.dead == []
        if beat.lost:
            break
    case_id = (await world.a.cases.get_call(live)).case_id
    kiosk_id = (await world.a.cases.get_call(live)).kiosk_id
    assert beat.lost == [LostCall(live, case_id, kiosk_id, talking)]
    async with world.db.session() as s:
        again = await s.get_one(Call, live)
        assert (again.status, again.agent_id, again.hub_node, again.answered_at) == (
            CallStatus.QUEUED, None, None, None)
        assert (await s.get_one(Call, connecting)).hub_node is None
        assert (await s.get_one(Call, offered)).offered_to is None
        states = {a.agent_id: a.state for a in (await s.scalars(select(AgentStatus))).all()}
        assert states[ringing] == states[talking] == "offline"
        requeued = (await s.scalars(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "call.requeued"))).one()
        assert requeued == 1
    for _ in range(BEATS_PER_TIMEOUT):  # once only
        assert (await world.a.heartbeat()).lost == []


async def test_a_revived_node_registers_again(world: World) -> None:
    await _age(world.db, "node-a", TIMEOUT_S + 1)
    assert (await world.b.heartbeat()).dead == ["node-a"]
    beat = await world.a.heartbeat()
    assert beat.revived and beat.dead == [] and beat.gap_s is None
    assert await _nodes(world.db) == {"node-a", "node-b"}
    assert not (await world.a.heartbeat()).revived
