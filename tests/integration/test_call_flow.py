"""The walking skeleton's core flow with real aiortc peers through the server hub."""

from __future__ import annotations

import asyncio
import io

import av
import cv2
import numpy as np
import pytest

from devices.registry import create_device
from media.fanout import EncodedPublication
from signaling.client import ClientError, HubPeer, SignalClient
from signaling.kioskagent import KioskAgent
from tests.conftest import Server
from tests.helpers import camera_and_mic, first_frame, wait_for
from vwindow.audit import verify_chain


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_kiosk_calls_agent_answers_page_lands_in_case(server: Server) -> None:
    http = server.http
    kiosk = SignalClient(http, server.url, await server.kiosk_token())
    agent1 = SignalClient(http, server.url, await server.login("agent1"))
    agent2 = SignalClient(http, server.url, await server.login("agent2"))
    for c in (kiosk, agent1, agent2):
        await c.connect()
    doccam = create_device("doccam", "sim", seed=3)
    devices = KioskAgent(server.url, "kiosk-tx01", "demo-kiosk-key", doccam)  # type: ignore[arg-type]
    await devices.start()
    await asyncio.wait_for(devices.connected.wait(), 10)

    queued = await kiosk.request("call.start", service_code="SB-001")
    assert queued["type"] == "call.queued" and queued["position"] == 1
    call_id = queued["call"]["call_id"]
    case_id = queued["call"]["case_id"]

    for agent in (agent1, agent2):
        assert (await agent.request("agent.state", state="ready"))["state"] == "ready"
        ring = await wait_for(agent, "call.ringing")
        assert ring["call"]["call_id"] == call_id

    accepted = await agent1.request("call.accept", call_id=call_id)
    assert accepted["call"]["status"] == "live"
    taken = await wait_for(agent2, "call.taken")
    assert taken["call_id"] == call_id
    with pytest.raises(ClientError) as late:
        await agent2.request("call.accept", call_id=call_id)
    assert late.value.code == "conflict"
    await wait_for(kiosk, "call.answered")

    kiosk_peer = HubPeer(kiosk, call_id, camera_and_mic(320, 240, (0, 0, 255)))
    agent_peer = HubPeer(agent1, call_id, camera_and_mic(480, 360, (255, 0, 0)))
    await kiosk_peer.join()
    await agent_peer.join()

    seen_by_agent = await first_frame(agent_peer, "camera", "kiosk")
    seen_by_kiosk = await first_frame(kiosk_peer, "camera", "agent")
    assert (seen_by_agent.width, seen_by_agent.height) == (320, 240)
    assert (seen_by_kiosk.width, seen_by_kiosk.height) == (480, 360)
    # The colours survived the trip (red for the kiosk, blue for the agent).
    b, _g, r = seen_by_agent.to_ndarray(format="bgr24").reshape(-1, 3).mean(axis=0)
    assert r > 200 and b < 60
    # And each hears the other.
    heard_by_agent = await first_frame(agent_peer, "mic", "kiosk")
    heard_by_kiosk = await first_frame(kiosk_peer, "mic", "agent")
    assert heard_by_agent.sample_rate == heard_by_kiosk.sample_rate == 48000
    doc = await first_frame(agent_peer, "doccam", "devices")
    assert (doc.width, doc.height) == (640, 480)

    # The hub forwarded encoded frames: nothing arrived decoded at a publication.
    hub = server.services.media.find(call_id)
    assert hub is not None
    pubs = hub.publications()
    assert {p.role for p in pubs} == {"camera", "mic", "doccam"}
    for pub in pubs:
        assert isinstance(pub, EncodedPublication)
        assert pub.source.frames > 0 and pub.source.unexpected == 0

    capture = await agent1.request("device.capture", call_id=call_id)
    pushed = await wait_for(agent1, "case.material", timeout=20,
                            pred=lambda m: m["material"]["kind"] == "original")
    material = pushed["material"]
    assert material["case_id"] == case_id and material["source"] == "doccam"
    done = await wait_for(agent1, "capture.progress",
                          pred=lambda m: m["stage"] == "done")
    assert done["request_id"] == capture["request_id"]
    async with http.get(server.url + material["url"],
                        headers={"Authorization": f"Bearer {agent1.token}"}) as resp:
        assert resp.status == 200
        body = await resp.read()
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (1944, 2592)

    await agent1.request("call.end", call_id=call_id)
    ended = await wait_for(kiosk, "call.ended")
    assert ended["ended_by"] == "agent"
    headers = {"Authorization": f"Bearer {kiosk.token}"}
    async with http.post(f"{server.url}/api/v1/calls/{call_id}/rating", headers=headers,
                         json={"stars": 5, "comment": "很方便"}) as resp:
        assert resp.status == 200
    async with http.post(f"{server.url}/api/v1/calls/{call_id}/rating", headers=headers,
                         json={"stars": 4}) as resp:
        assert resp.status == 409

    # The session's recording lands in the case once the hub has finished it.
    recording = None
    for _ in range(200):
        case = await server.services.cases.case_view(case_id)
        recording = next((m for m in case.materials if m.source == "recording"), None)
        if recording is not None:
            break
        await asyncio.sleep(0.05)
    assert recording is not None and recording.content_type == "video/webm"
    async with http.get(server.url + recording.url,
                        headers={"Authorization": f"Bearer {agent1.token}"}) as resp:
        assert resp.status == 200
        webm = await resp.read()
    with av.open(io.BytesIO(webm)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "audio", "video", "video", "video"], kinds
        frames = {i: 0 for i, s in enumerate(container.streams) if s.type == "video"}
        container.seek(0)
        for packet in container.demux():
            if packet.stream.type == "video" and packet.size:
                frames[packet.stream.index] += sum(1 for _ in packet.decode())
    print("recorded video frames per stream", frames)
    assert all(n > 0 for n in frames.values()), frames

    people = await server.services.cases.participants(call_id)
    assert sorted(p.kind for p in people) == ["agent", "devices", "kiosk"]
    assert all(p.left_at is not None for p in people)
    async with server.services.db.session() as s:
        report = await verify_chain(s)
    assert report.ok and report.rows >= 5

    await kiosk_peer.close()
    await agent_peer.close()
    await devices.stop()
    for c in (kiosk, agent1, agent2):
        await c.close()
