"""In-call chat against a real server: pictures and voice notes travel as materials of
the case, and every message is kept in the case as a ``chat`` note."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.client import ClientError
from tests.conftest import Server
from tests.helpers import answered_call, wait_for

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
WEBM = b"\x1aE\xdf\xa3" + b"\x01" * 64


async def _upload(server: Server, token: str, case_id: int, call_id: int, data: bytes,
                  content_type: str, filename: str) -> tuple[int, dict[str, Any]]:
    async with server.http.post(
            f"{server.url}/api/v1/cases/{case_id}/materials",
            params={"call_id": str(call_id), "source": "upload", "filename": filename},
            data=data, headers={"Authorization": f"Bearer {token}",
                                "Content-Type": content_type}) as r:
        return r.status, await r.json()


async def _case(server: Server, token: str, case_id: int) -> dict[str, Any]:
    async with server.http.get(f"{server.url}/api/v1/cases/{case_id}",
                               headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def test_chat_picture_and_voice_reach_the_other_side_and_stay_in_the_case(
        server: Server) -> None:
    kiosk, agent, call_id, case_id = await answered_call(server)
    status, picture = await _upload(server, kiosk.token, case_id, call_id, PNG, "image/png",
                                    "chat.png")
    assert status == 201 and picture["content_type"] == "image/png"

    await kiosk.request("chat.send", call_id=call_id, material_id=picture["id"])
    got = await wait_for(agent, "chat.message", pred=lambda m: "material" in m)
    assert got["from"]["kind"] == "kiosk" and got["text"] == ""
    assert got["material"]["id"] == picture["id"]
    assert got["material"]["url"] == f"/api/v1/materials/{picture['id']}/content"
    async with server.http.get(server.url + got["material"]["url"],
                               headers={"Authorization": f"Bearer {agent.token}"}) as r:
        assert r.status == 200 and await r.read() == PNG

    # The other way: the agent's voice note, with a line of text.
    status, voice = await _upload(server, agent.token, case_id, call_id, WEBM, "audio/webm",
                                  "voice.webm")
    assert status == 201 and voice["content_type"] == "audio/webm"
    await agent.request("chat.send", call_id=call_id, text="请听语音", material_id=voice["id"])
    got = await wait_for(kiosk, "chat.message", pred=lambda m: "material" in m
                         and m["from"]["kind"] == "agent")
    assert got["text"] == "请听语音" and got["material"]["content_type"] == "audio/webm"

    await kiosk.request("chat.send", call_id=call_id, text="收到")
    plain = await wait_for(agent, "chat.message", pred=lambda m: m["text"] == "收到")
    assert "material" not in plain

    notes = [n for n in (await _case(server, agent.token, case_id))["notes"]
             if n["kind"] == "chat"]
    assert [n["text"] for n in notes] == [f"[material:{picture['id']}]",
                                          f"请听语音 [material:{voice['id']}]", "收到"]
    for c in (kiosk, agent):
        await c.close()


async def test_chat_needs_text_or_a_material_of_the_same_case(server: Server) -> None:
    kiosk, agent, call_id, case_id = await answered_call(server)
    status, picture = await _upload(server, kiosk.token, case_id, call_id, PNG, "image/png",
                                    "chat.png")
    assert status == 201
    for fields in ({}, {"text": "   "}):
        with pytest.raises(ClientError) as err:
            await kiosk.request("chat.send", call_id=call_id, **fields)
        assert err.value.code == "invalid_message"
        assert "'text' or 'material_id'" in err.value.message
    with pytest.raises(ClientError) as err:
        await kiosk.request("chat.send", call_id=call_id, material_id=999_999)
    assert err.value.field == "material_id"
    await agent.request("call.end", call_id=call_id)
    for c in (kiosk, agent):
        await c.close()

    # A new call is a new case: the first case's picture cannot be sent in it.
    kiosk2, agent2, call2, case2 = await answered_call(server, agent="agent2")
    assert case2 != case_id
    with pytest.raises(ClientError) as err:
        await kiosk2.request("chat.send", call_id=call2, material_id=picture["id"])
    assert err.value.code == "invalid_message" and err.value.field == "material_id"
    assert str(picture["id"]) in err.value.message
    notes = (await _case(server, agent2.token, case2))["notes"]
    assert not [n for n in notes if n["kind"] == "chat"]
    for c in (kiosk2, agent2):
        await c.close()
