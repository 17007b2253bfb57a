"""The kiosk's device agent (``vwindow kiosk``): publishes the document camera into the
kiosk's live session and uploads full-resolution captures into the case on request.

It logs in with the kiosk's own device key and connects as the kiosk's ``devices``
client, so the server knows it belongs to that kiosk and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from devices.doccam import DocumentCamera
from media.tracks import FrameSourceTrack
from signaling.client import ClientError, HubPeer, SignalClient, rest_login

logger = logging.getLogger(__name__)


class KioskAgent:
    """Runs until stopped; reconnects with backoff when the uplink drops."""

    def __init__(self, base_url: str, kiosk_code: str, device_key: str,
                 camera: DocumentCamera, *, preview_fps: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.kiosk_code = kiosk_code
        self.device_key = device_key
        self.camera = camera
        self.preview_fps = preview_fps
        self._http: aiohttp.ClientSession | None = None
        self._signal: SignalClient | None = None
        self._peer: HubPeer | None = None
        self._task: asyncio.Task[None] | None = None
        self._pages = 0
        self.connected = asyncio.Event()
        self.captures_done = 0

    async def start(self) -> None:
        await self.camera.start()
        self._http = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="kiosk-agent")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._leave()
        if self._signal is not None:
            await self._signal.close()
            self._signal = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.camera.stop()

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._session()
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, ClientError, OSError) as err:
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
        welcome = await signal.connect()
        self.connected.set()
        logger.info("kiosk agent connected")
        active = welcome.get("active_call")
        if active and active.get("status") == "live":
            await self._join(int(active["call_id"]))
        await signal.closed.wait()

    async def _on_answered(self, msg: dict[str, Any]) -> None:
        await self._join(int(msg["call"]["call_id"]))

    async def _on_ended(self, msg: dict[str, Any]) -> None:
        if self._peer is not None and self._peer.call_id == msg.get("call_id"):
            await self._leave()

    async def _join(self, call_id: int) -> None:
        await self._leave()
        if self._signal is None:
            return
        track = FrameSourceTrack(self.camera.preview_frame, fps=self.preview_fps)
        self._peer = HubPeer(self._signal, call_id, {"doccam": track})
        await self._peer.join()
        logger.info("kiosk agent: publishing the document camera in call %s", call_id)

    async def _leave(self) -> None:
        peer, self._peer = self._peer, None
        if peer is not None:
            await peer.close()

    async def _progress(self, request_id: str, call_id: int, stage: str,
                        percent: float | None = None, message: str | None = None) -> None:
        if self._signal is None:
            return
        fields: dict[str, Any] = {"request_id": request_id, "call_id": call_id,
                                  "stage": stage}
        if percent is not None:
            fields["percent"] = percent
        if message:
            fields["message"] = message
        try:
            await self._signal.request("device.progress", **fields)
        except (TimeoutError, ClientError) as err:
            logger.info("progress report not delivered: %s", err)

    async def _on_capture(self, msg: dict[str, Any]) -> None:
        # Already run beside the socket reader by SignalClient.
        await self._capture(msg)

    async def _capture(self, msg: dict[str, Any]) -> None:
        request_id = str(msg["request_id"])
        case_id = int(msg["case_id"])
        call_id = int(msg["call_id"])
        try:
            await self._progress(request_id, call_id, "capturing", 10)
            still = await self.camera.capture_still()
            self._pages += 1
            await self._progress(request_id, call_id, "uploading", 50)
            await self._upload(case_id, call_id, still.jpeg, f"page-{self._pages}.jpg")
            await self._progress(request_id, call_id, "done", 100)
            self.captures_done += 1
            logger.info("case %s: page %d captured (%dx%d, %d bytes)", case_id, self._pages,
                        still.width, still.height, len(still.jpeg))
        except Exception as err:
            logger.exception("case %s: capture failed", case_id)
            await self._progress(request_id, call_id, "failed",
                                 message=f"拍摄失败 / capture failed: {err}")

    async def _upload(self, case_id: int, call_id: int, data: bytes, filename: str) -> None:
        if self._http is None or self._signal is None:
            raise ClientError("disconnected", "not connected to the server")
        url = f"{self.base_url}/api/v1/cases/{case_id}/materials"
        async with self._http.post(
            url, data=data,
            params={"source": "doccam", "call_id": str(call_id), "filename": filename},
            headers={"Authorization": f"Bearer {self._signal.token}",
                     "Content-Type": "image/jpeg"},
        ) as resp:
            if resp.status not in (200, 201):
                body = await resp.json()
                raise ClientError(body.get("error", {}).get("code", "error"),
                                  body.get("error", {}).get("message", str(resp.status)))
