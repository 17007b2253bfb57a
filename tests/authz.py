"""The scene the authorisation matrix runs in, and a socket that reports how one message
was answered.

The scene is one live, answered call of the demo kiosk (``agent1`` took it, ``agent3``
joined as an invited expert, the kiosk's device agent is connected), with a material,
an ID read, an open upload, a booking, an inspection and a redeemed surveyor link on its
case; a second township's kiosk exists beside it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy import select, update

from signaling.client import SignalClient
from tests.conftest import Server
from tests.helpers import answered_call, wait_for
from vwindow.auth import hash_secret
from vwindow.models import Kiosk, Role, SurveyorLink, Township, utcnow

OTHER_KIOSK = ("kiosk-ls01", "other-township-kiosk-key")
JPEG = b"\xff\xd8\xff\xe0" + b"authz matrix material " * 4
UPLOAD = b"\xff\xd8\xff\xe0" + bytes(range(60))
ID_READ = {"card_type": "resident", "name": "张三", "gender": "male", "nation": "汉",
           "birth_date": "1958-03-07", "address": "汤口镇 1 号", "number": "340102195803071234",
           "authority": "黄山区公安局", "valid_from": "2010-01-01", "valid_to": "long_term"}


@dataclass
class Scene:
    call_id: int
    case_id: int
    kiosk_id: int
    material_id: int
    id_read_id: int
    upload_id: str
    slot_id: int
    booking_code: str
    inspection_id: int
    tokens: dict[str, str]
    """Principal name → its token (every principal but the anonymous one)."""
    clients: list[SignalClient] = field(default_factory=list)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


async def _json(server: Server, method: str, path: str, token: str | None, *,
                expect: int, **kwargs: Any) -> Any:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with server.http.request(method, server.url + path, headers=headers,
                                   **kwargs) as r:
        body = await r.json()
        assert r.status == expect, f"{method} {path}: {r.status} {body}"
        return body


async def _other_township_kiosk(server: Server) -> None:
    async with server.services.db.session() as s:
        town = Township(code="LS", name="龙山乡", county="黄山区", distance_km=40.0,
                        travel_minutes=70)
        s.add(town)
        await s.flush()
        s.add(Kiosk(code=OTHER_KIOSK[0], name="龙山乡便民服务中心 1 号机", township_id=town.id,
                    key_hash=hash_secret(OTHER_KIOSK[1])))


async def _expired_surveyor_token(server: Server, agent: str, case_id: int,
                                  call_id: int) -> str:
    """The token an expired surveyor link once gave: the link is past its expiry (and
    no longer redeemable), the token past its own."""
    link = await _json(server, "POST", f"/api/v1/cases/{case_id}/surveyor-links", agent,
                       expect=201, json={"call_id": call_id})
    digest = hashlib.sha256(link["code"].encode()).hexdigest()
    async with server.services.db.session() as s:
        await s.execute(update(SurveyorLink).where(SurveyorLink.code_hash == digest)
                        .values(expires_at=utcnow() - timedelta(minutes=1)))
        link_id = (await s.scalars(select(SurveyorLink.id).where(
            SurveyorLink.code_hash == digest))).one()
    refused = await _json(server, "POST", "/api/v1/auth/surveyor", None, expect=401,
                          json={"code": link["code"]})
    assert "expired" in refused["error"]["message"]
    token, _ = server.services.tokens.issue(
        Role.SURVEYOR, str(link_id), "现场踏勘", -60,
        extra={"case_id": case_id, "call_id": call_id})
    return token


async def build_scene(server: Server) -> Scene:
    await _other_township_kiosk(server)
    kiosk, agent, call_id, case_id = await answered_call(server)
    expert = SignalClient(server.http, server.url, await server.login("agent3"))
    await expert.connect()
    await agent.request("call.invite", call_id=call_id, username="agent3")
    await wait_for(expert, "call.invited")
    await expert.request("call.join", call_id=call_id)
    kt = kiosk.token
    # The kiosk's device agent is running, as at a real kiosk: requests to it are delivered.
    devices = SignalClient(server.http, server.url, kt, client="devices")
    await devices.connect()

    material = await _json(server, "POST", f"/api/v1/cases/{case_id}/materials", kt,
                           expect=201, data=JPEG, params={"call_id": str(call_id)},
                           headers={"Content-Type": "image/jpeg"})
    id_read = await _json(server, "POST", f"/api/v1/cases/{case_id}/id-reads", kt,
                          expect=201, json={**ID_READ, "call_id": call_id})
    upload = await _json(server, "POST", f"/api/v1/cases/{case_id}/uploads", kt, expect=201,
                         json={"sha256": hashlib.sha256(UPLOAD).hexdigest(),
                               "size": len(UPLOAD), "content_type": "image/jpeg",
                               "call_id": call_id})
    slots = await _json(server, "GET", "/api/v1/appointment-slots", kt, expect=200)
    booking = await _json(server, "POST", f"/api/v1/cases/{case_id}/appointments", kt,
                          expect=201, json={"slot_id": slots[0]["id"]})
    link = await _json(server, "POST", f"/api/v1/cases/{case_id}/surveyor-links",
                       agent.token, expect=201, json={"call_id": call_id})
    inspection = await _json(server, "POST", f"/api/v1/cases/{case_id}/inspections",
                             agent.token, expect=201, json={"call_id": call_id})
    surveyor = await _json(server, "POST", "/api/v1/auth/surveyor", None, expect=200,
                           json={"code": link["code"]})
    call = await server.services.cases.get_call(call_id)
    tokens = {
        "kiosk": kt,
        "kiosk_other": await server.kiosk_token(*OTHER_KIOSK),
        "agent": agent.token,
        "expert": expert.token,
        "agent_other": await server.login("agent2"),
        "supervisor": await server.login("super1"),
        "surveyor": surveyor["token"],
        "surveyor_expired": await _expired_surveyor_token(server, agent.token, case_id,
                                                          call_id),
    }
    return Scene(call_id=call_id, case_id=case_id, kiosk_id=call.kiosk_id,
                 material_id=material["id"], id_read_id=id_read["id"],
                 upload_id=upload["upload_id"], slot_id=slots[0]["id"],
                 booking_code=booking["code"],
                 inspection_id=inspection["inspection"]["id"], tokens=tokens,
                 clients=[kiosk, devices, agent, expert])


class WsProbe:
    """A raw signalling socket: sends one message and says how the server answered it.

    Each probe is followed by a ``ping``; the server handles a socket's messages in
    order, so whatever it says about the probe (an error, a reply, or nothing at all, as
    for ``rtc.candidate``) has arrived by the time the ping is answered.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, server: Server) -> WsProbe:
        return cls(await server.http.ws_connect(server.url.replace("http", "ws", 1) + "/ws"))

    async def probe(self, message: dict[str, Any], timeout: float = 15.0) -> str:
        """``"ok"`` unless the server answered ``message`` with an error: then its code."""
        msg_id = f"probe-{next(self._ids)}"
        ping_id = msg_id + "-ping"
        await self.ws.send_str(json.dumps({**message, "id": msg_id}))
        await self.ws.send_str(json.dumps({"v": 1, "type": "ping", "id": ping_id}))
        outcome = "ok"
        while True:
            frame = await self.ws.receive(timeout=timeout)
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket closed while probing {message['type']!r}: "
                                      f"{frame.type.name} {self.ws.close_code}")
            data = json.loads(frame.data)
            if data.get("ref") == msg_id and data.get("type") == "error" and outcome == "ok":
                outcome = str(data.get("code"))
            if data.get("ref") == ping_id:
                return outcome

    async def close(self) -> None:
        await self.ws.close()
