"""The database away and the disk full: errors a person can act on, nothing corrupted,
and everything working again once the resource is back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from signaling.client import ClientError
from signaling.services import SERVICES
from signaling.uploader import ChunkedUploader, UploadMeta
from tests.conftest import Server, make_config, start_server
from tests.helpers import answered_call, wait_for
from tests.pgserver import PgServer
from vwindow.audit import verify_chain


def _jpeg(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return b"\xff\xd8\xff\xe0" + rng.integers(0, 256, size - 6, np.uint8).tobytes() + b"\xff\xd9"


async def _get(server: Server, path: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with server.http.get(f"{server.url}{path}", headers=headers) as r:
        return r.status, await r.json(content_type=None)


@pytest.mark.postgres
async def test_database_down_is_named_and_the_node_recovers(tmp_path: Path) -> None:
    pg = PgServer()  # its own server: stopping the shared one would hit other tests
    pg.start()
    try:
        db_url = pg.create_database("vw_down")
        runner, url = await start_server(make_config(db_url, tmp_path))
        async with aiohttp.ClientSession() as http:
            server = Server(url, runner.app[SERVICES], http)
            kiosk, agent, call_id, case_id = await answered_call(server)
            await kiosk.request("chat.send", call_id=call_id, text="第一句")
            await wait_for(agent, "chat.message")

            await asyncio.to_thread(pg.pause)
            status, body = await _get(server, f"/api/v1/cases/{case_id}", agent.token)
            assert status == 503, body
            assert body["error"]["code"] == "unavailable"
            assert "database" in body["error"]["message"]
            with pytest.raises(ClientError) as err:
                await kiosk.request("chat.send", call_id=call_id, text="断线时的一句")
            assert err.value.code == "unavailable"
            # A login while the database is away is not "wrong password".
            async with http.post(f"{url}/api/v1/auth/login",
                                 json={"username": "agent2", "password": "demo1234"}) as r:
                assert r.status == 503 and (await r.json())["error"]["code"] == "unavailable"
            async with http.get(f"{url}/readyz") as r:
                assert r.status == 503
            # The sockets stay up through it.
            assert not kiosk.closed.is_set() and not agent.closed.is_set()

            await asyncio.to_thread(pg.resume)
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                status, body = await _get(server, f"/api/v1/cases/{case_id}", agent.token)
                if status == 200 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert status == 200, body
            await kiosk.request("chat.send", call_id=call_id, text="恢复后的一句")
            seen = await wait_for(agent, "chat.message", pred=lambda m: m["text"] == "恢复后的一句")
            assert seen["call_id"] == call_id
            # Ready again once the event connection is back (it retries with backoff).
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                async with http.get(f"{url}/readyz") as r:
                    ready = r.status
                if ready == 200 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert ready == 200
            # What the kiosk was told had failed was not half-stored; the rest is there.
            texts = [n["text"] for n in body["notes"]]
            assert "第一句" in texts and "断线时的一句" not in texts
            async with server.services.db.session() as s:
                report = await verify_chain(s)
            assert report.ok and report.rows > 0, report
            for c in (kiosk, agent):
                await c.close()
        await runner.cleanup()
    finally:
        pg.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs for the file store (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_disk_full_upload_is_refused_by_name_and_resumes_once_freed(
        small_disk: Path, tmp_path: Path) -> None:
    config = make_config(f"sqlite+aiosqlite:///{tmp_path / 'vw.db'}", tmp_path)
    config = config.model_copy(update={"storage": config.storage.model_copy(
        update={"root": str(small_disk / "files")})})
    runner, url = await start_server(config)
    try:
        async with aiohttp.ClientSession() as http:
            server = Server(url, runner.app[SERVICES], http)
            kiosk, agent, _call_id, case_id = await answered_call(server)
            filler = small_disk / "filler"
            free = os.statvfs(small_disk)
            filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 300_000))
            page = _jpeg(700_000, seed=3)
            token = kiosk.token
            uploader = ChunkedUploader(http, url, lambda: token, chunk_bytes=100_000)
            meta = UploadMeta(case_id=case_id, content_type="image/jpeg", filename="营业执照.jpg")
            with pytest.raises(Exception) as failed:
                await uploader.upload(page, meta)
            message = str(failed.value)
            assert "disk is full" in message, message
            # Nothing reached the case; the partial bytes wait for the rest.
            status, body = await _get(server, f"/api/v1/cases/{case_id}", agent.token)
            assert status == 200
            assert [m for m in body["materials"] if m["filename"] == "营业执照.jpg"] == []

            filler.unlink()
            sent: list[int] = []
            material = await uploader.upload(page, meta, lambda done, total: sent.append(done))
            assert 0 < sent[0] < len(page)  # resumed, not restarted
            assert material["sha256"] == hashlib.sha256(page).hexdigest()
            stored = Path(config.storage.root) / material["sha256"][:2] / \
                material["sha256"][2:4] / material["sha256"]
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == material["sha256"]
            for c in (kiosk, agent):
                await c.close()
    finally:
        await runner.cleanup()
