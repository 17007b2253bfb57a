"""Stills from a live forwarded video track: evidence snapshots and thumbnails.

The hub never decodes what it forwards, so a snapshot subscribes to the publication's
``EncodedSource`` like any subscriber, which asks the publisher for a keyframe, decodes
that one keyframe with PyAV, encodes it as JPEG and unsubscribes. Decoding and encoding
run in a worker thread: a 1080p keyframe takes tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import av
import av.error
import cv2
from aiortc.mediastreams import MediaStreamError
from av.packet import Packet
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame

from media.codec_headers import detect_video_codec
from media.errors import MediaError
from media.recording_errors import SnapshotError

__all__ = ["Snapshot", "SnapshotError", "take_snapshot"]

logger = logging.getLogger(__name__)

_DECODERS = {"VP8": "vp8", "H264": "h264"}


class _Track(Protocol):
    async def recv(self) -> object: ...

    def stop(self) -> None: ...


class SnapshotSource(Protocol):
    """An ``EncodedSource``, as far as a snapshot is concerned."""

    @property
    def kind(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def ended(self) -> bool: ...

    def subscribe(self) -> _Track: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    jpeg: bytes
    width: int
    height: int
    taken_at: datetime  # when the keyframe reached the hub (UTC)


async def take_snapshot(source: SnapshotSource, *, name: str | None = None,
                        timeout: float = 3.0, jpeg_quality: int = 90) -> Snapshot:
    """A JPEG of the next keyframe of ``source`` (requested from the publisher).

    ``name`` says whose picture it is in error messages (say the role, "doccam");
    the source's label otherwise. Raises ``SnapshotError`` for an audio source, an ended
    one, or no keyframe within ``timeout`` seconds.
    """
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be 1..100, got {jpeg_quality}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    what = name or source.label
    if source.kind != "video":
        raise SnapshotError(f"{what} is {source.kind}, not video: it has no picture",
                            field="source")
    if source.ended:
        raise SnapshotError(f"{what} has ended: no picture to take", field="source")
    try:
        track = source.subscribe()
    except MediaError as err:
        raise SnapshotError(f"{what} has ended: no picture to take", field="source") from err
    try:
        try:
            async with asyncio.timeout(timeout):
                packet = await _keyframe(track)
        except TimeoutError:
            raise SnapshotError(f"no picture from {what} within {timeout:g} s") from None
        except MediaStreamError:
            raise SnapshotError(f"{what} ended before a picture came") from None
    finally:
        track.stop()
    taken_at = datetime.now(UTC)
    data = bytes(packet)
    frame = await asyncio.to_thread(_decode, data, what)
    jpeg = await asyncio.to_thread(_encode_jpeg, frame, jpeg_quality, what)
    logger.info("snapshot of %s: %dx%d, %d bytes", what, frame.width, frame.height, len(jpeg))
    return Snapshot(jpeg=jpeg, width=frame.width, height=frame.height, taken_at=taken_at)


async def _keyframe(track: _Track) -> Packet[Any]:
    # A ForwardingTrack starts at a keyframe; skipping to one keeps any other
    # packet source honest too.
    while True:
        packet = await track.recv()
        if isinstance(packet, Packet) and packet.is_keyframe:
            return packet


def _decode(data: bytes, what: str) -> VideoFrame:
    codec = detect_video_codec(data)
    if codec is None:
        raise SnapshotError(f"the picture from {what} is in a codec snapshots do not know")
    try:
        decoder = av.CodecContext.create(_DECODERS[codec], "r")
        if not isinstance(decoder, VideoCodecContext):
            raise SnapshotError(f"PyAV has no {codec} video decoder")
        pictures = decoder.decode(Packet(data))
        pictures += decoder.decode(None)  # H.264 may hold its frame until flushed
    except av.error.FFmpegError as err:
        raise SnapshotError(f"the picture from {what} could not be decoded: {err}") from err
    if not pictures:
        raise SnapshotError(f"the picture from {what} could not be decoded")
    return pictures[0]


def _encode_jpeg(frame: VideoFrame, quality: int, what: str) -> bytes:
    image = frame.to_ndarray(format="bgr24")
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SnapshotError(f"the picture from {what} could not be encoded as JPEG")
    return bytes(encoded)
