"""Bad input on the WebSocket and REST edges: a clear error, and the socket stays open."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import aiohttp
import jwt
import pytest

from signaling.client import ClientError, SignalClient
from tests.conftest import Server
from tests.helpers import answered_call


async def _raw_ws(server: Server) -> aiohttp.ClientWebSocketResponse:
    return await server.http.ws_connect(server.url.replace("http", "ws") + "/ws")


async def _recv(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: dict[str, object] = json.loads(msg.data)
    return data


async def _auth(server: Server, ws: aiohttp.ClientWebSocketResponse, token: str) -> None:
    await ws.send_json({"v": 1, "type": "auth", "id": "a", "token": token})
    welcome = await _recv(ws)
    assert welcome["type"] == "welcome", welcome
    while True:  # agents also get their state right after
        try:
            msg = await ws.receive(timeout=0.2)
        except TimeoutError:
            return
        assert json.loads(msg.data)["type"] == "agent.state"


@pytest.mark.parametrize(
    ("frame", "code", "field", "words"),
    [
        ("{not json", "invalid_json", None, "not valid JSON"),
        ("[1, 2]", "invalid_message", None, "JSON object"),
        ('{"v":1,"id":"9","type":"teleport"}', "unknown_type", "type", "'teleport'"),
        ('{"v":1,"id":"9"}', "invalid_message", "type", "'type'"),
        ('{"v":1,"id":"9","type":"call.accept"}', "invalid_message", "call_id", "missing"),
        ('{"v":1,"id":"9","type":"call.accept","call_id":"x"}', "invalid_message", "call_id",
         "'x'"),
        ('{"v":1,"id":"9","type":"call.accept","call_id":1,"evil":true}', "invalid_message",
         "evil", "not allowed"),
        ('{"v":2,"id":"9","type":"ping"}', "invalid_message", "v", "2"),
        ('{"v":1,"id":"9","type":"agent.state","state":"asleep"}', "invalid_message", "state",
         "'asleep'"),
    ],
)
async def test_bad_frames_get_named_errors_and_socket_lives(
    server: Server, frame: str, code: str, field: str | None, words: str
) -> None:
    ws = await _raw_ws(server)
    await _auth(server, ws, await server.login("agent1"))
    await ws.send_str(frame)
    err = await _recv(ws)
    assert err["type"] == "error" and err["code"] == code, err
    assert err.get("field") == field
    assert words in str(err["message"])
    await ws.send_json({"v": 1, "type": "ping", "id": "p"})
    assert (await _recv(ws))["type"] == "pong"
    await ws.close()


async def test_oversize_frame_refused_socket_lives(server: Server) -> None:
    ws = await _raw_ws(server)
    await _auth(server, ws, await server.kiosk_token())
    big = json.dumps({"v": 1, "type": "chat.send", "id": "b", "call_id": 1,
                      "text": "x" * (1024 * 1024)})
    await ws.send_str(big)
    err = await _recv(ws)
    assert err["code"] == "too_large" and "65536" in str(err["message"])
    await ws.send_json({"v": 1, "type": "ping", "id": "p"})
    assert (await _recv(ws))["type"] == "pong"
    await ws.close()


async def test_messages_before_auth_are_refused(server: Server) -> None:
    ws = await _raw_ws(server)
    await ws.send_json({"v": 1, "type": "call.start", "id": "1", "service_code": "SB-001"})
    err = await _recv(ws)
    assert err["code"] == "unauthenticated" and err["ref"] == "1"
    await _auth(server, ws, await server.kiosk_token())
    await ws.close()


def _forge(claims: dict[str, object], key: str = "test-secret-0123456789-abcdefghijklmnop",
           kid: str | None = None) -> str:
    from vwindow.auth import TokenIssuer

    headers = {"kid": kid or TokenIssuer._kid(key)}
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {"iss": "vwindow", "aud": "vwindow:agent", "sub": "1",
                               "name": "x", "role": "agent", "iat": now, "exp": now + 60}
    base.update(over)
    return base


BAD_TOKENS: dict[str, tuple[Callable[[], str], str]] = {
    "expired": (lambda: _forge(_claims(exp=int(time.time()) - 10)), "expired"),
    "other-key": (lambda: _forge(_claims(), key="another-secret-that-is-long-enough-000"),
                  "unknown key"),
    "role-audience-mismatch": (lambda: _forge(_claims(aud="vwindow:kiosk")), "disagree"),
    "foreign-audience": (lambda: _forge(_claims(aud="someone-else")), "not for this service"),
    "garbage": (lambda: "not.a.jwt", "malformed"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_tokens_refused(server: Server, case: str) -> None:
    make, words = BAD_TOKENS[case]
    token = make()
    ws = await _raw_ws(server)
    await ws.send_json({"v": 1, "type": "auth", "id": "1", "token": token})
    err = await _recv(ws)
    assert err["code"] == "unauthenticated", err
    assert words in str(err["message"]), err
    await ws.send_json({"v": 1, "type": "auth", "id": "2", "token": await server.login("agent1")})
    assert (await _recv(ws))["type"] == "welcome"
    await ws.close()


async def test_forged_signature_with_right_kid_refused(server: Server) -> None:
    from vwindow.auth import TokenIssuer

    real_kid = TokenIssuer._kid("test-secret-0123456789-abcdefghijklmnop")
    token = _forge(_claims(), key="attacker-secret-long-enough-for-hs256!!", kid=real_kid)
    async with server.http.get(f"{server.url}/api/v1/catalog",
                               headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert "Signature verification failed" in body["error"]["message"]


async def test_roles_are_enforced_per_message(server: Server) -> None:
    kiosk = SignalClient(server.http, server.url, await server.kiosk_token())
    await kiosk.connect()
    with pytest.raises(ClientError) as err:
        await kiosk.request("call.accept", call_id=1)
    assert err.value.code == "forbidden" and "kiosk may not send 'call.accept'" in err.value.message
    with pytest.raises(ClientError) as err:
        await kiosk.request("dashboard.subscribe")
    assert err.value.code == "forbidden"
    assert (await kiosk.request("ping"))["type"] == "pong"
    await kiosk.close()


async def test_agent_b_cannot_read_agent_a_case(server: Server) -> None:
    kiosk, a, call_id, case_id = await answered_call(server)
    b = SignalClient(server.http, server.url, await server.login("agent2"))
    await b.connect()

    async def get(token: str, path: str) -> int:
        async with server.http.get(server.url + path,
                                   headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status

    assert await get(a.token, f"/api/v1/cases/{case_id}") == 200
    assert await get(b.token, f"/api/v1/cases/{case_id}") == 403
    assert await get(await server.login("super1"), f"/api/v1/cases/{case_id}") == 200
    for msg, fields in (("device.capture", {}), ("chat.send", {"text": "hi"}),
                        ("call.end", {}), ("rtc.join", {"publish": []})):
        with pytest.raises(ClientError) as err:
            await b.request(msg, call_id=call_id, **fields)
        assert err.value.code == "forbidden", (msg, err.value.message)
    # B cannot upload into A's case either.
    async with server.http.post(f"{server.url}/api/v1/cases/{case_id}/materials",
                                data=b"\xff\xd8\xff\xe0fake",
                                headers={"Authorization": f"Bearer {b.token}",
                                         "Content-Type": "image/jpeg"}) as r:
        assert r.status == 403
    for c in (kiosk, a, b):
        await c.close()


async def test_rest_bad_input(server: Server) -> None:
    url = f"{server.url}/api/v1/auth/login"
    async with server.http.post(url, data=b"{oops") as r:
        assert r.status == 400 and "not valid JSON" in (await r.json())["error"]["message"]
    async with server.http.post(url, json={"username": "agent1", "password": "wrong"}) as r:
        assert r.status == 401 and (await r.json())["error"]["field"] == "password"
    async with server.http.get(f"{server.url}/api/v1/catalog") as r:
        assert r.status == 401 and "Authorization" in (await r.json())["error"]["message"]
    kiosk = await server.kiosk_token()
    headers = {"Authorization": f"Bearer {kiosk}"}
    async with server.http.get(f"{server.url}/api/v1/cases/abc", headers=headers) as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "case_id"
    async with server.http.get(f"{server.url}/api/v1/cases/999", headers=headers) as r:
        assert r.status == 404
