"""REST ``/api/v1`` for what the kiosk's readers send: ID-card reads and scanned codes.

The kiosk's device agent posts them into the case of its live call; the agents in the
call see them at once (pushed as ``case.idread`` / ``case.code``). The full ID number
comes back only through ``POST /id-reads/{id}/reveal``, which is audited.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from signaling.rest import (
    STAFF_AND_KIOSK,
    _allow,
    _Body,
    _int_param,
    _json_body,
    _principal,
    case_request,
)
from signaling.services import SERVICES, Services
from vwindow.errors import ValidationError
from vwindow.models import Role
from vwindow.readings import IdReadIn
from vwindow.validation import MAX_DB_ID

routes = web.RouteTableDef()


class CodeBody(_Body):
    text: str = Field(min_length=1, max_length=4096)
    symbology: str = Field(default="QRCODE", min_length=1, max_length=32)
    source: str = Field(pattern=r"^(scanner-evdev|scanner-serial|scanner-sim|doccam|agent)$")
    call_id: int | None = Field(default=None, ge=1, le=MAX_DB_ID)


class IdReadBody(IdReadIn, _Body):
    """:class:`IdReadIn` as a request body."""


class RevealBody(_Body):
    reason: str = Field(default="核验身份", min_length=1, max_length=200)


async def _check_call(services: Services, case_id: int, call_id: int | None) -> None:
    if call_id is not None:
        call = await services.cases.get_call(call_id)
        if call.case_id != case_id:
            raise ValidationError(f"call {call_id} is not on case {case_id}", field="call_id")


_allow("POST", "/api/v1/cases/{case_id}/id-reads", (Role.KIOSK,))


@routes.post("/api/v1/cases/{case_id}/id-reads")
async def add_id_read(request: web.Request) -> web.Response:
    services, principal, case_id = await case_request(request, (Role.KIOSK,))
    body = await _json_body(request, IdReadBody)
    await _check_call(services, case_id, body.call_id)
    view = await services.readings.add_id_read(principal, case_id, body)
    await services.switchboard.id_read(case_id, body.birth_date)
    payload = view.model_dump(mode="json")
    await services.switchboard.case_event(case_id, {"type": "case.idread", "case_id": case_id,
                                                    "read": payload})
    return web.json_response(payload, status=201)


_allow("POST", "/api/v1/id-reads/{id_read_id}/reveal", (Role.AGENT,))


@routes.post("/api/v1/id-reads/{id_read_id}/reveal")
async def reveal_id_read(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, (Role.AGENT,))
    row = await services.readings.get_id_read(_int_param(request, "id_read_id"))
    await services.cases.check_case_access(principal, row.case_id)
    body = await _json_body(request, RevealBody)
    revealed = await services.readings.reveal(principal, row, body.reason)
    return web.json_response(revealed, headers={"Cache-Control": "no-store"})


_allow("POST", "/api/v1/cases/{case_id}/codes", (Role.KIOSK, Role.AGENT))


@routes.post("/api/v1/cases/{case_id}/codes")
async def add_code(request: web.Request) -> web.Response:
    services, principal, case_id = await case_request(request, (Role.KIOSK, Role.AGENT))
    body = await _json_body(request, CodeBody)
    await _check_call(services, case_id, body.call_id)
    view = await services.readings.add_code(principal, case_id, text=body.text,
                                            symbology=body.symbology, source=body.source,
                                            call_id=body.call_id)
    payload = view.model_dump(mode="json")
    await services.switchboard.case_event(case_id, {"type": "case.code", "case_id": case_id,
                                                    "code": payload})
    return web.json_response(payload, status=201)


_allow("GET", "/api/v1/cases/{case_id}/codes", STAFF_AND_KIOSK)


@routes.get("/api/v1/cases/{case_id}/codes")
async def list_codes(request: web.Request) -> web.Response:
    services, _who, case_id = await case_request(request, STAFF_AND_KIOSK)
    return web.json_response([c.model_dump(mode="json")
                              for c in await services.readings.codes(case_id)])
