"""Simulated kiosk, agent and monitor clients for ``tests.bench.relay``.

One worker process runs many sessions in one asyncio loop. Every sender replays
pre-encoded packets and every receiver only counts frames (``tests.bench.relay_media``),
so the clients cost little beside the hub they load. ``VWindowCall`` goes through the
real signalling (REST login, ``call.start``, ``call.accept``, ``session.monitor``,
``rtc.join`` with ``HubPeer``); ``JanusCall`` does the same call with a Janus videoroom:
one room per session, kiosk and agent publish and subscribe to each other, the monitor
subscribes to both.

The parent talks to a worker over a pipe: it sends the options, the worker answers
``("ready", info)`` once every stream of its sessions delivers frames; then the parent
sends ``("measure", t0, t1)`` and gets ``("streams", [...])``, then ``("stop",)``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from media.ice import HostAddresses
from signaling.client import HubPeer, SignalClient, rest_login
from tests.bench.janus import JanusSession
from tests.bench.relay_media import (
    EncodedLoop,
    FrameCounter,
    MediaSpec,
    PacketLoopTrack,
    StreamCount,
    count_between,
    encode_loops,
    matched_loss,
)
from tests.bench.relay_server import ACCOUNTS
from tests.bench.relay_wire import WireClients

logger = logging.getLogger(__name__)

SETUP_TIMEOUT = 60.0
LATE = 0.1  # s behind schedule: this client process could not keep its own pace
LATE_ARRIVAL = 3.0  # s after the window a frame sent in it may still arrive


@dataclass(frozen=True)
class WorkerOptions:
    mode: str  # "forward" | "transcode" | "janus"
    urls: tuple[str, ...]  # vwindow nodes' base URLs (session i: i mod len) or Janus's
    sessions: tuple[int, ...]
    monitor_every: int
    spec: MediaSpec
    ice_address: str
    concurrency: int = 3
    janus_rec_dir: str = ""
    nice: int = 0
    wire: bool = True  # tests.bench.relay_wire's clients (False: aiortc's own paths)


@dataclass
class Stream:
    """One received stream: who gets whose ``kind``; the publisher's send log."""

    session: int
    receiver: str
    publisher: str
    kind: str
    sent: PacketLoopTrack
    count: StreamCount | None = None

    def report(self, t0: float, t1: float) -> dict[str, Any]:
        sent = count_between(self.sent.sent, t0, t1)
        lo = bisect.bisect_left(self.sent.sent, t0)
        late = sum(1 for x in self.sent.late[lo:lo + sent] if x > LATE)
        stopped = not self.sent.sent or self.sent.sent[-1] < t1 - 1.0
        arrivals, stamps = self.count.snapshot() if self.count else ([], [])
        received = count_between(arrivals, t0, t1)
        counted = max(0.0, 1.0 - received / sent) if sent else 1.0
        matched = matched_loss(self.sent.sent, self.sent.indices, self.sent.loop.tick, arrivals,
                               stamps, t0, t1, grace=LATE_ARRIVAL)
        return {"session": self.session, "receiver": self.receiver,
                "publisher": self.publisher, "kind": self.kind, "sent": sent,
                "received": received, "fps": received / (t1 - t0),
                "loss": counted if matched is None else matched[0],
                "loss_counted": counted, "matched": matched is not None,
                "sender_late": late / sent if sent else 1.0, "sender_stopped": stopped,
                "latency_p95_ms": round(matched[2] * 1000, 1) if matched else None,
                "lost_runs": sorted(matched[1], key=lambda r: -r[1])[:3] if matched else [],
                "distinct_stamps": len(set(stamps[count_between(arrivals, 0, t0):
                                                  count_between(arrivals, 0, t1)]))}


@dataclass
class Participant:
    name: str
    tracks: dict[str, PacketLoopTrack] = field(default_factory=dict)


def _media_tracks(loops: dict[str, EncodedLoop]) -> dict[str, PacketLoopTrack]:
    return {"camera": PacketLoopTrack(loops["video"]), "mic": PacketLoopTrack(loops["audio"])}


