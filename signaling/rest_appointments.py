"""REST ``/api/v1`` for appointments (预约办): slots, bookings, look-up by code at the hall."""

from __future__ import annotations

from datetime import datetime

import segno
from aiohttp import web
from pydantic import Field

from signaling.rest import STAFF_AND_KIOSK, _allow, _Body, _int_param, _json_body, _principal
from signaling.services import SERVICES
from vwindow.appointments import AppointmentView
from vwindow.models import Role
from vwindow.validation import MAX_DB_ID

routes = web.RouteTableDef()

STAFF = (Role.AGENT, Role.SUPERVISOR)


class SlotBody(_Body):
    hall: str = Field(min_length=1, max_length=100)
    starts_at: datetime
    ends_at: datetime
    capacity: int = Field(ge=1, le=500)
    service: str | None = Field(default=None, min_length=1, max_length=64)


class BookingBody(_Body):
    slot_id: int = Field(ge=1, le=MAX_DB_ID)


def _with_qr(view: AppointmentView) -> dict[str, object]:
    body = view.model_dump(mode="json")
    body["qr_svg"] = segno.make(view.code, error="m").svg_inline(scale=6,
                                                                 title="预约码 " + view.code)
    return body


_allow("GET", "/api/v1/appointment-slots", STAFF_AND_KIOSK)


@routes.get("/api/v1/appointment-slots")
async def list_slots(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    _principal(request, STAFF_AND_KIOSK)
    service = request.query.get("service") or None
    slots = await services.appointments.slots(service)
    return web.json_response([s.model_dump(mode="json") for s in slots])


_allow("POST", "/api/v1/appointment-slots", (Role.SUPERVISOR,))


@routes.post("/api/v1/appointment-slots")
async def add_slot(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, (Role.SUPERVISOR,))
    body = await _json_body(request, SlotBody)
    slot = await services.appointments.add_slot(principal, body.hall, body.starts_at,
                                                body.ends_at, body.capacity, body.service)
    return web.json_response(slot.model_dump(mode="json"), status=201)


BOOKERS = (Role.AGENT, Role.KIOSK, Role.SUPERVISOR)
_allow("POST", "/api/v1/cases/{case_id}/appointments", BOOKERS)


@routes.post("/api/v1/cases/{case_id}/appointments")
async def book(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, BOOKERS)
    case_id = _int_param(request, "case_id")
    body = await _json_body(request, BookingBody)
    view = await services.appointments.book(principal, case_id, body.slot_id)
    reply = _with_qr(view)
    # The citizen at the kiosk sees the booking code at once, to photograph or print.
    await services.switchboard.case_event(case_id, {"type": "appointment.booked",
                                                    "case_id": case_id, "appointment": reply})
    return web.json_response(reply, status=201)


_allow("GET", "/api/v1/appointments/{code}", STAFF)


@routes.get("/api/v1/appointments/{code}")
async def find(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    _principal(request, STAFF)
    view = await services.appointments.find(request.match_info["code"])
    return web.json_response(_with_qr(view))


_allow("POST", "/api/v1/appointments/{code}/cancel", STAFF)


@routes.post("/api/v1/appointments/{code}/cancel")
async def cancel(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, STAFF)
    view = await services.appointments.cancel(principal, request.match_info["code"])
    return web.json_response(view.model_dump(mode="json"))
