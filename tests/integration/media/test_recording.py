"""Recording a live session from the hub's forwarded packets, with real aiortc peers.

publishers --(VP8/H264 + Opus)--> middle (forwarding) --> SessionRecorder --> .webm/.mkv

What a user of the recording sees is checked by reading the final file back with PyAV:
every stream there, each decoding end to end without an error, starting at a keyframe,
placed on the session's timeline where it happened.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.error
import av.logging
import numpy as np
import pytest
from av import AudioFrame, VideoFrame

from media.encoded_fanout import EncodedSource
from media.forwarding import ForwardingHook
from media.recording import RecordingResult, SessionRecorder
from media.tracks import FrameSourceTrack
from tests.integration.media.peers import Middle, Publisher, ToneTrack, moving_pattern


@dataclass
class StreamReport:
    index: int
    kind: str
    codec: str
    width: int = 0
    height: int = 0
    title: str = ""
    pts_ms: list[int] = field(default_factory=list)
    first_is_keyframe: bool = False
    frames: int = 0
    samples: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def start_s(self) -> float:
        return self.pts_ms[0] / 1000

    @property
    def end_s(self) -> float:
        return self.pts_ms[-1] / 1000


def inspect_recording(path: Path) -> tuple[str, float, list[StreamReport]]:
    """Format, duration and, per stream, what decoding the whole file gave."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs, av.open(str(path)) as container:
            reports: list[StreamReport] = []
            for stream in container.streams:
                ctx = stream.codec_context
                report = StreamReport(stream.index, stream.type, ctx.name,
                                      title=stream.metadata.get("title", ""))
                if stream.type == "video":
                    report.width, report.height = ctx.width, ctx.height  # type: ignore[attr-defined]
                reports.append(report)
            for packet in container.demux():
                if packet.size == 0 or packet.pts is None:
                    continue
                report = reports[packet.stream.index]
                if not report.pts_ms:
                    report.first_is_keyframe = packet.is_keyframe
                report.pts_ms.append(int(packet.pts * packet.time_base * 1000))
                try:
                    for frame in packet.decode():
                        report.frames += 1
                        if isinstance(frame, VideoFrame):
                            report.sizes.append((frame.width, frame.height))
                        elif isinstance(frame, AudioFrame):
                            report.samples += frame.samples
                except av.error.FFmpegError as err:
                    report.errors.append(str(err))
            fmt = container.format.name
            duration = (container.duration or 0) / 1e6
        for lvl, name, message in logs:
            if lvl <= av.logging.ERROR:
                reports[0].errors.append(f"{name}: {message}")
    finally:
        av.logging.set_level(level)
    return fmt, duration, reports


def assert_plays(reports: list[StreamReport]) -> None:
    for report in reports:
        assert not report.errors, (report.title, report.errors[:5])
        assert report.frames > 0, report.title
        assert report.pts_ms == sorted(report.pts_ms), f"{report.title}: pts go backwards"
        assert len(set(report.pts_ms)) == len(report.pts_ms), f"{report.title}: repeated pts"
        if report.kind == "video":
            assert report.first_is_keyframe, f"{report.title} does not start at a keyframe"
            assert report.frames == len(report.pts_ms), f"{report.title}: frames lost"


def by_title(reports: list[StreamReport]) -> dict[str, StreamReport]:
    return {r.title: r for r in reports}


def record(recorder: SessionRecorder, participant: str,
           sources: dict[str, EncodedSource], pub_prefix: str) -> None:
    for kind, source in sources.items():
        recorder.add_track(f"{pub_prefix}-{kind}", role="camera" if kind == "video" else "mic",
                           participant=participant, kind=kind, source=source)


async def sleep_until(t0: float, at: float) -> None:
    await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))


async def flowing(sources: dict[str, EncodedSource], timeout: float = 10.0,
                  frames: int = 1) -> None:
    """Until every source has forwarded ``frames`` frames."""
    async with asyncio.timeout(timeout):
        for _ in itertools.count():
            if all(s.frames >= frames for s in sources.values()):
                return
            await asyncio.sleep(0.02)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def size_of(path: Path) -> int:
    return path.stat().st_size


