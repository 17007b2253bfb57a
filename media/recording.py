"""Recording every track of one live session by muxing the forwarded packets.

A ``SessionRecorder`` subscribes to each publication's ``EncodedSource`` like any other
subscriber (a bounded ``ForwardingTrack`` that starts at a keyframe, handing each frame
to the recorder as it is offered) and writes the packets into Matroska with PyAV: no
decode, no encode. Every track is placed on the session's timeline by when its frames
arrived at the hub (``media.arrival_clock``), so audio and video of one participant,
and all participants, stay aligned. Files are written live, one per track, by a writer
thread, and remuxed into one ``.webm`` (VP8 + Opus) or ``.mkv`` (H.264) at the end
(``media.recording_files``); ``recover()`` does the same for the partial files of a
process that died mid-call (``media.recording_merge``).

Usage by the hub (on the event loop)::

    recorder = SessionRecorder(session_id, recordings_dir)
    recorder.start()
    for pub in hub.publications():         # recording starts mid-session
        recorder.add_publication(pub)
    recorder.add_publication(pub)          # in SessionHub._on_track, for each new one
    recorder.remove_track(pub.id)          # optional: a stopped source ends its track
    result = await recorder.finish()       # session end -> RecordingResult
    await recorder.abort()                 # or: discard everything
    results = await asyncio.to_thread(recover, recordings_dir)   # server start-up
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiortc.mediastreams import MediaStreamError
from av.packet import Packet

from media.arrival_clock import AUDIO_RECEIVE_LAG, VIDEO_RECEIVE_LAG, ArrivalClock
from media.codec_headers import OPUS_RATE, detect_video_codec, opus_samples
from media.encoded_frame import EncodedFrame, as_packet
from media.errors import MediaError
from media.fanout import EncodedPublication, Publication
from media.recording_errors import (
    NothingRecordedError,
    RecorderStateError,
    RecordingError,
)
from media.recording_files import (
    PartialWriter,
    RecordedTrack,
    RecordingResult,
    TrackInfo,
    create_parts_dir,
    release_parts_dir,
)
from media.recording_merge import merge_parts, recover

__all__ = [
    "NothingRecordedError",
    "RecordedTrack",
    "RecorderStats",
    "RecordingError",
    "RecordingResult",
    "SessionRecorder",
    "TrackStats",
    "recover",
]

logger = logging.getLogger(__name__)

MAX_PENDING_BYTES = 16 * 2**20  # ~2 min of a 1 Mbit/s session waiting for a slow disk
KEYFRAME_ASK_INTERVAL = 1.0  # a video track waiting for a keyframe after a drop
# Audio is written back to back while its arrival-placed time stays this close (a player
# hears a gap or an overlap as a click); beyond it, a gap is kept or a packet trimmed.
AUDIO_SLACK_MS = 30
STOP_TIMEOUT = 5.0
_CODECS = {"vp8": "VP8", "h264": "H264", "opus": "opus"}


class PacketTrack(Protocol):
    """What a source's ``subscribe()`` returns: ``recv()`` gives ``av.Packet``s."""

    @property
    def kind(self) -> str: ...

    async def recv(self) -> object: ...

    def stop(self) -> None: ...


class PacketSource(Protocol):
    """An ``EncodedSource``, as far as the recorder is concerned."""

    @property
    def kind(self) -> str: ...

    def subscribe(self) -> PacketTrack: ...


@dataclass(frozen=True, slots=True)
class TrackStats:
    pub_id: str
    role: str
    participant: str
    kind: str
    received: int  # packets read from the subscription
    written: int  # packets handed to the writer
    dropped: int  # the writer was too far behind (and video frames up to a keyframe)
    upstream_dropped: int  # dropped by the bounded subscription before we read them
    trimmed: int  # audio packets left out to stay in step with the hub's clock
    ended: bool


@dataclass(frozen=True, slots=True)
class RecorderStats:
    tracks: tuple[TrackStats, ...]
    pending_bytes: int
    max_pending_bytes: int  # high-water mark
    writer_cpu_s: float  # the writer thread


@dataclass(eq=False)
class _Track:
    key: int
    pub_id: str
    role: str
    participant: str
    kind: str
    codec: str | None
    track: PacketTrack
    clock: ArrivalClock
    task: asyncio.Task[None] | None = None
    info: TrackInfo | None = None  # once the codec is known and the writer told
    need_keyframe: bool = False
    last_ms: int | None = None
    interval_ms: int = 0
    keyframe_asked: float = float("-inf")
    received: int = 0
    written: int = 0
    dropped: int = 0
    upstream_dropped: int = 0
    upstream_base: int | None = None  # the subscription's drop count at our first packet
    source: object = None  # what feeds the subscription (a rejoin may replace it)
    trimmed: int = 0  # audio packets left out to stay in step with the hub's clock
    duration_ms: int = 0  # of the last audio packet written
    ended: bool = False
    tick: float = 0.0  # seconds per pts unit, from the first packet (then fixed)
    held: list[tuple[Packet[Any], float, int]] = field(default_factory=list)