def _bind_senders(senders: list[RTCRtpSender]) -> None:
    for sender in senders:
        if isinstance(sender.track, PacketLoopTrack):
            sender.track.bind_sender(sender)


async def _flowing(streams: list[Stream], timeout: float) -> None:
    """Until every stream has delivered a frame (a keyframe came through)."""
    deadline = time.monotonic() + timeout
    while True:
        missing = [s for s in streams if s.count is None or not s.count.arrivals]
        if not missing:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"s{s.session} {s.receiver}<-{s.publisher} {s.kind}"
                              for s in missing[:6])
            raise TimeoutError(f"{len(missing)} streams never delivered a frame: {names}")
        await asyncio.sleep(0.1)


# -- vwindow -------------------------------------------------------------------------------


class VWindowCall:
    """One session through the real server: kiosk calls, agent accepts, monitor listens."""

    def __init__(self, index: int, http: aiohttp.ClientSession, base: str,
                 loops: dict[str, EncodedLoop], counter: FrameCounter,
                 monitored: bool) -> None:
        self.index = index
        self.http = http
        self.base = base
        self.counter = counter
        self.monitored = monitored
        self.kiosk = Participant("kiosk", _media_tracks(loops))
        self.agent = Participant("agent", _media_tracks(loops))
        self.clients: list[SignalClient] = []
        self.peers: dict[str, HubPeer] = {}
        self.streams: list[Stream] = []

    async def _client(self, path: str, body: dict[str, Any]) -> SignalClient:
        token = (await rest_login(self.http, self.base, path, body))["token"]
        client = SignalClient(self.http, self.base, token)
        await client.connect()
        self.clients.append(client)
        return client

    async def start(self) -> None:
        i = self.index
        kiosk = await self._client("auth/kiosk", {"kiosk_code": ACCOUNTS.kiosk(i),
                                                  "device_key": ACCOUNTS.kiosk_key})
        agent = await self._client("auth/login", {"username": ACCOUNTS.agent(i),
                                                  "password": ACCOUNTS.password})
        queued = await kiosk.request("call.start", service_code="SB-001")
        call_id = int(queued["call"]["call_id"])
        await agent.request("call.accept", call_id=call_id)
        for who, client in (("kiosk", kiosk), ("agent", agent)):
            tracks: dict[str, MediaStreamTrack] = dict(getattr(self, who).tracks)
            peer = HubPeer(client, call_id, tracks)
            self.peers[who] = peer
            await peer.join()
        if self.monitored:
            sup = await self._client("auth/login", {"username": ACCOUNTS.supervisor(i),
                                                    "password": ACCOUNTS.password})
            await sup.request("session.monitor", call_id=call_id, mode="listen")
            peer = HubPeer(sup, call_id, {})
            self.peers["monitor"] = peer
            await peer.join()
        wanted = {"kiosk": [("agent", "camera"), ("agent", "mic")],
                  "agent": [("kiosk", "camera"), ("kiosk", "mic")],
                  "monitor": [("kiosk", "camera"), ("kiosk", "mic"),
                              ("agent", "camera"), ("agent", "mic")]}
        for who, peer in self.peers.items():
            await asyncio.wait_for(peer.negotiated.wait(), SETUP_TIMEOUT)
            _bind_senders([t.sender for t in peer.pc.getTransceivers()])
            for publisher, role in wanted[who]:
                source: Participant = getattr(self, publisher)
                self.streams.append(Stream(self.index, who, publisher,
                                           "video" if role == "camera" else "audio",
                                           source.tracks[role]))
        await self._attach_counts(SETUP_TIMEOUT)

    async def _attach_counts(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for stream in self.streams:
                if stream.count is not None:
                    continue
                role = "camera" if stream.kind == "video" else "mic"
                for info, track in self.peers[stream.receiver].remote.values():
                    if info["participant"]["kind"] == stream.publisher and info["role"] == role:
                        stream.count = self.counter.for_track(track)
            if all(s.count is not None for s in self.streams):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {self.index}: some remote tracks never came")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for peer in self.peers.values():
            with contextlib.suppress(Exception):
                await peer.close()
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()


# -- Janus ---------------------------------------------------------------------------------


def _peer_connection() -> RTCPeerConnection:
    # max-bundle, as HubPeer: with aiortc's default policy the second audio m-line of a
    # monitor's offer keeps a transport of its own that Janus never connects.
    return RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


def _pin_vp8(pc: RTCPeerConnection) -> None:
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs
              if c.mimeType.lower() == "video/vp8"]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(codecs)