Cleanup = Callable[[], Awaitable[None]]


async def test_session_with_a_late_participant_records_every_stream_in_place(
        hook: ForwardingHook, tmp_path: Path) -> None:
    kiosk = Publisher({"video": moving_pattern(320, 240, 15), "audio": ToneTrack()})
    guest = Publisher({"video": moving_pattern(160, 120, 15, hue=200), "audio": ToneTrack()})
    middle = Middle(hook)
    recorder = SessionRecorder(41, tmp_path)
    try:
        kiosk_sources = await middle.accept(kiosk)
        guest_sources = await middle.accept(guest)  # connected early; recorded from 2 s
        await flowing(kiosk_sources)
        await flowing(guest_sources)
        recorder.start()
        t0 = time.monotonic()
        record(recorder, "kiosk", kiosk_sources, "p1")
        await sleep_until(t0, 2.0)
        record(recorder, "guest", guest_sources, "p3")
        await sleep_until(t0, 4.0)
        for source in guest_sources.values():  # the guest leaves: the hub stops its sources
            await source.stop()
        await guest.close()
        await sleep_until(t0, 5.0)
        result = await recorder.finish()
    finally:
        await recorder.abort()
        await middle.close()
        await kiosk.close()
        await guest.close()

    assert result.path.suffix == ".webm"
    assert listing(tmp_path) == [result.path.name]  # the partials are gone
    assert result.size == size_of(result.path)
    assert 4.3 <= result.duration_s <= 5.5, result.duration_s
    assert sorted((t.participant, t.role, t.kind, t.codec) for t in result.tracks) == [
        ("guest", "camera", "video", "VP8"), ("guest", "mic", "audio", "opus"),
        ("kiosk", "camera", "video", "VP8"), ("kiosk", "mic", "audio", "opus")]

    fmt, duration, reports = inspect_recording(result.path)
    assert "webm" in fmt
    assert duration == pytest.approx(result.duration_s, abs=0.1)
    assert_plays(reports)
    streams = by_title(reports)
    assert set(streams) == {"kiosk camera", "kiosk mic", "guest camera", "guest mic"}
    kiosk_video, kiosk_audio = streams["kiosk camera"], streams["kiosk mic"]
    guest_video, guest_audio = streams["guest camera"], streams["guest mic"]
    assert (kiosk_video.width, kiosk_video.height) == (320, 240)
    assert (guest_video.width, guest_video.height) == (160, 120)
    assert set(kiosk_video.sizes) == {(320, 240)} and set(guest_video.sizes) == {(160, 120)}
    # On the session's timeline: the kiosk from the start, the guest from 2 s to 4 s.
    # (Lower bounds on the ends are loose: on a loaded machine the in-process
    # publishers fall behind, and less has arrived when the guest leaves.)
    stats = recorder.stats.tracks
    assert kiosk_audio.start_s < 0.3 and kiosk_video.start_s < 1.0, stats
    assert kiosk_audio.end_s > 4.3 and kiosk_video.end_s > 4.3, stats
    assert 1.85 <= guest_audio.start_s <= 2.3, (guest_audio.start_s, stats)
    assert 1.9 <= guest_video.start_s <= 2.6, (guest_video.start_s, stats)
    assert 3.0 <= guest_audio.end_s <= 4.2, (guest_audio.end_s, stats)
    assert 3.0 <= guest_video.end_s <= 4.2, (guest_video.end_s, stats)
    assert kiosk_video.frames >= 45 and guest_video.frames >= 10
    assert kiosk_audio.samples >= 4 * 48000 and guest_audio.samples >= 48000


def switching_pattern(first: tuple[int, int], then: tuple[int, int],
                      after: float) -> FrameSourceTrack:
    """A moving bar that changes picture size ``after`` seconds in (browsers adapt)."""
    started: float | None = None
    step = 0

    async def source() -> np.ndarray:
        nonlocal started, step
        now = time.monotonic()
        started = started or now
        width, height = first if now - started < after else then
        image = np.zeros((height, width, 3), np.uint8)
        x = (step * 7) % width
        image[:, x:x + 8] = 255
        step += 1
        return image

    return FrameSourceTrack(source, fps=15)


