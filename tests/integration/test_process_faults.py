"""kill -9 of a lone ``vwindow serve`` mid-call and mid-upload, then a restart.

One node (SQLite, the embedded default, and PostgreSQL) with a live call whose media is
flowing, a call waiting in the queue, a finished upload and one half sent, and a chat
line in the case — then SIGKILL: no clean shutdown, no last write. After the restart on
the same port and data: the waiting call is still waiting and is offered to the next
ready agent; the live call is still the kiosk's and the agent's call and its media comes
back when both rejoin; the case, its chat note and its materials are there; the audit
chain verifies; the finished upload's file hashes to its name; the half-sent upload
resumes from the bytes the server had made durable; the store holds no half file.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from sqlalchemy import select

from signaling.client import HubPeer, SignalClient
from signaling.uploader import ChunkedUploader, UploadMeta
from tests.helpers import camera_and_mic, first_frame, wait_for
from tests.multinode import KIOSK_KEY, Node, seed, start_node, wait_ready
from vwindow.audit import verify_chain
from vwindow.db import Database
from vwindow.models import Call, CallStatus, CaseNote, Material

ROUTING = {"strategy": "longest_idle", "offer_timeout_s": 10, "wrap_up_s": 0,
           "tick_s": 0.2, "callback_after_s": 0, "node_timeout_s": 6.0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _jpeg(size: int, seed: int) -> bytes:
    """Bytes that pass the JPEG content check (the magic), of a given size."""
    rng = np.random.default_rng(seed)
    return b"\xff\xd8\xff\xe0" + rng.integers(0, 256, size - 6, np.uint8).tobytes() + b"\xff\xd9"


async def _token(http: aiohttp.ClientSession, url: str, path: str, body: dict[str, str]) -> str:
    async with http.post(f"{url}/api/v1/auth/{path}", json=body) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["token"])


async def _clients(http: aiohttp.ClientSession, url: str, agent: str, kiosks: list[str]
                   ) -> tuple[SignalClient, list[SignalClient]]:
    staff = SignalClient(http, url, await _token(http, url, "login",
                                                 {"username": agent, "password": "demo1234"}))
    await staff.connect()
    booths = []
    for code in kiosks:
        booth = SignalClient(http, url, await _token(
            http, url, "kiosk", {"kiosk_code": code, "device_key": KIOSK_KEY}))
        await booth.connect()
        booths.append(booth)
    return staff, booths


def _store_files(root: Path) -> dict[str, Path]:
    """Content-addressed files in the store (not tmp/, not uploads/), by name."""
    return {p.name: p for p in root.glob("??/??/*") if p.is_file()}


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_kill_9_mid_call_and_mid_upload_loses_nothing(db_url: str,
                                                            tmp_path: Path) -> None:
    agents, kiosks = await seed(db_url, agents=2, kiosks=2)
    port = _free_port()
    node: Node = start_node("solo", db_url, tmp_path, port=port, **ROUTING)
    store_root = tmp_path / "solo" / "files"
    try:
        url = await wait_ready(node)
        finished = _jpeg(300_000, seed=1)
        half = _jpeg(400_000, seed=2)
        async with aiohttp.ClientSession() as http:
            staff, (caller, waiter) = await _clients(http, url, agents[0], kiosks)
            await staff.request("agent.state", state="ready")
            live = (await caller.request("call.start", service_code="SB-001"))["call"]
            await wait_for(staff, "call.ringing")
            await staff.request("call.accept", call_id=live["call_id"])
            await wait_for(caller, "call.answered")
            kiosk_peer = HubPeer(caller, live["call_id"], camera_and_mic(320, 240, (0, 0, 255)))
            agent_peer = HubPeer(staff, live["call_id"], camera_and_mic(320, 240, (255, 0, 0)))
            await kiosk_peer.join()
            await agent_peer.join()
            await first_frame(agent_peer, "camera", "kiosk", timeout=20)
            await caller.request("chat.send", call_id=live["call_id"], text="材料已经拍好了")
            waiting = (await waiter.request("call.start", service_code="SB-001"))["call"]

            token = caller.token
            uploader = ChunkedUploader(http, url, lambda: token, chunk_bytes=64 * 1024)
            material = await uploader.upload(finished, UploadMeta(
                case_id=live["case_id"], content_type="image/jpeg", filename="证明.jpg"))
            async with http.post(f"{url}/api/v1/cases/{live['case_id']}/uploads", json={
                    "sha256": hashlib.sha256(half).hexdigest(), "size": len(half),
                    "content_type": "image/jpeg", "filename": "户口本.jpg"},
                    headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status in (200, 201), await r.text()
                upload_id = (await r.json())["upload_id"]
            async with http.patch(f"{url}/api/v1/uploads/{upload_id}", data=half[:150_000],
                                  headers={"Authorization": f"Bearer {token}",
                                           "Upload-Offset": "0"}) as r:
                assert r.status in (200, 204), await r.text()

            node.kill()
            for peer in (kiosk_peer, agent_peer):
                await peer.close()
            for client in (staff, caller, waiter):
                await client.close()

            # Nothing half-written is in the store: every file there hashes to its name.
            files = _store_files(store_root)
            assert material["sha256"] in files
            for name, path in files.items():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == name, path
            assert (store_root / "uploads" / upload_id).stat().st_size == 150_000

            node = start_node("solo", db_url, tmp_path, port=port, **ROUTING)
            assert await wait_ready(node) == url
            staff, (caller, waiter) = await _clients(http, url, agents[0], kiosks)
            # The live call is still theirs: both see it and media flows again.
            for client in (caller, staff):
                assert client.welcome["active_call"]["call_id"] == live["call_id"]
            kiosk_peer = HubPeer(caller, live["call_id"], camera_and_mic(320, 240, (0, 0, 255)))
            agent_peer = HubPeer(staff, live["call_id"], camera_and_mic(320, 240, (255, 0, 0)))
            await kiosk_peer.join()
            await agent_peer.join()
            seen = await first_frame(agent_peer, "camera", "kiosk", timeout=20)
            assert seen.width == 320
            # The half-sent upload goes on from the server's 150,000 bytes.
            sent: list[int] = []
            token = caller.token
            resumed = await ChunkedUploader(http, url, lambda: token).upload(
                half, UploadMeta(case_id=live["case_id"], content_type="image/jpeg",
                                 filename="户口本.jpg"), lambda done, total: sent.append(done))
            assert sent[0] == 150_000
            assert resumed["sha256"] == hashlib.sha256(half).hexdigest()
            # The waiting call still waits, and goes to the next agent who is ready.
            other = SignalClient(http, url, await _token(
                http, url, "login", {"username": agents[1], "password": "demo1234"}))
            await other.connect()
            await other.request("agent.state", state="ready")
            ring = await wait_for(other, "call.ringing", timeout=15)
            assert ring["call"]["call_id"] == waiting["call_id"]
            await other.request("call.accept", call_id=waiting["call_id"])
            await wait_for(waiter, "call.answered")
            for peer in (kiosk_peer, agent_peer):
                await peer.close()
            for client in (staff, caller, waiter, other):
                await client.close()

        db = Database(db_url)
        try:
            async with db.session() as s:
                calls = {c.id: c for c in (await s.scalars(select(Call))).all()}
                notes = (await s.scalars(select(CaseNote.text).where(
                    CaseNote.case_id == live["case_id"]))).all()
                shas = set((await s.scalars(select(Material.sha256).where(
                    Material.case_id == live["case_id"]))).all())
                report: Any = await verify_chain(s)
        finally:
            await db.stop()
        assert calls[live["call_id"]].status == CallStatus.LIVE
        assert calls[waiting["call_id"]].status == CallStatus.LIVE
        assert "材料已经拍好了" in notes
        assert {material["sha256"], resumed["sha256"]} <= shas
        assert report.ok and report.rows > 0, report
        for sha in shas:
            path = store_root / sha[:2] / sha[2:4] / sha
            assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
        assert not any((store_root / "tmp").iterdir())
    finally:
        node.stop()
