"""Writing a session recording: one live Matroska file per track (merged at the end by
``media.recording_merge``).

Layout of one recording in the recordings directory::

    session-42-20250101T093000Z-1a2b.parts/   while recording, and after a crash
        .lock                                 flock held by the live recorder
        session.json                          session id and start time
        001-p3-video.mkv                      one partial file per recorded publication
        002-p4-audio.mkv
    session-42-20250101T093000Z-1a2b.webm     after finish() or recover() (.mkv for H.264)

Why one file per track: a Matroska header lists every track and cannot grow once
written, while tracks come and go all through a session (late joiners, a client that
rejoins with a new publication). Each partial is written live (``live=1``, a cluster
closed every ``cluster_ms`` of media, the file flushed after each), so a process killed
mid-call leaves files readable up to about a second before the kill. Their timestamps
are already on the session's timeline (milliseconds since the recording started), so
the final file is a packet copy of all partials, interleaved by timestamp: no decode,
no encode. Publications of the same participant, role and codec that follow each other
(a rejoin) become one stream of the final file, each part starting at a keyframe.

The writer is one thread per recording, fed through a deque and woken every
``flush_interval`` (not per packet); what it has not written yet is bounded by
``max_pending_bytes``, and ``put`` refuses packets beyond that instead of buffering.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import re
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
from av.audio.codeccontext import AudioCodecContext
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext

from media.codec_headers import OPUS_RATE, h264_parameter_sets, opus_head, picture_size
from media.recording_errors import RecordingError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
PARTS_SUFFIX = ".parts"
SESSION_FILE = "session.json"
LOCK_FILE = ".lock"
MS = Fraction(1, 1000)
WEBM_CODECS = frozenset({"vp8", "opus"})
_TEMPLATE_ENCODERS = {"VP8": ("libvpx",), "H264": ("libx264", "libopenh264", "h264"),
                      "OPUS": ("libopus", "opus")}
TAG = "VWINDOW_"


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """What is recorded about one publication."""

    pub_id: str
    role: str
    participant: str
    kind: str  # "audio" | "video"
    codec: str  # "VP8" | "H264" | "opus"


@dataclass(frozen=True, slots=True)
class RecordedTrack:
    """One stream of a finished recording, on the session's timeline (seconds)."""

    role: str
    participant: str
    kind: str
    codec: str
    start_s: float
    end_s: float
    segments: int = 1  # publications joined into this stream (a participant rejoined)


@dataclass(frozen=True, slots=True)
class RecordingResult:
    session_id: str
    path: Path
    duration_s: float
    tracks: tuple[RecordedTrack, ...]
    size: int
    started_at: datetime
    recovered: bool = False


# -- writing -----------------------------------------------------------------------


@dataclass
class PartStats:
    info: TrackInfo
    path: Path | None = None
    written: int = 0
    bytes: int = 0
    skipped: int = 0  # packets the container could not take (no picture size yet)
    failed: str | None = None
    first_ms: int = 0
    end_ms: int = 0


@dataclass(frozen=True, slots=True)
class PartSummary:
    """What one partial file holds, on the session's timeline."""

    path: Path
    info: TrackInfo
    first_ms: int
    end_ms: int
    packets: int


_OPEN, _PACKET, _CLOSE, _STOP = range(4)


@dataclass
class _Part:
    stats: PartStats
    out: tuple[OutputContainer, Stream] | None = None  # once the first packet came
    closed: bool = False


