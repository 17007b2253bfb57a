"""Fan-out of one remote track to many subscribers, bounded and always drained.

A ``Publication`` reads its source track for as long as it lives (an undrained aiortc
receiver queue grows without bound) and hands each frame to every ``ForwardTrack``
subscribed to it. A subscriber holds at most one pending frame: a slow one skips frames
instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.frame import Frame
from av.packet import Packet

from media.encoded_fanout import EncodedSource, ForwardingTrack

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParticipantInfo:
    id: str
    kind: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "kind": self.kind, "name": self.name}


class ForwardTrack(MediaStreamTrack):
    """What one subscriber's sender reads: the newest frame of the publication."""

    def __init__(self, publication: DecodedPublication) -> None:
        super().__init__()
        self.kind = publication.kind
        self.publication = publication
        self._frame: Frame | Packet[Any] | None = None
        self._ready = asyncio.Event()
        self._ended = False
        self.dropped = 0

    def offer(self, frame: Frame | Packet[Any]) -> None:
        if self._frame is not None:
            self.dropped += 1
        self._frame = frame
        self._ready.set()

    def end(self) -> None:
        self._ended = True
        self._ready.set()

    async def recv(self) -> Frame | Packet[Any]:
        while self._frame is None:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame, self._frame = self._frame, None
        return frame

    def stop(self) -> None:
        super().stop()
        self.publication.unsubscribe(self)
        self._ready.set()


class Publication:
    """One participant's published track (camera, mic, doccam, screen)."""

    id: str
    owner: ParticipantInfo
    role: str
    kind: str

    def subscribe(self) -> MediaStreamTrack:
        raise NotImplementedError

    def bind(self, track: MediaStreamTrack, sender: RTCRtpSender) -> None:
        """Called once the subscriber's track has its sender (for keyframe requests)."""

    async def stop(self) -> None:
        raise NotImplementedError


class EncodedPublication(Publication):
    """Forwards the publisher's encoded frames: no decode, no encode on the hub."""

    def __init__(self, pub_id: str, owner: ParticipantInfo, role: str,
                 source: EncodedSource) -> None:
        self.id = pub_id
        self.owner = owner
        self.role = role
        self.kind = source.kind
        self.source = source

    @property
    def frames(self) -> int:
        return self.source.frames

    def subscribe(self) -> MediaStreamTrack:
        return self.source.subscribe()

    def bind(self, track: MediaStreamTrack, sender: RTCRtpSender) -> None:
        if isinstance(track, ForwardingTrack):
            track.bind_sender(sender)

    async def stop(self) -> None:
        await self.source.stop()


class DecodedPublication(Publication):
    """Fans out decoded frames; each subscriber's sender re-encodes (the slow mode, kept
    for comparison in benchmarks and for tracks that must be decoded anyway)."""

    def __init__(self, pub_id: str, owner: ParticipantInfo, role: str,
                 source: MediaStreamTrack, session_id: int) -> None:
        self.id = pub_id
        self.owner = owner
        self.role = role
        self.kind: str = source.kind
        self.source = source
        self.session_id = session_id
        self._subscribers: set[ForwardTrack] = set()
        self._task: asyncio.Task[None] | None = None
        self.frames = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"publication {self.id}")

    async def _drain(self) -> None:
        try:
            while True:
                try:
                    frame = await self.source.recv()
                except MediaStreamError:
                    break
                self.frames += 1
                for sub in tuple(self._subscribers):
                    sub.offer(frame)
        finally:
            for sub in tuple(self._subscribers):
                sub.end()
            logger.info("session %s: publication %s ended after %d frames",
                        self.session_id, self.id, self.frames)

    def subscribe(self) -> ForwardTrack:
        track = ForwardTrack(self)
        self._subscribers.add(track)
        return track

    def unsubscribe(self, track: ForwardTrack) -> None:
        self._subscribers.discard(track)

    async def stop(self) -> None:
        self.source.stop()
        for sub in tuple(self._subscribers):
            sub.end()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
