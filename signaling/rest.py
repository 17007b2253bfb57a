"""REST ``/api/v1``: logins, catalog, cases, materials, ratings, surveyor links."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import segno
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from signaling.protocol import WS_PATH
from signaling.ratelimit import LOGIN_LIMITER
from signaling.services import SERVICES, Services
from vwindow import accounts
from vwindow.auth import Principal
from vwindow.case_flow import CaseFlow
from vwindow.db import infrastructure_error
from vwindow.enrolment import Enrolment
from vwindow.errors import (
    AuthError,
    NotFoundError,
    TooLargeError,
    ValidationError,
    VWindowError,
)
from vwindow.models import Role
from vwindow.uploads import UploadSpec, check_type
from vwindow.validation import MAX_DB_ID, describe

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

# Route → roles allowed; the authorisation test walks this table.
ROUTE_ROLES: dict[tuple[str, str], tuple[Role, ...] | None] = {}


def _allow(method: str, path: str, roles: tuple[Role, ...] | None) -> None:
    ROUTE_ROLES[(method, path)] = roles


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class KioskLoginBody(_Body):
    kiosk_code: str = Field(min_length=1, max_length=64)
    device_key: str = Field(min_length=1, max_length=256)


class SurveyorBody(_Body):
    code: str = Field(min_length=8, max_length=128)


class RatingBody(_Body):
    stars: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=1000)


class SurveyorLinkBody(_Body):
    call_id: int = Field(ge=1, le=MAX_DB_ID)


_B = TypeVar("_B", bound=_Body)


def error_response(err: VWindowError) -> web.Response:
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.field:
        body["field"] = err.field
    body.update(err.details())
    return web.json_response({"error": body}, status=err.http_status)


@web.middleware
def error_middleware(request: web.Request, handler: Any) -> Awaitable[web.StreamResponse]:
    if request.path == WS_PATH:
        # The socket answers its errors itself. Returning its handler's coroutine instead
        # of awaiting it keeps this middleware's frame off the stack for the socket's
        # whole life (~0.35 KiB of every idle connection).
        return cast(Awaitable[web.StreamResponse], handler(request))
    return _answer_errors(request, handler)


async def _answer_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except VWindowError as err:
        return error_response(err)
    except web.HTTPException:
        raise
    except Exception as exc:
        if (known := infrastructure_error(exc)) is not None:
            logger.warning("%s %s: %s (%s)", request.method, request.path, known.code,
                           type(exc).__name__)
            return error_response(known)
        logger.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": {"code": "internal", "message":
                                            "the server could not handle this request; "
                                            "it has been logged"}}, status=500)


async def _json_body(request: web.Request, model: type[_B]) -> _B:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise TooLargeError("request body is too large") from err
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValidationError(f"body is not valid JSON: {err}") from err
    try:
        return model.model_validate(data)
    except PydanticValidationError as err:
        where, text = describe(err, where="body")
        raise ValidationError(text, field=where) from err


def _principal(request: web.Request, roles: tuple[Role, ...]) -> Principal:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise AuthError("missing 'Authorization: Bearer <token>' header")
    return request.app[SERVICES].tokens.verify(header[7:].strip(), roles)


async def case_request(request: web.Request,
                       roles: tuple[Role, ...]) -> tuple[Services, Principal, int]:
    """The services, the caller (one of ``roles``) and the path's ``case_id``, once the
    caller has been checked to be allowed on that case."""
    services = request.app[SERVICES]
    principal = _principal(request, roles)
    case_id = _int_param(request, "case_id")
    await services.cases.check_case_access(principal, case_id)
    return services, principal, case_id


_ID = re.compile(r"[0-9]{1,15}")


def _parse_id(raw: str, name: str) -> int:
    if not _ID.fullmatch(raw) or not 1 <= int(raw) <= MAX_DB_ID:
        raise ValidationError(f"{name} must be a number from 1 to {MAX_DB_ID}, got "
                              f"{raw[:20]!r}", field=name)
    return int(raw)


def _int_param(request: web.Request, name: str) -> int:
    return _parse_id(request.match_info[name], name)


def _token_reply(token: str, role: Role, name: str, exp: int,
                 **extra: Any) -> web.Response:
    return web.json_response({"token": token, "role": role.value, "name": name,
                              "expires_at": exp, **extra})


# -- auth ----------------------------------------------------------------------------

_T = TypeVar("_T")


async def _limited(request: web.Request, account: str,
                   attempt: Callable[[], Awaitable[_T]]) -> _T:
    """Run a credential check unless this account or address failed too often lately."""
    limiter = request.app[LOGIN_LIMITER]
    limiter.check(request.remote, account)
    try:
        result = await attempt()
    except AuthError:
        limiter.failed(request.remote, account)
        raise
    limiter.succeeded(account)
    return result


_allow("POST", "/api/v1/auth/login", None)


@routes.post("/api/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await _json_body(request, LoginBody)
    user = await _limited(request, f"user:{body.username}", lambda: accounts.login_user(
        services.db, body.username, body.password))
    role = Role(user.role)
    token, exp = services.tokens.issue(role, str(user.id), user.display_name,
                                       services.config.auth.token_ttl_s)
    return _token_reply(token, role, user.display_name, exp)


_allow("POST", "/api/v1/auth/kiosk", None)


@routes.post("/api/v1/auth/kiosk")
async def kiosk_login(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await _json_body(request, KioskLoginBody)
    kiosk = await _limited(request, f"kiosk:{body.kiosk_code}", lambda: accounts.login_kiosk(
        services.db, body.kiosk_code, body.device_key))
    token, exp = services.tokens.issue(Role.KIOSK, str(kiosk.id), kiosk.name,
                                       services.config.auth.kiosk_token_ttl_s)
    return _token_reply(token, Role.KIOSK, kiosk.name, exp)


class KioskEnrolBody(_Body):
    kiosk_code: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=16, max_length=40)


_allow("POST", "/api/v1/auth/kiosk/enrol", None)


@routes.post("/api/v1/auth/kiosk/enrol")
async def kiosk_enrol(request: web.Request) -> web.Response:
    """A kiosk PC trades a one-time enrolment code for its device key (shown once)."""
    services = request.app[SERVICES]
    body = await _json_body(request, KioskEnrolBody)
    enrolment = Enrolment(services.db, services.config.auth.secret,
                          services.config.auth.previous_secrets)
    enrolled = await _limited(request, f"enrol:{body.kiosk_code}",
                              lambda: enrolment.redeem(body.kiosk_code, body.code))
    return web.json_response({"kiosk_code": enrolled.kiosk_code, "name": enrolled.kiosk_name,
                              "device_key": enrolled.device_key},
                             headers={"Cache-Control": "no-store"})


_allow("POST", "/api/v1/auth/surveyor", None)


@routes.post("/api/v1/auth/surveyor")
async def surveyor_login(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await _json_body(request, SurveyorBody)
    link = await _limited(request, "surveyor",
                          lambda: services.cases.redeem_surveyor_link(body.code))
    token, exp = services.tokens.issue(
        Role.SURVEYOR, str(link.id), "现场踏勘", services.config.auth.surveyor_token_ttl_s,
        extra={"case_id": link.case_id, "call_id": link.call_id})
    return _token_reply(token, Role.SURVEYOR, "现场踏勘", exp, case_id=link.case_id,
                        call_id=link.call_id)


# -- catalog and cases -------------------------------------------------------------------

_allow("GET", "/api/v1/catalog", (Role.KIOSK, Role.AGENT, Role.SUPERVISOR))


@routes.get("/api/v1/catalog")
async def catalog(request: web.Request) -> web.Response:
    _principal(request, (Role.KIOSK, Role.AGENT, Role.SUPERVISOR))
    items = await request.app[SERVICES].cases.catalog()
    return web.json_response([i.model_dump() for i in items])


STAFF_AND_KIOSK = (Role.KIOSK, Role.AGENT, Role.SUPERVISOR)

_allow("GET", "/api/v1/cases/{case_id}", STAFF_AND_KIOSK)


@routes.get("/api/v1/cases/{case_id}")
async def get_case(request: web.Request) -> web.Response:
    services, who, case_id = await case_request(request, STAFF_AND_KIOSK)
    body = (await services.cases.case_view(case_id)).model_dump(mode="json")
    body["id_reads"] = [r.model_dump(mode="json")
                        for r in await services.readings.id_reads(case_id, who.role)]
    body["codes"] = [c.model_dump(mode="json") for c in await services.readings.codes(case_id)]
    body.update(await CaseFlow(services.db, services.config.sla).case_extras(case_id))
    return web.json_response(body)


# -- materials -------------------------------------------------------------------------

_allow("POST", "/api/v1/cases/{case_id}/materials", (Role.KIOSK, Role.AGENT))


@routes.post("/api/v1/cases/{case_id}/materials")
async def upload_material(request: web.Request) -> web.Response:
    """A whole file in one request; large or unreliable uploads use ``/uploads``."""
    services, principal, case_id = await case_request(request, (Role.KIOSK, Role.AGENT))
    limit = services.config.server.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLargeError(f"upload of {request.content_length} bytes is over the "
                            f"{limit}-byte limit")
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    check_type(content_type)
    data = await read_limited(request, limit)
    call_id_raw = request.query.get("call_id")
    call_id = _parse_id(call_id_raw, "call_id") if call_id_raw is not None else None
    if call_id is not None:
        call = await services.cases.get_call(call_id)
        if call.case_id != case_id:
            raise ValidationError(f"call {call_id} is not on case {case_id}", field="call_id")
    spec = UploadSpec(sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                      content_type=content_type,
                      filename=request.query.get("filename", "material"),
                      source=request.query.get("source", "upload"), call_id=call_id)
    if not data:
        raise ValidationError("upload is empty", field="body")
    state = await services.uploads.put(principal, case_id, spec, data)
    if state.material is None:  # put() always ends in a material
        raise VWindowError("upload did not produce a material")
    if state.new:
        await services.switchboard.material_added(call_id, state.material)
    return web.json_response(state.material.model_dump(mode="json"),
                             status=201 if state.new else 200)


async def read_limited(request: web.Request, limit: int, *, what: str = "upload") -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TooLargeError(f"{what} is over the {limit}-byte limit", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


_allow("GET", "/api/v1/materials/{material_id}/content", STAFF_AND_KIOSK)


@routes.get("/api/v1/materials/{material_id}/content")
async def material_content(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    principal = _principal(request, STAFF_AND_KIOSK)
    material = await services.cases.get_material(_int_param(request, "material_id"))
    await services.cases.check_case_access(principal, material.case_id)
    path = services.store.path_for(material.sha256)
    if not path.is_file():
        raise NotFoundError(f"the file of material {material.id} is missing from the store")
    # Streamed from disk, with Range support: recordings can be hundreds of MB.
    return web.FileResponse(path, headers={"Content-Type": material.content_type,
                                           "Cache-Control": "private, max-age=3600",
                                           "X-Content-Type-Options": "nosniff"})


# -- ratings and surveyor links --------------------------------------------------------

_allow("POST", "/api/v1/calls/{call_id}/rating", (Role.KIOSK,))


@routes.post("/api/v1/calls/{call_id}/rating")
async def rate_call(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, (Role.KIOSK,))
    body = await _json_body(request, RatingBody)
    await services.cases.rate(principal, _int_param(request, "call_id"), body.stars,
                              body.comment)
    services.switchboard.changed()
    return web.json_response({"ok": True})


_allow("POST", "/api/v1/cases/{case_id}/surveyor-links", (Role.AGENT,))


@routes.post("/api/v1/cases/{case_id}/surveyor-links")
async def surveyor_link(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    principal = _principal(request, (Role.AGENT,))
    case_id = _int_param(request, "case_id")
    body = await _json_body(request, SurveyorLinkBody)
    code, link = await services.cases.create_surveyor_link(
        principal, case_id, body.call_id, services.config.auth.surveyor_link_ttl_s)
    path = f"/surveyor/#code={code}"
    origin = services.config.server.public_url.rstrip("/") or f"{request.scheme}://{request.host}"
    qr = segno.make(origin + path, error="m").svg_inline(scale=4, title="踏勘链接二维码")
    return web.json_response({"code": code, "url": path, "expires_at":
                              link.expires_at.isoformat(), "qr_svg": qr}, status=201)


_allow("GET", "/healthz", None)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})