class PartialWriter:
    """Writes the partial files of one recording from its own thread."""

    def __init__(self, parts_dir: Path, *, session_id: str, started_at: datetime,
                 max_pending_bytes: int, cluster_ms: int = 1000,
                 flush_interval: float = 0.25) -> None:
        self.parts_dir = parts_dir
        self.session_id = session_id
        self.started_at = started_at
        self.max_pending_bytes = max_pending_bytes
        self.cluster_ms = cluster_ms
        self.flush_interval = flush_interval
        self._items: deque[tuple[Any, ...]] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._parts: dict[int, _Part] = {}
        self.parts: dict[int, PartStats] = {}
        self.max_pending = 0  # high-water mark of pending bytes
        self.cpu_s = 0.0  # the writer thread's CPU time

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"recorder {self.session_id}")
        self._thread.start()

    def open(self, key: int, info: TrackInfo) -> None:
        stats = PartStats(info)
        self.parts[key] = stats
        self._items.append((_OPEN, key, stats))

    def put(self, key: int, packet: Packet[Any], pts_ms: int, duration_ms: int) -> bool:
        """Queue one packet; False (and nothing queued) when the writer is too far behind."""
        size = packet.size
        with self._lock:
            if self._pending + size > self.max_pending_bytes:
                return False
            self._pending += size
            if self._pending > self.max_pending:
                self.max_pending = self._pending
        self._items.append((_PACKET, key, packet, pts_ms, duration_ms, size))
        return True

    def close(self, key: int) -> None:
        self._items.append((_CLOSE, key))
        self._wake.set()

    def summaries(self) -> list[PartSummary]:
        """The partial files written without a failure (after ``join``): what merging
        them needs, without reading them once more."""
        return [PartSummary(s.path, s.info, s.first_ms, s.end_ms, s.written)
                for s in self.parts.values()
                if s.path is not None and s.written and s.failed is None]

    def stop(self) -> None:
        """Write what is queued, close every file, end the thread (see ``join``)."""
        self._items.append((_STOP,))
        self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            running = True
            while running:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                running = self._drain()
                self.cpu_s = time.thread_time()
        finally:
            for part in self._parts.values():
                self._close(part)
            self.cpu_s = time.thread_time()

    def _drain(self) -> bool:
        items = self._items
        while items:
            item = items.popleft()
            op = item[0]
            if op == _PACKET:
                _, key, packet, pts_ms, duration_ms, size = item
                try:
                    self._write(key, packet, pts_ms, duration_ms)
                finally:
                    with self._lock:
                        self._pending -= size
            elif op == _OPEN:
                _, key, stats = item
                self._parts[key] = _Part(stats)
            elif op == _CLOSE:
                part = self._parts.get(item[1])
                if part is not None:
                    self._close(part)
            else:
                return False
        return True

    def _write(self, key: int, packet: Packet[Any], pts_ms: int, duration_ms: int) -> None:
        part = self._parts[key]
        stats = part.stats
        if part.closed or stats.failed is not None:
            stats.skipped += 1
            return
        try:
            if part.out is None:
                part.out = self._create(part, key, bytes(packet))
                if part.out is None:
                    stats.skipped += 1
                    return
            container, stream = part.out
            packet.pts = packet.dts = pts_ms
            packet.duration = duration_ms
            packet.time_base = MS
            packet.stream = stream
            container.mux(packet)
        except Exception as err:  # a full disk, or worse: this track only, not the thread
            stats.failed = str(err)
            expected = isinstance(err, (OSError, av.error.FFmpegError, RecordingError))
            logger.log(logging.ERROR, "session %s: recording %s %s %s failed, the rest of it "
                       "is lost: %s", self.session_id, stats.info.participant,
                       stats.info.role, stats.info.pub_id, err, exc_info=not expected)
            self._close(part)
            return
        if not stats.written:
            stats.first_ms = pts_ms
        stats.written += 1
        stats.bytes += packet.size
        stats.end_ms = pts_ms + max(duration_ms, 1)

    def _create(self, part: _Part, key: int,
                first: bytes) -> tuple[OutputContainer, Stream] | None:
        stats = part.stats
        info = stats.info
        params = _stream_params(info.codec, first)
        if params is None:
            return None
        path = self.parts_dir / f"{key:03d}-{_safe(info.pub_id)}-{info.kind}.mkv"
        container = av.open(str(path), "w", format="matroska", options={
            "live": "1", "cluster_time_limit": str(self.cluster_ms), "flush_packets": "1"})
        try:
            stream = _add_stream(container, info, *params)
            container.metadata.update(session_tags(self.session_id, self.started_at))
            container.start_encoding()
        except BaseException:
            container.close()
            raise
        stats.path = path
        return container, stream

    def _close(self, part: _Part) -> None:
        if part.closed:
            return
        part.closed = True
        if part.out is not None:
            try:
                part.out[0].close()
            except (OSError, av.error.FFmpegError) as err:
                part.stats.failed = part.stats.failed or str(err)
                logger.error("session %s: closing %s failed: %s", self.session_id,
                             part.stats.path, err)


