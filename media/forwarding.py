"""Forwarding encoded frames through the hub without decoding or re-encoding them.

aiortc's receiver hands every reassembled frame to the module-level
``aiortc.rtcrtpreceiver.decoder_worker``, run in one thread per receiver. While a
``ForwardingHook`` is started, that name points at a wrapper: for receivers registered
with ``ForwardingHook.forward`` the thread emits ``av.Packet``s (the encoded frame,
pts = unwrapped RTP timestamp, time base 1/clock rate, keyframe flag) into the remote
track's queue instead of decoded frames; every other receiver decodes as before.

An ``EncodedSource`` (``media.encoded_fanout``, re-exported here) drains that track and
fans the packets out to ``ForwardingTrack``s, one per subscriber. aiortc's
``RTCRtpSender`` packetizes an ``av.Packet`` from its track without encoding it (the
``MediaPlayer(decode=False)`` path). A forwarding sender has no encoder to honour
PLI/FIR, so ``ForwardingTrack.bind_sender`` routes them, like the track's own needs
(subscribe, a reader back after an overflow, a new source), to a throttled PLI from the
hub's receiver to the publisher.

Usage by the hub (all on the event loop)::

    hook = ForwardingHook(); hook.start()            # before any peer connection starts
    # in pc.on("track") -- synchronously, before the receiver starts its thread:
    source = hook.forward(transceiver.receiver, label=f"session {sid} p3 camera")
    # a subscriber:
    track = source.subscribe()
    t = pc.addTransceiver(track, direction="sendonly"); track.bind_sender(t.sender)
    track.stop()                                      # unsubscribe
    await source.stop()                               # publisher left: subscribers end
    parked = await source.stop(keep_subscribers=True) # publisher rejoining ...
    for track in parked: new_source.adopt(track)      # ... pts keep moving forward
    hook.stop()

Every private aiortc name used here is listed in ``media.private_hooks``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import aiortc.rtcrtpreceiver
from aiortc import RTCRtpReceiver
from av.packet import Packet

from media.bitstream import is_keyframe
from media.encoded_fanout import (
    KEYFRAME_INTERVAL,
    EncodedSource,
    ForwardingError,
    ForwardingTrack,
    WorkerStats,
)
from media.keyframes import SendRequest
from media.private_hooks import DECODER_WORKER, RECEIVER_SEND_PLI, REMOTE_TRACK_QUEUE

__all__ = [
    "EncodedSource",
    "ForwardingError",
    "ForwardingHook",
    "ForwardingTrack",
    "WorkerStats",
    "encoded_packet",
]

logger = logging.getLogger(__name__)

DecoderWorker = Callable[
    [asyncio.AbstractEventLoop, "queue.Queue[Any]", "asyncio.Queue[Any]", threading.Event],
    None,
]


def encoded_packet(codec_name: str, clock_rate: int, data: bytes, timestamp: int) -> Packet[Any]:
    """An ``av.Packet`` for one encoded frame as aiortc's receiver reassembled it."""
    packet = Packet(data)
    packet.pts = timestamp
    packet.dts = timestamp
    packet.time_base = Fraction(1, clock_rate)
    packet.is_keyframe = is_keyframe(codec_name, data)
    return packet


def _deliver(loop: asyncio.AbstractEventLoop, output_q: asyncio.Queue[Any], item: object) -> bool:
    try:
        loop.call_soon_threadsafe(output_q.put_nowait, item)
    except RuntimeError:  # the loop is closed: nobody is left to read
        return False
    return True


def _forward_frames(loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any],
                    output_q: asyncio.Queue[Any], stats: WorkerStats) -> None:
    stats.mode = "forward"
    while True:
        task = input_q.get()
        if task is None:  # the receiver stopped: end the track, as the decoder would
            _deliver(loop, output_q, None)
            return
        codec, frame = task
        if stats.discard:
            continue
        try:
            packet = encoded_packet(codec.name, codec.clockRate, frame.data, frame.timestamp)
        except Exception:
            logger.exception("%s: could not wrap an encoded %s frame", stats.label, codec.name)
            continue
        stats.codec = codec.mimeType
        stats.frames += 1
        stats.bytes += len(frame.data)
        if packet.is_keyframe and codec.mimeType.lower().startswith("video/"):
            stats.keyframes += 1
        if not _deliver(loop, output_q, packet):
            return


