"""The default routing on a real server: offers, declines, missed offers, wrap-up, overflow,
queue position and wait estimates, callbacks — on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from signaling.client import ClientError, HubPeer, SignalClient
from signaling.services import SERVICES
from tests.conftest import Server, make_config, start_server, with_routing
from tests.helpers import camera_and_mic, first_frame, wait_for
from vwindow.auth import hash_secret
from vwindow.models import AuditEntry, Call, Kiosk, Township, User

ROUTING = {"strategy": "longest_idle", "offer_timeout_s": 2.0, "wrap_up_s": 0,
           "overflow_s": 60, "tick_s": 0.2, "callback_after_s": 0}


@pytest.fixture
async def routed(db_url: str, tmp_path: Path,
                 request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """A server with the default routing (quick timers); ``@pytest.mark.routing(key=…)``
    on a test changes keys."""
    marker = request.node.get_closest_marker("routing")
    overrides = marker.kwargs if marker else {}
    config = with_routing(make_config(db_url, tmp_path), **{**ROUTING, **overrides})
    runner, url = await start_server(config)
    async with aiohttp.ClientSession() as http:
        yield Server(url, runner.app[SERVICES], http)
    await runner.cleanup()


async def _call(kiosk: SignalClient, service_code: str = "SB-001") -> int:
    """The kiosk calls; the new call's id."""
    queued = await kiosk.request("call.start", service_code=service_code)
    return int(queued["call"]["call_id"])


async def _kiosks(server: Server, n: int, county: str = "黄山区") -> list[SignalClient]:
    """``n`` more kiosks in a new township of ``county``, connected."""
    db = server.services.db
    async with db.session() as s:
        town = Township(code=f"T-{secrets.token_hex(4)}", name=f"测试镇{n}", county=county)
        s.add(town)
        await s.flush()
        for i in range(n):
            s.add(Kiosk(code=f"k-{town.id}-{i}", name=f"{i} 号机", township_id=town.id,
                        key_hash=hash_secret("key")))
        await s.flush()
        codes = [f"k-{town.id}-{i}" for i in range(n)]
    clients = []
    for code in codes:
        client = SignalClient(server.http, server.url, await server.kiosk_token(code, "key"))
        await client.connect()
        clients.append(client)
    return clients


async def _agent(server: Server, username: str, ready: bool = True) -> SignalClient:
    client = SignalClient(server.http, server.url, await server.login(username))
    await client.connect()
    if ready:
        assert (await client.request("agent.state", state="ready"))["state"] in ("ready", "ringing")
    return client


def _states(client: SignalClient) -> list[str]:
    return [m["state"] for m in client.received if m.get("type") == "agent.state"]


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_offer_goes_to_one_agent_decline_passes_it_on(routed: Server) -> None:
    a1 = await _agent(routed, "agent1")
    a2 = await _agent(routed, "agent2")  # ready later: agent1 has idled longest
    (kiosk,) = await _kiosks(routed, 1)
    queued = await kiosk.request("call.start", service_code="SB-001")
    call_id = queued["call"]["call_id"]
    ring = await wait_for(a1, "call.ringing")
    assert ring["call"]["call_id"] == call_id and ring["timeout_s"] == 2.0
    assert "ringing" in _states(a1)
    assert not [m for m in a2.received if m.get("type") == "call.ringing"]
    # Someone else cannot snatch a call offered to agent1.
    with pytest.raises(ClientError) as err:
        await a2.request("call.accept", call_id=call_id)
    assert err.value.code == "conflict"

    await a1.request("call.decline", call_id=call_id)
    assert (await wait_for(a2, "call.ringing"))["call"]["call_id"] == call_id
    assert (await wait_for(a1, "agent.state", pred=lambda m: m["state"] == "ready"))
    # The decliner is not offered it again, even when free.
    with pytest.raises(ClientError) as err:
        await a1.request("call.accept", call_id=call_id)
    assert err.value.code in ("conflict", "forbidden")

    accepted = await a2.request("call.accept", call_id=call_id)
    assert accepted["call"]["agent"]["name"].startswith("李强")
    await wait_for(kiosk, "call.answered")
    await wait_for(a2, "agent.state", pred=lambda m: m["state"] == "in_call")
    for c in (a1, a2, kiosk):
        await c.close()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_unanswered_offer_moves_on_and_sets_the_agent_away(routed: Server) -> None:
    a1 = await _agent(routed, "agent1")
    a2 = await _agent(routed, "agent2")
    (kiosk,) = await _kiosks(routed, 1)
    call_id = await _call(kiosk)
    await wait_for(a1, "call.ringing")
    withdrawn = await wait_for(a1, "call.offer_withdrawn", timeout=6)
    assert withdrawn == {"type": "call.offer_withdrawn", "call_id": call_id,
                         "reason": "missed", "v": 1}
    away = await wait_for(a1, "agent.state", pred=lambda m: m["state"] == "away")
    assert away["reason"] == "missed"
    assert (await wait_for(a2, "call.ringing"))["call"]["call_id"] == call_id
    # The supervisor sees it too.
    board = SignalClient(routed.http, routed.url, await routed.login("super1"))
    await board.connect()
    snap = await board.request("dashboard.subscribe")
    states = {a["name"][:2]: (a["state"], a["reason"]) for a in snap["agents"]}
    assert states["王芳"] == ("away", "missed") and states["李强"] == ("ringing", None)
    for c in (a1, a2, kiosk, board):
        await c.close()


