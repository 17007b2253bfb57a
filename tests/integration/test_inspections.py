"""Remote site inspection end to end with real aiortc peers: the agent creates it, the
surveyor's phone joins by the one-time link and sends its position, evidence snapshots
are stamped and positioned, the checklist is ticked, an annotated copy is kept, and
closing builds a parsable PDF report whose SHA-256 is in the audit chain."""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import Any

import cv2
import numpy as np
import pikepdf
import pytest
from sqlalchemy import select

from signaling.client import HubPeer, SignalClient
from tests.conftest import Server
from tests.helpers import answered_call, camera_and_mic, first_frame, wait_for
from vwindow.audit import verify_chain
from vwindow.models import AuditEntry

SITE = (30.1301, 118.1702)  # 汤口镇 (illustrative)


async def _call(server: Server, method: str, path: str, token: str,
                **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    async with server.http.request(method, server.url + path, headers=headers, **kw) as r:
        body = await r.read()
        return r.status, (await r.json() if r.content_type.endswith("json") else body)


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_inspection_from_link_to_report(server: Server) -> None:
    kiosk, agent, call_id, case_id = await answered_call(server, "SC-001", agent="agent2")
    status, created = await _call(
        server, "POST", f"/api/v1/cases/{case_id}/inspections", agent.token,
        json={"call_id": call_id, "site_address": "汤口镇寨西村 12 号", "site_lat": SITE[0],
              "site_lon": SITE[1]})
    assert status == 201, created
    inspection = created["inspection"]
    assert inspection["number"].startswith("TK-") and inspection["status"] == "open"
    assert "<svg" in created["qr_svg"]
    keys = [i["key"] for i in inspection["checklist"]]
    assert "signboard" in keys  # SC-001 is a market-supervision item
    code = created["url"].split("#code=")[1]

    # The phone: redeem once, join with the rear camera, report where it is.
    async with server.http.post(f"{server.url}/api/v1/auth/surveyor",
                                json={"code": code}) as r:
        assert r.status == 200
        token = (await r.json())["token"]
    async with server.http.post(f"{server.url}/api/v1/auth/surveyor",
                                json={"code": code}) as r:
        assert r.status == 401  # a link works once
    phone = SignalClient(server.http, server.url, token)
    await phone.connect()
    phone_peer = HubPeer(phone, call_id, camera_and_mic(640, 480, (40, 160, 40)))
    agent_peer = HubPeer(agent, call_id, camera_and_mic())
    await phone_peer.join()
    await agent_peer.join()
    await first_frame(agent_peer, "camera", "surveyor")
    await phone.request("surveyor.position", call_id=call_id, lat=SITE[0] + 0.0009,
                        lon=SITE[1], accuracy=8.5, at=1_700_000_000_000)
    seen = await wait_for(agent, "inspection.position")
    assert seen["position"]["accuracy"] == 8.5

    surveyor_id = next(info["participant"]["id"] for info, _ in agent_peer.remote.values()
                       if info["participant"]["kind"] == "surveyor")
    shots = []
    for _ in range(2):
        shots.append(await agent.request("media.snapshot", call_id=call_id,
                                         participant_id=surveyor_id, role="camera"))
    for shot in shots:
        assert shot["evidence"]["lat"] == pytest.approx(SITE[0] + 0.0009)
        assert shot["material"]["filename"].startswith("evidence-")
    status, jpeg = await _call(server, "GET", shots[0]["material"]["url"], agent.token)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    # The stamp: a dark band with light text along the bottom over the green picture.
    bottom, middle = image[-20:, :, :], image[image.shape[0] // 2, :, :]
    assert middle[:, 1].mean() > 120 and bottom[:, :, 1].mean() < 100
    assert (bottom > 200).any()

    first, second = (s["material"]["id"] for s in shots)
    base = f"/api/v1/inspections/{inspection['id']}"
    status, body = await _call(server, "PUT", f"{base}/items/signboard", agent.token,
                               json={"state": "pass", "note": "招牌清晰", "evidence": [first]})
    assert status == 200
    assert next(i for i in body["checklist"] if i["key"] == "signboard")["state"] == "pass"
    for bad, field in (({"state": "maybe"}, "state"), ({"state": "pass", "evidence": [999]},
                                                       "evidence")):
        status, body = await _call(server, "PUT", f"{base}/items/signboard", agent.token,
                                   json=bad)
        assert status == 400 and body["error"]["field"] == field, body
    status, body = await _call(server, "PUT", f"{base}/items/nope", agent.token,
                               json={"state": "pass"})
    assert status == 404

    ok, png = cv2.imencode(".png", image)
    assert ok
    status, body = await _call(server, "POST", f"{base}/evidence/{second}/annotated",
                               agent.token, data=png.tobytes(),
                               headers={"Content-Type": "image/png"})
    assert status == 201 and body["evidence"]["annotated_from"] == second
    status, body = await _call(server, "POST", f"{base}/evidence/{second}/annotated",
                               agent.token, data=b"<svg/>",
                               headers={"Content-Type": "image/png"})
    assert status == 400

    # The kiosk and the phone cannot close it; the agent can.
    for token_ in (kiosk.token, token):
        status, _ = await _call(server, "POST", f"{base}/close", token_,
                                json={"conclusion": "x"})
        assert status in (401, 403)
    status, closed = await _call(server, "POST", f"{base}/close", agent.token,
                                 json={"conclusion": "现场与申请一致，同意。"})
    assert status == 200, closed
    assert closed["inspection"]["status"] == "closed"
    status, pdf = await _call(server, "GET", closed["report"]["url"], agent.token)
    assert hashlib.sha256(pdf).hexdigest() == closed["sha256"]
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        assert len(doc.pages) >= 4  # facts + checklist, then one page per evidence (3)
        images = sum(len(list(page.get_images())) for page in doc.pages)
        assert images == 3
        assert "踏勘报告" in str(doc.docinfo.get("/Title"))
    status, _ = await _call(server, "POST", f"{base}/close", agent.token,
                                json={"conclusion": "again"})
    assert status == 409
    async with server.services.db.session() as s:
        entry = (await s.scalars(select(AuditEntry).where(
            AuditEntry.action == "inspection.report"))).one()
        assert entry.detail["sha256"] == closed["sha256"]
        await verify_chain(s)

    for peer in (phone_peer, agent_peer):
        await peer.close()
    for c in (phone, kiosk, agent):
        await c.close()


async def test_inspection_needs_the_live_call_of_this_agent(server: Server) -> None:
    kiosk, agent, call_id, case_id = await answered_call(server)
    other = await server.login("agent3")
    status, body = await _call(server, "POST", f"/api/v1/cases/{case_id}/inspections", other,
                               json={"call_id": call_id})
    assert status == 403
    status, body = await _call(server, "POST", f"/api/v1/cases/{case_id}/inspections",
                               agent.token, json={"call_id": call_id, "site_lat": 30.1})
    assert status == 400 and body["error"]["field"] == "site_lat"
    await agent.request("call.end", call_id=call_id)
    await asyncio.sleep(0.1)
    status, body = await _call(server, "POST", f"/api/v1/cases/{case_id}/inspections",
                               agent.token, json={"call_id": call_id})
    assert status in (403, 409)
    for c in (kiosk, agent):
        await c.close()
