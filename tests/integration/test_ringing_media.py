"""Media connected while the call rings, with real aiortc peers.

When one agent's console rings for a call (longest-idle or round-robin routing), the
kiosk is told (``call.connecting``) and both connect their media to the call's hub at
once. The hub holds them apart: nothing flows between them and nothing is recorded until
the answer admits them, and then their frames flow into the m-lines they already have,
with no new offer. Only the call's own kiosk page and the page of the agent it is offered
to may connect early; a declined ring, a cancelled call and a hub nobody is connecting to
any more leave nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from media.fanout import ParticipantInfo
from media.hub import SessionHub, TrackRole
from signaling.client import ClientError, HubPeer, SignalClient
from signaling.services import SERVICES
from tests.conftest import Server, make_config, start_server, with_routing
from tests.helpers import camera_and_mic, connected, first_frame, wait_for
from vwindow.models import Participant

RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR: the kiosk's picture, the agent's


@pytest.fixture
async def routed(db_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    """The default routing (one agent rings at a time), offers that do not time out."""
    config = with_routing(make_config(db_url, tmp_path), strategy="longest_idle",
                          offer_timeout_s=60, wrap_up_s=0, tick_s=0.2)
    runner, url = await start_server(config)
    async with aiohttp.ClientSession() as http:
        yield Server(url, runner.app[SERVICES], http)
    await runner.cleanup()


@dataclass
class Ringing:
    call_id: int
    kiosk: SignalClient
    agent: SignalClient
    connecting: dict[str, Any]


async def _ringing(server: Server, agent_name: str = "agent1") -> Ringing:
    """The kiosk calls and ``agent_name`` comes on duty: its console rings."""
    kiosk = SignalClient(server.http, server.url, await server.kiosk_token())
    agent = SignalClient(server.http, server.url, await server.login(agent_name))
    await kiosk.connect()
    await agent.connect()
    queued = await kiosk.request("call.start", service_code="SB-001")
    call_id = int(queued["call"]["call_id"])
    await agent.request("agent.state", state="ready")
    ring = await wait_for(agent, "call.ringing")
    assert ring["call"]["call_id"] == call_id and ring["timeout_s"] == 60
    connecting = await wait_for(kiosk, "call.connecting")
    return Ringing(call_id, kiosk, agent, connecting)


async def _both_connect(r: Ringing) -> tuple[HubPeer, HubPeer]:
    """The kiosk (red) and the rung agent (blue) join the media and are connected."""
    kiosk_peer = HubPeer(r.kiosk, r.call_id, camera_and_mic(320, 240, RED))
    agent_peer = HubPeer(r.agent, r.call_id, camera_and_mic(320, 240, BLUE))
    await kiosk_peer.join()
    await agent_peer.join()
    await connected(kiosk_peer, agent_peer)
    return kiosk_peer, agent_peer


def _offers(client: SignalClient) -> int:
    return sum(1 for m in client.received if m.get("type") == "rtc.offer")


async def _no_frame(peer: HubPeer, role: str, kind: str, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await first_frame(peer, role, kind, timeout=seconds)


async def _close(*things: HubPeer | SignalClient) -> None:
    for thing in things:
        await thing.close()


def _mean_bgr(frame: Any) -> tuple[int, int, int]:
    bgr = frame.to_ndarray(format="bgr24")
    return tuple(int(bgr[..., c].mean()) for c in range(3))  # type: ignore[return-value]


async def test_media_connects_while_it_rings_and_flows_only_after_the_answer(
        routed: Server) -> None:
    r = await _ringing(routed)
    assert (r.connecting["call_id"], r.connecting["agent_id"]) == (r.call_id, 1)
    kiosk_peer, agent_peer = await _both_connect(r)
    try:
        hub = routed.services.media.find(r.call_id)
        assert hub is not None
        # Connected, each with the m-lines of the other's camera and mic, and held apart:
        # no frame either way, nobody in the session, nothing recorded.
        assert kiosk_peer.remote_roles() == {("agent", "camera"), ("agent", "mic")}
        assert agent_peer.remote_roles() == {("kiosk", "camera"), ("kiosk", "mic")}
        await asyncio.gather(_no_frame(kiosk_peer, "camera", "agent", 1.5),
                             _no_frame(agent_peer, "camera", "kiosk", 1.5),
                             _no_frame(agent_peer, "mic", "kiosk", 1.5))
        assert hub.participants == [] and len(hub.waiting()) == 2
        assert hub.recorder is not None and hub.recorder.state == "new"
        offers = (_offers(r.kiosk), _offers(r.agent))
        assert not [m for m in r.kiosk.received if m.get("type") == "participant.joined"]

        await r.agent.request("call.accept", call_id=r.call_id)
        kiosk_sees = await first_frame(kiosk_peer, "camera", "agent", timeout=10)
        agent_sees = await first_frame(agent_peer, "camera", "kiosk", timeout=10)
        await first_frame(agent_peer, "mic", "kiosk", timeout=10)
        await first_frame(kiosk_peer, "mic", "agent", timeout=10)
        assert _mean_bgr(kiosk_sees)[0] > 200 and _mean_bgr(agent_sees)[2] > 200
        # The answer needed no renegotiation: the m-lines were there.
        assert (_offers(r.kiosk), _offers(r.agent)) == offers
        assert sorted(p.kind for p in hub.participants) == ["agent", "kiosk"]
        assert hub.recorder.state == "recording"
        joined = await wait_for(r.kiosk, "participant.joined",
                                pred=lambda m: m["participant"]["kind"] == "agent")
        assert joined["call_id"] == r.call_id
        rows = await routed.services.cases.participants(r.call_id)
        assert sorted(p.kind for p in rows if isinstance(p, Participant)) == ["agent", "kiosk"]
    finally:
        await _close(kiosk_peer, agent_peer, r.kiosk, r.agent)


async def test_only_the_kiosk_and_the_rung_agent_connect_early(routed: Server) -> None:
    r = await _ringing(routed)
    other = SignalClient(routed.http, routed.url, await routed.login("agent2"))
    await other.connect()
    try:
        with pytest.raises(ClientError) as refused:
            await other.request("rtc.join", call_id=r.call_id,
                                publish=[{"role": "camera", "kind": "video"}])
        assert refused.value.code == "forbidden"  # not offered to agent2: not its case
        with pytest.raises(ClientError) as screen:
            await r.agent.request("rtc.join", call_id=r.call_id,
                                  publish=[{"role": "screen", "kind": "video"}])
        assert screen.value.code == "forbidden" and screen.value.field == "publish"
        assert "screen" in screen.value.message
        hub = routed.services.media.find(r.call_id)
        assert hub is None or not hub.waiting()
    finally:
        await _close(other, r.kiosk, r.agent)


async def test_a_declined_ring_leaves_and_the_next_agent_gets_through(routed: Server) -> None:
    r = await _ringing(routed)
    kiosk_peer = HubPeer(r.kiosk, r.call_id, camera_and_mic(320, 240, RED))
    first = HubPeer(r.agent, r.call_id, camera_and_mic(320, 240, BLUE))
    second_client = SignalClient(routed.http, routed.url, await routed.login("agent2"))
    second: HubPeer | None = None
    try:
        await kiosk_peer.join()
        await first.join()
        await connected(kiosk_peer, first)
        hub = routed.services.media.find(r.call_id)
        assert hub is not None
        await r.agent.request("call.decline", call_id=r.call_id)
        assert [p.kind for p in hub.waiting()] == ["kiosk"]  # agent1 is out of the hub
        await second_client.connect()
        await second_client.request("agent.state", state="ready")
        await wait_for(second_client, "call.ringing")
        second = HubPeer(second_client, r.call_id, camera_and_mic(320, 240, BLUE))
        await second.join()
        await connected(second)
        await _no_frame(second, "camera", "kiosk", 1.0)
        await second_client.request("call.accept", call_id=r.call_id)
        await first_frame(second, "camera", "kiosk", timeout=10)
        await first_frame(kiosk_peer, "camera", "agent", timeout=10)
        assert [p.id for p in hub.participants] == ["kiosk:1/page", "agent:2/page"]
    finally:
        await _close(kiosk_peer, first, *([second] if second else []), r.kiosk, r.agent,
                     second_client)


async def test_cancelling_while_it_rings_closes_the_hub(routed: Server) -> None:
    r = await _ringing(routed)
    kiosk_peer, agent_peer = await _both_connect(r)
    try:
        assert routed.services.media.find(r.call_id) is not None
        await r.kiosk.request("call.cancel", call_id=r.call_id)
        await wait_for(r.agent, "call.cancelled")
        assert routed.services.media.find(r.call_id) is None
        assert r.call_id not in routed.services.media.live_sessions
    finally:
        await _close(kiosk_peer, agent_peer, r.kiosk, r.agent)


async def test_a_hub_both_leave_before_the_answer_is_closed(routed: Server) -> None:
    r = await _ringing(routed)
    try:
        for client in (r.kiosk, r.agent):
            await client.request("rtc.join", call_id=r.call_id,
                                 publish=[{"role": "mic", "kind": "audio"}])
            await wait_for(client, "rtc.offer")  # the join is acked before it is done
        hub = routed.services.media.find(r.call_id)
        assert hub is not None and len(hub.waiting()) == 2
        await r.agent.request("rtc.leave", call_id=r.call_id)
        assert routed.services.media.find(r.call_id) is hub  # the kiosk still waits in it
        await r.kiosk.request("rtc.leave", call_id=r.call_id)
        assert routed.services.media.find(r.call_id) is None
    finally:
        await _close(r.kiosk, r.agent)


async def test_a_join_still_on_its_way_at_the_answer_is_let_in() -> None:
    """The answer can come between the check of a ringing join and the join itself: the
    hub remembers whom the answer admitted, and that join comes in admitted."""
    sent: list[tuple[str, dict[str, Any]]] = []

    async def notify(pid: str, message: dict[str, Any]) -> None:
        sent.append((pid, message))

    hub = SessionHub(7, notify)
    try:
        await hub.admit("kiosk:1/page")
        await hub.join(ParticipantInfo("kiosk:1/page", "kiosk", "k"),
                       [TrackRole("mic", "audio")], admitted=False)
        await hub.join(ParticipantInfo("agent:9/page", "agent", "a"),
                       [TrackRole("mic", "audio")], admitted=False)
        assert hub.is_admitted("kiosk:1/page") and not hub.is_admitted("agent:9/page")
        assert [p.id for p in hub.participants] == ["kiosk:1/page"]
        assert [p.id for p in hub.waiting()] == ["agent:9/page"]
        # Taken once: the same page joining while a later ring (after a transfer) is
        # held apart again.
        await hub.leave("kiosk:1/page")
        await hub.join(ParticipantInfo("kiosk:1/page", "kiosk", "k"),
                       [TrackRole("mic", "audio")], admitted=False)
        assert not hub.is_admitted("kiosk:1/page")
    finally:
        await hub.stop()