async def test_resolution_change_mid_stream_plays_through(
        hook: ForwardingHook, tmp_path: Path) -> None:
    publisher = Publisher({"video": switching_pattern((320, 240), (480, 272), after=2.0)})
    middle = Middle(hook)
    recorder = SessionRecorder(42, tmp_path)
    try:
        sources = await middle.accept(publisher)
        await flowing(sources)
        recorder.start()
        record(recorder, "kiosk", sources, "p1")
        await asyncio.sleep(3.5)
        result = await recorder.finish()
    finally:
        await recorder.abort()
        await middle.close()
        await publisher.close()

    _, _, reports = inspect_recording(result.path)
    assert_plays(reports)
    (video,) = reports
    # The stream declares the size it started with; the later keyframe carries the new
    # one and the decoder follows it, as browsers' and ffmpeg's players do.
    assert (video.width, video.height) == (320, 240)
    assert video.sizes[0] == (320, 240) and video.sizes[-1] == (480, 272)
    switch = video.sizes.index((480, 272))
    assert set(video.sizes[switch:]) == {(480, 272)}
    assert video.frames >= 35


async def test_h264_session_is_recorded_to_matroska(hook: ForwardingHook,
                                                    tmp_path: Path) -> None:
    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx264 encoder")
    publisher = Publisher({"video": moving_pattern(320, 180, 15), "audio": ToneTrack()},
                          codec="H264")
    middle = Middle(hook, codec="H264")
    recorder = SessionRecorder(43, tmp_path)
    try:
        sources = await middle.accept(publisher)
        await flowing(sources)
        recorder.start()
        record(recorder, "agent", sources, "p2")
        await asyncio.sleep(2.5)
        result = await recorder.finish()
    finally:
        await recorder.abort()
        await middle.close()
        await publisher.close()

    assert result.path.suffix == ".mkv"
    fmt, _, reports = inspect_recording(result.path)
    assert "matroska" in fmt
    assert_plays(reports)
    video = by_title(reports)["agent camera"]
    assert video.codec == "h264"
    # 180 is not a multiple of 16: the size comes from the SPS's cropping window.
    assert (video.width, video.height) == (320, 180)
    assert set(video.sizes) == {(320, 180)}
    assert {t.codec for t in result.tracks} == {"H264", "opus"}


async def test_rejoining_participant_continues_in_the_same_streams(
        hook: ForwardingHook, tmp_path: Path) -> None:
    first = Publisher({"video": moving_pattern(320, 240, 15), "audio": ToneTrack()})
    middle = Middle(hook)
    recorder = SessionRecorder(44, tmp_path)
    second: Publisher | None = None
    result: RecordingResult | None = None
    try:
        old = await middle.accept(first)
        await flowing(old)
        recorder.start()
        t0 = time.monotonic()
        record(recorder, "kiosk", old, "p1")
        await sleep_until(t0, 1.5)
        for source in old.values():  # the kiosk's connection failed
            await source.stop()
        await first.close()
        await asyncio.sleep(0.5)  # reconnecting...
        second = Publisher({"video": moving_pattern(320, 240, 15, hue=90), "audio": ToneTrack()})
        new = await middle.accept(second)  # it rejoins with a new peer connection
        await flowing(new)
        record(recorder, "kiosk", new, "p5")
        await sleep_until(t0, 4.0)
        result = await recorder.finish()
    finally:
        await recorder.abort()
        await middle.close()
        await first.close()
        if second is not None:
            await second.close()

    assert result is not None
    assert sorted((t.role, t.segments) for t in result.tracks) == [("camera", 2), ("mic", 2)]
    _, _, reports = inspect_recording(result.path)
    assert len(reports) == 2
    assert_plays(reports)
    for report in reports:
        gaps = np.diff(report.pts_ms)
        assert gaps.max() > 400, f"{report.title}: the rejoin gap is missing"
        assert report.end_s > 3.0
