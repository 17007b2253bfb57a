"""REST ``/api/v1`` for a case's lifecycle and the service catalog.

- ``GET /cases/{id}/flow``: status, the moves this caller may make, situation questions
  and answers, the material checklist and the SLA clocks (computed on read);
- ``POST /cases/{id}/transitions``, ``PUT /cases/{id}/answers``,
  ``POST /materials/{id}/tag``: the agent on the case or a supervisor (back office);
- ``GET /catalog/search?q=``: colloquial search (智能搜索) for kiosks and staff;
- ``GET /catalog/export.json|csv`` and ``POST /catalog/import``: supervisors.

``install(app)`` adds the routes and the app's ``CatalogIndex`` (one search index per
node, rebuilt after an import).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

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
from vwindow.case_flow import CaseFlow
from vwindow.catalog import (
    CatalogFormatError,
    CatalogItem,
    items_csv,
    items_json,
    parse_csv,
    parse_items,
)
from vwindow.catalog_store import CatalogIndex, stored_items, upsert_items
from vwindow.errors import ForbiddenError, ValidationError
from vwindow.models import Role

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

CATALOG_INDEX = web.AppKey("catalog_index", CatalogIndex)
STAFF = (Role.AGENT, Role.SUPERVISOR)
MAX_QUERY = 100
MAX_IMPORT_BYTES = 8 * 1024 * 1024


def install(app: web.Application) -> None:
    """Add the routes and the catalog search index; call before the static catch-all."""
    app.add_routes(routes)
    app[CATALOG_INDEX] = CatalogIndex(app[SERVICES].db)


def _flow(services: Services) -> CaseFlow:
    return CaseFlow(services.db, services.config.sla)


class TransitionBody(_Body):
    to: str = Field(min_length=1, max_length=24)
    reason: str | None = Field(default=None, max_length=1000)
    override: bool = False
    """Complete although materials are missing (needs a reason; audited)."""


class AnswersBody(_Body):
    answers: dict[str, str] = Field(max_length=50)


class TagBody(_Body):
    material_type: str | None = Field(min_length=1, max_length=64)
    """A material key of the case's item; null removes the tag."""


async def _flow_reply(request: web.Request, principal: Principal, case_id: int,
                      status: int = 200) -> web.Response:
    view = await _flow(request.app[SERVICES]).view(principal, case_id)
    return web.json_response(view.model_dump(mode="json"), status=status)


async def _staff_on_case(services: Services, principal: Principal, case_id: int) -> None:
    await services.cases.check_case_access(principal, case_id)
    if principal.role not in STAFF:
        raise ForbiddenError("only staff change a case", field="case_id")


# -- the case's lifecycle ---------------------------------------------------------------

_allow("GET", "/api/v1/cases/{case_id}/flow", STAFF_AND_KIOSK)


@routes.get("/api/v1/cases/{case_id}/flow")
async def case_flow(request: web.Request) -> web.Response:
    _, principal, case_id = await case_request(request, STAFF_AND_KIOSK)
    return await _flow_reply(request, principal, case_id)


_allow("POST", "/api/v1/cases/{case_id}/transitions", STAFF)


@routes.post("/api/v1/cases/{case_id}/transitions")
async def transition(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, STAFF)
    case_id = _int_param(request, "case_id")
    await _staff_on_case(services, principal, case_id)
    body = await _json_body(request, TransitionBody)
    await _flow(services).transition(principal, case_id, body.to, body.reason, body.override)
    services.switchboard.changed()
    await services.switchboard.case_event(case_id, {"type": "case.status", "case_id": case_id,
                                                    "status": body.to})
    return await _flow_reply(request, principal, case_id)


_allow("PUT", "/api/v1/cases/{case_id}/answers", STAFF)


@routes.put("/api/v1/cases/{case_id}/answers")
async def answers(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, STAFF)
    case_id = _int_param(request, "case_id")
    await _staff_on_case(services, principal, case_id)
    body = await _json_body(request, AnswersBody)
    await _flow(services).set_answers(principal, case_id, body.answers)
    return await _flow_reply(request, principal, case_id)


_allow("POST", "/api/v1/materials/{material_id}/tag", STAFF)


