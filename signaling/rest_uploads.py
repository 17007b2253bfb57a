"""REST ``/api/v1`` for resumable uploads into a case.

``POST /cases/{id}/uploads`` announces the content (SHA-256, size, type, what it is)
and answers with where to continue: a new or existing upload and its offset, or the
material the content already is. ``PATCH /uploads/{id}`` appends one chunk at the
``Upload-Offset`` header's offset; ``GET /uploads/{id}`` tells the offset after a
lost connection. See :mod:`vwindow.uploads` for the rules.
"""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import Field

from signaling.rest import (
    _allow,
    _Body,
    _json_body,
    _principal,
    case_request,
    read_limited,
)
from signaling.services import SERVICES, Services
from vwindow.auth import Principal
from vwindow.errors import TooLargeError, ValidationError
from vwindow.models import Role, Upload
from vwindow.uploads import UploadSpec, UploadState
from vwindow.validation import MAX_DB_ID

routes = web.RouteTableDef()

UPLOADERS = (Role.KIOSK, Role.AGENT)


class UploadBody(_Body):
    sha256: str = Field(min_length=64, max_length=64)
    size: int = Field(ge=1)
    content_type: str = Field(min_length=1, max_length=100)
    filename: str = Field(default="material", min_length=1, max_length=200)
    source: str = Field(default="upload", max_length=32)
    kind: str = Field(default="file", max_length=16)
    call_id: int | None = Field(default=None, ge=1, le=MAX_DB_ID)
    document: str | None = Field(default=None, max_length=64)
    page: int | None = Field(default=None, ge=1, le=999)


def state_body(state: UploadState) -> dict[str, object]:
    body: dict[str, object] = {"upload_id": state.upload_id, "offset": state.offset,
                               "size": state.size, "complete": state.complete}
    if state.material is not None:
        body["material"] = state.material.model_dump(mode="json")
    return body


async def announce_material(services: Services, state: UploadState) -> None:
    """Tell the call's room about a material that has just come into being."""
    if state.new and state.material is not None:
        await services.switchboard.material_added(state.material.call_id, state.material)


async def _check_call(services: Services, case_id: int, call_id: int | None) -> None:
    if call_id is not None:
        call = await services.cases.get_call(call_id)
        if call.case_id != case_id:
            raise ValidationError(f"call {call_id} is not on case {case_id}", field="call_id")


async def _upload_of(request: web.Request, principal: Principal) -> Upload:
    services = request.app[SERVICES]
    row = await services.uploads.get(request.match_info["upload_id"])
    await services.cases.check_case_access(principal, row.case_id)
    return row


_allow("POST", "/api/v1/cases/{case_id}/uploads", UPLOADERS)


@routes.post("/api/v1/cases/{case_id}/uploads")
async def open_upload(request: web.Request) -> web.Response:
    services, principal, case_id = await case_request(request, UPLOADERS)
    body = await _json_body(request, UploadBody)
    await _check_call(services, case_id, body.call_id)
    spec = UploadSpec(**body.model_dump())
    state = await services.uploads.open(principal, case_id, spec)
    await announce_material(services, state)
    status = 201 if state.new or (state.offset == 0 and not state.complete) else 200
    return web.json_response(state_body(state), status=status,
                             headers={"Upload-Offset": str(state.offset)})


_allow("GET", "/api/v1/uploads/{upload_id}", UPLOADERS)


@routes.get("/api/v1/uploads/{upload_id}")
async def upload_status(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    row = await _upload_of(request, _principal(request, UPLOADERS))
    state = await services.uploads.status(row)
    return web.json_response(state_body(state), headers={"Upload-Offset": str(state.offset)})


_OFFSET = re.compile(r"[0-9]{1,15}")

_allow("PATCH", "/api/v1/uploads/{upload_id}", UPLOADERS)


@routes.patch("/api/v1/uploads/{upload_id}")
async def upload_chunk(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    principal = _principal(request, UPLOADERS)
    row = await _upload_of(request, principal)
    raw_offset = request.headers.get("Upload-Offset", "")
    if not _OFFSET.fullmatch(raw_offset):
        raise ValidationError(f"header Upload-Offset must be a byte offset, got "
                              f"{raw_offset[:20]!r}", field="Upload-Offset")
    limit = services.uploads.chunk_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLargeError(f"a chunk may be at most {limit} bytes, got "
                            f"{request.content_length}", field="body")
    chunk = await read_limited(request, limit, what="chunk")
    state = await services.uploads.append(principal, row, int(raw_offset), chunk)
    await announce_material(services, state)
    return web.json_response(state_body(state), status=201 if state.new else 200,
                             headers={"Upload-Offset": str(state.offset)})
