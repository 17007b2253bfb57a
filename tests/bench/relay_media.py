"""Cheap synthetic media for ``tests.bench.relay``: send pre-encoded packets, count frames.

A client process encodes a short loop once (``EncodedLoop``: 640x480 VP8 with a keyframe
at the start of the loop plus an intra-only copy of every frame, and an Opus tone), then
every ``PacketLoopTrack`` replays it with ever-increasing pts, packetized without
encoding: as ``av.Packet``s its ``RTCRtpSender`` pulls (the ``MediaPlayer(decode=False)``
path), or, with ``tests.bench.relay_wire``'s clients, frames a process-wide ``Pacer``
hands to the sender's per-frame loop. A keyframe request (PLI/FIR) swaps the next frame
for its intra-only copy, as a browser's encoder would answer it.

``FrameCounter`` replaces aiortc's receive-side ``decoder_worker`` (the private hook
``media.private_hooks.DECODER_WORKER``) with one that only notes when each reassembled
frame arrived and its RTP timestamp: nothing is decoded and nothing reaches the remote
track's queue, so there is nothing to drain. ``relay_wire`` counts into the same
``StreamCount``s from the RTP headers once a connection is up.
"""

from __future__ import annotations

import asyncio
import bisect
import fractions
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiortc.rtcrtpreceiver
import av
import numpy as np
from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.packet import Packet

from media.encoded_frame import EncodedFrame, as_packet
from media.fast_send import FastRtpLoop
from media.private_hooks import DECODER_WORKER, REMOTE_TRACK_QUEUE, SENDER_SEND_KEYFRAME

logger = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms Opus frames
KEYFRAME_MIN_INTERVAL = 0.5  # s between two answered keyframe requests
MAX_LAG = 0.5  # s behind schedule before a sender skips frames instead of bursting


@dataclass(frozen=True)
class MediaSpec:
    width: int = 640
    height: int = 480
    fps: float = 15.0
    video_kbps: int = 600
    audio_kbps: int = 32
    loop_seconds: float = 4.0


@dataclass
class EncodedLoop:
    """One encoded loop of a kind: ``frames`` in order, ``intra`` their keyframe copies."""

    kind: str
    frames: list[bytes]
    intra: list[bytes]
    tick: int  # pts step per frame, in 1/clock
    clock: int
    period: float  # seconds per frame

    @property
    def kbps(self) -> float:
        return sum(len(f) for f in self.frames) * 8 / (len(self.frames) * self.period) / 1000


def _pattern(spec: MediaSpec, index: int, noise: np.ndarray) -> np.ndarray:
    """A moving picture that costs the encoder real bits: scrolling noise, a sweeping bar."""
    w, h = spec.width, spec.height
    shift = (index * 5) % w
    image = np.roll(noise, shift, axis=1).copy()
    x = (index * 11) % w
    image[:, x:x + 24] = 255
    y = (index * 7) % h
    image[y:y + 24, :] = (40, 200, 40)
    return image


