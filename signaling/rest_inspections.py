"""REST ``/api/v1`` for remote site inspections (远程踏勘).

The agent creates an inspection in a live call and gets the one-time link and QR code
for the surveyor's phone; ticks the checklist; saves annotated copies of evidence;
closes it with a conclusion, which builds the PDF report into the case.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import segno
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
    read_limited,
)
from signaling.services import SERVICES, Services
from vwindow.auth import Principal
from vwindow.errors import ValidationError
from vwindow.inspections import InspectionView, ItemState
from vwindow.models import Role
from vwindow.uploads import check_content
from vwindow.validation import MAX_DB_ID

routes = web.RouteTableDef()

STAFF = (Role.AGENT, Role.SUPERVISOR)
MAX_ANNOTATED = 10 * 1024 * 1024


class InspectionBody(_Body):
    call_id: int = Field(ge=1, le=MAX_DB_ID)
    site_address: str = Field(default="", max_length=200)
    site_lat: float | None = Field(default=None, ge=-90, le=90)
    site_lon: float | None = Field(default=None, ge=-180, le=180)


class ItemBody(_Body):
    state: ItemState
    note: str = Field(default="", max_length=500)
    evidence: list[int] = Field(default_factory=list, max_length=50)


class CloseBody(_Body):
    conclusion: str = Field(min_length=1, max_length=4000)


async def _inspection(request: web.Request, principal: Principal) -> InspectionView:
    services = request.app[SERVICES]
    view = await services.inspections.get(_int_param(request, "inspection_id"))
    await services.cases.check_case_access(principal, view.case_id)
    return view


async def _push(services: Services, view: InspectionView) -> None:
    await services.switchboard.case_event(view.case_id, {
        "type": "inspection.updated", "case_id": view.case_id,
        "inspection": view.model_dump(mode="json")})


_allow("POST", "/api/v1/cases/{case_id}/inspections", (Role.AGENT,))


@routes.post("/api/v1/cases/{case_id}/inspections")
async def create_inspection(request: web.Request) -> web.Response:
    services, principal, case_id = await case_request(request, (Role.AGENT,))
    body = await _json_body(request, InspectionBody)
    # The link first: it checks that this agent holds the live call.
    code, link = await services.cases.create_surveyor_link(
        principal, case_id, body.call_id, services.config.auth.surveyor_link_ttl_s)
    view = await services.inspections.create(
        principal, case_id, body.call_id, site_address=body.site_address,
        site_lat=body.site_lat, site_lon=body.site_lon)
    await services.inspections.link(link.id, view.id)
    path = f"/surveyor/#code={code}"
    base = services.config.server.public_url or f"{request.scheme}://{request.host}"
    qr = segno.make_qr(base + path, error="m").svg_inline(scale=4, title="踏勘链接 " + view.number)
    await _push(services, view)
    return web.json_response({"inspection": view.model_dump(mode="json"), "url": path,
                              "qr_svg": qr, "expires_at": link.expires_at.isoformat()},
                             status=201)


_allow("GET", "/api/v1/inspections/{inspection_id}", STAFF)


@routes.get("/api/v1/inspections/{inspection_id}")
async def get_inspection(request: web.Request) -> web.Response:
    view = await _inspection(request, _principal(request, STAFF))
    return web.json_response(view.model_dump(mode="json"))


_allow("GET", "/api/v1/cases/{case_id}/inspections", STAFF_AND_KIOSK)


@routes.get("/api/v1/cases/{case_id}/inspections")
async def list_inspections(request: web.Request) -> web.Response:
    services, _who, case_id = await case_request(request, STAFF_AND_KIOSK)
    return web.json_response([v.model_dump(mode="json")
                              for v in await services.inspections.for_case(case_id)])


_allow("PUT", "/api/v1/inspections/{inspection_id}/items/{key}", (Role.AGENT,))


@routes.put("/api/v1/inspections/{inspection_id}/items/{key}")
async def tick_item(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, (Role.AGENT,))
    view = await _inspection(request, principal)
    body = await _json_body(request, ItemBody)
    key = request.match_info["key"]
    if not 1 <= len(key) <= 40:
        raise ValidationError(f"checklist key {key[:40]!r} is malformed", field="key")
    view = await services.inspections.tick(principal, view.id, key, body.state, body.note,
                                           body.evidence)
    await _push(services, view)
    return web.json_response(view.model_dump(mode="json"))


_allow("POST", "/api/v1/inspections/{inspection_id}/evidence/{material_id}/annotated",
       (Role.AGENT,))


@routes.post("/api/v1/inspections/{inspection_id}/evidence/{material_id}/annotated")
async def annotated_copy(request: web.Request) -> web.Response:
    """The agent's drawing (arrows, circles, text) over an evidence picture, as a copy."""
    services = request.app[SERVICES]
    principal = _principal(request, (Role.AGENT,))
    view = await _inspection(request, principal)
    original = _int_param(request, "material_id")
    source = next((e for e in view.evidence if e.material_id == original), None)
    if source is None:
        raise ValidationError(f"material {original} is not evidence of inspection "
                              f"{view.number}", field="material_id")
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type not in ("image/jpeg", "image/png"):
        raise ValidationError("an annotated copy is image/jpeg or image/png",
                              field="content_type")
    data = await read_limited(request, MAX_ANNOTATED, what="annotated image")
    check_content(data[:16], content_type)
    sha = await services.store.put(data)
    ext = "jpg" if content_type == "image/jpeg" else "png"
    material, new = await services.cases.add_material(
        principal, view.case_id, sha256=sha, size=len(data), content_type=content_type,
        filename=f"evidence-{view.number}-{original}-annotated.{ext}", source="surveyor",
        call_id=view.call_id, kind="snapshot")
    position = {"lat": source.lat, "lon": source.lon, "accuracy": source.accuracy}
    evidence = await services.inspections.add_evidence(view.id, material.id, position,
                                                       annotated_from=original)
    if new:
        await services.switchboard.material_added(view.call_id, material)
    await _push(services, await services.inspections.get(view.id))
    return web.json_response({"material": material.model_dump(mode="json"),
                              "evidence": evidence.model_dump(mode="json")}, status=201)


_allow("POST", "/api/v1/inspections/{inspection_id}/close", (Role.AGENT,))


@routes.post("/api/v1/inspections/{inspection_id}/close")
async def close_inspection(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, (Role.AGENT,))
    view = await _inspection(request, principal)
    body = await _json_body(request, CloseBody)
    facts = await services.inspections.facts(view.id)
    images = {sha: await services.store.get(sha) for _, sha in facts.evidence_files}
    # Imported here: the PDF library is ~35 MB of every node's memory, for a rare request.
    from vwindow.inspection_report import build_report

    pdf = await asyncio.to_thread(build_report, facts, body.conclusion, images,
                                  generated_at=datetime.now(UTC))
    sha = await services.store.put(pdf)
    material, new = await services.cases.add_material(
        principal, view.case_id, sha256=sha, size=len(pdf), content_type="application/pdf",
        filename=f"踏勘报告-{view.number}.pdf", source="surveyor", call_id=view.call_id,
        kind="document")
    closed = await services.inspections.close(principal, view.id, body.conclusion,
                                              material.id, sha)
    if new:
        await services.switchboard.material_added(view.call_id, material)
    await _push(services, closed)
    return web.json_response({"inspection": closed.model_dump(mode="json"),
                              "report": material.model_dump(mode="json"),
                              "sha256": hashlib.sha256(pdf).hexdigest()})
