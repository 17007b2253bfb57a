"""The kiosk's device agent (``vwindow kiosk``): publishes the document camera into the
kiosk's live session, turns capture requests into scanned pages and PDFs in the case
(:mod:`signaling.kiosk_capture`), sends ID-card reads (:mod:`signaling.kiosk_readers`),
and keeps whatever could not be uploaded in an on-disk spool until the uplink is back.

It logs in with the kiosk's own device key and connects as the kiosk's ``devices``
client, so the server knows it belongs to that kiosk and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from devices.base import Device
from devices.doccam import DocumentCamera
from devices.errors import DeviceError
from devices.idcard import IdCardReader
from devices.qr import DecodedCode
from devices.scan.pipeline import ScanPipeline
from devices.scanner import CodeScanner
from devices.screen import ScreenCapture
from media.tracks import FrameSourceTrack
from signaling.client import ClientError, HubPeer, SignalClient, rest_login
from signaling.kiosk_capture import CaptureRequest, DocumentDesk
from signaling.kiosk_readers import IdCardDesk
from signaling.kiosk_remote import RemoteDesk
from signaling.uploader import ChunkedUploader, Spool
from vwindow.config import RemoteControlConfig

logger = logging.getLogger(__name__)

_NETWORK_ERRORS = (TimeoutError, aiohttp.ClientError, ClientError, OSError)


class KioskAgent:
    """Runs until stopped; reconnects with backoff when the uplink drops."""

    def __init__(self, base_url: str, kiosk_code: str, device_key: str,
                 camera: DocumentCamera | None, *, idcard: IdCardReader | None = None,
                 scanner: CodeScanner | None = None, screen: ScreenCapture | None = None,
                 remote: RemoteControlConfig | None = None,
                 spool_dir: str | Path | None = None, preview_fps: float = 10.0,
                 drain_every_s: float = 5.0, hotplug_every_s: float = 5.0,
                 pipelines: dict[str, ScanPipeline] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.kiosk_code = kiosk_code
        self.device_key = device_key
        self.camera = camera
        self.idcard = idcard
        self.scanner = scanner
        self.remote = RemoteDesk(screen, remote or RemoteControlConfig(), self._send_remote)
        self._scanning: asyncio.Task[None] | None = None
        self.codes_sent = 0
        self.preview_fps = preview_fps
        self.drain_every_s = drain_every_s
        self._own_spool = spool_dir is None
        self.spool = Spool(spool_dir if spool_dir is not None
                           else tempfile.mkdtemp(prefix="vwindow-spool-"))
        self.hotplug_every_s = hotplug_every_s
        self.desk = (DocumentDesk(camera, self.spool, pipelines=pipelines)
                     if camera is not None else None)
        self.id_desk = IdCardDesk(idcard, self._post) if idcard is not None else None
        self._upload_lock = self.desk.upload_lock if self.desk else asyncio.Lock()
        self.device_errors: dict[str, str] = {}
        """Kind -> why that device is not working now (cleared when it comes back)."""
        self._hotplug: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._signal: SignalClient | None = None
        self._peer: HubPeer | None = None
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.captures_done = 0

    def _devices(self) -> list[tuple[str, Device]]:
        found: list[tuple[str, Device | None]] = [
            ("doccam", self.camera), ("idcard", self.idcard), ("scanner", self.scanner)]
        return [(kind, d) for kind, d in found if d is not None]

    async def _try_start(self, kind: str, device: Device) -> bool:
        """Start one device; a missing one is reported and the rest carry on."""
        if device.started:
            return True
        try:
            await device.start()
        except (DeviceError, OSError) as err:
            message = err.message if isinstance(err, DeviceError) else str(err)
            if self.device_errors.get(kind) != message:
                logger.warning("kiosk: %s %r not available: %s", kind, device.name, message)
            self.device_errors[kind] = message
            return False
        if kind in self.device_errors:
            logger.info("kiosk: %s %r is back", kind, device.name)
        self.device_errors.pop(kind, None)
        return True

    async def start(self) -> None:
        for kind, device in self._devices():
            await self._try_start(kind, device)
        if self.scanner is not None:
            self._scanning = asyncio.create_task(self._scan_loop(self.scanner),
                                                 name="kiosk-scanner")
        self._http = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="kiosk-agent")
        self._drainer = asyncio.create_task(self._drain_loop(), name="kiosk-spool")
        self._hotplug = asyncio.create_task(self._hotplug_loop(), name="kiosk-hotplug")

    async def _hotplug_loop(self) -> None:
        """Look again for devices that were missing or went away (plugged back in)."""
        while True:
            await asyncio.sleep(self.hotplug_every_s)
            for kind, device in self._devices():
                if not device.started:
                    await self._try_start(kind, device)

    async def _unplugged(self, kind: str, device: Device, err: DeviceError) -> None:
        """A device failed mid-use: close it so the hot-plug loop reopens it."""
        self.device_errors[kind] = err.message
        logger.warning("kiosk: %s %r failed (%s); will look for it again", kind, device.name,
                       err.message)
        await device.stop()

    async def stop(self) -> None:
        for task in (self._task, self._drainer, self._scanning, self._hotplug):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._drainer = self._scanning = self._hotplug = None
        await self._leave()
        if self._signal is not None:
            await self._signal.close()
            self._signal = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        for _, device in self._devices():
            await device.stop()
        if self._own_spool:
            shutil.rmtree(self.spool.root, ignore_errors=True)

    def _uploader(self) -> ChunkedUploader | None:
        signal = self._signal
        if self._http is None or signal is None or not self.connected.is_set():
            return None
        return ChunkedUploader(self._http, self.base_url, lambda: signal.token)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._http is None or self._signal is None:
            raise ClientError("disconnected", "not connected to the server")
        async with self._http.post(f"{self.base_url}{path}", json=body,
                                   headers={"Authorization": f"Bearer {self._signal.token}"},
                                   timeout=aiohttp.ClientTimeout(total=20)) as resp:
            answer: dict[str, Any] = await resp.json()
            if resp.status >= 400:
                error = answer.get("error", {})
                raise ClientError(error.get("code", "error"), error.get("message", ""))
            return answer

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._session()
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except _NETWORK_ERRORS as err:
                logger.warning("kiosk agent: connection problem (%s); retrying in %.0f s",
                               err, delay)
            self.connected.clear()
            await self._leave()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _session(self) -> None:
        if self._http is None:
            raise ClientError("not_started", "the kiosk agent has not been started")
        login = await rest_login(self._http, self.base_url, "auth/kiosk",
                                 {"kiosk_code": self.kiosk_code,
                                  "device_key": self.device_key})
        signal = SignalClient(self._http, self.base_url, login["token"], client="devices")
        self._signal = signal
        signal.on("call.answered", self._on_answered)
        signal.on("call.ended", self._on_ended)
        signal.on("device.capture", self._on_capture)
        signal.on("device.idcard", self._on_idcard)
        signal.on("device.screen", self._on_screen)
        signal.on("remote.request", self._on_remote_request)
        signal.on("remote.consent", self._on_remote_consent)
        signal.on("remote.stop", self._on_remote_stop)
        signal.on("remote.input", self._on_remote_input)
        welcome = await signal.connect()
        self.connected.set()
        logger.info("kiosk agent connected")
        active = welcome.get("active_call")
        if active and active.get("status") == "live":
            await self._join(int(active["call_id"]), int(active["case_id"]))
        await signal.closed.wait()

    async def _drain_loop(self) -> None:
        while True:
            await asyncio.sleep(self.drain_every_s)
            uploader = self._uploader()
            if uploader is None or not await asyncio.to_thread(self.spool.pending):
                continue
            try:
                async with self._upload_lock:
                    sent = await self.spool.drain(uploader)
                if sent:
                    logger.info("kiosk agent: %d kept upload(s) sent", sent)
            except _NETWORK_ERRORS as err:
                logger.info("kiosk agent: spool not drained yet (%s)", err)

    async def _scan_loop(self, scanner: CodeScanner) -> None:
        async for code in scanner.codes():
            signal = self._signal
            if signal is None or not self.connected.is_set():
                logger.warning("kiosk agent: a scanned code was dropped (offline); scan again")
                continue
            try:
                await signal.request("device.code", text=code.text, source=code.source)
                self.codes_sent += 1
            except _NETWORK_ERRORS as err:
                logger.warning("kiosk agent: scanned code not delivered (%s)", err)

    async def _on_answered(self, msg: dict[str, Any]) -> None:
        await self._join(int(msg["call"]["call_id"]), int(msg["call"]["case_id"]))

    async def _on_ended(self, msg: dict[str, Any]) -> None:
        if self._peer is not None and self._peer.call_id == msg.get("call_id"):
            await self._leave()

    async def _join(self, call_id: int, case_id: int) -> None:
        await self._leave()
        if self._signal is None:
            return
        tracks: dict[str, Any] = {}
        if self.camera is not None and self.camera.started:
            tracks["doccam"] = FrameSourceTrack(self.camera.preview_frame,
                                                fps=self.preview_fps)
        self._peer = HubPeer(self._signal, call_id, tracks)
        if self.id_desk is not None:
            self._watch = asyncio.create_task(self.id_desk.watch(case_id, call_id),
                                              name=f"idcard-watch-{call_id}")
        await self._peer.join()
        logger.info("kiosk agent: publishing the document camera in call %s", call_id)

    async def _leave(self) -> None:
        await self.remote.call_ended(self._peer)
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        peer, self._peer = self._peer, None
        if peer is not None:
            await peer.close()

    def _reporter(self, request_id: str, call_id: int) -> Any:
        async def report(stage: str, percent: float | None, message: str | None) -> None:
            if self._signal is None:
                return
            fields: dict[str, Any] = {"request_id": request_id, "call_id": call_id,
                                      "stage": stage}
            if percent is not None:
                fields["percent"] = round(percent, 1)
            if message:
                fields["message"] = message[:500]
            try:
                await self._signal.request("device.progress", **fields)
            except (TimeoutError, ClientError) as err:
                logger.info("progress report not delivered: %s", err)
        return report

    async def _on_capture(self, msg: dict[str, Any]) -> None:
        # Already run beside the socket reader by SignalClient.
        req = CaptureRequest.from_push(msg)
        report = self._reporter(req.request_id, req.call_id)

        async def post_code(code: DecodedCode) -> None:
            try:
                await self._post(f"/api/v1/cases/{req.case_id}/codes",
                                 {"text": code.text, "symbology": code.symbology,
                                  "source": "doccam", "call_id": req.call_id})
            except _NETWORK_ERRORS as err:
                logger.info("case %s: code on the page not recorded (%s)", req.case_id, err)

        camera = self.camera
        if self.desk is None or camera is None or not camera.started:
            why = self.device_errors.get("doccam", "not configured")
            await report("failed", None, f"高拍仪未连接 / document camera not connected: {why}")
            return
        try:
            outcome = await self.desk.capture(req, self._uploader(), report, post_code)
        except DeviceError as err:
            await self._unplugged("doccam", camera, err)
            await report("failed", None, f"高拍仪故障 / document camera failed: {err.message}")
            return
        except Exception as err:
            logger.exception("case %s: capture failed", req.case_id)
            await report("failed", None, f"拍摄失败 / capture failed: {err}")
            return
        if outcome is not None:
            self.captures_done += 1

    async def _on_idcard(self, msg: dict[str, Any]) -> None:
        call_id = int(msg["call_id"])
        report = self._reporter(str(msg["request_id"]), call_id)
        if self.id_desk is None or self.idcard is None or not self.idcard.started:
            why = self.device_errors.get("idcard", "not configured")
            await report("failed", None, f"身份证读卡器未连接 / no ID-card reader: {why}")
            return
        try:
            await self.id_desk.read_on_request(int(msg["case_id"]), call_id, report)
        except _NETWORK_ERRORS as err:
            await report("failed", None, f"读卡结果未能上传 / not sent: {err}")

    # -- screen share and remote control -----------------------------------------------

    async def _send_remote(self, call_id: int, fields: dict[str, Any]) -> None:
        if self._signal is None:
            return
        try:
            await self._signal.request("remote.state", call_id=call_id, **fields)
        except _NETWORK_ERRORS as err:
            logger.info("remote-control state not delivered: %s", err)

    async def _on_screen(self, msg: dict[str, Any]) -> None:
        problem = await self.remote.share_screen(self._peer, bool(msg.get("on", True)))
        if problem:
            logger.warning("call %s: screen share refused: %s", msg.get("call_id"), problem)

    async def _on_remote_request(self, msg: dict[str, Any]) -> None:
        await self.remote.request(int(msg["call_id"]), str(msg.get("agent_name") or ""))

    async def _on_remote_consent(self, msg: dict[str, Any]) -> None:
        self.remote.consent(bool(msg.get("granted")))

    async def _on_remote_stop(self, msg: dict[str, Any]) -> None:
        self.remote.stop(str(msg.get("by") or "agent"))

    async def _on_remote_input(self, msg: dict[str, Any]) -> None:
        event = msg.get("event")
        if isinstance(event, dict):
            self.remote.inject(event)
