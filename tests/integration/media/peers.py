"""Real aiortc peers in one process for the forwarding tests: a publisher of synthetic
media, a middle peer that forwards with ``media.forwarding``, and decoding subscribers."""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from media.forwarding import EncodedSource, ForwardingHook, ForwardingTrack
from media.tracks import FrameSourceTrack

AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms


def moving_pattern(width: int = 320, height: int = 240, fps: float = 15,
                   hue: int = 0) -> FrameSourceTrack:
    """A bar sweeping over a gradient: every frame differs, so delta frames are real."""
    gradient = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    base = np.dstack([gradient, np.roll(gradient, width // 3, axis=1),
                      np.full((height, width), hue, np.uint8)])
    step = 0

    async def source() -> np.ndarray:
        nonlocal step
        image = base.copy()
        x = (step * 7) % width
        image[:, x:x + 16] = (255, 255, 255)
        step += 1
        return image

    return FrameSourceTrack(source, fps=fps)


class ToneTrack(AudioStreamTrack):
    """A 440 Hz tone, 48 kHz mono, in 20 ms frames paced like aiortc's silence track."""

    def __init__(self) -> None:
        super().__init__()
        t = np.arange(AUDIO_RATE) / AUDIO_RATE
        self._wave = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)
        self._start_at: float | None = None
        self._pts = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start_at is None:
            self._start_at = time.time()
        else:
            self._pts += AUDIO_SAMPLES
            await asyncio.sleep(self._start_at + self._pts / AUDIO_RATE - time.time())
        offset = self._pts % (AUDIO_RATE - AUDIO_SAMPLES)
        samples = self._wave[offset:offset + AUDIO_SAMPLES].reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


def pin_codec(transceiver: RTCRtpTransceiver, codec: str) -> None:
    if transceiver.kind != "video":
        return
    wanted = f"video/{codec}".lower()
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs
              if c.mimeType.lower() == wanted]
    assert codecs, f"aiortc offers no {codec}"
    transceiver.setCodecPreferences(codecs)


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


@dataclass
class Publisher:
    """A participant publishing ``tracks`` (kind -> track) to the middle."""

    tracks: dict[str, MediaStreamTrack]
    codec: str = "VP8"
    pc: RTCPeerConnection = field(default_factory=RTCPeerConnection)

    def __post_init__(self) -> None:
        for track in self.tracks.values():
            pin_codec(self.pc.addTransceiver(track, direction="sendonly"), self.codec)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Subscriber:
    """A participant decoding what the middle forwards to it."""

    pc: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    video: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, w, h, pts
    audio: list[tuple[float, int, int]] = field(default_factory=list)  # t, rate, samples
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if isinstance(frame, VideoFrame):
                self.video.append((now, frame.width, frame.height, frame.pts or 0))
                self.changed.set()
            elif isinstance(frame, AudioFrame):
                self.audio.append((now, frame.sample_rate, frame.samples))

    async def wait_video(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` video frames in all have been decoded."""
        async with asyncio.timeout(timeout):
            while len(self.video) < count:
                self.changed.clear()
                await self.changed.wait()

    async def first_video(self, timeout: float = 10.0) -> float:
        """Monotonic time of the first decoded video frame."""
        await self.wait_video(1, timeout)
        return self.video[0][0]

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class Middle:
    """The hub's role: one peer connection per participant, forwarding encoded frames."""

    hook: ForwardingHook
    codec: str = "VP8"
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    sources: list[EncodedSource] = field(default_factory=list)
    subscriptions: list[tuple[ForwardingTrack, RTCRtpSender]] = field(default_factory=list)

    async def accept(self, publisher: Publisher) -> dict[str, EncodedSource]:
        """Receive ``publisher``'s tracks with forwarding on; returns kind -> source."""
        pc = RTCPeerConnection()
        self.pcs.append(pc)
        found: dict[str, EncodedSource] = {}

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers()
                            if t.receiver.track is track)
            source = self.hook.forward(receiver, label=f"test {track.kind}")
            self.sources.append(source)
            found[track.kind] = source

        await negotiate(publisher.pc, pc)
        assert set(found) == set(publisher.tracks), found
        return found

    async def serve(self, subscriber: Subscriber,
                    sources: dict[str, EncodedSource]) -> dict[str, ForwardingTrack]:
        """Forward ``sources`` to ``subscriber`` over a new peer connection."""
        pc = RTCPeerConnection()
        self.pcs.append(pc)
        tracks: dict[str, ForwardingTrack] = {}
        for kind, source in sources.items():
            track = source.subscribe()
            transceiver = pc.addTransceiver(track, direction="sendonly")
            pin_codec(transceiver, self.codec)
            track.bind_sender(transceiver.sender)
            self.subscriptions.append((track, transceiver.sender))
            tracks[kind] = track
        await negotiate(pc, subscriber.pc)
        return tracks

    def encoders(self) -> list[Any]:
        """The middle's senders' codec objects (aiortc creates one per sender lazily)."""
        return [sender._RTCRtpSender__encoder for _, sender in self.subscriptions]

    async def close(self) -> None:
        for source in self.sources:
            await source.stop()
        for pc in self.pcs:
            await pc.close()


@asynccontextmanager
async def forwarded_call(hook: ForwardingHook, width: int = 320, height: int = 240,
                         codec: str = "VP8",
                         ) -> AsyncIterator[tuple[Publisher, Middle, Subscriber]]:
    """A publisher (moving pattern and tone) whose media a middle forwards to one
    subscriber in ``codec``; all three closed at the end."""
    publisher = Publisher({"video": moving_pattern(width, height), "audio": ToneTrack()},
                          codec=codec)
    middle = Middle(hook, codec=codec)
    subscriber = Subscriber()
    try:
        sources = await middle.accept(publisher)
        await middle.serve(subscriber, sources)
        yield publisher, middle, subscriber
    finally:
        for peer in (subscriber, publisher, middle):
            await peer.close()
