"""The session recorder on fake receivers and a fake clock: where frames land on the
timeline, what a slow disk costs, its states and errors, and recovery of what a crash
left behind. Real VP8 and Opus packets; the files are read back with PyAV."""

from __future__ import annotations

import asyncio
import fractions
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from av.packet import Packet
from av.video.frame import PictureType

from media.encoded_fanout import EncodedSource
from media.fanout import DecodedPublication, EncodedPublication, ParticipantInfo
from media.forwarding import encoded_packet
from media.recording import (
    NothingRecordedError,
    RecordingError,
    SessionRecorder,
    recover,
)
from media.recording_errors import RecorderStateError
from tests.integration.media.test_recording import (
    assert_plays,
    by_title,
    inspect_recording,
    listing,
)


def vp8_frames(count: int, keyframes: set[int], size: tuple[int, int] = (64, 48)) -> list[bytes]:
    width, height = size
    encoder = av.CodecContext.create("libvpx", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 10)
    encoder.gop_size = 1000
    encoder.options = {"deadline": "realtime", "lag-in-frames": "0"}
    out: list[bytes] = []
    for i in range(count):
        image = np.full((height, width, 3), (i * 20) % 255, np.uint8)
        image[:, (i * 3) % width] = 255
        frame = VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        if i in keyframes:
            frame.pict_type = PictureType.I
        out += [bytes(p) for p in encoder.encode(frame)]
    return out


