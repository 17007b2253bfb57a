"""A node that another node declared dead while it had only stalled lets go of what the
database no longer gives it: its session of a call queued again ends (the recording up
to then goes into the case), its agent in that call is told and freed, and a console
ringing with an offer the other node withdrew stops ringing. In process on SQLite, the
other node being a second ``CallQueue`` on the same database; the two-process version
on PostgreSQL is in ``test_two_nodes``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from sqlalchemy import select, update

from signaling.app import SERVICES
from signaling.client import HubPeer, SignalClient
from signaling.services import Services
from tests.conftest import Server, make_config, start_server, with_routing
from tests.helpers import answered_call, camera_and_mic, connected, wait_for
from tests.multinode import declare_dead
from vwindow.auth import hash_secret
from vwindow.config import Config
from vwindow.db import Database
from vwindow.models import AgentStatus, Call, CallStatus, Kiosk, Node, User, utcnow


async def _second_kiosk(db: Database) -> None:
    async with db.session() as s:
        first = (await s.scalars(select(Kiosk).where(Kiosk.code == "kiosk-tx01"))).one()
        s.add(Kiosk(code="kiosk-tx02", name="二号机", township_id=first.township_id,
                    key_hash=hash_secret("second-key")))


@dataclass
class ThisNode:
    """A real server (this node), and the database as another node sees it."""

    server: Server
    config: Config
    other_db: Database

    @property
    def services(self) -> Services:
        return self.server.services

    async def declared_dead(self) -> None:
        """Another node reaps this one; this one's next beat finds out."""
        await declare_dead(self.other_db, self.config, self.config.server.node_id)
        assert (await self.services.switchboard.router.beat()).revived


@asynccontextmanager
async def _node(db_url: str, tmp_path: Path, **routing: object) -> AsyncIterator[ThisNode]:
    # Beats two minutes apart: this node beats only when the test says.
    config = with_routing(make_config(db_url, tmp_path), strategy="longest_idle",
                          node_timeout_s=600, **routing)
    runner, url = await start_server(config)
    other_db = Database(db_url)
    try:
        async with aiohttp.ClientSession() as http:
            yield ThisNode(Server(url, runner.app[SERVICES], http), config, other_db)
    finally:
        await other_db.stop()
        await runner.cleanup()


