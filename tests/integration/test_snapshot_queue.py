"""A snapshot asked for while the surveyor's picture is away is queued, not refused: it
is taken from the first keyframe after the phone rejoins (stamped with the request
time), or fails with a reason once the wait is over. Real aiortc peers, real server."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import cv2
import numpy as np
import pytest

from signaling.client import ClientError, HubPeer, SignalClient
from tests.conftest import Server
from tests.helpers import answered_call, camera_and_mic, first_frame, wait_for

SITE = (30.1301, 118.1702)


async def _surveyor(server: Server, agent: SignalClient, call_id: int,
                    case_id: int) -> tuple[SignalClient, HubPeer, HubPeer]:
    """An inspection with the phone in the call (green camera) and the agent's peer."""
    async with server.http.post(
            f"{server.url}/api/v1/cases/{case_id}/inspections",
            headers={"Authorization": f"Bearer {agent.token}"},
            json={"call_id": call_id, "site_address": "寨西村", "site_lat": SITE[0],
                  "site_lon": SITE[1]}) as r:
        assert r.status == 201
        code = (await r.json())["url"].split("#code=")[1]
    async with server.http.post(f"{server.url}/api/v1/auth/surveyor",
                                json={"code": code}) as r:
        token = (await r.json())["token"]
    phone = SignalClient(server.http, server.url, token)
    await phone.connect()
    phone_peer = HubPeer(phone, call_id, camera_and_mic(320, 240, (40, 160, 40)))
    agent_peer = HubPeer(agent, call_id, camera_and_mic())
    await phone_peer.join()
    await agent_peer.join()
    await first_frame(agent_peer, "camera", "surveyor")
    await phone.request("surveyor.position", call_id=call_id, lat=SITE[0], lon=SITE[1],
                        accuracy=9.0, at=1_700_000_000_000)
    await wait_for(agent, "inspection.position")
    return phone, phone_peer, agent_peer


def _surveyor_id(agent_peer: HubPeer) -> str:
    return str(next(info["participant"]["id"] for info, _ in agent_peer.remote.values()
                    if info["participant"]["kind"] == "surveyor"))


async def _image(server: Server, agent: SignalClient, url: str) -> Any:
    async with server.http.get(server.url + url,
                               headers={"Authorization": f"Bearer {agent.token}"}) as r:
        body = await r.read()
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)


async def test_snapshot_during_a_drop_is_taken_after_the_rejoin(server: Server) -> None:
    board = server.services.switchboard
    board.snapshot_try_s = 1.0
    kiosk, agent, call_id, case_id = await answered_call(server, "SC-001", agent="agent2")
    phone, phone_peer, agent_peer = await _surveyor(server, agent, call_id, case_id)
    surveyor = _surveyor_id(agent_peer)

    # The phone's media link dies (its socket lives on, as a phone's often does).
    await phone_peer.close()
    queued = await agent.request("media.snapshot", call_id=call_id,
                                 participant_id=surveyor, role="camera")
    assert queued["type"] == "snapshot.queued", queued
    assert queued["participant_id"] == surveyor and queued["wait_s"] == 60
    # The agent's console keeps working meanwhile.
    assert (await agent.request("ping"))["type"] == "pong"

    await asyncio.sleep(1.5)
    # The phone rejoins with a new peer connection; its camera is now blue.
    rejoined = HubPeer(phone, call_id, camera_and_mic(320, 240, (200, 60, 20)))
    await rejoined.join()
    taken = await wait_for(agent, "snapshot.taken", timeout=20,
                           pred=lambda m: m.get("request_id") == queued["request_id"])
    requested = datetime.fromisoformat(taken["requested_at"])
    assert datetime.fromisoformat(taken["taken_at"]) > requested
    assert taken["material"]["filename"].startswith("evidence-surveyor-camera-")
    assert taken["evidence"]["lat"] == pytest.approx(SITE[0])
    evidence = await wait_for(agent, "inspection.evidence")
    assert evidence["evidence"]["material_id"] == taken["material"]["id"]
    image = await _image(server, agent, taken["material"]["url"])
    b, _g, _r = image[image.shape[0] // 4, :, :].mean(axis=0)
    assert b > 150, "the picture is the rejoined (blue) camera's"
    assert image[-5:, :, :].mean() < 90, "the stamp's dark band is along the bottom"
    # The stamp says when it was asked for, besides when it was taken.
    lines = board.evidence_lines(call_id, datetime.fromisoformat(taken["taken_at"]), "X",
                                 None, requested_at=requested)
    assert any(line.startswith("请求 Requested") for line in lines), lines

    for peer in (rejoined, agent_peer):
        await peer.close()
    for c in (phone, kiosk, agent):
        await c.close()


async def test_queued_snapshot_fails_with_a_reason_when_the_phone_stays_away(
        server: Server) -> None:
    board = server.services.switchboard
    board.snapshot_try_s = 1.0
    board.snapshot_wait_s = 2.0
    kiosk, agent, call_id, case_id = await answered_call(server, "SC-001", agent="agent2")
    phone, phone_peer, agent_peer = await _surveyor(server, agent, call_id, case_id)
    surveyor = _surveyor_id(agent_peer)
    await phone_peer.close()
    queued = await agent.request("media.snapshot", call_id=call_id,
                                 participant_id=surveyor, role="camera")
    assert queued["type"] == "snapshot.queued"
    failed = await wait_for(agent, "snapshot.failed", timeout=15)
    assert failed["request_id"] == queued["request_id"]
    assert failed["code"] == "snapshot"
    assert "within 2 s" in failed["message"], failed

    # Someone who is not in the call at all is refused at once, not queued.
    with pytest.raises(ClientError) as err:
        await agent.request("media.snapshot", call_id=call_id,
                            participant_id="surveyor:999/page", role="camera")
    assert err.value.code == "not_found"
    for peer in (agent_peer,):
        await peer.close()
    for c in (phone, kiosk, agent):
        await c.close()
