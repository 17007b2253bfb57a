"""Mid-call hub features with real aiortc peers: screen share, supervisor monitor /
whisper / barge, expert conference."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from signaling.client import ClientError, HubPeer, SignalClient
from tests.conftest import Server
from tests.helpers import camera_and_mic, color_track, first_frame, wait_for


@dataclass
class LiveCall:
    call_id: int
    case_id: int
    kiosk: SignalClient
    agent: SignalClient
    kiosk_peer: HubPeer
    agent_peer: HubPeer


@pytest.fixture
async def live_call(server: Server) -> AsyncIterator[LiveCall]:
    kiosk = SignalClient(server.http, server.url, await server.kiosk_token())
    agent = SignalClient(server.http, server.url, await server.login("agent1"))
    await kiosk.connect()
    await agent.connect()
    queued = await kiosk.request("call.start", service_code="SB-001")
    call_id = queued["call"]["call_id"]
    await agent.request("agent.state", state="ready")
    await wait_for(agent, "call.ringing")
    await agent.request("call.accept", call_id=call_id)
    kiosk_peer = HubPeer(kiosk, call_id, camera_and_mic(320, 240, (0, 0, 255)))
    agent_peer = HubPeer(agent, call_id, camera_and_mic(320, 240, (255, 0, 0)))
    await kiosk_peer.join()
    await agent_peer.join()
    await first_frame(agent_peer, "camera", "kiosk")
    yield LiveCall(call_id, queued["call"]["case_id"], kiosk, agent, kiosk_peer, agent_peer)
    for peer in (kiosk_peer, agent_peer):
        await peer.close()
    for c in (kiosk, agent):
        await c.close()


async def _eventually(check: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_screen_share_on_and_off(live_call: LiveCall) -> None:
    await live_call.agent_peer.publish("screen", color_track(640, 360, (0, 255, 0)))
    frame = await first_frame(live_call.kiosk_peer, "screen", "agent")
    assert (frame.width, frame.height) == (640, 360)
    # The camera is a separate, still-flowing track: subscribers can tell them apart.
    cam = await first_frame(live_call.kiosk_peer, "camera", "agent")
    assert (cam.width, cam.height) == (320, 240)
    await live_call.agent_peer.unpublish("screen")
    await _eventually(lambda: ("agent", "screen") not in live_call.kiosk_peer.remote_roles())
    with pytest.raises(ClientError) as err:
        await live_call.agent.request("rtc.unpublish", call_id=live_call.call_id, role="screen")
    assert err.value.code == "invalid_state" and "does not publish 'screen'" in err.value.message


async def test_supervisor_listen_whisper_barge(server: Server, live_call: LiveCall) -> None:
    sup = SignalClient(server.http, server.url, await server.login("super1"))
    await sup.connect()
    call_id = live_call.call_id
    with pytest.raises(ClientError) as err:
        await sup.request("rtc.join", call_id=call_id, publish=[])
    assert "session.monitor" in err.value.message
    await sup.request("session.monitor", call_id=call_id, mode="listen")
    sup_peer = HubPeer(sup, call_id, {"mic": camera_and_mic()["mic"]})
    await sup_peer.join()
    # Silent monitor: sees both sides; nobody receives the supervisor.
    await first_frame(sup_peer, "camera", "kiosk")
    await first_frame(sup_peer, "camera", "agent")
    await asyncio.sleep(0.5)
    assert ("supervisor", "mic") not in live_call.kiosk_peer.remote_roles()
    assert ("supervisor", "mic") not in live_call.agent_peer.remote_roles()
    assert not [m for m in live_call.kiosk.received if m.get("type") == "participant.joined"
                and m["participant"]["kind"] == "supervisor"]

    await sup.request("session.monitor", call_id=call_id, mode="whisper")
    await _eventually(lambda: ("supervisor", "mic") in live_call.agent_peer.remote_roles())
    await first_frame(live_call.agent_peer, "mic", "supervisor")
    assert ("supervisor", "mic") not in live_call.kiosk_peer.remote_roles()

    await sup.request("session.monitor", call_id=call_id, mode="barge")
    await _eventually(lambda: ("supervisor", "mic") in live_call.kiosk_peer.remote_roles())
    await first_frame(live_call.kiosk_peer, "mic", "supervisor")

    await sup.request("session.monitor", call_id=call_id, mode="listen")
    await _eventually(lambda: ("supervisor", "mic") not in live_call.kiosk_peer.remote_roles())
    await _eventually(lambda: ("supervisor", "mic") not in live_call.agent_peer.remote_roles())
    await sup_peer.close()
    await sup.close()


async def test_expert_conference(server: Server, live_call: LiveCall) -> None:
    expert = SignalClient(server.http, server.url, await server.login("agent2"))
    await expert.connect()
    headers = {"Authorization": f"Bearer {expert.token}"}
    case_url = f"{server.url}/api/v1/cases/{live_call.case_id}"
    async with server.http.get(case_url, headers=headers) as resp:
        assert resp.status == 403  # not yet on the case
    with pytest.raises(ClientError):
        await expert.request("call.join", call_id=live_call.call_id)
    with pytest.raises(ClientError) as err:
        await live_call.agent.request("call.invite", call_id=live_call.call_id,
                                      username="nobody")
    assert err.value.field == "username"

    sent = await live_call.agent.request("call.invite", call_id=live_call.call_id,
                                         username="agent2")
    assert sent["type"] == "call.invite.sent"
    invited = await wait_for(expert, "call.invited")
    assert invited["call"]["call_id"] == live_call.call_id
    joined = await expert.request("call.join", call_id=live_call.call_id)
    assert joined["call"]["case_id"] == live_call.case_id
    async with server.http.get(case_url, headers=headers) as resp:
        assert resp.status == 200
    expert_peer = HubPeer(expert, live_call.call_id, camera_and_mic(320, 240, (0, 255, 0)))
    await expert_peer.join()
    await first_frame(expert_peer, "camera", "kiosk")
    await first_frame(live_call.kiosk_peer, "camera", "expert")
    with pytest.raises(ClientError) as err:
        await expert.request("call.end", call_id=live_call.call_id)
    assert err.value.code == "forbidden"
    # Leaving frees the expert for the next call; the call goes on without them.
    await expert.request("rtc.leave", call_id=live_call.call_id)
    state = await wait_for(expert, "agent.state", pred=lambda m: m["state"] == "ready")
    assert state["state"] == "ready"
    await first_frame(live_call.agent_peer, "camera", "kiosk")
    await expert_peer.close()
    await expert.close()


async def test_snapshot_lands_in_the_case(server: Server, live_call: LiveCall) -> None:
    shot = await live_call.agent.request("media.snapshot", call_id=live_call.call_id,
                                         participant_id="kiosk:1/page", role="camera")
    material = shot["material"]
    assert (shot["width"], shot["height"]) == (320, 240)
    assert material["source"] == "snapshot" and material["content_type"] == "image/jpeg"
    pushed = await wait_for(live_call.kiosk, "case.material")
    assert pushed["material"]["id"] == material["id"]
    async with server.http.get(server.url + material["url"],
                               headers={"Authorization": f"Bearer {live_call.agent.token}"}) as r:
        body = await r.read()
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)
    b, _g, r = image.reshape(-1, 3).mean(axis=0)
    assert r > 200 and b < 60  # the kiosk's red picture, not someone else's
    with pytest.raises(ClientError) as err:
        await live_call.agent.request("media.snapshot", call_id=live_call.call_id,
                                      participant_id="kiosk:1/page", role="screen")
    assert err.value.code == "not_found" and "'screen'" in err.value.message
    with pytest.raises(ClientError) as err:
        await live_call.kiosk.request("media.snapshot", call_id=live_call.call_id,
                                      participant_id="agent:1/page", role="camera")
    assert err.value.code == "forbidden"


async def test_kiosk_rejoins_after_losing_its_socket(server: Server, live_call: LiveCall) -> None:
    # The kiosk's socket and peer connection die; it comes back with new ones.
    await live_call.kiosk_peer.close()
    await live_call.kiosk.close()
    kiosk = SignalClient(server.http, server.url, live_call.kiosk.token)
    welcome = await kiosk.connect()
    assert welcome["active_call"]["call_id"] == live_call.call_id
    assert welcome["active_call"]["status"] == "live"
    peer = HubPeer(kiosk, live_call.call_id, camera_and_mic(320, 240, (0, 255, 255)))
    await peer.join()
    # The agent gets the kiosk's new camera (yellow now) and the kiosk the agent's.
    async def yellow() -> bool:
        try:  # the old track may still be listed until the hub's re-offer lands
            frame = await first_frame(live_call.agent_peer, "camera", "kiosk", timeout=1.0)
        except TimeoutError:
            return False
        b, g, r = frame.to_ndarray(format="bgr24").reshape(-1, 3).mean(axis=0)
        return bool(g > 200 and r > 200 and b < 60)

    deadline = asyncio.get_running_loop().time() + 10
    while not await yellow():
        assert asyncio.get_running_loop().time() < deadline, "kiosk's new camera never arrived"
    await first_frame(peer, "camera", "agent")
    # The call, case and chat carry on.
    await live_call.agent.request("chat.send", call_id=live_call.call_id, text="还在吗？")
    chat = await wait_for(kiosk, "chat.message")
    assert chat["text"] == "还在吗？"
    await live_call.agent.request("call.end", call_id=live_call.call_id)
    await wait_for(kiosk, "call.ended")
    await peer.close()
    await kiosk.close()


async def test_flaky_kiosk_rejoining_does_not_grow_the_agents_sdp(
        server: Server, live_call: LiveCall) -> None:
    """Each rejoin ends the kiosk's publications; the agent's m-lines are reused."""
    hub = server.services.media.find(live_call.call_id)
    assert hub is not None
    colours = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 255, 0), (255, 255, 255)]
    kiosk, peer = live_call.kiosk, live_call.kiosk_peer
    for bgr in colours:
        await peer.close()
        await kiosk.close()
        kiosk = SignalClient(server.http, server.url, live_call.kiosk.token)
        await kiosk.connect()
        peer = HubPeer(kiosk, live_call.call_id, camera_and_mic(320, 240, bgr))
        await peer.join()
        await first_frame(peer, "camera", "agent")

    def agent_mlines() -> int:
        return sum(1 for line in live_call.agent_peer.pc.remoteDescription.sdp.splitlines()
                   if line.startswith("m="))

    await _eventually(lambda: live_call.agent_peer.remote_roles() >= {("kiosk", "camera")})
    # 2 published + kiosk camera + mic, whatever the number of rejoins.
    await _eventually(lambda: agent_mlines() == 4)
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # and the reused m-line carries the newest camera (white)
        try:
            frame = await first_frame(live_call.agent_peer, "camera", "kiosk", timeout=1.0)
            if frame.to_ndarray(format="bgr24").mean() > 240:
                break
        except TimeoutError:
            pass
        assert asyncio.get_running_loop().time() < deadline, "newest camera never arrived"
    await peer.close()
    await kiosk.close()


async def test_connection_closed_under_the_hub_counts_as_lost(
        server: Server, live_call: LiveCall) -> None:
    """aioice closes a connection whose consent checks go unanswered: the hub must treat
    that like a failure (tell the room, drop the member) so the client rejoins."""
    hub = server.services.media.find(live_call.call_id)
    assert hub is not None
    kiosk_id = next(p.id for p in hub.participants if p.kind == "kiosk")
    member = hub._members[kiosk_id]  # the hub's side of the kiosk's connection
    await member.pc.close()  # what aioice's consent expiry ends in
    await wait_for(live_call.agent, "participant.state", timeout=5,
                   pred=lambda m: m["participant_id"] == kiosk_id
                   and m["state"] == "reconnecting")
    deadline = asyncio.get_running_loop().time() + 5
    while hub.has(kiosk_id):
        assert asyncio.get_running_loop().time() < deadline, "the closed member stayed"
        await asyncio.sleep(0.05)


async def test_hub_stops_cleanly_while_a_member_leaves(
        server: Server, live_call: LiveCall) -> None:
    """Closing a hub at the end of a call while a member's connection fails on its own
    (clients hang up first) must still close the hub and keep its recording."""
    hub = server.services.media.find(live_call.call_id)
    assert hub is not None
    # The last member in the hub's list leaves while the hub closes the first ones.
    last = hub.participants[-1].id
    await asyncio.gather(hub.stop(), hub.leave(last))
    assert not hub.participants


async def _answered(server: Server) -> tuple[int, SignalClient, SignalClient]:
    kiosk = SignalClient(server.http, server.url, await server.kiosk_token())
    agent = SignalClient(server.http, server.url, await server.login("agent1"))
    await kiosk.connect()
    await agent.connect()
    queued = await kiosk.request("call.start", service_code="SB-001")
    call_id = int(queued["call"]["call_id"])
    await agent.request("agent.state", state="ready")
    await wait_for(agent, "call.ringing")
    await agent.request("call.accept", call_id=call_id)
    return call_id, kiosk, agent


def _offers(client: SignalClient) -> list[dict[str, object]]:
    return [m for m in client.received if m.get("type") == "rtc.offer"]


async def _join_first(peer: HubPeer, client: SignalClient) -> set[tuple[str, str]]:
    """Join and answer; the (role, owner kind) of what the one offer so far subscribes to."""
    await peer.join()
    await asyncio.wait_for(peer.negotiated.wait(), 10)
    (first,) = _offers(client)
    return {(t["role"], t["participant"]["kind"])  # type: ignore[index]
            for t in first["tracks"] if t["direction"] == "subscribe"}  # type: ignore[attr-defined]


async def test_the_first_to_join_gets_the_other_partys_tracks_without_a_new_offer(
        server: Server) -> None:
    """The kiosk joins first; its first offer already has m-lines for the agent's camera
    and mic (announced as the agent's), which start carrying them when the agent joins:
    no second offer, so no renegotiation after the kiosk's connection is up."""
    call_id, kiosk, agent = await _answered(server)
    kiosk_peer = HubPeer(kiosk, call_id, camera_and_mic(320, 240, (0, 0, 255)))
    agent_peer = HubPeer(agent, call_id, camera_and_mic(320, 240, (255, 0, 0)))
    try:
        assert await _join_first(kiosk_peer, kiosk) == {("camera", "agent"), ("mic", "agent")}
        await agent_peer.join()
        frame = await first_frame(kiosk_peer, "camera", "agent")
        bgr = frame.to_ndarray(format="bgr24")
        assert abs(int(bgr[..., 0].mean()) - 255) < 40  # the agent's blue picture
        await first_frame(kiosk_peer, "mic", "agent")
        await first_frame(agent_peer, "camera", "kiosk")
        assert len(_offers(kiosk)) == 1
    finally:
        for peer in (kiosk_peer, agent_peer):
            await peer.close()
        for c in (kiosk, agent):
            await c.close()


async def test_a_slot_kept_for_a_camera_that_never_comes_is_withdrawn(server: Server) -> None:
    """The agent joins with no camera (none, or refused): the kiosk's slot for it goes
    inactive in a new offer, and the agent's mic still reaches the kiosk."""
    call_id, kiosk, agent = await _answered(server)
    kiosk_peer = HubPeer(kiosk, call_id, camera_and_mic(320, 240, (0, 0, 255)))
    agent_peer = HubPeer(agent, call_id, {"mic": camera_and_mic()["mic"]})
    try:
        assert ("camera", "agent") in await _join_first(kiosk_peer, kiosk)
        await agent_peer.join()
        await first_frame(kiosk_peer, "mic", "agent")
        await wait_for(kiosk, "rtc.offer", pred=lambda m: not any(
            t["role"] == "camera" and t["participant"]["kind"] == "agent"
            for t in m["tracks"]))
        assert not any(info["role"] == "camera" and info["participant"]["kind"] == "agent"
                       for info, _ in kiosk_peer.remote.values())
    finally:
        for peer in (kiosk_peer, agent_peer):
            await peer.close()
        for c in (kiosk, agent):
            await c.close()


async def test_no_slot_is_kept_for_a_track_the_other_party_joined_without(
        server: Server) -> None:
    """The agent has joined with its mic only and not answered yet (nothing published):
    the kiosk's first offer keeps a slot for that mic and none for a camera."""
    call_id, kiosk, agent = await _answered(server)
    await agent.request("rtc.join", call_id=call_id, publish=[{"role": "mic", "kind": "audio"}])
    kiosk_peer = HubPeer(kiosk, call_id, camera_and_mic(320, 240, (0, 0, 255)))
    try:
        assert await _join_first(kiosk_peer, kiosk) == {("mic", "agent")}
    finally:
        await kiosk_peer.close()
        for c in (kiosk, agent):
            await c.close()