async def test_cancel_stops_the_ringing_and_frees_the_agent(routed: Server) -> None:
    a1 = await _agent(routed, "agent1")
    (kiosk,) = await _kiosks(routed, 1)
    call_id = await _call(kiosk)
    await wait_for(a1, "call.ringing")
    await kiosk.request("call.cancel", call_id=call_id)
    assert (await wait_for(a1, "call.cancelled"))["call_id"] == call_id
    await wait_for(a1, "agent.state", pred=lambda m: m["state"] == "ready")
    for c in (a1, kiosk):
        await c.close()


@pytest.mark.routing(wrap_up_s=1.0)
async def test_wrap_up_then_ready_for_the_next_call(routed: Server) -> None:
    a1 = await _agent(routed, "agent1")
    k1, k2 = await _kiosks(routed, 2)
    first = await _call(k1)
    await wait_for(a1, "call.ringing")
    await a1.request("call.accept", call_id=first)
    second = await _call(k2)
    await a1.request("call.end", call_id=first)
    wrap = await wait_for(a1, "agent.state", pred=lambda m: m["state"] == "wrap_up")
    assert wrap["wrap_up_s"] == 1.0
    # Not offered anything while wrapping up; then ready and offered the waiting call.
    assert not [m for m in a1.received if m.get("type") == "call.ringing"]
    await wait_for(a1, "agent.state", pred=lambda m: m["state"] == "ready", timeout=5)
    assert (await wait_for(a1, "call.ringing", timeout=5))["call"]["call_id"] == second
    for c in (a1, k1, k2):
        await c.close()