async def test_a_node_declared_dead_ends_its_sessions_and_frees_its_agents(
        db_url: str, tmp_path: Path) -> None:
    async with _node(db_url, tmp_path, wrap_up_s=0, offer_timeout_s=60) as here:
        server, services, node_id = here.server, here.services, here.config.server.node_id
        await _second_kiosk(services.db)
        kiosk, talking, call_id, case_id = await answered_call(server, agent="agent1")
        await wait_for(kiosk, "call.answered")
        peer = HubPeer(kiosk, call_id, camera_and_mic(320, 240, (0, 0, 255)))
        await peer.join()
        await connected(peer)
        hub = services.media.find(call_id)
        assert hub is not None
        async with asyncio.timeout(10):  # something to record
            while not any(p.source.frames > 5 for p in hub.publications()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # A second call rings at another agent of this node.
        kiosk2 = SignalClient(server.http, server.url,
                              await server.kiosk_token("kiosk-tx02", "second-key"))
        ringing = SignalClient(server.http, server.url, await server.login("agent2"))
        for c in (kiosk2, ringing):
            await c.connect()
        await ringing.request("agent.state", state="ready")
        second = (await kiosk2.request("call.start", service_code="SB-001"))["call"][
            "call_id"]
        assert (await wait_for(ringing, "call.ringing"))["call"]["call_id"] == second
        for c in (kiosk, talking, ringing):
            c.received.clear()  # from here on, only what the fencing says

        # This node stalls; another declares it dead: the live call waits again, the
        # offer is withdrawn, both agents are offline in the database.
        reaped = await declare_dead(here.other_db, here.config, node_id)
        assert [lost.call_id for lost in reaped.lost] == [call_id]

        # This node runs again; its next beat finds it was declared dead.
        beat = await services.switchboard.router.beat()
        assert beat.revived
        assert (await wait_for(kiosk, "call.requeued"))["call_id"] == call_id
        ended = await wait_for(talking, "call.ended")
        assert (ended["call_id"], ended["ended_by"]) == (call_id, "server")
        withdrawn = await wait_for(ringing, "call.offer_withdrawn")
        assert withdrawn["call_id"] == second
        await wait_for(ringing, "agent.state", pred=lambda m: m["state"] == "ready")
        # Free again: ready, or rung at once with the next call.
        await wait_for(talking, "agent.state",
                       pred=lambda m: m["state"] in ("ready", "ringing"))

        # Its session of the call is closed; the recording up to then is in the case.
        async with asyncio.timeout(20):
            while True:
                case = await services.cases.case_view(case_id)
                recording = next((m for m in case.materials if m.source == "recording"),
                                 None)
                if recording is not None and services.media.find(call_id) is None:
                    break
                await asyncio.sleep(0.1)
        assert recording.content_type == "video/webm" and recording.size > 0

        # The node carries on: both calls are offered again, to its agents.
        offers = [await wait_for(agent, "call.ringing", timeout=10)
                  for agent in (talking, ringing)]
        assert {o["call"]["call_id"] for o in offers} == {call_id, second}
        async with services.db.session() as s:
            calls = {c.id: c for c in (await s.scalars(select(Call))).all()}
            states = (await s.scalars(select(AgentStatus))).all()
            node = await s.get(Node, node_id)
        assert {calls[call_id].status, calls[second].status} == {CallStatus.QUEUED}
        assert {a.state for a in states if a.node_id == node_id} == {"ringing"}
        assert node is not None
        await peer.close()
        for c in (kiosk, talking, kiosk2, ringing):
            await c.close()


async def test_an_agent_wrapping_up_on_a_node_declared_dead_is_ready_when_it_ends(
        db_url: str, tmp_path: Path) -> None:
    async with _node(db_url, tmp_path, wrap_up_s=1.5) as here:
        kiosk, agent, call_id, _ = await answered_call(here.server)
        await agent.request("call.end", call_id=call_id)
        await wait_for(agent, "agent.state", pred=lambda m: m["state"] == "wrap_up")
        await here.declared_dead()
        async with here.services.db.session() as s:
            status = await s.get_one(AgentStatus, int(agent.welcome["principal"]["id"]))
        assert status.state == "wrap_up" and status.wrap_until is not None
        # The wrap-up runs out as it would have: the agent is ready, not stuck.
        await wait_for(agent, "agent.state", timeout=5,
                       pred=lambda m: m["state"] == "ready")
        for c in (kiosk, agent):
            await c.close()


async def test_a_call_answered_elsewhere_meanwhile_does_not_send_the_kiosk_back(
        db_url: str, tmp_path: Path) -> None:
    """Declared dead, the node finds its call already answered at another node: its
    agent is out of the call, but the kiosk is not told to wait (it is in the call
    there)."""
    async with _node(db_url, tmp_path, wrap_up_s=0) as here:
        kiosk, agent, call_id, _ = await answered_call(here.server)
        await declare_dead(here.other_db, here.config, here.config.server.node_id)
        async with here.other_db.session() as s:
            expert = (await s.scalars(select(User.id).where(
                User.username == "agent2"))).one()
            await s.execute(update(Call).where(Call.id == call_id).values(
                status=CallStatus.LIVE, agent_id=expert, hub_node="node-other",
                answered_at=utcnow()))
        assert (await here.services.switchboard.router.beat()).revived
        ended = await wait_for(agent, "call.ended")
        assert (ended["call_id"], ended["ended_by"]) == (call_id, "server")
        await asyncio.sleep(0.3)
        assert not [m for m in kiosk.received if m.get("type") == "call.requeued"]
        for c in (kiosk, agent):
            await c.close()


async def test_a_malformed_calls_lost_event_is_ignored(db_url: str, tmp_path: Path) -> None:
    """Another node's ``calls_lost`` event with broken entries: those are skipped, the
    well-formed one is acted on (its kiosk is told to wait again)."""
    async with _node(db_url, tmp_path, wrap_up_s=0) as here:
        kiosk, agent, call_id, case_id = await answered_call(here.server)
        kiosk_id = (await here.services.cases.get_call(call_id)).kiosk_id
        switchboard = here.services.switchboard
        for calls in ("x", None, [[call_id]], [["1", case_id, kiosk_id, None]],
                      [[call_id, case_id, kiosk_id, "agent"]]):
            await switchboard.on_event({"k": "calls_lost", "calls": calls})
        assert not [m for m in kiosk.received if m.get("type") == "call.requeued"]
        await switchboard.on_event({"k": "calls_lost",
                                    "calls": [[call_id, case_id, kiosk_id, None]]})
        assert (await wait_for(kiosk, "call.requeued"))["call_id"] == call_id
        for c in (kiosk, agent):
            await c.close()