def _encode_video(spec: MediaSpec, count: int, *, gop: int) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = spec.width
    codec.height = spec.height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, round(spec.fps))
    codec.framerate = fractions.Fraction(round(spec.fps), 1)
    codec.bit_rate = spec.video_kbps * 1000
    codec.gop_size = gop
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                     "auto-alt-ref": "0", "error-resilient": "1", "static-thresh": "0",
                     "rc_lookahead": "0", "minrate": str(spec.video_kbps * 1000),
                     "maxrate": str(spec.video_kbps * 1000),
                     "bufsize": str(spec.video_kbps * 1000)}
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (spec.height // 8, spec.width // 8, 3), dtype=np.uint8)
    noise = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
    out: list[bytes] = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(_pattern(spec, i, noise), format="bgr24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        frame.time_base = codec.time_base
        out.extend(bytes(p) for p in codec.encode(frame))
    out.extend(bytes(p) for p in codec.encode(None))
    if len(out) != count:
        raise RuntimeError(f"VP8 encoder gave {len(out)} packets for {count} frames")
    return out


def _encode_audio(spec: MediaSpec, count: int) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = spec.audio_kbps * 1000
    codec.options = {"application": "voip", "frame_duration": "20"}
    t = np.arange(AUDIO_SAMPLES * count) / AUDIO_RATE
    wave = (np.sin(2 * math.pi * 440 * t) * 6000
            + np.random.default_rng(3).normal(0, 800, t.size)).astype(np.int16)
    out: list[bytes] = []
    for i in range(count):
        frame = av.AudioFrame.from_ndarray(
            wave[i * AUDIO_SAMPLES:(i + 1) * AUDIO_SAMPLES].reshape(1, -1),
            format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = i * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        out.extend(bytes(p) for p in codec.encode(frame))
    out.extend(bytes(p) for p in codec.encode(None))
    return out[:count]


def encode_loops(spec: MediaSpec) -> dict[str, EncodedLoop]:
    """The video and audio loops every track of this process replays."""
    frames = max(1, round(spec.loop_seconds * spec.fps))
    video = _encode_video(spec, frames, gop=frames)
    intra = _encode_video(spec, frames, gop=1)
    audio_count = max(1, round(spec.loop_seconds * AUDIO_RATE / AUDIO_SAMPLES))
    audio = _encode_audio(spec, audio_count)
    return {
        "video": EncodedLoop("video", video, intra, round(VIDEO_CLOCK / spec.fps),
                             VIDEO_CLOCK, 1.0 / spec.fps),
        "audio": EncodedLoop("audio", audio, audio, AUDIO_SAMPLES, AUDIO_RATE,
                             AUDIO_SAMPLES / AUDIO_RATE),
    }


class PacketLoopTrack(MediaStreamTrack):
    """Replays an ``EncodedLoop`` in real time; logs each send time.

    Either aiortc's sender pulls it (``recv()`` gives the next ``av.Packet`` when it is
    due), or, once a ``Pacer`` took it on (``tests.bench.relay_wire``), the pacer hands
    each due frame to the sender's per-frame loop and ``recv()`` gives nothing.
    """

    def __init__(self, loop: EncodedLoop) -> None:
        super().__init__()
        self.kind = loop.kind
        self.loop = loop
        self.sent: list[float] = []  # monotonic time of each frame handed to the sender
        self.late: list[float] = []  # how far behind its schedule each was, in seconds
        self.indices: list[int] = []  # each one's frame number (pts / tick): skips show
        self.keyframes_sent = 0
        self.skipped = 0
        self.sink: FastRtpLoop | None = None  # the sender's loop, once paced
        self._index = 0
        self._start: float | None = None
        self._keyframe_wanted = False
        self._last_keyframe = 0.0
        self._time_base = fractions.Fraction(1, loop.clock)
        self._stopped = asyncio.Event()

    def request_keyframe(self) -> None:
        now = time.monotonic()
        if self.kind == "video" and now - self._last_keyframe >= KEYFRAME_MIN_INTERVAL:
            self._keyframe_wanted = True
            self._last_keyframe = now

    def bind_sender(self, sender: RTCRtpSender) -> None:
        """Answer the sender's PLI/FIR (it has no encoder of its own to tell)."""
        setattr(sender, SENDER_SEND_KEYFRAME.name, self.request_keyframe)

    def stop(self) -> None:
        super().stop()
        self._stopped.set()

    def due(self) -> float:
        """When the next frame is due (monotonic); the schedule starts now if not yet."""
        if self._start is None:
            self._start = time.monotonic()
        return self._start + self._index * self.loop.period

    def _next(self, now: float) -> EncodedFrame:
        """The next frame, sent at ``now``, logged; far behind schedule (this process is
        overloaded), frames are skipped rather than burst."""
        due = self.due()
        if now - due > MAX_LAG:
            # The frame sent instead is logged as late as the one it replaces was.
            behind = int((now - due) / self.loop.period)
            self._index += behind
            self.skipped += behind
        slot = self._index % len(self.loop.frames)
        data = self.loop.frames[slot]
        if self._keyframe_wanted and slot != 0:
            data = self.loop.intra[slot]
            self.keyframes_sent += 1
        keyframe = slot == 0 or self._keyframe_wanted
        self._keyframe_wanted = False
        frame = EncodedFrame(data, self._index * self.loop.tick, self._time_base,
                             keyframe and self.kind == "video")
        self.indices.append(self._index)
        self._index += 1
        self.late.append(max(0.0, now - due))
        self.sent.append(time.monotonic())
        return frame

    def send_due(self, now: float) -> float:
        """Hand every frame due by ``now`` to the sink; returns when the next one is."""
        sink = self.sink
        while (due := self.due()) <= now:
            if sink is None or not sink.accepts(self):
                self._index += 1  # not connected yet: this one is not sent
                continue
            sink.take(self, self._next(now))  # False (a full socket): lost, as it counts
        return due

    async def recv(self) -> Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self.sink is not None:
            await self._stopped.wait()  # the pacer sends this track's frames
            raise MediaStreamError
        now = time.monotonic()
        due = self.due()
        if due > now:
            await asyncio.sleep(due - now)
            now = time.monotonic()
        return as_packet(self._next(now))


class Pacer:
    """Sends the due frames of every track it paces from one task: one timer for the
    whole process instead of one ``sleep()`` per frame and track."""

    TICK = 0.004  # s: the shortest sleep; frames due within it go out together

    def __init__(self) -> None:
        self.tracks: list[PacketLoopTrack] = []
        self._task: asyncio.Task[None] | None = None

    def pace(self, track: PacketLoopTrack, sink: FastRtpLoop) -> None:
        track.sink = sink
        if track not in self.tracks:
            self.tracks.append(track)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pacer")

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            soonest = now + 1.0
            ended = False
            for track in self.tracks:
                if track.readyState != "live":
                    ended = True
                    continue
                try:
                    soonest = min(soonest, track.send_due(now))
                except Exception:
                    # That sender is broken (its connection went away under it): it
                    # stops, which its stream reports; the others go on.
                    logger.exception("pacing a %s track failed; it stops", track.kind)
                    track.stop()
                    ended = True
            if ended:
                self.tracks = [t for t in self.tracks if t.readyState == "live"]
            await asyncio.sleep(max(self.TICK, soonest - time.monotonic()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def count_between(times: list[float], t0: float, t1: float) -> int:
    return bisect.bisect_right(times, t1) - bisect.bisect_left(times, t0)


@dataclass
class StreamCount:
    """Frames one receiver reassembled: arrival times and unwrapped RTP timestamps."""

    arrivals: list[float] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    ended: bool = False

    def add(self, timestamp: int) -> None:
        """A frame with RTP timestamp ``timestamp`` arrived now."""
        self.timestamps.append(timestamp)  # first: see snapshot()
        self.arrivals.append(time.monotonic())

    def snapshot(self) -> tuple[list[float], list[int]]:
        arrivals = list(self.arrivals)  # the timestamp is appended first
        return arrivals, self.timestamps[:len(arrivals)]


def matched_loss(sent: list[float], indices: list[int], tick: int, arrivals: list[float],
                 stamps: list[int], t0: float, t1: float, *,
                 grace: float = 3.0) -> tuple[float, list[tuple[float, int]], float] | None:
    """Share of the frames sent in [t0, t1] that never arrived, matched by timestamp.

    ``sent`` and ``indices`` are the publisher's send times and frame numbers (pts /
    tick). A hub keeps each frame's RTP timestamp up to a constant offset C (forwarding
    and Janus rewrite only the base; decode + re-encode keeps the video pts). A frame
    cannot arrive before it was sent, so for each arrival, stamp - tick * (number of the
    last frame sent before it) <= C, with equality whenever the frame arrived before the
    next one was sent: C is the largest such value. None when the stamps do not fit one
    C (re-encoded Opus is restamped): the caller counts frames instead. Also returns the
    runs of lost frames: (seconds after t0 the run began, frames), and the 95th
    percentile of the frames' latency (send to reassembled, seconds). A frame arriving
    more than ``grace`` seconds after t1 counts as lost.
    """
    lo = bisect.bisect_left(sent, t0)
    hi = bisect.bisect_right(sent, t1)
    if hi <= lo:
        return None
    first = bisect.bisect_left(arrivals, t0)
    last = bisect.bisect_right(arrivals, t1 + grace)
    bounds: list[tuple[int, int]] = []  # (stamp, number of the last frame sent before it)
    for arrival, stamp in zip(arrivals[first:last], stamps[first:last], strict=True):
        position = bisect.bisect_right(sent, arrival) - 1
        if position >= 0:
            bounds.append((stamp, indices[position]))
    if len(bounds) < 10:
        return None
    lower = Counter(stamp - index * tick for stamp, index in bounds)
    repeated = [c for c, n in lower.items() if n >= 2]
    offset = max(repeated) if repeated else max(lower)
    late = round(grace / (sent[-1] - sent[0]) * len(sent)) if len(sent) > 1 else 1
    fits = sum(1 for stamp, index in bounds
               if (stamp - offset) % tick == 0
               and index - late <= (stamp - offset) // tick <= index)
    if fits < 0.9 * len(bounds):
        return None
    wanted = {indices[p]: p for p in range(lo, hi)}  # frame number -> position in sent
    got: set[int] = set()
    latencies: list[float] = []
    start = max(0, first - 200)
    for arrival, stamp in zip(arrivals[start:], stamps[start:], strict=True):
        number, rest = divmod(stamp - offset, tick)
        slot = wanted.get(number) if rest == 0 else None
        if slot is not None and slot not in got:
            got.add(slot)
            latencies.append(arrival - sent[slot])
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0
    runs: list[tuple[float, int]] = []
    for position in range(lo, hi):
        if position in got:
            continue
        if runs and position - 1 not in got and position > lo:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((round(sent[position] - t0, 2), 1))
    return max(0.0, 1.0 - len(got) / (hi - lo)), runs, p95


def _count_inline(input_q: queue.Queue[Any], output_q: asyncio.Queue[Any],
                  stream: StreamCount) -> None:
    """On the event loop: count the frames the receiver puts into ``input_q`` as it puts
    them (the ones it queued before this ran first), and end the track on its ``None``."""

    def put(item: Any, block: bool = True, timeout: float | None = None) -> None:
        if stream.ended:
            return
        if item is None:
            stream.ended = True
            output_q.put_nowait(None)
            return
        stream.add(item[1].timestamp)

    while True:
        try:
            put(input_q.get_nowait())
        except queue.Empty:
            break
    input_q.put = put  # type: ignore[method-assign]


Worker = Callable[[asyncio.AbstractEventLoop, "queue.Queue[Any]", "asyncio.Queue[Any]",
                   threading.Event], None]


class FrameCounter:
    """While started, every receiver of this process counts frames instead of decoding."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[asyncio.Queue[Any], StreamCount] = {}
        self._original: Worker | None = None

    def start(self) -> None:
        module = aiortc.rtcrtpreceiver
        original = getattr(module, DECODER_WORKER.name, None)
        if not callable(original):
            raise RuntimeError(f"{DECODER_WORKER.target} is gone: update tests.bench")
        self._original = original
        setattr(module, DECODER_WORKER.name, self._worker)

    def stop(self) -> None:
        if self._original is not None:
            setattr(aiortc.rtcrtpreceiver, DECODER_WORKER.name, self._original)
            self._original = None

    def _stream(self, output_q: asyncio.Queue[Any]) -> StreamCount:
        with self._lock:
            stream = self._streams.get(output_q)
            if stream is None:
                stream = self._streams[output_q] = StreamCount()
            return stream

    def for_track(self, track: MediaStreamTrack) -> StreamCount:
        output_q = getattr(track, REMOTE_TRACK_QUEUE.name, None)
        if not isinstance(output_q, asyncio.Queue):
            raise RuntimeError(f"{REMOTE_TRACK_QUEUE.target} is not an asyncio.Queue")
        return self._stream(output_q)

    def _worker(self, loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any],
                output_q: asyncio.Queue[Any], decode_error: threading.Event) -> None:
        """In the receiver's thread: hand the counting to the event loop and end. A thread
        woken per frame costs a futex wake and a GIL hand-off each time (a fifth of the
        clients' CPU), as ``media.forwarding._InlineFeed`` found for the hub."""
        stream = self._stream(output_q)
        try:
            loop.call_soon_threadsafe(_count_inline, input_q, output_q, stream)
        except RuntimeError:
            pass  # the loop has closed: nothing more will come