@routes.post("/api/v1/materials/{material_id}/tag")
async def tag_material(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, STAFF)
    material = await services.cases.get_material(_int_param(request, "material_id"))
    await _staff_on_case(services, principal, material.case_id)
    body = await _json_body(request, TagBody)
    case_id = await _flow(services).tag_material(principal, material.id, body.material_type)
    return await _flow_reply(request, principal, case_id)


# -- the catalog ---------------------------------------------------------------------------

_allow("GET", "/api/v1/catalog/search", STAFF_AND_KIOSK)


@routes.get("/api/v1/catalog/search")
async def catalog_search(request: web.Request) -> web.Response:
    _principal(request, STAFF_AND_KIOSK)
    query = request.query.get("q", "").strip()
    if len(query) > MAX_QUERY:
        raise ValidationError(f"q is {len(query)} characters, at most {MAX_QUERY}", field="q")
    raw_limit = request.query.get("limit", "8")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 50:
        raise ValidationError(f"limit must be 1..50, got {raw_limit[:10]!r}", field="limit")
    hits = await request.app[CATALOG_INDEX].search(query, int(raw_limit)) if query else []
    return web.json_response({"query": query, "hits": [
        {"code": item.code, "name": item.name, "department": item.department,
         "category": item.category, "instant_approval": item.instant_approval,
         "score": hit.score, "matched_terms": list(hit.matched_terms)}
        for hit, item in hits]})


_allow("GET", "/api/v1/catalog/export.json", (Role.SUPERVISOR,))


@routes.get("/api/v1/catalog/export.json")
async def export_json(request: web.Request) -> web.Response:
    _principal(request, (Role.SUPERVISOR,))
    items = await stored_items(request.app[SERVICES].db)
    return web.Response(text=items_json(items), content_type="application/json",
                        charset="utf-8", headers=_attachment("catalog.json"))


_allow("GET", "/api/v1/catalog/export.csv", (Role.SUPERVISOR,))


@routes.get("/api/v1/catalog/export.csv")
async def export_csv(request: web.Request) -> web.Response:
    _principal(request, (Role.SUPERVISOR,))
    items = await stored_items(request.app[SERVICES].db)
    # With a byte-order mark: spreadsheet programs on Chinese Windows need it (catalog.py).
    return web.Response(body=items_csv(items).encode("utf-8-sig"),
                        content_type="text/csv", charset="utf-8",
                        headers=_attachment("catalog.csv"))


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store"}


_allow("POST", "/api/v1/catalog/import", (Role.SUPERVISOR,))


@routes.post("/api/v1/catalog/import")
async def import_catalog(request: web.Request) -> web.Response:
    """A JSON list of items or a CSV file; every item is checked before any is stored."""
    services = request.app[SERVICES]
    principal = _principal(request, (Role.SUPERVISOR,))
    kind = _import_kind(request.headers.get("Content-Type", ""))
    raw = await read_limited(request, MAX_IMPORT_BYTES, what="catalog file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CatalogFormatError(f"the catalog file is not UTF-8 (byte {err.start}); save it "
                                 "as UTF-8 CSV", field="body") from err
    items = _parse(kind, text)
    if not items:
        raise CatalogFormatError("the catalog file has no items", field="body")
    async with services.db.session() as s:
        result = await upsert_items(s, items, principal.key)
    request.app[CATALOG_INDEX].invalidate()
    logger.info("catalog imported by %s: %d items", principal.role.value, len(items))
    return web.json_response({"items": len(items), "created": result.created,
                              "updated": result.updated, "unchanged": result.unchanged})


def _import_kind(content_type: str) -> Literal["json", "csv"]:
    mime = content_type.split(";")[0].strip().lower()
    if mime == "application/json":
        return "json"
    if mime in ("text/csv", "application/csv"):
        return "csv"
    raise ValidationError(f"Content-Type must be application/json or text/csv, got "
                          f"{mime[:60]!r}", field="Content-Type")


def _parse(kind: Literal["json", "csv"], text: str) -> list[CatalogItem]:
    if kind == "csv":
        return parse_csv(text, "upload")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise CatalogFormatError(f"upload: not JSON: line {err.lineno} column {err.colno}: "
                                 f"{err.msg}", field="body") from err
    return parse_items(data, "upload")
