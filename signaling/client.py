"""A Python signalling client with a hub peer connection.

Used by the kiosk device agent, by tests and by benchmarks: it speaks exactly the
protocol the browsers speak (PROTOCOL.md), so the server cannot tell them apart.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from vwindow.errors import VWindowError

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]


class ClientError(VWindowError):
    """The server answered a request with an error (``code`` is the server's)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code


async def rest_login(http: aiohttp.ClientSession, base_url: str, path: str,
                     body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(f"{base_url}/api/v1/{path}", json=body) as resp:
        data: dict[str, Any] = await resp.json()
        if resp.status != 200:
            err = data.get("error", {})
            raise ClientError(err.get("code", "error"), err.get("message", str(resp.status)),
                              err.get("field"))
        return data


class SignalClient:
    """One authenticated WebSocket: ``request()`` awaits the reply, ``on()`` gets pushes."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str, *,
                 client: str = "page") -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.client = client
        self.welcome: dict[str, Any] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.received: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def on(self, msg_type: str, handler: Handler) -> None:
        self._handlers[msg_type].append(handler)

    def off(self, msg_type: str, handler: Handler) -> None:
        if handler in self._handlers.get(msg_type, []):
            self._handlers[msg_type].remove(handler)

    async def connect(self) -> dict[str, Any]:
        url = self.base_url.replace("http", "ws", 1) + "/ws"
        # Offers permessage-deflate as browsers do (the server declines it).
        self._ws = await self.http.ws_connect(url, heartbeat=20.0, compress=15)
        self.closed.clear()
        self._reader = asyncio.create_task(self._read())
        self.welcome = await self.request("auth", token=self.token, client=self.client)
        return self.welcome

    async def send(self, msg: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise ClientError("disconnected", "the signalling socket is closed")
        await self._ws.send_str(json.dumps(msg))

    async def request(self, msg_type: str, timeout: float = 15.0,
                      **fields: Any) -> dict[str, Any]:
        msg_id = str(next(self._ids))
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            await self.send({"v": 1, "type": msg_type, "id": msg_id, **fields})
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(msg_id, None)

    async def _read(self) -> None:
        ws = self._ws
        if ws is None:
            raise ClientError("disconnected", "read before connect()")
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                self.received.append(data)
                del self.received[:-200]
                ref = data.get("ref")
                fut = self._pending.get(ref) if ref else None
                if fut is not None and not fut.done():
                    if data.get("type") == "error":
                        fut.set_exception(ClientError(data.get("code", "error"),
                                                      data.get("message", ""),
                                                      data.get("field")))
                    else:
                        fut.set_result(data)
                    if data.get("type") in ("ack", "error") or data.get("type") not in \
                            self._handlers:
                        continue
                for handler in list(self._handlers.get(data.get("type", ""), ())):
                    try:
                        result = handler(data)
                    except Exception:
                        logger.exception("handler for %s failed", data.get("type"))
                        continue
                    if asyncio.iscoroutine(result):
                        # A handler may itself make requests, whose replies this loop
                        # must go on reading: run it beside the loop.
                        task = asyncio.create_task(self._guard(result, data.get("type")))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
        finally:
            self.closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ClientError("disconnected", "socket closed"))

    @staticmethod
    async def _guard(coro: Awaitable[None], msg_type: object) -> None:
        try:
            await coro
        except Exception:
            logger.exception("handler for %s failed", msg_type)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


class HubPeer:
    """This client's one peer connection to a session's hub (the hub offers)."""

    def __init__(self, signal: SignalClient, call_id: int,
                 tracks: dict[str, MediaStreamTrack]) -> None:
        self.signal = signal
        self.call_id = call_id
        self.tracks = tracks  # role -> local track
        welcome = signal.welcome
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"),
                                credential=s.get("credential"))
                   for s in welcome.get("ice_servers") or []]
        policy = (RTCIceTransportPolicy.RELAY if welcome.get("ice_transport_policy") == "relay"
                  else RTCIceTransportPolicy.ALL)
        # TURN from the welcome, like the browsers; max-bundle as on the hub.
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=servers, iceTransportPolicy=policy,
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.remote: dict[str, tuple[dict[str, Any], MediaStreamTrack]] = {}
        self.on_track: Callable[[dict[str, Any], MediaStreamTrack], None] | None = None
        self._offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=16)
        self._worker: asyncio.Task[None] | None = None
        self._track_infos: dict[str, dict[str, Any]] = {}
        self._current_mids: set[str] = set()
        self.negotiated = asyncio.Event()

        @self.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            for t in self.pc.getTransceivers():
                if t.receiver.track is track and t.mid in self._track_infos:
                    info = self._track_infos[t.mid]
                    self.remote[t.mid] = (info, track)
                    if self.on_track is not None:
                        self.on_track(info, track)

    async def join(self) -> None:
        self.signal.on("rtc.offer", self._queue_offer)
        self._worker = asyncio.create_task(self._answer_offers())
        publish = [{"role": role, "kind": track.kind} for role, track in self.tracks.items()]
        await self.signal.request("rtc.join", call_id=self.call_id, publish=publish)

    def _queue_offer(self, msg: dict[str, Any]) -> None:
        if msg.get("call_id") == self.call_id:
            self._offers.put_nowait(msg)

    async def _answer_offers(self) -> None:
        while True:
            offer = await self._offers.get()
            self._current_mids = {info["mid"] for info in offer["tracks"]}
            for info in offer["tracks"]:
                self._track_infos[info["mid"]] = info
            await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            # Tracks the hub no longer sends us (a participant left or rejoined) are gone;
            # an m-line the hub reuses for someone else's track now carries that one.
            for mid in [m for m in self.remote if m not in self._current_mids]:
                del self.remote[mid]
            for t in self.pc.getTransceivers():
                info = self._track_infos.get(t.mid or "")
                if (info and t.mid in self._current_mids and info["direction"] == "subscribe"
                        and t.receiver.track is not None):
                    self.remote[t.mid] = (info, t.receiver.track)
            for t in self.pc.getTransceivers():
                info = self._track_infos.get(t.mid or "")
                if info and info["direction"] == "publish" and info["role"] in self.tracks:
                    if t.sender.track is None:
                        t.sender.replaceTrack(self.tracks[info["role"]])
                    t.direction = "sendonly"
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.signal.request("rtc.answer", call_id=self.call_id,
                                      sdp=self.pc.localDescription.sdp)
            self.negotiated.set()

    async def publish(self, role: str, track: MediaStreamTrack) -> None:
        """Add a track mid-call (a screen share); the hub re-offers with its slot."""
        self.tracks[role] = track
        await self.signal.request("rtc.publish", call_id=self.call_id, role=role,
                                  kind=track.kind)

    async def unpublish(self, role: str) -> None:
        track = self.tracks.pop(role, None)
        await self.signal.request("rtc.unpublish", call_id=self.call_id, role=role)
        if track is not None:
            track.stop()

    def remote_roles(self) -> set[tuple[str, str]]:
        """(participant kind, role) of the tracks the latest offer says we receive."""
        return {(i["participant"]["kind"], i["role"]) for i in self._track_infos.values()
                if i["direction"] == "subscribe" and i["mid"] in self._current_mids}

    async def close(self) -> None:
        self.signal.off("rtc.offer", self._queue_offer)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self.pc.close()