@pytest.mark.routing(overflow_s=1.0)
async def test_city_agent_takes_the_overflow(routed: Server) -> None:
    city = await _agent(routed, "agent3")
    (kiosk,) = await _kiosks(routed, 1)
    call_id = await _call(kiosk)
    ring = await wait_for(city, "call.ringing", timeout=6)
    assert ring["call"]["call_id"] == call_id
    # A county agent of another county never gets it.
    (far_kiosk,) = await _kiosks(routed, 1, county="歙县")
    a1 = await _agent(routed, "agent1")
    far_call = (await far_kiosk.request("call.start", service_code="SB-001"))["call"]
    with pytest.raises(ClientError) as err:
        await a1.request("call.accept", call_id=far_call["call_id"])
    assert err.value.code == "forbidden" and "歙县" in err.value.message
    for c in (city, kiosk, far_kiosk, a1):
        await c.close()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_positions_and_estimates_follow_the_queue(routed: Server) -> None:
    a1 = await _agent(routed, "agent1")
    kiosks = await _kiosks(routed, 3)
    first = await kiosks[0].request("call.start", service_code="SB-001")
    ring = await wait_for(a1, "call.ringing")
    await a1.request("call.accept", call_id=ring["call"]["call_id"])
    replies = [await k.request("call.start", service_code="SB-001") for k in kiosks[1:]]
    assert [r["position"] for r in replies] == [1, 2]
    # One agent, busy: half a default handle time for the first, one and a half next.
    assert [r["eta_s"] for r in replies] == [150, 450]
    pushed = await wait_for(kiosks[2], "queue.position",
                            pred=lambda m: m["call_id"] == replies[1]["call"]["call_id"])
    assert pushed["position"] == 2
    # The first waiting caller gives up: the second moves up and is told.
    await kiosks[1].request("call.cancel", call_id=replies[0]["call"]["call_id"])
    moved = await wait_for(kiosks[2], "queue.position", pred=lambda m: m["position"] == 1)
    assert moved["eta_s"] == 150
    # Nobody on duty for a service: no estimate rather than a wrong one.
    await a1.request("call.end", call_id=first["call"]["call_id"])
    await a1.request("agent.state", state="away", reason="lunch")
    (late,) = await _kiosks(routed, 1)
    reply = await late.request("call.start", service_code="SC-001")  # market: agent2 only
    assert reply["eta_s"] is None
    for c in (a1, *kiosks, late):
        await c.close()


