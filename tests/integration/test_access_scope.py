"""Access ends where the job ends: surveyors, experts, supervisors, unauthenticated sockets."""

from __future__ import annotations

import aiohttp
import pytest

import signaling.ws
from signaling.client import ClientError, SignalClient
from tests.conftest import Server
from tests.helpers import answered_call, wait_for


async def _live_call(server: Server) -> tuple[SignalClient, SignalClient, int, int]:
    return await answered_call(server, "GT-001")


async def _status(server: Server, method: str, path: str, token: str) -> int:
    async with server.http.request(method, server.url + path,
                                   headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status


async def _surveyor_code(server: Server, agent: SignalClient, case_id: int, call_id: int) -> str:
    async with server.http.post(f"{server.url}/api/v1/cases/{case_id}/surveyor-links",
                                json={"call_id": call_id},
                                headers={"Authorization": f"Bearer {agent.token}"}) as r:
        assert r.status == 201
        code: str = (await r.json())["code"]
        return code


async def _redeem(server: Server, code: str) -> tuple[int, dict[str, object]]:
    async with server.http.post(f"{server.url}/api/v1/auth/surveyor", json={"code": code}) as r:
        body: dict[str, object] = await r.json()
        return r.status, body


async def test_surveyor_reaches_the_call_not_the_case_file(server: Server) -> None:
    kiosk, agent, call_id, case_id = await _live_call(server)
    status, body = await _redeem(server, await _surveyor_code(server, agent, case_id, call_id))
    assert status == 200
    token = str(body["token"])
    # The phone takes part in the call but cannot browse the case's materials.
    assert await _status(server, "GET", f"/api/v1/cases/{case_id}", token) == 401
    surveyor = SignalClient(server.http, server.url, token)
    welcome = await surveyor.connect()
    assert welcome["active_call"]["call_id"] == call_id
    unused = await _surveyor_code(server, agent, case_id, call_id)
    await agent.request("call.end", call_id=call_id)
    # A link not used before the call ended is dead.
    status, body = await _redeem(server, unused)
    assert status == 401 and "ended" in str(body["error"])
    for c in (kiosk, agent, surveyor):
        await c.close()


async def test_expert_access_ends_with_the_call(server: Server) -> None:
    kiosk, agent, call_id, case_id = await _live_call(server)
    expert = SignalClient(server.http, server.url, await server.login("agent2"))
    await expert.connect()
    await agent.request("call.invite", call_id=call_id, username="agent2")
    await wait_for(expert, "call.invited")
    await expert.request("call.join", call_id=call_id)
    assert await _status(server, "GET", f"/api/v1/cases/{case_id}", expert.token) == 200
    # An expert cannot hand the call on: no invitations or surveyor links of their own.
    with pytest.raises(ClientError) as err:
        await expert.request("call.invite", call_id=call_id, username="agent1")
    assert err.value.code == "forbidden"
    async with server.http.post(f"{server.url}/api/v1/cases/{case_id}/surveyor-links",
                                json={"call_id": call_id},
                                headers={"Authorization": f"Bearer {expert.token}"}) as r:
        assert r.status == 403
    await agent.request("call.end", call_id=call_id)
    assert await _status(server, "GET", f"/api/v1/cases/{case_id}", expert.token) == 403
    for c in (kiosk, agent, expert):
        await c.close()


async def test_monitoring_supervisor_publishes_only_a_mic(server: Server) -> None:
    kiosk, agent, call_id, _ = await _live_call(server)
    sup = SignalClient(server.http, server.url, await server.login("super1"))
    await sup.connect()
    await sup.request("session.monitor", call_id=call_id, mode="listen")
    with pytest.raises(ClientError) as err:
        await sup.request("rtc.join", call_id=call_id,
                          publish=[{"role": "camera", "kind": "video"}])
    assert err.value.code == "forbidden" and err.value.field == "publish"
    for c in (kiosk, agent, sup):
        await c.close()


async def test_agent_in_a_call_stays_in_call(server: Server) -> None:
    kiosk, agent, call_id, _ = await _live_call(server)
    for state in ("away", "ready", "offline"):
        assert (await agent.request("agent.state", state=state))["state"] == "in_call"
    await agent.request("call.end", call_id=call_id)
    await kiosk.close()
    await agent.close()


async def test_socket_without_auth_is_closed(server: Server,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Read when the socket opens; 10 s in production, shortened so the test need not wait.
    monkeypatch.setattr(signaling.ws, "AUTH_TIMEOUT_S", 0.5)
    ws = await server.http.ws_connect(server.url.replace("http", "ws") + "/ws")
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 4401
    await ws.close()


@pytest.mark.parametrize("raw", ["%C2%B2", "99999999999999999999999", "-1"])
async def test_odd_numbers_in_paths_are_400(server: Server, raw: str) -> None:
    kiosk, agent, _, case_id = await _live_call(server)
    assert await _status(server, "GET", f"/api/v1/cases/{raw}", kiosk.token) == 400
    async with server.http.post(
            f"{server.url}/api/v1/cases/{case_id}/materials?call_id={raw}",
            data=b"\xff\xd8\xff\xe0 not really", headers={
                "Authorization": f"Bearer {kiosk.token}", "Content-Type": "image/jpeg"}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["field"] == "call_id"
    await kiosk.close()
    await agent.close()


async def test_device_agent_only_publishes_and_reports(server: Server) -> None:
    devices = SignalClient(server.http, server.url, await server.kiosk_token(), client="devices")
    await devices.connect()
    for msg, fields in (("call.start", {"service_code": "SB-001"}),
                        ("chat.send", {"call_id": 1, "text": "hi"}),
                        ("call.end", {"call_id": 1})):
        with pytest.raises(ClientError) as err:
            await devices.request(msg, **fields)
        assert err.value.code == "forbidden" and "device agent" in err.value.message
    assert (await devices.request("ping"))["type"] == "pong"
    await devices.close()
