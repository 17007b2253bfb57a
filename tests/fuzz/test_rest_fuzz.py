"""Fuzzing the REST API: schemathesis against ``signaling/openapi.yaml`` on a live server,
and hand-written attacks on uploads (lying types, bombs, path traversal, oversize).

Schemathesis is synchronous (``requests``): it runs in a worker thread while the server
answers on the test's event loop. Every operation gets the bearer token of the first
role ``signaling.rest.ROUTE_ROLES`` allows it, positive and negative examples; a 5xx
fails the test, as does any conformance failure not in ``KNOWN_NONCONFORMANCE``.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import logging
import re
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from signaling.client import SignalClient
from signaling.rest import ROUTE_ROLES
from signaling.services import SERVICES
from tests.conftest import Server, make_config, start_server
from tests.fuzz.rawsocket import describe_records, tracebacks
from tests.helpers import answered_call

OPENAPI = Path(__file__).resolve().parents[2] / "signaling" / "openapi.yaml"
POSITIVE_PER_OPERATION = 5
NEGATIVE_PER_OPERATION = 3
SLOW_FACTOR = 10

# The resumable-upload chunk route takes raw bytes under its own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

CONFORMANCE_CHECKS = (status_code_conformance, content_type_conformance,
                      response_schema_conformance)
# (operation, check) pairs the spec is known to get wrong (none now).
KNOWN_NONCONFORMANCE: set[tuple[str, str]] = set()

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
PDF = b"%PDF-1.7\n" + b"1 0 obj << >> endobj\n" * 20 + b"%%EOF\n"


async def _tokens(server: Server) -> dict[str, str]:
    return {"kiosk": await server.kiosk_token(), "agent": await server.login("agent1"),
            "supervisor": await server.login("super1")}


def _headers_for(method: str, path: str, tokens: dict[str, str]) -> dict[str, str]:
    roles = ROUTE_ROLES.get((method.upper(), path), ())
    if not roles:  # public, or a route the table does not know: try an agent's token
        return {} if (method.upper(), path) in ROUTE_ROLES else {
            "Authorization": f"Bearer {tokens['agent']}"}
    return {"Authorization": f"Bearer {tokens[roles[0].value]}"}


@dataclass
class _Findings:
    base_url: str
    session: requests.Session
    examples: Counter[str] = field(default_factory=Counter)
    known: Counter[str] = field(default_factory=Counter)
    nonconforming: dict[tuple[str, str], str] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)


def _fuzz_operation(operation: Any, mode: GenerationMode, count: int,
                    headers: dict[str, str], found: _Findings) -> None:
    label = operation.label

    @settings(max_examples=count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode))
    def call(case: Any) -> None:
        found.examples[label] += 1
        response = case.call(base_url=found.base_url, session=found.session,
                             headers=headers, timeout=30)
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=headers)
        except BaseException as err:  # a FailureGroup is a BaseExceptionGroup
            if _huge_int(case.body):  # the known bug: see test_huge_ids_in_bodies_are_400
                found.known[label] += 1
                return
            found.server_errors.append(f"{label}: {response.status_code} "
                                       f"{response.text[:300]} ({err})")
        for check in CONFORMANCE_CHECKS:
            try:
                case.validate_response(response, checks=[check], headers=headers)
            except BaseException as err:
                found.nonconforming.setdefault((label, check.__name__), str(err)[:600])

    try:
        call()
    except Unsatisfiable:  # nothing negative to say about, e.g., GET /healthz
        pass


def _run_schemathesis(base_url: str, tokens: dict[str, str], positive: int,
                      negative: int) -> _Findings:
    schema = schemathesis.openapi.from_path(OPENAPI)
    with requests.Session() as session:
        found = _Findings(base_url, session)
        for result in schema.get_all_operations():
            operation = result.ok()
            headers = _headers_for(operation.method, operation.path, tokens)
            _fuzz_operation(operation, GenerationMode.POSITIVE, positive, headers, found)
            _fuzz_operation(operation, GenerationMode.NEGATIVE, negative, headers, found)
    return found


async def _schemathesis_run(server: Server, caplog: pytest.LogCaptureFixture,
                            positive: int, negative: int) -> None:
    caplog.set_level(logging.ERROR)
    tokens = await _tokens(server)
    started = time.monotonic()
    found = await asyncio.to_thread(_run_schemathesis, server.url, tokens, positive, negative)
    print(f"schemathesis: {sum(found.examples.values())} requests over "
          f"{len(found.examples)} operations in {time.monotonic() - started:.1f} s; "
          f"known overflow 500s: {dict(found.known)}")
    assert len(found.examples) >= 40, sorted(found.examples)
    assert not found.server_errors, "\n".join(found.server_errors)
    bad = [r for r in tracebacks(caplog) if not _is_sqlite_overflow(r)]
    assert not bad, describe_records(bad)
    unknown = {k: v for k, v in found.nonconforming.items() if k not in KNOWN_NONCONFORMANCE}
    assert not unknown, "\n\n".join(f"{k}: {v}" for k, v in unknown.items())


def _huge_int(value: Any) -> bool:
    """Whether a request body holds an integer SQLite cannot store."""
    if isinstance(value, dict):
        return any(_huge_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_huge_int(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63


def _is_sqlite_overflow(record: logging.LogRecord) -> bool:
    return bool(record.exc_info) and isinstance(record.exc_info[1], OverflowError) and \
        "SQLite INTEGER" in str(record.exc_info[1])


async def test_openapi_operations_never_fail_with_5xx(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    await _schemathesis_run(server, caplog, POSITIVE_PER_OPERATION, NEGATIVE_PER_OPERATION)


@pytest.mark.slow
async def test_openapi_operations_never_fail_with_5xx_long(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    await _schemathesis_run(server, caplog, POSITIVE_PER_OPERATION * SLOW_FACTOR,
                            NEGATIVE_PER_OPERATION * SLOW_FACTOR)


def _documented(path: str, method: str) -> set[str]:
    schema = schemathesis.openapi.from_path(OPENAPI)
    return set(schema.raw_schema["paths"][path][method]["responses"])


async def test_material_content_documents_its_400(server: Server) -> None:
    token = await server.login("agent1")
    async with server.http.get(f"{server.url}/api/v1/materials/1234567890123456/content",
                               headers={"Authorization": f"Bearer {token}"}) as resp:
        status = str(resp.status)
    assert status in _documented("/api/v1/materials/{material_id}/content", "get"), status


async def test_surveyor_links_documents_its_404(server: Server) -> None:
    token = await server.login("agent1")
    async with server.http.post(f"{server.url}/api/v1/cases/1/surveyor-links",
                                json={"call_id": 999_999},
                                headers={"Authorization": f"Bearer {token}"}) as resp:
        status = str(resp.status)
    assert status in _documented("/api/v1/cases/{case_id}/surveyor-links", "post"), status


HUGE = 2**64
HUGE_ID_BODIES = [
    ("surveyor-links", {"call_id": HUGE}),
    ("inspections", {"call_id": HUGE}),
    ("codes", {"text": "x", "source": "agent", "call_id": HUGE}),
    ("uploads", {"sha256": "a" * 64, "size": 10, "content_type": "image/jpeg",
                 "call_id": HUGE}),
    ("appointments", {"slot_id": HUGE}),
]


async def test_huge_ids_in_bodies_are_400(uploads: Uploader,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    answers = {}
    for route, body in HUGE_ID_BODIES:
        url = f"{uploads.server.url}/api/v1/cases/{uploads.case_id}/{route}"
        async with uploads.server.http.post(url, json=body, headers=uploads.auth) as resp:
            answers[route] = (resp.status, (await resp.text())[:200])
    assert all(status == 400 for status, _ in answers.values()), answers
    assert not tracebacks(caplog), describe_records(tracebacks(caplog))


# -- raw HTTP the client library would not send -----------------------------------------


async def _raw_http(url: str, request: bytes) -> bytes:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_nul_in_a_static_path_is_not_found(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    statuses = {}
    for path in ["/%00", "/kiosk/%00index.html", "/a%00b"]:
        async with server.http.get(server.url + path) as resp:
            statuses[path] = resp.status
    assert set(statuses.values()) == {404}, statuses
    assert not tracebacks(caplog), describe_records(tracebacks(caplog))


async def test_non_utf8_bearer_token_is_unauthenticated(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    answers = {}
    for token in [b"\xff\xfe.a.b", b"\xe9", b"eyJ\x80.e30.x"]:
        answers[token] = (await _raw_http(
            server.url, b"GET /api/v1/catalog HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + token + b"\r\nConnection: close\r\n\r\n"))[:12]
    assert set(answers.values()) == {b"HTTP/1.1 401"}, answers
    assert not tracebacks(caplog), describe_records(tracebacks(caplog))


async def test_odd_static_paths_stay_inside_the_web_root(server: Server) -> None:
    for path in ["/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/kiosk/../../x",
                 "/%5c..%5c..%5cetc%5cpasswd", "/" + "a/" * 200, "/\u202egnp.exe"]:
        async with server.http.get(server.url + path, allow_redirects=False) as resp:
            assert resp.status in (404, 302), (path, resp.status)
            assert "root:" not in await resp.text()


# -- uploads --------------------------------------------------------------------------

MAX_UPLOAD = 6 * 1024 * 1024
"""Over the 4 MiB chunk size, so a chunk can be too large for a legal upload."""


class Uploader:
    """An agent on a live call's case, with helpers for both upload routes."""

    def __init__(self, server: Server, token: str, case_id: int) -> None:
        self.server = server
        self.auth = {"Authorization": f"Bearer {token}"}
        self.case_id = case_id

    async def material(self, data: bytes | Any, content_type: str, *,
                       params: dict[str, str] | None = None,
                       headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        url = f"{self.server.url}/api/v1/cases/{self.case_id}/materials"
        if isinstance(data, bytes):
            data = io.BytesIO(data)  # aiohttp warns about large raw bytes bodies
        async with self.server.http.post(url, data=data, params=params, headers={
                **self.auth, "Content-Type": content_type, **(headers or {})}) as resp:
            return resp.status, await resp.json()

    async def announce(self, **body: Any) -> tuple[int, dict[str, Any]]:
        url = f"{self.server.url}/api/v1/cases/{self.case_id}/uploads"
        async with self.server.http.post(url, json=body, headers=self.auth) as resp:
            return resp.status, await resp.json()

    async def chunk(self, upload_id: str, offset: int,
                    data: bytes) -> tuple[int, dict[str, Any]]:
        url = f"{self.server.url}/api/v1/uploads/{upload_id}"
        async with self.server.http.patch(url, data=io.BytesIO(data), headers={
                **self.auth, "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream"}) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def uploads(db_url: str, tmp_path: Path) -> AsyncIterator[Uploader]:
    runner, url = await start_server(make_config(db_url, tmp_path,
                                                 max_upload_bytes=MAX_UPLOAD))
    clients: list[SignalClient] = []
    try:
        async with aiohttp.ClientSession() as http:
            server = Server(url, runner.app[SERVICES], http)
            kiosk, agent, _call_id, case_id = await answered_call(server)
            clients += [kiosk, agent]
            yield Uploader(server, agent.token, case_id)
            for client in clients:
                await client.close()
    finally:
        await runner.cleanup()


def _assert_error(status: int, body: dict[str, Any], want_status: int, *words: str) -> None:
    assert status == want_status, (status, body)
    error = body["error"]
    assert error["code"] and error["message"], body
    for word in words:
        assert word in error["message"], (word, error)


def _zip_bomb(unpacked: int = 20 * 1024 * 1024) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("report.pdf", bytes(unpacked))
    return out.getvalue()


LIES = [
    pytest.param(PNG, "image/jpeg", "image/jpeg", id="png-as-jpeg"),
    pytest.param(JPEG, "image/png", "image/png", id="jpeg-as-png"),
    pytest.param(b"<!doctype html><script>alert(1)</script>", "application/pdf",
                 "application/pdf", id="html-as-pdf"),
    pytest.param(b"MZ\x90\x00" + bytes(100), "image/jpeg", "image/jpeg", id="exe-as-jpeg"),
    pytest.param(b"<svg onload=alert(1)>", "image/svg+xml", "not accepted", id="svg"),
    pytest.param(b"<!doctype html>", "text/html", "not accepted", id="html"),
    pytest.param(PDF, "application/pdf; charset=x; boundary=y", None, id="pdf-with-params"),
    pytest.param(_zip_bomb(), "application/pdf", "application/pdf", id="zip-bomb-as-pdf"),
    pytest.param(b"\xff\xd8", "image/jpeg", "image/jpeg", id="jpeg-magic-cut-short"),
]


async def test_lying_content_types_are_refused(uploads: Uploader) -> None:
    for lie in LIES:
        await _lie(uploads, *lie.values)


async def _lie(uploads: Uploader, data: bytes, content_type: str, words: str | None) -> None:
    status, body = await uploads.material(data, content_type)
    if words is None:  # not a lie: parameters after ';' are ignored
        assert status == 201, body
        return
    _assert_error(status, body, 400, words)
    # The resumable route checks the same on the first chunk.
    claimed = content_type.split(";")[0]
    status, body = await uploads.announce(sha256=hashlib.sha256(data).hexdigest(),
                                          size=len(data), content_type=claimed)
    if status == 400:  # a type the announcement already refuses
        _assert_error(status, body, 400, "not accepted")
        return
    assert status == 201, body
    status, body = await uploads.chunk(body["upload_id"], 0, data[:4 * 1024 * 1024])
    _assert_error(status, body, 400, claimed)


async def test_a_zip_bomb_is_never_unpacked(uploads: Uploader) -> None:
    """A real PDF signature in front of a zip bomb is just bytes: stored as sent."""
    data = b"%PDF-1.4\n" + _zip_bomb(100 * 1024 * 1024)
    status, body = await uploads.material(data, "application/pdf")
    assert status == 201 and body["size"] == len(data), body


TRAVERSAL_NAMES = ["../../etc/passwd", "..\\..\\x.jpg", "a\x00b.jpg", "x" * 500 + ".jpg",
                   "/etc/shadow", "C:\\Windows\\system32\\a.jpg", "....//....//x.jpg",
                   "%2e%2e%2fx.jpg", "\u202egpj.exe", ".", "..", "", "~/.ssh/id_rsa",
                   "con.jpg", "a\nb\rc.jpg", "😀.jpg", "./-rf.jpg"]


def _assert_safe(name: str) -> None:
    assert name and name not in (".", ".."), name
    assert not set(name) & set("/\\\x00\n\r"), name
    assert not name.startswith("."), name
    assert len(name) <= 120, len(name)


async def test_path_traversal_names_are_stored_safely_named(
        uploads: Uploader, tmp_path: Path) -> None:
    for i, name in enumerate(TRAVERSAL_NAMES):
        data = JPEG + i.to_bytes(4, "big")
        status, body = await uploads.material(data, "image/jpeg", params={"filename": name})
        assert status == 201, (name, body)
        _assert_safe(body["filename"])
        # And the resumable route, where the model allows up to 200 characters.
        data = JPEG + (1000 + i).to_bytes(4, "big")
        status, body = await uploads.announce(sha256=hashlib.sha256(data).hexdigest(),
                                              size=len(data), content_type="image/jpeg",
                                              filename=name or "x")
        if len(name) > 200:
            _assert_error(status, body, 400, "filename")
            continue
        assert status == 201, (name, body)
        status, body = await uploads.chunk(body["upload_id"], 0, data)
        assert status == 201, (name, body)
        _assert_safe(body["material"]["filename"])
    _assert_store_is_content_addressed(uploads)
    assert not _escaped(tmp_path)


def _escaped(root: Path) -> list[Path]:
    """Files a traversal name would have created (the server's tmp folder is ``root``)."""
    return [p for p in root.rglob("*") if p.name in ("passwd", "shadow", "id_rsa")]


def _assert_store_is_content_addressed(uploads: Uploader) -> None:
    store = uploads.server.services.store
    for path in store.root.rglob("*"):
        if path.is_dir():
            continue
        rel = path.relative_to(store.root)
        if rel.parts[0] == "uploads":  # partial uploads, named by upload id
            assert len(rel.parts) == 2 and re.fullmatch(r"[0-9a-f]{32}", rel.parts[1]), rel
            continue
        assert rel.parts[0] != "tmp", f"a temporary file was left behind: {rel}"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert rel.parts == (digest[:2], digest[2:4], digest), rel


async def test_oversize_bodies_are_413_with_a_message(uploads: Uploader) -> None:
    big = JPEG + bytes(MAX_UPLOAD)
    status, body = await uploads.material(big, "image/jpeg")
    _assert_error(status, body, 413, "limit")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield JPEG
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield bytes(65536)

    status, body = await uploads.material(chunked(), "image/jpeg")
    _assert_error(status, body, 413, "limit")

    status, body = await uploads.announce(sha256="0" * 64, size=MAX_UPLOAD + 1,
                                          content_type="image/jpeg")
    _assert_error(status, body, 413, "limit")
    assert body["error"]["field"] == "size"

    data = JPEG + bytes(5 * 1024 * 1024)
    status, body = await uploads.announce(sha256=hashlib.sha256(data).hexdigest(),
                                          size=len(data), content_type="image/jpeg")
    assert status == 201, body
    status, body = await uploads.chunk(body["upload_id"], 0, data)
    _assert_error(status, body, 413, "chunk", str(4 * 1024 * 1024))
    _assert_store_is_content_addressed(uploads)


def _gzip_bomb(head: bytes, unpacked: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as fh:
        fh.write(head)
        block = bytes(1024 * 1024)
        for _ in range(unpacked // len(block)):
            fh.write(block)
    return out.getvalue()


GZIP_BOMB_UNPACKED = 256 * 1024 * 1024


async def test_gzip_request_bodies_are_limited_after_decompression(
        uploads: Uploader, caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp inflates a ``Content-Encoding: gzip`` request body on the fly; the upload
    limit counts the inflated bytes, so a 250 KiB bomb stops at the limit."""
    caplog.set_level(logging.ERROR)
    # A small honest gzip upload is inflated and stored as the inflated bytes.
    status, body = await uploads.material(gzip.compress(JPEG), "image/jpeg",
                                          headers={"Content-Encoding": "gzip"})
    assert status == 201 and body["sha256"] == hashlib.sha256(JPEG).hexdigest(), body

    bomb = _gzip_bomb(JPEG, GZIP_BOMB_UNPACKED)
    assert len(bomb) < 512 * 1024
    started = time.monotonic()
    status, body = await uploads.material(bomb, "image/jpeg",
                                          headers={"Content-Encoding": "gzip"})
    _assert_error(status, body, 413, "limit")
    assert time.monotonic() - started < 20

    # A JSON route reads its body with request.read(): client_max_size, also inflated.
    url = f"{uploads.server.url}/api/v1/auth/login"
    async with uploads.server.http.post(url, data=io.BytesIO(_gzip_bomb(b'{"username":"',
                                                                         64 << 20)),
                                        headers={"Content-Encoding": "gzip",
                                                 "Content-Type": "application/json"}) as resp:
        _assert_error(resp.status, await resp.json(), 413, "too large")
    assert not tracebacks(caplog), describe_records(tracebacks(caplog))


async def test_chunks_at_odd_offsets_are_refused(uploads: Uploader) -> None:
    data = JPEG * 4
    status, body = await uploads.announce(sha256=hashlib.sha256(data).hexdigest(),
                                          size=len(data), content_type="image/jpeg")
    upload_id = body["upload_id"]
    url = f"{uploads.server.url}/api/v1/uploads/{upload_id}"
    for offset in ["-1", "1e3", "0x10", "", "0 0", "9" * 16, "٠"]:
        async with uploads.server.http.patch(url, data=data, headers={
                **uploads.auth, "Upload-Offset": offset}) as resp:
            _assert_error(resp.status, await resp.json(), 400, "Upload-Offset")
    status, body = await uploads.chunk(upload_id, 5, data)
    _assert_error(status, body, 409, "offset 5")
    assert body["error"]["offset"] == 0
    status, body = await uploads.chunk(upload_id, 0, data + b"x")
    _assert_error(status, body, 400, "past the announced size")
    for bad_id in ["../../etc/passwd", "A" * 32, "0" * 33, "%00"]:
        async with uploads.server.http.get(f"{uploads.server.url}/api/v1/uploads/{bad_id}",
                                           headers=uploads.auth) as resp:
            assert resp.status in (400, 404), (bad_id, resp.status)