class ForwardingHook:
    """While started, receivers passed to ``forward()`` emit encoded packets.

    Install before the peer connections that should forward start receiving: a receiver
    picks its worker when its transport connects. Stopping restores aiortc's worker for
    receivers started afterwards; running forwarding threads go on until their receiver
    stops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._original: DecoderWorker | None = None
        self._active = False
        self._registry: dict[asyncio.Queue[Any], WorkerStats] = {}
        self._decoding: weakref.WeakSet[asyncio.Queue[Any]] = weakref.WeakSet()
        self.decoding_workers = 0
        self.forwarding_workers = 0

    @property
    def started(self) -> bool:
        return self._active

    def start(self) -> None:
        if self._active:
            return
        module = aiortc.rtcrtpreceiver
        original = getattr(module, DECODER_WORKER.name, None)
        if original is None or not callable(original):
            raise ForwardingError(f"{DECODER_WORKER.target} is gone: the forwarding hook "
                                  "needs updating for this aiortc")
        if getattr(original, "__self__", None) is self:
            original = self._original  # our own wrapper left installed by an earlier stop()
        self._original = original
        setattr(module, DECODER_WORKER.name, self._worker)
        self._active = True
        logger.info("encoded-frame forwarding hook installed")

    def stop(self) -> None:
        if not self._active:
            return
        self._active = False
        module = aiortc.rtcrtpreceiver
        current = getattr(module, DECODER_WORKER.name, None)
        if getattr(current, "__self__", None) is self:
            setattr(module, DECODER_WORKER.name, self._original)
        else:
            # Someone wrapped us in turn: we stay in their chain, but pass everything on.
            logger.warning("%s was replaced after the forwarding hook; leaving it",
                           DECODER_WORKER.target)
        with self._lock:
            self._registry.clear()
        logger.info("encoded-frame forwarding hook removed")

    def forward(self, receiver: RTCRtpReceiver, *, label: str = "source",
                keyframe_interval: float = KEYFRAME_INTERVAL) -> EncodedSource:
        """Forward ``receiver``'s frames encoded, and start draining them.

        Call it from the peer connection's ``track`` handler, synchronously: aiortc
        emits ``track`` before the receiver starts its worker thread.
        """
        if not self._active:
            raise ForwardingError(f"{label}: the forwarding hook is not started")
        track = receiver.track
        if track is None:
            raise ForwardingError(f"{label}: the receiver has no remote track yet")
        output_q = getattr(track, REMOTE_TRACK_QUEUE.name, None)
        if not isinstance(output_q, asyncio.Queue):
            raise ForwardingError(f"{REMOTE_TRACK_QUEUE.target} is not an asyncio.Queue "
                                  f"(got {type(output_q).__name__}): update the hook")
        request_keyframe = _pli_sender(receiver, label)
        stats = WorkerStats(label=label)
        with self._lock:
            if output_q in self._decoding:
                raise ForwardingError(f"{label}: the receiver already decodes; call forward() "
                                      "in the 'track' handler")
            if output_q in self._registry:
                raise ForwardingError(f"{label}: the receiver is already forwarded")
            self._registry[output_q] = stats

        def release() -> None:
            stats.discard = True
            with self._lock:
                if self._registry.get(output_q) is stats:
                    del self._registry[output_q]

        source = EncodedSource(track, request_keyframe=request_keyframe,
                               keyframe_interval=keyframe_interval, label=label,
                               worker=stats, on_stop=release)
        source.start()
        return source

    def _worker(self, loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any],
                output_q: asyncio.Queue[Any], decode_error: threading.Event) -> None:
        with self._lock:
            stats = self._registry.get(output_q) if self._active else None
            if stats is None:
                self._decoding.add(output_q)
                self.decoding_workers += 1
            else:
                self.forwarding_workers += 1
        if stats is not None:
            try:
                _forward_frames(loop, input_q, output_q, stats)
            finally:  # the receiver stopped: its queue is no longer a key worth keeping
                with self._lock:
                    if self._registry.get(output_q) is stats:
                        del self._registry[output_q]
        elif self._original is not None:
            self._original(loop, input_q, output_q, decode_error)


def _pli_sender(receiver: RTCRtpReceiver, label: str) -> SendRequest:
    send_pli = getattr(receiver, RECEIVER_SEND_PLI.name, None)
    if send_pli is None:
        raise ForwardingError(f"{label}: {RECEIVER_SEND_PLI.target} is gone: keyframe "
                              "requests cannot reach the publisher")

    async def send() -> bool:
        # The hub's receiver knows the publisher's SSRCs only from packets it received.
        ssrcs = [s.source for s in receiver.getSynchronizationSources()]
        for ssrc in ssrcs:
            await send_pli(ssrc)
        return bool(ssrcs)

    return send


