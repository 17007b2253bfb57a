"""Appointments (预约办): the agent books the caller into a hall's window slot, the kiosk
sees the code, the hall looks it up with the case's materials; capacity holds under
concurrent booking and a case holds one booking — SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from signaling.client import ClientError, SignalClient
from tests.conftest import Server
from tests.helpers import answered_call, wait_for


async def _req(server: Server, method: str, path: str, token: str,
               body: Any = None) -> tuple[int, Any]:
    async with server.http.request(method, f"{server.url}/api/v1{path}", json=body,
                                   headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


async def _live_call(server: Server) -> tuple[SignalClient, SignalClient, int, int]:
    return await answered_call(server, "SB-001")


async def _slot(server: Server, capacity: int, service: str | None = None) -> int:
    start = datetime.now(UTC) + timedelta(days=2)
    status, slot = await _req(server, "POST", "/appointment-slots",
                              await server.login("super1"),
                              {"hall": "黄山区政务服务中心 3 号窗口",
                               "starts_at": start.isoformat(),
                               "ends_at": (start + timedelta(hours=1)).isoformat(),
                               "capacity": capacity, "service": service})
    assert status == 201, slot
    return int(slot["id"])


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_book_show_code_look_up_cancel(server: Server) -> None:
    kiosk, agent, _, case_id = await _live_call(server)
    # The demo's hall slots are offered for the call's service.
    status, slots = await _req(server, "GET", "/appointment-slots?service=SB-001",
                               agent.token)
    assert status == 200 and slots and all(s["free"] > 0 for s in slots)
    slot_id = await _slot(server, capacity=2, service="SB-001")

    status, booking = await _req(server, "POST", f"/cases/{case_id}/appointments",
                                 agent.token, {"slot_id": slot_id})
    assert status == 201, booking
    code = booking["code"]
    assert len(code) == 8 and booking["qr_svg"].startswith("<svg")
    assert booking["slot"]["free"] == 1 and booking["case_id"] == case_id
    pushed = await wait_for(kiosk, "appointment.booked")
    assert pushed["appointment"]["code"] == code
    # One booking per case.
    status, err = await _req(server, "POST", f"/cases/{case_id}/appointments", agent.token,
                             {"slot_id": slot_id})
    assert status == 409 and err["error"]["field"] == "case_id"
    # The hall finds it by code (as read out: lower case, with a dash) with the materials.
    hall = await server.login("agent2")
    status, found = await _req(server, "GET", f"/appointments/{code[:4].lower()}-{code[4:]}",
                               hall)
    assert status == 200 and found["case_number"] == booking["case_number"]
    assert "materials" in found and found["status"] == "booked"
    status, err = await _req(server, "GET", "/appointments/NOTACODE1", hall)
    assert status == 400 and err["error"]["field"] == "code"
    status, err = await _req(server, "GET", "/appointments/ABCDEFGH", hall)
    assert status == 404
    # Not for kiosks to browse, nor for anonymous callers.
    status, _ = await _req(server, "GET", f"/appointments/{code}", kiosk.token)
    assert status == 401
    # Cancelling frees the place, and the case may book again.
    status, cancelled = await _req(server, "POST", f"/appointments/{code}/cancel", agent.token)
    assert status == 200 and cancelled["status"] == "cancelled"
    assert cancelled["slot"]["free"] == 2
    status, again = await _req(server, "POST", f"/cases/{case_id}/appointments", agent.token,
                               {"slot_id": slot_id})
    assert status == 201 and again["code"] != code
    for c in (kiosk, agent):
        await c.close()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_full_slot_takes_no_more_even_at_once(server: Server) -> None:
    slot_id = await _slot(server, capacity=1)
    cases = []
    for _ in range(4):
        kiosk, agent, call_id, case_id = await _live_call(server)
        cases.append((agent, case_id))
        await agent.request("call.end", call_id=call_id)
        await kiosk.close()
    supervisor = await server.login("super1")
    # The supervisor may book any case (all four at the same moment): one place, one wins.
    results = await asyncio.gather(*(
        _req(server, "POST", f"/cases/{case_id}/appointments", supervisor,
             {"slot_id": slot_id}) for _, case_id in cases))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409, 409, 409], results
    assert all("full" in body["error"]["message"] for status, body in results
               if status == 409)
    for agent, _ in cases:
        await agent.close()


async def test_bad_bookings_are_named(server: Server) -> None:
    kiosk, agent, _, case_id = await _live_call(server)
    land_slot = await _slot(server, capacity=3, service="GT-001")
    for body, status, field in (({"slot_id": 999999}, 404, "slot_id"),
                                ({"slot_id": land_slot}, 400, "slot_id"),
                                ({"slot": 1}, 400, "slot_id"),
                                ({"slot_id": -1}, 400, "slot_id")):
        got, err = await _req(server, "POST", f"/cases/{case_id}/appointments", agent.token,
                              body)
        assert (got, err["error"].get("field")) == (status, field), err
    # Another agent, not on the case, cannot book it.
    other = await server.login("agent2")
    got, _ = await _req(server, "POST", f"/cases/{case_id}/appointments", other,
                        {"slot_id": land_slot})
    assert got == 403
    # A slot that ends before it starts, or a capacity of 0.
    start = datetime.now(UTC) + timedelta(days=1)
    got, err = await _req(server, "POST", "/appointment-slots", await server.login("super1"),
                          {"hall": "x", "starts_at": start.isoformat(),
                           "ends_at": (start - timedelta(hours=1)).isoformat(),
                           "capacity": 0})
    assert got == 400 and err["error"]["field"] == "capacity"
    got, err = await _req(server, "POST", "/appointment-slots", await server.login("super1"),
                          {"hall": "x", "starts_at": start.isoformat(),
                           "ends_at": (start - timedelta(hours=1)).isoformat(),
                           "capacity": 1})
    assert got == 400 and err["error"]["field"] == "ends_at"
    for c in (kiosk, agent):
        await c.close()


async def test_appointment_holder_is_served_first(server: Server) -> None:
    kiosk, agent, call_id, case_id = await _live_call(server)
    slot_id = await _slot(server, capacity=2)
    _, booking = await _req(server, "POST", f"/cases/{case_id}/appointments", agent.token,
                            {"slot_id": slot_id})
    await agent.request("call.end", call_id=call_id)
    # The holder calls again (say, to ask about the visit) with the code: priority.
    holder = await kiosk.request("call.start", service_code="SB-001",
                                 booking_code=booking["code"])
    assert holder["call"]["priority"] == server.services.config.routing.appointment_boost > 0
    await kiosk.request("call.cancel", call_id=holder["call"]["call_id"])
    for code, field in (("NOTACODE1", "booking_code"), ("ABCDEFGH", "booking_code")):
        with pytest.raises(ClientError) as err:
            await kiosk.request("call.start", service_code="SB-001", booking_code=code)
        assert err.value.field == field
    for c in (kiosk, agent):
        await c.close()