def _stream_params(codec: str, first: bytes) -> tuple[bytes | None, tuple[int, int] | None] | None:
    """Codec private data and picture size for a stream whose first packet is ``first``;
    None when a video packet does not say its size (not a keyframe)."""
    name = codec.upper()
    if name == "OPUS":
        return opus_head(), None
    if name not in ("VP8", "H264"):
        raise RecordingError(f"cannot record {codec!r}: only VP8, H264 and opus",
                             field="codec")
    size = picture_size(name, first)
    if size is None:
        return None
    return (h264_parameter_sets(first) if name == "H264" else None), size


def _add_stream(container: OutputContainer, info: TrackInfo, extradata: bytes | None,
                size: tuple[int, int] | None) -> Stream:
    """A stream for already encoded ``info.codec`` packets. PyAV makes streams from
    encoders or from other streams; a scratch encoder stream (never opened) carries the
    codec id over, the rest is set here."""
    name = info.codec.upper()
    scratch = av.open(io.BytesIO(), "w", format="matroska")
    try:
        template: Stream | None = None
        for encoder in _TEMPLATE_ENCODERS[name]:
            try:
                template = scratch.add_stream(encoder)
                break
            except (ValueError, av.error.FFmpegError):
                continue
        if template is None:
            raise RecordingError(f"this PyAV build knows no {info.codec} encoder to "
                                 "describe the stream with", field="codec")
        stream = container.add_stream_from_template(template, opaque=True)
    finally:
        scratch.close()
    ctx = stream.codec_context
    if isinstance(ctx, VideoCodecContext) and size is not None:
        ctx.width, ctx.height = size
    elif isinstance(ctx, AudioCodecContext):
        ctx.sample_rate = OPUS_RATE
        ctx.layout = "stereo"
    if extradata is not None:
        ctx.extradata = extradata
    stream.time_base = MS
    stream.metadata.update(track_tags(info))
    return stream


def track_tags(info: TrackInfo) -> dict[str, str]:
    return {"title": f"{info.participant} {info.role}",
            f"{TAG}PUB": info.pub_id, f"{TAG}ROLE": info.role,
            f"{TAG}PARTICIPANT": info.participant, f"{TAG}KIND": info.kind,
            f"{TAG}CODEC": info.codec}


def session_tags(session_id: str, started_at: datetime) -> dict[str, str]:
    return {"title": f"session {session_id}", f"{TAG}SESSION": session_id,
            f"{TAG}STARTED_AT": started_at.isoformat(), f"{TAG}FORMAT": str(FORMAT_VERSION)}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:40] or "track"


# -- the recording's directory -----------------------------------------------------


def create_parts_dir(directory: Path, stem: str, session_id: str,
                     started_at: datetime) -> tuple[Path, int]:
    """Create ``<stem>.parts`` in ``directory``, locked; returns it and the lock's fd.

    The directory is prepared under another name and renamed once locked, so that a
    ``recover()`` running meanwhile never takes a live recording for a crashed one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{stem}{PARTS_SUFFIX}"
    staging = directory / f".{stem}{PARTS_SUFFIX}.new"
    staging.mkdir()
    fd = os.open(staging / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _write_atomic(staging / SESSION_FILE, json.dumps({
            "format": FORMAT_VERSION, "session_id": session_id,
            "started_at": started_at.isoformat()}).encode())
        staging.rename(final)
    except BaseException:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final, fd


def release_parts_dir(fd: int, parts_dir: Path | None = None) -> None:
    """Unlock; with ``parts_dir``, delete it first."""
    try:
        if parts_dir is not None:
            shutil.rmtree(parts_dir, ignore_errors=True)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    # No fsync: this runs on the event loop, and what it guards against is a process
    # dying (the page cache survives that); the partial files carry the same tags.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