@pytest.mark.routing(callback_after_s=0.5)
async def test_long_wait_is_offered_a_callback(routed: Server) -> None:
    (kiosk,) = await _kiosks(routed, 1)
    call_id = await _call(kiosk)
    offer = await wait_for(kiosk, "queue.callback_offer", timeout=5)
    assert offer["call_id"] == call_id
    reply = await kiosk.request("call.callback", call_id=call_id)
    assert reply["call"]["callback"] is True
    # The callback keeps its place; the agent who comes on duty gets it, marked as such.
    a1 = await _agent(routed, "agent1")
    ring = await wait_for(a1, "call.ringing")
    assert ring["call"]["call_id"] == call_id and ring["call"]["callback"] is True
    await a1.request("call.accept", call_id=call_id)
    assert (await wait_for(kiosk, "call.answered"))["call"]["callback"] is True
    # Someone else's call cannot be turned into a callback.
    (other,) = await _kiosks(routed, 1)
    with pytest.raises(ClientError) as err:
        await other.request("call.callback", call_id=call_id)
    assert err.value.code == "forbidden"
    for c in (kiosk, a1, other):
        await c.close()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_pass_reads_the_queue_a_page_at_a_time_and_still_finds_the_call(
        routed: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The routing pass reads waiting calls in pages (keyset on priority, wait, id): the
    one call the agent may take, tenth in line behind nine it declined, two of them
    queued at the same instant as it, is still found -- on the third page of four."""
    monkeypatch.setattr("vwindow.queue_route.PLAN_PAGE", 1)  # one free agent: pages of 4
    kiosks = await _kiosks(routed, 12)
    ids = [await _call(k) for k in kiosks]
    db = routed.services.db
    async with db.session() as s:
        agent_id = (await s.scalars(select(User.id).where(User.username == "agent1"))).one()
        calls = {c.id: c for c in (await s.scalars(select(Call).where(Call.id.in_(ids))))}
        same = calls[ids[7]].queued_at
        for n, call_id in enumerate(ids):
            if n in (8, 9):
                calls[call_id].queued_at = same  # ties broken by id
            if n != 9:
                calls[call_id].excluded = [agent_id]  # as if the agent had declined it
    a1 = await _agent(routed, "agent1")
    ring = await wait_for(a1, "call.ringing")
    assert ring["call"]["call_id"] == ids[9]
    for c in (a1, *kiosks):
        await c.close()


async def test_elderly_caller_goes_first(routed: Server) -> None:
    k1, k2 = await _kiosks(routed, 2)
    first = await k1.request("call.start", service_code="SB-001", birth_date="1990-05-01")
    second = await k2.request("call.start", service_code="SB-001", birth_date="1948-05-01")
    assert second["call"]["priority"] > first["call"]["priority"]
    assert second["position"] == 1
    a1 = await _agent(routed, "agent1")
    ring = await wait_for(a1, "call.ringing")
    assert ring["call"]["call_id"] == second["call"]["call_id"]
    # A malformed birth date is named.
    (k3,) = await _kiosks(routed, 1)
    with pytest.raises(ClientError) as err:
        await k3.request("call.start", service_code="SB-001", birth_date="1948-13-01")
    assert err.value.field == "birth_date" and "1948-13-01" in err.value.message
    for c in (k1, k2, k3, a1):
        await c.close()


def _id_card(birth_date: str) -> dict[str, str]:
    return {"card_type": "resident", "name": "测试", "gender": "male",
            "birth_date": birth_date, "number": "110101194805010018",
            "valid_from": "2020-01-01", "valid_to": "long_term"}


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_id_card_read_while_waiting_moves_an_elderly_caller_up(routed: Server) -> None:
    """The kiosk page does not know the birth date; the ID card swiped while the call
    waits does, and the call moves up once however often the card is read."""
    k1, k2, k3 = await _kiosks(routed, 3)
    first = await k1.request("call.start", service_code="SB-001")
    second = await k2.request("call.start", service_code="SB-001")
    third = await k3.request("call.start", service_code="SB-001")
    calls = {c["call"]["call_id"]: c["call"] for c in (first, second, third)}

    async def swipe(kiosk: SignalClient, queued: dict[str, Any], born: str) -> None:
        case_id = queued["call"]["case_id"]
        async with routed.http.post(
                f"{routed.url}/api/v1/cases/{case_id}/id-reads", json=_id_card(born),
                headers={"Authorization": f"Bearer {kiosk.token}"}) as r:
            assert r.status == 201, await r.text()

    await swipe(k1, first, "1995-03-02")  # young: no change
    for _ in range(2):  # read twice: boosted once
        await swipe(k3, third, "1948-05-01")
    await swipe(k2, second, "1950-00-00")  # a card without a day: no boost, no error
    async with routed.services.db.session() as s:
        rows = {c.id: c for c in (await s.scalars(select(Call).where(
            Call.id.in_(list(calls))))).all()}
        raised = (await s.scalars(select(AuditEntry).where(
            AuditEntry.action == "call.priority_raised"))).all()
    boost = routed.services.config.routing.elderly_boost
    assert rows[third["call"]["call_id"]].priority == boost and rows[
        third["call"]["call_id"]].elderly
    assert [r.priority for r in rows.values()].count(0) == 2
    assert [e.detail["call_id"] for e in raised] == [third["call"]["call_id"]]
    a1 = await _agent(routed, "agent1")
    ring = await wait_for(a1, "call.ringing")
    assert ring["call"]["call_id"] == third["call"]["call_id"]
    # A call already answered is not boosted again; one still waiting is.
    await a1.request("call.accept", call_id=third["call"]["call_id"])
    await swipe(k3, third, "1940-01-01")
    await swipe(k1, first, "1940-01-01")
    async with routed.services.db.session() as s:
        assert (await s.get_one(Call, third["call"]["call_id"])).priority == boost
        assert (await s.get_one(Call, first["call"]["call_id"])).priority == boost
    for c in (k1, k2, k3, a1):
        await c.close()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_transfer_to_a_colleague_with_a_note(routed: Server) -> None:
    a1 = await _agent(routed, "agent1")
    (kiosk,) = await _kiosks(routed, 1)
    call_id = await _call(kiosk)
    await wait_for(a1, "call.ringing")
    accepted = await a1.request("call.accept", call_id=call_id)
    case_id = accepted["call"]["case_id"]
    kiosk_peer = HubPeer(kiosk, call_id, camera_and_mic(320, 240, (0, 0, 255)))
    await kiosk_peer.join()
    a2 = await _agent(routed, "agent2")
    # Who and where are named when wrong; nothing changes.
    for bad, field in (({"to_agent": "nobody"}, "to_agent"), ({"to_queue": "nowhere"},
                                                              "to_queue"),
                       ({"to_agent": "agent2", "to_queue": "market"}, "to_agent")):
        with pytest.raises(ClientError) as err:
            await a1.request("call.transfer", call_id=call_id, note="x", **bad)
        assert err.value.field == field
    with pytest.raises(ClientError) as err:
        await a2.request("call.transfer", call_id=call_id, to_agent="agent1", note="x")
    assert err.value.code == "forbidden"

    note = "群众需补交户口簿，请李强核对参保记录"
    moved = await a1.request("call.transfer", call_id=call_id, to_agent="agent2", note=note)
    assert moved["to"].startswith("李强") and moved["call"]["status"] == "queued"
    assert (await wait_for(kiosk, "call.transferring"))["to"].startswith("李强")
    await wait_for(a1, "agent.state", pred=lambda m: m["state"] == "ready")
    ring = await wait_for(a2, "call.ringing")
    assert ring["call"]["call_id"] == call_id
    assert ring["call"]["transfer_note"]["text"] == note
    assert ring["call"]["transfer_note"]["author_name"].startswith("王芳")
    await a2.request("call.accept", call_id=call_id)
    answered = await wait_for(kiosk, "call.answered",
                              pred=lambda m: m["call"]["agent"]["name"].startswith("李强"))
    assert answered["call"]["status"] == "live"
    # The kiosk never left the session: the new agent sees its camera at once.
    agent2_peer = HubPeer(a2, call_id, camera_and_mic(320, 240, (255, 0, 0)))
    await agent2_peer.join()
    await first_frame(agent2_peer, "camera", "kiosk")
    # The note is on the case for whoever works on it later.
    async with routed.http.get(f"{routed.url}/api/v1/cases/{case_id}",
                               headers={"Authorization": f"Bearer {a2.token}"}) as r:
        case = await r.json()
    assert [(n["kind"], n["text"]) for n in case["notes"]] == [("transfer", note)]
    # The first agent is no longer on the case's call.
    with pytest.raises(ClientError):
        await a1.request("chat.send", call_id=call_id, text="还在吗")
    for peer in (kiosk_peer, agent2_peer):
        await peer.close()
    for c in (a1, a2, kiosk):
        await c.close()


async def test_transfer_to_a_department_queue(routed: Server) -> None:
    a1 = await _agent(routed, "agent1")
    (kiosk,) = await _kiosks(routed, 1)
    call_id = await _call(kiosk)
    await wait_for(a1, "call.ringing")
    await a1.request("call.accept", call_id=call_id)
    a2 = await _agent(routed, "agent2")  # the only one with the market skill
    await a1.request("call.transfer", call_id=call_id, to_queue="market",
                     note="群众实际要办个体户登记")
    ring = await wait_for(a2, "call.ringing")
    assert ring["call"]["call_id"] == call_id
    await a2.request("call.accept", call_id=call_id)
    await wait_for(kiosk, "call.answered")
    for c in (a1, a2, kiosk):
        await c.close()


async def test_ready_with_a_call_waiting_is_answered_ringing(routed: Server) -> None:
    kiosk = SignalClient(routed.http, routed.url, await routed.kiosk_token())
    await kiosk.connect()
    call_id = (await kiosk.request("call.start", service_code="SB-001"))["call"]["call_id"]
    agent = SignalClient(routed.http, routed.url, await routed.login("agent1"))
    await agent.connect()
    try:
        reply = await agent.request("agent.state", state="ready")
        # The offer came with the answer to "ready", not from a routing pass after it.
        assert reply["state"] == "ringing"
        rung = [m for m in agent.received if m.get("type") == "call.ringing"]
        assert [m["call"]["call_id"] for m in rung] == [call_id]
        states = [m["state"] for m in agent.received if m.get("type") == "agent.state"]
        assert states[-1] == "ringing"
    finally:
        await agent.close()
        await kiosk.close()
