"""Resumable uploads against a real server: chunks, resume, retries, refusals, restarts,
and the kiosk's offline spool."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from sqlalchemy import func, select

from signaling.client import ClientError
from signaling.services import SERVICES
from signaling.uploader import ChunkedUploader, Spool, UploadMeta, UploadRefusedError
from tests.conftest import Server, make_config, start_server
from tests.helpers import answered_call, wait_for
from vwindow.models import Material, Upload
from vwindow.seed import DEMO


def _jpeg(size: int, seed: int = 0) -> bytes:
    """Bytes that start like a JPEG (the type check reads the first bytes only)."""
    rng = np.random.default_rng(seed)
    return b"\xff\xd8\xff\xe0" + rng.integers(0, 256, size - 4, dtype=np.uint8).tobytes()


async def _count(server: Server, model: Any, case_id: int) -> int:
    async with server.services.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)
                                  .where(model.case_id == case_id)) or 0)


async def _req(server: Server, method: str, path: str, token: str,
               **kw: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} | kw.pop("headers", {})
    async with server.http.request(method, server.url + path, headers=headers, **kw) as r:
        return r.status, await r.json()


def _announce(data: bytes, **extra: Any) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "content_type": "image/jpeg", "filename": "page.jpg", "source": "doccam", **extra}


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_chunked_upload_reaches_the_call_and_a_retry_never_duplicates(
        server: Server) -> None:
    kiosk, agent, call_id, case_id = await answered_call(server)
    uploader = ChunkedUploader(server.http, server.url, lambda: kiosk.token,
                               chunk_bytes=256 * 1024)
    data = _jpeg(700_000)
    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        seen.append((done, total))

    meta = UploadMeta(case_id=case_id, content_type="image/jpeg", filename="../../page 1.jpg",
                      source="doccam", kind="page", call_id=call_id, document="doc-1", page=1)
    material = await uploader.upload(data, meta, progress)
    assert [d for d, _ in seen] == [0, 262144, 524288, 700000]
    assert material["sha256"] == hashlib.sha256(data).hexdigest()
    assert (material["kind"], material["document"], material["page"]) == ("page", "doc-1", 1)
    assert material["filename"] == "page_1.jpg"  # no folders from the client
    pushed = await wait_for(agent, "case.material")
    assert pushed["material"]["id"] == material["id"]

    again = await uploader.upload(data, meta)
    assert again["id"] == material["id"]
    assert await _count(server, Material, case_id) == 1
    assert await _count(server, Upload, case_id) == 0
    stored = server.services.store.path_for(material["sha256"])
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == material["sha256"]
    assert list(server.services.store.partial_root.iterdir()) == []
    for c in (kiosk, agent):
        await c.close()


async def test_interrupted_upload_resumes_at_the_servers_offset(server: Server) -> None:
    kiosk, agent, _call_id, case_id = await answered_call(server)
    data = _jpeg(300_000, seed=1)
    path = f"/api/v1/cases/{case_id}/uploads"
    status, state = await _req(server, "POST", path, kiosk.token, json=_announce(data))
    assert status == 201 and state["offset"] == 0 and not state["complete"]
    upload = f"/api/v1/uploads/{state['upload_id']}"
    status, state = await _req(server, "PATCH", upload, kiosk.token, data=data[:100_000],
                               headers={"Upload-Offset": "0"})
    assert status == 200 and state["offset"] == 100_000

    # The same chunk again (its answer was "lost"): refused, with where to go on from.
    status, body = await _req(server, "PATCH", upload, kiosk.token, data=data[:100_000],
                              headers={"Upload-Offset": "0"})
    assert status == 409
    assert body["error"]["code"] == "upload_offset" and body["error"]["offset"] == 100_000

    # Announcing the same content again finds the same upload and its offset.
    status, again = await _req(server, "POST", path, kiosk.token, json=_announce(data))
    assert status == 200 and again["upload_id"] == state["upload_id"]
    assert again["offset"] == 100_000

    sent: list[int] = []
    uploader = ChunkedUploader(server.http, server.url, lambda: kiosk.token,
                               chunk_bytes=64 * 1024)
    material = await uploader.upload(
        data, UploadMeta(case_id=case_id, content_type="image/jpeg", filename="p.jpg"),
        lambda done, total: sent.append(done))
    assert sent[0] == 100_000  # resumed, the first 100 kB were not sent again
    assert material["size"] == len(data)
    for c in (kiosk, agent):
        await c.close()


async def test_bad_uploads_are_refused_with_the_reason_and_leave_nothing(
        server: Server) -> None:
    kiosk, agent, _call_id, case_id = await answered_call(server)
    path = f"/api/v1/cases/{case_id}/uploads"
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100

    # A PNG claimed to be a JPEG: refused at the first chunk.
    status, state = await _req(server, "POST", path, kiosk.token, json=_announce(png))
    upload = f"/api/v1/uploads/{state['upload_id']}"
    status, body = await _req(server, "PATCH", upload, kiosk.token, data=png,
                              headers={"Upload-Offset": "0"})
    assert status == 400 and "not a image/jpeg" in body["error"]["message"]

    # Bytes that do not hash to the announced SHA-256: refused, offset back to 0.
    data = _jpeg(5000, seed=2)
    status, state = await _req(server, "POST", path, kiosk.token,
                               json=_announce(data) | {"filename": "x.jpg"})
    upload = f"/api/v1/uploads/{state['upload_id']}"
    forged = data[:-1] + bytes([data[-1] ^ 1])
    status, body = await _req(server, "PATCH", upload, kiosk.token, data=forged,
                              headers={"Upload-Offset": "0"})
    assert status == 400 and body["error"]["field"] == "sha256"
    assert (await _req(server, "GET", upload, kiosk.token))[1]["offset"] == 0

    # Too big, a chunk past the end, odd types, kinds and offsets: each named.
    limit = server.services.config.server.max_upload_bytes
    cases = [
        (_announce(data) | {"size": limit + 1}, 413, "size"),
        (_announce(data) | {"content_type": "text/html"}, 400, "content_type"),
        (_announce(data) | {"kind": "recording"}, 400, "kind"),
        (_announce(data) | {"sha256": "Z" * 64}, 400, "sha256"),
        (_announce(data) | {"document": "../etc"}, 400, "document"),
        (_announce(data) | {"evil": 1}, 400, "evil"),
    ]
    for body_in, want_status, field in cases:
        status, body = await _req(server, "POST", path, kiosk.token, json=body_in)
        assert (status, body["error"].get("field")) == (want_status, field), body
    status, body = await _req(server, "PATCH", upload, kiosk.token, data=data + b"!",
                              headers={"Upload-Offset": "0"})
    assert status == 400 and "past the announced size" in body["error"]["message"]
    status, body = await _req(server, "PATCH", upload, kiosk.token, data=data,
                              headers={"Upload-Offset": "-1"})
    assert status == 400 and body["error"]["field"] == "Upload-Offset"
    status, body = await _req(server, "GET", "/api/v1/uploads/..%2F..", kiosk.token)
    assert status in (400, 404)
    assert await _count(server, Material, case_id) == 0
    for c in (kiosk, agent):
        await c.close()


async def test_only_the_cases_uploaders_touch_an_upload(server: Server) -> None:
    kiosk, agent, _call_id, case_id = await answered_call(server)
    data = _jpeg(2000, seed=3)
    status, state = await _req(server, "POST", f"/api/v1/cases/{case_id}/uploads",
                               kiosk.token, json=_announce(data))
    supervisor = await server.login(DEMO.supervisor)
    status, _ = await _req(server, "GET", f"/api/v1/uploads/{state['upload_id']}", supervisor)
    assert status == 401  # supervisors watch; they do not upload
    other_agent = await server.login("agent3")
    status, _ = await _req(server, "PATCH", f"/api/v1/uploads/{state['upload_id']}",
                           other_agent, data=data, headers={"Upload-Offset": "0"})
    assert status == 403  # an agent not on the case
    for c in (kiosk, agent):
        await c.close()


async def test_half_sent_upload_survives_a_server_restart(db_url: str,
                                                          tmp_path: Path) -> None:
    config = make_config(db_url, tmp_path)
    runner, url = await start_server(config)
    async with aiohttp.ClientSession() as http:
        server = Server(url, runner.app[SERVICES], http)
        kiosk, agent, _call_id, case_id = await answered_call(server)
        data = _jpeg(200_000, seed=4)
        _status, state = await _req(server, "POST", f"/api/v1/cases/{case_id}/uploads",
                                   kiosk.token, json=_announce(data))
        await _req(server, "PATCH", f"/api/v1/uploads/{state['upload_id']}", kiosk.token,
                   data=data[:120_000], headers={"Upload-Offset": "0"})
        await kiosk.close()
        await agent.close()
    await runner.cleanup()

    runner, url = await start_server(config)
    async with aiohttp.ClientSession() as http:
        server = Server(url, runner.app[SERVICES], http)
        token = await server.kiosk_token()
        sent: list[int] = []
        material = await ChunkedUploader(http, url, lambda: token).upload(
            data, UploadMeta(case_id=case_id, content_type="image/jpeg", filename="p.jpg"),
            lambda done, total: sent.append(done))
        assert sent[0] == 120_000
        assert material["sha256"] == hashlib.sha256(data).hexdigest()
    await runner.cleanup()


async def test_spool_keeps_captures_while_the_server_is_away(server: Server,
                                                             tmp_path: Path) -> None:
    kiosk, agent, call_id, case_id = await answered_call(server)
    spool = Spool(tmp_path / "spool")
    pages = [_jpeg(50_000, seed=s) for s in (5, 6)]
    for n, page in enumerate(pages, 1):
        spool.add(page, UploadMeta(case_id=case_id, content_type="image/jpeg",
                                   filename=f"p{n}.jpg", source="doccam", call_id=call_id))
    spool.add(b"not a jpeg", UploadMeta(case_id=case_id, content_type="image/jpeg",
                                        filename="bad.jpg"))
    assert len(spool.pending()) == 3

    # No server listening there: nothing is lost, the spool is untouched.
    async with aiohttp.ClientSession() as http:
        offline = ChunkedUploader(http, "http://127.0.0.1:9", lambda: kiosk.token)
        with pytest.raises(aiohttp.ClientError):
            await spool.drain(offline)
    assert len(spool.pending()) == 3

    uploaded: list[str] = []

    async def done(meta: UploadMeta, material: dict[str, Any]) -> None:
        uploaded.append(material["filename"])

    online = ChunkedUploader(server.http, server.url, lambda: kiosk.token)
    assert await spool.drain(online, done) == 2
    assert sorted(uploaded) == ["p1.jpg", "p2.jpg"]
    assert spool.pending() == []  # the refused one is dropped, with a log line
    assert await _count(server, Material, case_id) == 2
    for c in (kiosk, agent):
        await c.close()


async def test_two_uploads_of_the_same_content_at_once_make_one_material(
        server: Server) -> None:
    kiosk, agent, _call_id, case_id = await answered_call(server)
    data = _jpeg(400_000, seed=7)
    meta = UploadMeta(case_id=case_id, content_type="image/jpeg", filename="p.jpg")
    uploaders = [ChunkedUploader(server.http, server.url, lambda: kiosk.token,
                                 chunk_bytes=100_000) for _ in range(3)]
    results = await asyncio.gather(*(u.upload(data, meta) for u in uploaders),
                                   return_exceptions=True)
    materials = [r for r in results if isinstance(r, dict)]
    assert materials, results
    assert all(isinstance(r, dict | ClientError) for r in results), results
    assert {m["id"] for m in materials} == {materials[0]["id"]}
    assert await _count(server, Material, case_id) == 1
    # Whatever lost the race can simply try again.
    assert (await uploaders[0].upload(data, meta))["id"] == materials[0]["id"]
    with pytest.raises(UploadRefusedError):
        await uploaders[0].upload(b"GIF89a", UploadMeta(case_id=case_id,
                                                        content_type="image/jpeg",
                                                        filename="x.jpg"))
    for c in (kiosk, agent):
        await c.close()