class _Feed:
    """The recorder as its subscription's ``FrameSink`` (``media.encoded_fanout``): each
    frame is placed as the source offers it, instead of by a task woken per frame."""

    __slots__ = ("rec", "recorder")

    def __init__(self, recorder: SessionRecorder, rec: _Track) -> None:
        self.recorder = recorder
        self.rec = rec

    def accepts(self, track: object) -> bool:
        return not self.rec.ended

    def take(self, track: object, frame: EncodedFrame) -> bool:
        recorder = self.recorder
        recorder._on_packet(self.rec, as_packet(frame), recorder._clock())
        return True


class SessionRecorder:
    """Records every track of one live session into ``directory``."""

    def __init__(self, session_id: int | str, directory: Path, *,
                 clock: Callable[[], float] = time.monotonic,
                 max_pending_bytes: int = MAX_PENDING_BYTES, cluster_ms: int = 1000,
                 flush_interval: float = 0.25) -> None:
        if max_pending_bytes < 1:
            raise ValueError(f"max_pending_bytes must be positive, got {max_pending_bytes}")
        self.session_id = str(session_id)
        self.directory = Path(directory)
        self._clock = clock
        self._max_pending = max_pending_bytes
        self._cluster_ms = cluster_ms
        self._flush_interval = flush_interval
        self._state = "new"  # -> recording -> stopping -> finished | aborted
        self._tracks: dict[str, _Track] = {}
        self._seq = 0
        self._t0 = 0.0
        self._writer: PartialWriter | None = None
        self._parts_dir: Path | None = None
        self._lock_fd: int | None = None
        self.started_at: datetime | None = None

    @property
    def state(self) -> str:
        return self._state

    @property
    def parts_dir(self) -> Path | None:
        """Where the partial files are written while recording."""
        return self._parts_dir

    def start(self) -> None:
        """Start the session's timeline (now) and the writer. Blocks briefly: it creates
        the recording's directory."""
        if self._state != "new":
            raise RecorderStateError(f"recorder of session {self.session_id} is {self._state}")
        self.started_at = datetime.now(UTC)
        stem = (f"session-{self.session_id}-{self.started_at:%Y%m%dT%H%M%SZ}-"
                f"{secrets.token_hex(2)}")
        self._parts_dir, self._lock_fd = create_parts_dir(
            self.directory, stem, self.session_id, self.started_at)
        self._t0 = self._clock()
        self._writer = PartialWriter(self._parts_dir, session_id=self.session_id,
                                     started_at=self.started_at,
                                     max_pending_bytes=self._max_pending,
                                     cluster_ms=self._cluster_ms,
                                     flush_interval=self._flush_interval)
        self._writer.start()
        self._state = "recording"
        logger.info("session %s: recording to %s", self.session_id, self._parts_dir.name)

    def add_publication(self, pub: Publication) -> None:
        """Record a hub publication (see ``add_track``)."""
        if not isinstance(pub, EncodedPublication):
            raise RecordingError(f"publication {pub.id} ({pub.role}) is decoded, not "
                                 "forwarded: it cannot be recorded without re-encoding")
        self.add_track(pub.id, role=pub.role, participant=pub.owner.id, kind=pub.kind,
                       source=pub.source)

    def add_track(self, pub_id: str, *, role: str, participant: str, kind: str,
                  source: PacketSource, codec: str | None = None) -> None:
        """Record ``source`` from now until it ends (or ``remove_track``).

        ``codec`` ("VP8", "H264", "opus"; any case) is read from the first keyframe when
        not given.
        """
        if self._state != "recording":
            raise RecorderStateError(
                f"recorder of session {self.session_id} is {self._state}, not recording")
        if kind not in ("audio", "video"):
            raise RecordingError(f"kind must be 'audio' or 'video', got {kind!r}", field="kind")
        if source.kind != kind:
            raise RecordingError(f"publication {pub_id} is {kind} but its source is "
                                 f"{source.kind}", field="kind")
        if codec is not None:
            canonical = _CODECS.get(codec.lower())
            if canonical is None or (canonical == "opus") != (kind == "audio"):
                raise RecordingError(f"cannot record {kind} in {codec!r}", field="codec")
            codec = canonical
        if pub_id in self._tracks and not self._tracks[pub_id].ended:
            raise RecordingError(f"publication {pub_id} is already recorded", field="pub_id")
        try:
            track = source.subscribe()
        except MediaError as err:
            raise RecordingError(f"publication {pub_id} cannot be recorded: {err}") from err
        self._seq += 1
        lag = VIDEO_RECEIVE_LAG if kind == "video" else AUDIO_RECEIVE_LAG
        rec = _Track(key=self._seq, pub_id=pub_id, role=role, participant=participant,
                     kind=kind, codec=codec, track=track, clock=ArrivalClock(lag=lag),
                     need_keyframe=kind == "video")
        self._tracks[pub_id] = rec
        set_sink = getattr(track, "set_sink", None)
        if callable(set_sink):  # a ForwardingTrack: frames come as offered
            set_sink(_Feed(self, rec))
        rec.task = asyncio.get_running_loop().create_task(
            self._read(rec), name=f"record {self.session_id} {pub_id}")
        logger.info("session %s: recording %s %s (%s)", self.session_id, participant, role,
                    pub_id)

    def remove_track(self, pub_id: str) -> None:
        """Stop recording a publication (what it recorded so far stays)."""
        rec = self._tracks.get(pub_id)
        if rec is not None:
            rec.track.stop()

    @property
    def stats(self) -> RecorderStats:
        writer = self._writer
        return RecorderStats(
            tracks=tuple(TrackStats(r.pub_id, r.role, r.participant, r.kind, r.received,
                                    r.written, r.dropped, r.upstream_dropped, r.trimmed,
                                    r.ended)
                         for r in self._tracks.values()),
            pending_bytes=writer.pending_bytes if writer else 0,
            max_pending_bytes=writer.max_pending if writer else 0,
            writer_cpu_s=writer.cpu_s if writer else 0.0)

    async def finish(self) -> RecordingResult:
        """Stop recording and write the final file; the partial files are removed.

        Raises ``NothingRecordedError`` when not one frame was recorded. If the final
        file cannot be written, the partials stay for ``recover()``.
        """
        if self._state != "recording":
            raise RecorderStateError(
                f"recorder of session {self.session_id} is {self._state}, not recording")
        self._state = "stopping"
        await self._stop()
        parts_dir, fd = self._parts_dir, self._lock_fd
        if parts_dir is None or fd is None:  # start() set both
            raise RecorderStateError(f"recorder of session {self.session_id} has no files")
        self._lock_fd = None
        writer = self._writer
        known = writer.summaries() if writer is not None else []
        try:
            result = await asyncio.to_thread(merge_parts, parts_dir, known=known)
        except NothingRecordedError:
            release_parts_dir(fd, parts_dir)
            self._state = "finished"
            raise
        except BaseException as err:
            release_parts_dir(fd)
            self._state = "finished"
            if isinstance(err, Exception):
                raise RecordingError(f"session {self.session_id}: the recording could not "
                                     f"be finished, partial files kept: {err}") from err
            raise
        release_parts_dir(fd, parts_dir)
        self._state = "finished"
        self._log_summary(result)
        return result

    async def abort(self) -> None:
        """Stop recording and delete everything recorded. Safe to call in any state; a
        ``finish()`` under way is not undone."""
        if self._state == "new":
            self._state = "aborted"
        if self._state in ("finished", "aborted", "stopping"):
            return
        self._state = "stopping"
        await self._stop()
        if self._lock_fd is not None:
            release_parts_dir(self._lock_fd, self._parts_dir)
            self._lock_fd = None
        self._state = "aborted"
        logger.info("session %s: recording discarded", self.session_id)

    # -- internals ---------------------------------------------------------------------

    async def _stop(self) -> None:
        for rec in self._tracks.values():
            rec.track.stop()
        tasks = [r.task for r in self._tracks.values() if r.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        writer = self._writer
        if writer is not None:
            writer.stop()
            await asyncio.to_thread(writer.join)

    async def _read(self, rec: _Track) -> None:
        try:
            while True:
                try:
                    packet = await rec.track.recv()
                except MediaStreamError:
                    break
                if isinstance(packet, Packet):
                    self._on_packet(rec, packet, self._clock())
        except Exception:
            logger.exception("session %s: recording %s failed", self.session_id, rec.pub_id)
        finally:
            rec.ended = True
            rec.track.stop()
            self._release_held(rec, self._clock())
            if rec.info is not None and self._writer is not None:
                self._writer.close(rec.key)
            logger.info("session %s: %s %s recorded: %d packets, %d dropped", self.session_id,
                        rec.participant, rec.role, rec.written,
                        rec.dropped + rec.upstream_dropped)

    def _on_packet(self, rec: _Track, packet: Packet[Any], arrival: float) -> None:
        rec.received += 1
        pts = packet.pts
        if pts is None:
            return
        if not rec.tick:
            # A subscription's time base is fixed by its first packet (a ForwardingTrack's
            # timeline keeps it across sources); reading it costs more than the rest.
            time_base = packet.time_base
            if time_base is None:
                return
            rec.tick = time_base.numerator / time_base.denominator
        # Dropped by the subscription while we did not read (not the frames it skipped
        # before its first keyframe), or another source took it over: the frame arrivals
        # no longer pair up.
        track = rec.track
        upstream = getattr(track, "dropped", 0)
        source = getattr(track, "source", None)
        if rec.upstream_base is None:
            rec.upstream_base = upstream
            rec.source = source
        elif upstream - rec.upstream_base != rec.upstream_dropped or source is not rec.source:
            rec.upstream_dropped = upstream - rec.upstream_base
            rec.source = source
            rec.clock.skip()
        duration_ms = 0
        if rec.kind == "audio":
            # A packet's timestamp is its first sample, but it can only have left the
            # publisher once its last one was captured.
            duration_ms = opus_samples(memoryview(packet)[:2].tobytes()) * 1000 // OPUS_RATE
            arrival -= duration_ms / 1000
        media = pts * rec.tick
        at = rec.clock.map(media, arrival)
        if at is None:
            rec.held.append((packet, media, duration_ms))
            return
        if rec.held:
            self._release_held(rec, arrival)
        self._place(rec, packet, at, arrival, duration_ms)

    def _release_held(self, rec: _Track, now: float) -> None:
        held, rec.held = rec.held, []
        for packet, media, duration_ms in held:
            self._place(rec, packet, rec.clock.place(media), now, duration_ms)

    def _place(self, rec: _Track, packet: Packet[Any], at: float, arrival: float,
               duration: int) -> None:
        video = rec.kind == "video"
        if video and rec.need_keyframe and not packet.is_keyframe:
            rec.dropped += 1
            self._ask_keyframe(rec, arrival)
            return
        if rec.info is None and not self._open(rec, packet):
            return
        ms = round((at - self._t0) * 1000)
        last = rec.last_ms
        if video:
            ms = max(ms, 0 if last is None else last + 1)
            # Known only once the next frame comes; the last interval is the best guess.
            duration = rec.interval_ms = ms - last if last is not None else rec.interval_ms
        else:
            if last is not None:
                contiguous = last + rec.duration_ms
                if ms < contiguous - AUDIO_SLACK_MS:
                    rec.trimmed += 1  # ahead of the hub's clock: catch up by one packet
                    return
                if ms <= contiguous + AUDIO_SLACK_MS:
                    ms = contiguous
            if ms < 0:
                return  # reached the hub before the recording started
        if self._writer is None or not self._writer.put(rec.key, packet, ms, duration):
            rec.dropped += 1
            if rec.dropped == 1 or rec.dropped % 100 == 0:
                logger.warning("session %s: the recording's disk is too slow, %s %s dropped "
                               "%d packets", self.session_id, rec.participant, rec.role,
                               rec.dropped)
            if video:
                rec.need_keyframe = True  # the frames after this one would not decode
                self._ask_keyframe(rec, arrival)
            return
        rec.need_keyframe = False
        rec.last_ms = ms
        rec.duration_ms = duration
        rec.written += 1

    def _open(self, rec: _Track, packet: Packet[Any]) -> bool:
        codec = rec.codec
        if codec is None:
            if rec.kind == "video":
                codec = detect_video_codec(bytes(packet))
            elif round(rec.tick * OPUS_RATE, 9) == 1:  # 48 kHz: WebRTC audio at that is Opus
                codec = "opus"
        if codec is None:
            if rec.received == 1:
                logger.warning("session %s: %s %s is in a codec the recorder does not know: "
                               "not recorded", self.session_id, rec.participant, rec.role)
            return False
        rec.info = TrackInfo(rec.pub_id, rec.role, rec.participant, rec.kind, codec)
        if self._writer is not None:
            self._writer.open(rec.key, rec.info)
        return True

    def _ask_keyframe(self, rec: _Track, now: float) -> None:
        if now - rec.keyframe_asked < KEYFRAME_ASK_INTERVAL:
            return
        rec.keyframe_asked = now
        request = getattr(rec.track, "request_keyframe", None)
        if callable(request):
            request()

    def _log_summary(self, result: RecordingResult) -> None:
        stats = self.stats
        dropped = sum(t.dropped + t.upstream_dropped for t in stats.tracks)
        logger.info("session %s: recording finished: %s, %.1f s, %d streams, %d bytes, "
                    "%d packets dropped, writer CPU %.2f s", self.session_id,
                    result.path.name, result.duration_s, len(result.tracks), result.size,
                    dropped, stats.writer_cpu_s)