def opus_frames(count: int) -> list[bytes]:
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    out: list[bytes] = []
    wave = (np.sin(np.arange(960 * count) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
    for i in range(count):
        chunk = wave[i * 960:(i + 1) * 960]
        frame = AudioFrame.from_ndarray(np.repeat(chunk, 2).reshape(1, -1), format="s16",
                                        layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in encoder.encode(frame)]
    return out


VIDEO = vp8_frames(40, keyframes={0, 20})
AUDIO = opus_frames(200)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Receiver(MediaStreamTrack):
    """A forwarding receiver's remote track: it yields the packets pushed to it."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[Packet[Any] | None] = asyncio.Queue()

    def push(self, data: bytes, timestamp: int) -> None:
        name, rate = ("VP8", 90000) if self.kind == "video" else ("opus", 48000)
        self.queue.put_nowait(encoded_packet(name, rate, data, timestamp))

    def end(self) -> None:
        self.queue.put_nowait(None)

    async def recv(self) -> Packet[Any]:
        item = await self.queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        return item


class Publisher:
    """A fake publisher: a receiver, its EncodedSource, and the keyframe requests."""

    def __init__(self, kind: str) -> None:
        self.receiver = Receiver(kind)
        self.requests = 0
        self.source = EncodedSource(self.receiver, request_keyframe=self._request,
                                    keyframe_interval=0.0, label=f"fake {kind}")
        self.source.start()

    async def _request(self) -> bool:
        self.requests += 1
        return True


async def settle() -> None:
    for _ in range(8):
        await asyncio.sleep(0)


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[tuple[SessionRecorder, FakeClock]]:
    clock = FakeClock()
    recorder = SessionRecorder(5, tmp_path / "rec", clock=clock)
    try:
        yield recorder, clock
    finally:
        await recorder.abort()


Event = tuple[float, Publisher, bytes, int]


def timeline(publisher: Publisher, frames: list[bytes], *, start: float, interval: float,
             rate: int, lag: int, jitter: list[float] | None = None) -> list[Event]:
    """When aiortc would hand each frame over: as the frame ``lag`` later reaches the hub.
    Frame i is captured at ``start + i * interval``; an audio frame leaves the publisher
    once its last sample is in, a video frame at once."""
    sent = interval if publisher.receiver.kind == "audio" else 0.0
    reached = [start + i * interval + sent + (jitter[i] if jitter else 0.0)
               for i in range(len(frames))]
    return [(reached[min(i + lag, len(frames) - 1)], publisher, data,
             round(i * interval * rate)) for i, data in enumerate(frames)]


async def play(clock: FakeClock, events: list[Event]) -> None:
    for at, publisher, data, timestamp in sorted(events, key=lambda e: e[0]):
        clock.now = at
        publisher.receiver.push(data, timestamp)
        await settle()


async def test_tracks_land_where_their_frames_reached_the_hub(
        recorder: tuple[SessionRecorder, FakeClock]) -> None:
    rec, clock = recorder
    rec.start()  # the session's timeline starts at clock 1000.0
    video, audio, late = Publisher("video"), Publisher("audio"), Publisher("audio")
    rec.add_track("p1", role="camera", participant="kiosk", kind="video", source=video.source)
    rec.add_track("p2", role="mic", participant="kiosk", kind="audio", source=audio.source)
    jitter = [((i * 7919) % 13) / 1000 for i in range(200)]  # 0..12 ms
    events = (timeline(video, VIDEO[:30], start=1000.5, interval=0.1, rate=90000, lag=1,
                       jitter=jitter)
              + timeline(audio, AUDIO[:150], start=1000.5, interval=0.02, rate=48000, lag=4,
                         jitter=jitter))
    await play(clock, [e for e in events if e[0] < 1002.0])
    rec.add_track("p7", role="mic", participant="expert", kind="audio", source=late.source)
    events += timeline(late, AUDIO[:50], start=1002.0, interval=0.02, rate=48000, lag=4)
    await play(clock, [e for e in events if e[0] >= 1002.0])
    # Each frame was placed as the source offered it (the recorder is its subscriptions'
    # frame sink), not read by a task.
    direct = {pub: getattr(t.track, "direct", None) for pub, t in rec._tracks.items()}
    assert direct == {"p1": 30, "p2": 150, "p7": 50}
    clock.now = 1004.0
    result = await rec.finish()

    _, _, reports = inspect_recording(result.path)
    assert_plays(reports)
    streams = by_title(reports)
    camera, mic, expert = streams["kiosk camera"], streams["kiosk mic"], streams["expert mic"]
    # Where each frame reached the hub, within the jitter; audio back to back.
    assert camera.pts_ms[:3] == pytest.approx([500, 600, 700], abs=13)
    assert np.diff(camera.pts_ms).min() >= 85 and np.diff(camera.pts_ms).max() <= 115
    assert mic.pts_ms[0] == pytest.approx(500, abs=13)
    assert set(np.diff(mic.pts_ms)) == {20}
    assert expert.pts_ms[0] == 2000 and set(np.diff(expert.pts_ms)) == {20}
    assert len(camera.pts_ms) == 30 and len(mic.pts_ms) == 150 and len(expert.pts_ms) == 50
    assert result.duration_s == pytest.approx(3.5, abs=0.1)
    assert {(t.participant, t.role): t.start_s for t in result.tracks} == pytest.approx(
        {("kiosk", "camera"): 0.5, ("kiosk", "mic"): 0.5, ("expert", "mic"): 2.0}, abs=0.015)


async def test_a_replaced_source_keeps_the_stream_moving_forward(tmp_path: Path) -> None:
    # On the real clock: the subscription re-anchors a new source on the loop's time.
    rec = SessionRecorder(5, tmp_path)
    first, second = Publisher("video"), Publisher("video")
    try:
        rec.start()
        rec.add_track("p1", role="camera", participant="kiosk", kind="video",
                      source=first.source)
        for i in range(10):
            first.receiver.push(VIDEO[i], 1_000_000 + i * 4500)  # 20 fps
            await asyncio.sleep(0.05)
        # The publisher rejoins: the hub parks its subscribers and hands them to the new
        # source, whose RTP timestamps start anywhere (here: behind the old ones).
        parked = await first.source.stop(keep_subscribers=True)
        await asyncio.sleep(0.6)
        for track in parked:
            second.source.adopt(track)
        for i in range(10):
            second.receiver.push(VIDEO[20 + i], 5000 + i * 4500)
            await asyncio.sleep(0.05)
        result = await rec.finish()
    finally:
        await rec.abort()
        await second.source.stop()

    _, _, (camera,) = inspect_recording(result.path)
    assert_plays([camera])  # forward only, starting again at the new source's keyframe
    assert len(camera.pts_ms) == 20
    steps = np.diff(camera.pts_ms)
    assert steps[9] >= 550, steps  # the pause is where it was
    assert 35 <= np.median(steps) <= 65
    assert result.tracks[0].segments == 1


async def test_a_slow_disk_drops_frames_with_a_count_instead_of_buffering(
        tmp_path: Path) -> None:
    clock = FakeClock()
    bound = sum(len(f) for f in VIDEO[:4])
    rec = SessionRecorder(6, tmp_path, clock=clock, max_pending_bytes=bound,
                          flush_interval=0.1)
    video = Publisher("video")
    try:
        rec.start()
        rec.add_track("p1", role="doccam", participant="kiosk", kind="video",
                      source=video.source)
        requester = video.source.keyframe_requester
        assert requester is not None
        await settle()
        asked = requester.requested
        events = timeline(video, VIDEO, start=1000.0, interval=0.1, rate=90000, lag=1)
        # A burst the writer cannot take before its next turn.
        await play(clock, events[:15])
        stats = rec.stats.tracks[0]
        assert stats.dropped > 0
        assert rec.stats.max_pending_bytes <= bound
        assert requester.requested > asked  # the frames after a drop need a keyframe
        await asyncio.sleep(0.3)  # the writer catches up, and keeps up from here
        for event in events[15:]:
            await play(clock, [event])
            await asyncio.sleep(0.03)
        result = await rec.finish()
    finally:
        await rec.abort()

    stats = rec.stats.tracks[0]
    _, _, (doccam,) = inspect_recording(result.path)
    assert_plays([doccam])  # resumed at the keyframe: nothing undecodable was written
    assert len(doccam.pts_ms) == stats.written < 40
    assert stats.written + stats.dropped == stats.received
    assert doccam.pts_ms[-1] == 3900  # through to the end
    assert doccam.pts_ms[0] == 0


async def test_recorder_states_and_bad_calls_are_named(tmp_path: Path) -> None:
    video, audio = Publisher("video"), Publisher("audio")
    rec = SessionRecorder(8, tmp_path)
    with pytest.raises(RecorderStateError, match="session 8 is new, not recording"):
        rec.add_track("p1", role="camera", participant="k", kind="video", source=video.source)
    rec.start()
    with pytest.raises(RecorderStateError, match="is recording"):
        rec.start()
    with pytest.raises(RecordingError, match="p1 is video but its source is audio"):
        rec.add_track("p1", role="camera", participant="k", kind="video", source=audio.source)
    with pytest.raises(RecordingError, match="cannot record audio in 'VP8'"):
        rec.add_track("p2", role="mic", participant="k", kind="audio", source=audio.source,
                      codec="VP8")
    with pytest.raises(RecordingError, match="kind must be 'audio' or 'video'"):
        rec.add_track("p2", role="mic", participant="k", kind="data", source=audio.source)
    rec.add_track("p1", role="camera", participant="k", kind="video", source=video.source,
                  codec="vp8")
    with pytest.raises(RecordingError, match="p1 is already recorded"):
        rec.add_track("p1", role="camera", participant="k", kind="video", source=video.source)
    await audio.source.stop()
    with pytest.raises(RecordingError, match=r"p3 cannot be recorded: .*stopped"):
        rec.add_track("p3", role="mic", participant="k", kind="audio", source=audio.source)
    decoded = DecodedPublication("p4", ParticipantInfo("k", "kiosk", "K"), "camera",
                                 Receiver("video"), 8)
    with pytest.raises(RecordingError, match=r"p4 \(camera\) is decoded, not forwarded"):
        rec.add_publication(decoded)

    with pytest.raises(NothingRecordedError, match="session 8: nothing was recorded"):
        await rec.finish()
    assert listing(tmp_path) == []
    assert video.source.subscribers == ()
    with pytest.raises(RecorderStateError, match="is finished"):
        await rec.finish()
    await rec.abort()  # harmless


async def test_a_publication_is_recorded_from_the_hub_objects(
        recorder: tuple[SessionRecorder, FakeClock]) -> None:
    rec, clock = recorder
    rec.start()
    video = Publisher("video")
    pub = EncodedPublication("p9", ParticipantInfo("agent-3", "agent", "Agent"), "screen",
                             video.source)
    rec.add_publication(pub)
    await play(clock, timeline(video, VIDEO[:10], start=1000.0, interval=0.1, rate=90000,
                               lag=1))
    rec.remove_track("p9")
    await settle()
    assert rec.stats.tracks[0].ended and video.source.subscribers == ()
    result = await rec.finish()
    (track,) = result.tracks
    assert (track.participant, track.role, track.kind, track.codec) == (
        "agent-3", "screen", "video", "VP8")


async def test_abort_keeps_nothing(recorder: tuple[SessionRecorder, FakeClock],
                                   tmp_path: Path) -> None:
    rec, clock = recorder
    rec.start()
    audio = Publisher("audio")
    rec.add_track("p2", role="mic", participant="k", kind="audio", source=audio.source)
    await play(clock, timeline(audio, AUDIO[:50], start=1000.0, interval=0.02, rate=48000,
                               lag=4))
    await rec.abort()
    assert rec.state == "aborted"
    assert list((tmp_path / "rec").iterdir()) == []
    assert audio.source.subscribers == ()


# -- recovery ----------------------------------------------------------------------


async def record_some(rec: SessionRecorder, clock: FakeClock, seconds: float) -> None:
    video, audio = Publisher("video"), Publisher("audio")
    rec.add_track("p1", role="camera", participant="kiosk", kind="video", source=video.source)
    rec.add_track("p2", role="mic", participant="kiosk", kind="audio", source=audio.source)
    count = int(seconds * 10)
    await play(clock, timeline(video, VIDEO[:count], start=1000.1, interval=0.1, rate=90000,
                               lag=1)
               + timeline(audio, AUDIO[:count * 5], start=1000.1, interval=0.02, rate=48000,
                          lag=4))
    await asyncio.sleep(0.4)  # a writer turn: what the muxer closed is on disk


async def test_recover_remuxes_what_a_crash_left(
        recorder: tuple[SessionRecorder, FakeClock], tmp_path: Path) -> None:
    rec, clock = recorder
    rec.start()
    await record_some(rec, clock, 3.5)
    assert rec.parts_dir is not None
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    # The files as a SIGKILL would leave them: no trailer, the open cluster unwritten.
    shutil.copytree(rec.parts_dir, crashed / rec.parts_dir.name)

    (result,) = recover(crashed)

    assert result.recovered and result.session_id == "5"
    assert [p.name for p in crashed.iterdir()] == [result.path.name]
    assert result.path.stem == rec.parts_dir.stem
    _, _, reports = inspect_recording(result.path)
    assert_plays(reports)
    assert 2.0 <= result.duration_s <= 3.6
    assert len(reports) == 2


async def test_recover_keeps_what_comes_before_a_torn_write(
        recorder: tuple[SessionRecorder, FakeClock], tmp_path: Path) -> None:
    rec, clock = recorder
    rec.start()
    await record_some(rec, clock, 3.5)
    assert rec.parts_dir is not None
    crashed = tmp_path / "torn"
    shutil.copytree(rec.parts_dir, crashed / rec.parts_dir.name)
    video_part = next((crashed / rec.parts_dir.name).glob("*-video.mkv"))
    data = video_part.read_bytes()
    video_part.write_bytes(data[:len(data) * 2 // 3])  # cut mid-cluster

    (result,) = recover(crashed)

    _, _, reports = inspect_recording(result.path)
    assert_plays(reports)
    camera = by_title(reports)["kiosk camera"]
    assert 5 <= len(camera.pts_ms) < 35


async def test_recover_skips_live_recordings_and_cleans_up_leftovers(
        recorder: tuple[SessionRecorder, FakeClock], tmp_path: Path) -> None:
    rec, clock = recorder
    rec.start()
    directory = tmp_path / "rec"
    assert recover(directory) == []  # live: locked
    assert rec.parts_dir is not None and rec.parts_dir.exists()
    (directory / ".session-9-x.parts.new").mkdir()  # a start() that died half-way
    empty = directory / "session-9-20250101T000000Z-0000.parts"
    empty.mkdir()  # a recording that died before its first frame
    assert recover(directory) == []
    assert sorted(p.name for p in directory.iterdir()) == [rec.parts_dir.name]

    await record_some(rec, clock, 2.0)
    backup = tmp_path / "backup"
    shutil.copytree(rec.parts_dir, backup)
    result = await rec.finish()
    # A crash between the final rename and removing the partials: they go, the file stays.
    shutil.copytree(backup, rec.parts_dir)
    assert recover(directory) == []
    assert [p.name for p in directory.iterdir()] == [result.path.name]
    assert recover(tmp_path / "nowhere") == []


async def test_a_track_whose_file_cannot_be_written_costs_only_that_track(
        recorder: tuple[SessionRecorder, FakeClock]) -> None:
    rec, clock = recorder
    rec.start()
    assert rec.parts_dir is not None
    (rec.parts_dir / "001-p1-video.mkv").mkdir()  # where the camera's file would go
    video, audio = Publisher("video"), Publisher("audio")
    rec.add_track("p1", role="camera", participant="kiosk", kind="video", source=video.source)
    rec.add_track("p2", role="mic", participant="kiosk", kind="audio", source=audio.source)
    await play(clock, timeline(video, VIDEO[:20], start=1000.1, interval=0.1, rate=90000,
                               lag=1)
               + timeline(audio, AUDIO[:100], start=1000.1, interval=0.02, rate=48000,
                          lag=4))
    result = await rec.finish()

    assert [(t.role, t.kind) for t in result.tracks] == [("mic", "audio")]
    _, _, reports = inspect_recording(result.path)
    assert_plays(reports)
    assert rec.stats.pending_bytes == 0