def _jsep(pc: RTCPeerConnection) -> dict[str, Any]:
    return {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp,
            "trickle": False}


async def _connected(pc: RTCPeerConnection, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise TimeoutError(f"peer connection {pc.connectionState}")
        await asyncio.sleep(0.05)


class JanusCall:
    """One session as a Janus videoroom: a room, two publishers, three subscribers."""

    def __init__(self, index: int, http: aiohttp.ClientSession, url: str,
                 loops: dict[str, EncodedLoop], counter: FrameCounter,
                 monitored: bool, rec_dir: str) -> None:
        self.index = index
        self.http = http
        self.url = url
        self.counter = counter
        self.monitored = monitored
        self.rec_dir = rec_dir
        self.room = 1000 + index
        self.kiosk = Participant("kiosk", _media_tracks(loops))
        self.agent = Participant("agent", _media_tracks(loops))
        self.sessions: list[JanusSession] = []
        self.pcs: list[RTCPeerConnection] = []
        self.streams: list[Stream] = []

    async def _session(self) -> JanusSession:
        session = JanusSession(self.http, self.url)
        await session.create()
        self.sessions.append(session)
        return session

    async def _publish(self, session: JanusSession, who: Participant) -> int:
        handle = await session.attach()
        pc = _peer_connection()
        self.pcs.append(pc)
        for track in who.tracks.values():
            pc.addTransceiver(track, direction="sendonly")
        _pin_vp8(pc)
        await pc.setLocalDescription(await pc.createOffer())
        event = await session.message(handle, {
            "request": "joinandconfigure", "room": self.room, "ptype": "publisher",
            "display": who.name, "audio": True, "video": True}, jsep=_jsep(pc))
        jsep = event["jsep"]
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], jsep["type"]))
        _bind_senders(pc.getSenders())
        await _connected(pc, SETUP_TIMEOUT)
        feed: int = event["plugindata"]["data"]["id"]
        return feed

    async def _subscribe(self, session: JanusSession, receiver: str,
                         feeds: list[tuple[Participant, int]]) -> None:
        handle = await session.attach()
        pc = _peer_connection()
        self.pcs.append(pc)
        event = await session.message(handle, {
            "request": "join", "room": self.room, "ptype": "subscriber",
            "streams": [{"feed": feed} for _, feed in feeds]})
        jsep = event["jsep"]
        # Janus lists each stream it offers: which feed, which mid.
        by_mid = {s["mid"]: s for s in event["plugindata"]["data"].get("streams", [])}
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], jsep["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        await session.message(handle, {"request": "start"}, jsep=_jsep(pc))
        publishers = {feed: who for who, feed in feeds}
        for transceiver in pc.getTransceivers():
            info = by_mid.get(transceiver.mid)
            track = transceiver.receiver.track
            if info is None or track is None or info.get("feed_id") not in publishers:
                continue
            publisher = publishers[info["feed_id"]]
            role = "camera" if transceiver.kind == "video" else "mic"
            self.streams.append(Stream(self.index, receiver, publisher.name,
                                       transceiver.kind, publisher.tracks[role],
                                       self.counter.for_track(track)))
        await _connected(pc, SETUP_TIMEOUT)

    async def start(self) -> None:
        kiosk_session = await self._session()
        agent_session = await self._session()
        admin = await kiosk_session.attach()
        await kiosk_session.request(admin, {
            "request": "create", "room": self.room, "publishers": 3,
            "videocodec": "vp8", "audiocodec": "opus", "bitrate": 0, "fir_freq": 0,
            "record": bool(self.rec_dir), "rec_dir": self.rec_dir,
            "notify_joining": False})
        kiosk_feed = await self._publish(kiosk_session, self.kiosk)
        agent_feed = await self._publish(agent_session, self.agent)
        await self._subscribe(kiosk_session, "kiosk", [(self.agent, agent_feed)])
        await self._subscribe(agent_session, "agent", [(self.kiosk, kiosk_feed)])
        if self.monitored:
            monitor_session = await self._session()
            await self._subscribe(monitor_session, "monitor",
                                  [(self.kiosk, kiosk_feed), (self.agent, agent_feed)])
        expected = 4 + (4 if self.monitored else 0)
        if len(self.streams) != expected:
            raise RuntimeError(f"session {self.index}: Janus offered {len(self.streams)} "
                               f"streams, expected {expected}")

    async def close(self) -> None:
        for pc in self.pcs:
            with contextlib.suppress(Exception):
                await pc.close()
        for session in self.sessions:
            with contextlib.suppress(Exception):
                await session.destroy()


# -- the worker process --------------------------------------------------------------------


async def _recv(conn: Connection) -> Any:
    return await asyncio.to_thread(conn.recv)


async def _worker(conn: Connection, opts: WorkerOptions) -> None:
    loops = encode_loops(opts.spec)
    counter = FrameCounter()
    counter.start()
    wire = WireClients(counter) if opts.wire else None
    if wire is not None:
        wire.start()
    # ICE on one address only (loopback for vwindow; Janus cannot gather on loopback).
    HostAddresses((opts.ice_address,)).start()
    calls: list[VWindowCall | JanusCall] = []
    gate = asyncio.Semaphore(opts.concurrency)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=None)) as http:
        for i in opts.sessions:
            monitored = opts.monitor_every > 0 and i % opts.monitor_every == 0
            call: VWindowCall | JanusCall
            if opts.mode == "janus":
                call = JanusCall(i, http, opts.urls[0], loops, counter, monitored,
                                 opts.janus_rec_dir)
            else:
                call = VWindowCall(i, http, opts.urls[i % len(opts.urls)], loops, counter,
                                   monitored)
            calls.append(call)

        async def start(call: VWindowCall | JanusCall) -> None:
            async with gate:
                await asyncio.wait_for(call.start(), SETUP_TIMEOUT)

        began = time.monotonic()
        error = ""
        try:
            await asyncio.gather(*(start(c) for c in calls))
            streams = [s for c in calls for s in c.streams]
            await _flowing(streams, SETUP_TIMEOUT)
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
            streams = [s for c in calls for s in c.streams]
        conn.send(("ready", {"setup_s": time.monotonic() - began, "error": error,
                             "video_kbps": loops["video"].kbps,
                             "audio_kbps": loops["audio"].kbps}))
        while True:
            msg = await _recv(conn)
            if msg[0] == "measure":
                _, t0, t1 = msg
                await asyncio.sleep(LATE_ARRIVAL)  # frames sent before t1 may be in flight
                conn.send(("streams", {
                    "streams": [s.report(t0, t1) for s in streams],
                    "skipped": sum(t.skipped for c in calls
                                   for p in (c.kiosk, c.agent) for t in p.tracks.values()),
                    "keyframes": sum(t.keyframes_sent for c in calls
                                     for p in (c.kiosk, c.agent)
                                     for t in p.tracks.values()),
                    "wire": wire.report() if wire is not None else None}))
            elif msg[0] == "stop":
                break
        if wire is not None:
            await wire.pacer.stop()
        for call in calls:
            await call.close()
    if wire is not None:
        wire.stop()
    counter.stop()
    conn.send(("stopped",))


def worker_main(conn: Connection, opts: WorkerOptions) -> None:
    logging.basicConfig(level=logging.WARNING)
    if opts.nice:
        os.nice(opts.nice)  # when the CPU runs short, the hub under test goes first
    asyncio.run(_worker(conn, opts))
