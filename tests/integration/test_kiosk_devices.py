"""The kiosk device agent end to end against a real server: scanned pages and PDFs,
retakes, offline captures, ID-card reads with audited reveal, scanner codes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from devices.sim.doccam import SimulatedDocumentCamera
from devices.sim.idcard import SimulatedIdCardReader, fixture_card
from devices.sim.scanner import SimulatedScanner
from signaling.client import SignalClient
from signaling.kiosk_capture import CaptureRequest, DocumentDesk
from signaling.kioskagent import KioskAgent
from signaling.uploader import ChunkedUploader, Spool
from tests.conftest import Server
from tests.helpers import answered_call, wait_for
from vwindow.audit import verify_chain
from vwindow.models import AuditEntry

LICENCE = "电子营业执照 91340100MA2N123456"


def _pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


async def _get(server: Server, token: str, path: str) -> Any:
    async with server.http.get(server.url + path,
                               headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return await r.read() if not r.content_type.endswith("json") else await r.json()


async def _agent_with_devices(server: Server, tmp_path: Path, **devices: Any,
                              ) -> tuple[SignalClient, SignalClient, int, int, KioskAgent]:
    camera = devices.pop("camera", None) or SimulatedDocumentCamera(seed=4, qr_text=LICENCE)
    agent = KioskAgent(server.url, "kiosk-tx01", "demo-kiosk-key", camera,
                       spool_dir=tmp_path / "spool", **devices)
    await agent.start()
    await asyncio.wait_for(agent.connected.wait(), 10)
    kiosk, staff, call_id, case_id = await answered_call(server)
    return kiosk, staff, call_id, case_id, agent


async def test_capture_becomes_original_page_and_growing_pdf(server: Server,
                                                            tmp_path: Path) -> None:
    kiosk, staff, call_id, case_id, devices = await _agent_with_devices(server, tmp_path)
    try:
        for page in (1, 2):
            req = await staff.request("device.capture", call_id=call_id, document="营业执照")
            rid = req["request_id"]
            stages: list[str] = []
            while not stages or stages[-1] not in ("done", "failed", "retake", "queued"):
                msg = await wait_for(staff, "capture.progress", timeout=30,
                                     pred=lambda m, rid=rid: m["request_id"] == rid)
                stages.append(msg["stage"])
            assert stages[-1] == "done", (stages, msg)
            for stage in ("requested", "capturing", "processing", "building_pdf", "uploading"):
                assert stage in stages
            assert f"第 {page} 页" in msg["message"]

        case = await _get(server, staff.token, f"/api/v1/cases/{case_id}")
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for m in case["materials"]:
            by_kind.setdefault(m["kind"], []).append(m)
        assert [m["page"] for m in by_kind["original"]] == [1, 2]
        assert [m["page"] for m in by_kind["page"]] == [1, 2]
        assert all(m["document"] == "营业执照" for m in case["materials"])
        # The document grows: the newest PDF holds both pages, JPEGs embedded as is.
        latest = max(by_kind["document"], key=lambda m: m["id"])
        pdf = await _get(server, staff.token, latest["url"])
        assert pdf.startswith(b"%PDF-") and _pdf_pages(pdf) == 2
        page_jpeg = await _get(server, staff.token, by_kind["page"][1]["url"])
        assert page_jpeg in pdf
        # The processed page is the flattened A4 page, not the desk photo.
        original = cv2.imdecode(np.frombuffer(
            await _get(server, staff.token, by_kind["original"][0]["url"]), np.uint8), 1)
        page_img = cv2.imdecode(np.frombuffer(page_jpeg, np.uint8), 1)
        assert original.shape[:2] == (1944, 2592)
        assert abs(page_img.shape[0] / page_img.shape[1] - 297 / 210) < 0.03
        # The e-licence QR printed on the page is recorded in the case.
        assert [c["text"] for c in case["codes"]] == [LICENCE, LICENCE]
        assert {c["source"] for c in case["codes"]} == {"doccam"}
        assert case["codes"][0]["purpose"] == "licence"
    finally:
        await devices.stop()
        for c in (kiosk, staff):
            await c.close()


async def test_blurred_page_is_sent_back_unless_the_agent_accepts_it(
        server: Server, tmp_path: Path) -> None:
    camera = SimulatedDocumentCamera(seed=5, blur=True)
    kiosk, staff, call_id, case_id, devices = await _agent_with_devices(
        server, tmp_path, camera=camera)
    try:
        req = await staff.request("device.capture", call_id=call_id)
        msg = await wait_for(staff, "capture.progress", timeout=30,
                             pred=lambda m: m["request_id"] == req["request_id"]
                             and m["stage"] in ("retake", "done", "failed"))
        assert msg["stage"] == "retake" and msg["message"]
        case = await _get(server, staff.token, f"/api/v1/cases/{case_id}")
        assert case["materials"] == []
        req = await staff.request("device.capture", call_id=call_id, accept_poor=True)
        msg = await wait_for(staff, "capture.progress", timeout=30,
                             pred=lambda m: m["request_id"] == req["request_id"]
                             and m["stage"] in ("retake", "done", "failed"))
        assert msg["stage"] == "done"
    finally:
        await devices.stop()
        for c in (kiosk, staff):
            await c.close()


async def test_capture_while_offline_is_kept_and_uploaded_later(server: Server,
                                                                tmp_path: Path) -> None:
    kiosk, staff, call_id, case_id = await answered_call(server)
    camera = SimulatedDocumentCamera(seed=6)
    await camera.start()
    spool = Spool(tmp_path / "spool")
    desk = DocumentDesk(camera, spool)
    reports: list[tuple[str, float | None, str | None]] = []

    async def report(stage: str, percent: float | None, message: str | None) -> None:
        reports.append((stage, percent, message))

    try:
        outcome = await desk.capture(CaptureRequest("r1", case_id, call_id), None, report)
        assert outcome is not None and outcome.queued
        assert reports[-1][0] == "queued" and "恢复后自动上传" in str(reports[-1][2])
        assert len(spool.pending()) == 3
        uploader = ChunkedUploader(server.http, server.url, lambda: kiosk.token)
        assert await spool.drain(uploader) == 3
        pushed = [await wait_for(staff, "case.material") for _ in range(3)]
        assert sorted(m["material"]["kind"] for m in pushed) == ["document", "original",
                                                                 "page"]
    finally:
        await camera.stop()
        for c in (kiosk, staff):
            await c.close()


async def test_id_card_read_lands_masked_and_reveal_is_audited(server: Server,
                                                               tmp_path: Path) -> None:
    reader = SimulatedIdCardReader()
    card = fixture_card()
    kiosk, staff, call_id, case_id, devices = await _agent_with_devices(
        server, tmp_path, idcard=reader)
    try:
        # The card already lies on the reader when the call starts: read once, at once.
        pushed = await wait_for(staff, "case.idread", timeout=15)
        read = pushed["read"]
        assert read["number_masked"] == card.id_number[:4] + "*" * 10 + card.id_number[-4:]
        assert card.id_number not in str(pushed)
        assert read["name"] != card.name and read["name"][0] == card.name[0]
        assert read["number_valid"] is True and read["has_photo"] is True
        # The agent asks for a read: it comes again, with progress.
        req = await staff.request("device.idcard", call_id=call_id)
        done = await wait_for(staff, "capture.progress", timeout=15,
                              pred=lambda m: m["request_id"] == req["request_id"]
                              and m["stage"] in ("done", "failed"))
        assert done["stage"] == "done"
        await wait_for(staff, "case.idread")

        async with server.http.post(
                f"{server.url}/api/v1/id-reads/{read['id']}/reveal", json={"reason": "核验"},
                headers={"Authorization": f"Bearer {staff.token}"}) as r:
            assert r.status == 200
            assert (await r.json())["number"] == card.id_number
        # A colleague not on the case, and the kiosk itself, cannot reveal it.
        for token, status in ((await server.login("agent3"), 403), (kiosk.token, 401)):
            async with server.http.post(
                    f"{server.url}/api/v1/id-reads/{read['id']}/reveal", json={},
                    headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == status
        async with server.services.db.session() as s:
            actions = (await s.scalars(select(AuditEntry.action).where(
                AuditEntry.case_id == case_id))).all()
            assert list(actions).count("idcard.read") == 2
            assert list(actions).count("idcard.revealed") == 1
            details = (await s.scalars(select(AuditEntry.detail).where(
                AuditEntry.case_id == case_id))).all()
            assert card.id_number not in str(details)
            await verify_chain(s)
    finally:
        await devices.stop()
        for c in (kiosk, staff):
            await c.close()


async def test_forged_id_read_is_refused_or_flagged(server: Server) -> None:
    kiosk, staff, _call_id, case_id = await answered_call(server)
    path = f"{server.url}/api/v1/cases/{case_id}/id-reads"
    card = fixture_card()
    body = {"card_type": "resident", "name": card.name, "gender": "male",
            "birth_date": "1990-01-01", "number": card.id_number[:-1] + (
                "0" if card.id_number[-1] != "0" else "1"),
            "valid_from": "2020-01-01", "valid_to": "long_term"}
    headers = {"Authorization": f"Bearer {kiosk.token}"}
    async with server.http.post(path, json=body, headers=headers) as r:
        assert r.status == 201
        assert (await r.json())["number_valid"] is False  # wrong check character: flagged
    for bad, field in ((body | {"number": "12345678901234567x"}, "number"),
                       (body | {"birth_date": "1990/01/01"}, "birth_date"),
                       (body | {"photo_wlt_b64": "***"}, "photo_wlt_b64"),
                       (body | {"card_type": "passport"}, "card_type")):
        async with server.http.post(path, json=bad, headers=headers) as r:
            answer = await r.json()
            assert r.status == 400 and answer["error"]["field"] == field, answer
    async with server.http.post(path, json=body,
                                headers={"Authorization": f"Bearer {staff.token}"}) as r:
        assert r.status == 401  # only the kiosk's reader sends reads
    for c in (kiosk, staff):
        await c.close()


async def test_scanner_codes_go_to_the_case_in_a_call_and_to_the_kiosk_page_outside(
        server: Server, tmp_path: Path) -> None:
    scanner = SimulatedScanner()
    page = SignalClient(server.http, server.url, await server.kiosk_token())
    await page.connect()
    devices = KioskAgent(server.url, "kiosk-tx01", "demo-kiosk-key",
                         SimulatedDocumentCamera(seed=7), scanner=scanner,
                         spool_dir=tmp_path / "spool")
    await devices.start()
    try:
        await asyncio.wait_for(devices.connected.wait(), 10)
        await scanner.scan("ABCD2345")  # a booking slip, before any call
        forwarded = await wait_for(page, "kiosk.code", timeout=10)
        assert forwarded["text"] == "ABCD2345" and forwarded["purpose"] == "booking"
        await page.close()

        kiosk, staff, call_id, case_id = await answered_call(server)
        await scanner.scan("https://zwfw.example.gov.cn/licence?id=42")
        code = (await wait_for(staff, "case.code", timeout=10))["code"]
        assert code["source"] == "scanner-sim" and code["purpose"] == "url"
        assert code["call_id"] == call_id
        listed = await _get(server, staff.token, f"/api/v1/cases/{case_id}/codes")
        assert [c["text"] for c in listed] == ["https://zwfw.example.gov.cn/licence?id=42"]
        for c in (kiosk, staff):
            await c.close()
    finally:
        await devices.stop()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_readings_on_postgres(server: Server, tmp_path: Path) -> None:
    await test_id_card_read_lands_masked_and_reveal_is_audited(server, tmp_path)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_missing_devices_are_reported_and_picked_up_when_plugged_in(
        server: Server, tmp_path: Path) -> None:
    from devices.idcard import IdCardReader
    from devices.sim.idcard import IdCardSimulator
    from devices.uvc import UvcDocumentCamera

    port = _free_port()
    reader = IdCardReader(url=f"socket://127.0.0.1:{port}", timeout=1.0)
    camera = UvcDocumentCamera(device=str(tmp_path / "video9"))
    devices = KioskAgent(server.url, "kiosk-tx01", "demo-kiosk-key", camera, idcard=reader,
                         spool_dir=tmp_path / "spool", hotplug_every_s=0.2)
    await devices.start()
    simulator = IdCardSimulator(port=port)
    try:
        # Neither is there, and the agent still connects and serves the call.
        await asyncio.wait_for(devices.connected.wait(), 10)
        assert set(devices.device_errors) == {"doccam", "idcard"}
        assert "video9" in devices.device_errors["doccam"]
        kiosk, staff, call_id, _case_id = await answered_call(server)
        for request, words in (("device.capture", "高拍仪未连接"),
                               ("device.idcard", "读卡器未连接")):
            req = await staff.request(request, call_id=call_id)
            msg = await wait_for(staff, "capture.progress", timeout=10,
                                 pred=lambda m, r=req: m["request_id"] == r["request_id"]
                                 and m["stage"] == "failed")
            assert words in msg["message"]
        # The reader is plugged in: found again within a few hot-plug rounds.
        await simulator.start()
        for _ in range(50):
            if reader.started:
                break
            await asyncio.sleep(0.1)
        assert reader.started and "idcard" not in devices.device_errors
        await wait_for(staff, "case.idread", timeout=10)
        for c in (kiosk, staff):
            await c.close()
    finally:
        await devices.stop()
        await simulator.stop()


def test_kiosk_list_devices_names_drivers_and_nodes(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "kiosk.toml"
    config.write_text('[kiosk]\ncode = "kiosk-tx01"\n[kiosk.idcard]\ndriver = "serial"\n'
                      'options = { url = "/dev/ttyUSB0" }\n')
    out = subprocess.run([sys.executable, "-m", "vwindow.cli", "kiosk", "--config",
                          str(config), "--list-devices"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "scanner  evdev   available" in out
    assert "idcard   serial (url='/dev/ttyUSB0')" in out
    assert "Serial ports" in out and "Input devices" in out
    bad = subprocess.run([sys.executable, "-m", "vwindow.cli", "kiosk", "--config",
                          str(config)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "kiosk code and key" in bad.stderr


async def test_the_desk_keeps_one_case_and_a_bounded_document(tmp_path: Path,
                                                              monkeypatch: Any) -> None:
    """A kiosk agent runs for months: the pages it keeps to rebuild a document's PDF are
    the current case's only, and a document stops at ``MAX_DOCUMENT_PAGES`` with a
    message to go on under another name (nothing captured, nothing lost)."""
    monkeypatch.setattr("signaling.kiosk_capture.MAX_DOCUMENT_PAGES", 2)
    camera = SimulatedDocumentCamera(seed=6)
    await camera.start()
    desk = DocumentDesk(camera, Spool(tmp_path / "spool"))
    reports: list[tuple[str, float | None, str | None]] = []

    async def report(stage: str, percent: float | None, message: str | None) -> None:
        reports.append((stage, percent, message))

    try:
        for n in (1, 2):
            outcome = await desk.capture(CaptureRequest(f"a{n}", 1, 1, "户口簿"), None, report)
            assert outcome is not None and outcome.page == n
        assert await desk.capture(CaptureRequest("a3", 1, 1, "户口簿"), None, report) is None
        assert reports[-1][0] == "failed" and "户口簿" in str(reports[-1][2])
        assert "another document name" in str(reports[-1][2])
        other = await desk.capture(CaptureRequest("a4", 1, 1, "身份证"), None, report)
        assert other is not None and other.page == 1
        # The next case: the last one's pages are let go.
        nxt = await desk.capture(CaptureRequest("b1", 2, 2, "户口簿"), None, report)
        assert nxt is not None and nxt.page == 1
        assert list(desk._documents) == [2]
    finally:
        await camera.stop()
