"""Forwarding encoded frames through the hub without decoding or re-encoding them.

aiortc's receiver hands every reassembled frame to the module-level
``aiortc.rtcrtpreceiver.decoder_worker``, run in one thread per receiver, through a
``queue.Queue``. While a ``ForwardingHook`` is started, that name points at a wrapper:
for receivers registered with ``ForwardingHook.forward`` the thread only arranges for the
receiver's queue to hand each frame (the encoded bytes, pts = unwrapped RTP timestamp,
time base 1/clock rate, keyframe flag) to the ``EncodedSource`` on the event loop as it
is queued, and ends; every other receiver decodes as before.

The ``EncodedSource`` (``media.encoded_fanout``, re-exported here) fans the frames out
to ``ForwardingTrack``s, one per subscriber, and still drains the remote track (its end,
or decoded frames if forwarding was not on for the receiver). aiortc's
``RTCRtpSender`` packetizes an ``av.Packet`` from its track without encoding it (the
``MediaPlayer(decode=False)`` path). A forwarding sender has no encoder to honour
PLI/FIR, so ``ForwardingTrack.bind_sender`` routes them, like the track's own needs
(subscribe, a reader back after an overflow, a new source), to a throttled PLI from the
hub's receiver to the publisher. A forwarded receiver's jitter buffer is swapped for
one that gives up a lost video packet after a bound and hands audio on at once
(``media.jitter``).

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
from aiortc.jitterbuffer import JitterBuffer
from av.packet import Packet

from media.bitstream import is_keyframe
from media.encoded_fanout import (
    KEYFRAME_INTERVAL,
    EncodedSource,
    ForwardingError,
    ForwardingTrack,
    WorkerStats,
)
from media.jitter import AudioForwardBuffer, BoundedWaitJitterBuffer
from media.keyframes import SendRequest
from media.private_hooks import (
    DECODER_WORKER,
    RECEIVER_JITTER_BUFFER,
    RECEIVER_SEND_PLI,
    REMOTE_TRACK_QUEUE,
)

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


def _swap_jitter_buffer(receiver: RTCRtpReceiver, kind: str, label: str) -> None:
    """Give the receiver a jitter buffer that does not wait long (video) or at all
    (audio) for a lost packet (``media.jitter``). Before its first packet: nothing is
    lost by the swap."""
    name = RECEIVER_JITTER_BUFFER.name
    current = getattr(receiver, name, None)
    if not isinstance(current, JitterBuffer):
        raise ForwardingError(f"{RECEIVER_JITTER_BUFFER.target} is not a JitterBuffer "
                              f"(got {type(current).__name__}): update the hook")
    buffer: JitterBuffer = (BoundedWaitJitterBuffer(capacity=current.capacity, label=label)
                            if kind == "video" else AudioForwardBuffer())
    setattr(receiver, name, buffer)


def encoded_packet(codec_name: str, clock_rate: int, data: bytes, timestamp: int) -> Packet[Any]:
    """An ``av.Packet`` for one encoded frame as aiortc's receiver reassembled it."""
    packet = Packet(data)
    packet.pts = timestamp
    packet.dts = timestamp
    packet.time_base = Fraction(1, clock_rate)
    packet.is_keyframe = is_keyframe(codec_name, data)
    return packet


class _InlineFeed:
    """Hands one forwarding receiver's frames straight to its ``EncodedSource``.

    aiortc's receiver puts every reassembled frame into a ``queue.Queue`` that its worker
    thread reads; a thread that only wraps bytes is not worth a futex wake, a GIL hand-off
    and a self-pipe write to come back to the loop, per frame (they were most of the hub's
    own cost). The receiver calls ``put`` from ``_handle_rtp_packet`` on the event loop
    thread, so once ``install`` has shadowed that queue's ``put`` the frame is fanned out
    right there, and the worker thread has nothing left to do.
    """

    def __init__(self, stats: WorkerStats, source: EncodedSource,
                 output_q: asyncio.Queue[Any], on_end: Callable[[], None]) -> None:
        self.stats = stats
        self.source = source
        self._output_q = output_q
        self._on_end = on_end
        self._codec: Any = None  # the RTCRtpCodecParameters last seen, and what it gives:
        self._codec_name = ""
        self._time_base = Fraction(1, 90000)
        self._video = False
        self.installed = False
        self.ended = False

    def install(self, input_q: queue.Queue[Any]) -> None:
        """On the event loop: take over ``input_q``'s ``put``. Frames the receiver queued
        before this ran are handled first, in order."""
        while True:
            try:
                task = input_q.get_nowait()
            except queue.Empty:
                break
            self.put(task)
        if not self.ended:
            # An instance attribute shadows the method for this queue only.
            input_q.put = self.put  # type: ignore[method-assign]
        self.installed = True

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """What the receiver's ``input_q.put`` does once installed (on the event loop):
        see ``RECEIVER_QUEUES_FRAMES`` and ``RECEIVER_STOPS_WORKER`` in
        ``media.private_hooks``."""
        if item is None:  # the receiver stopped: end the track, as the decoder would
            self._end()
            return
        stats = self.stats
        if self.ended or stats.discard:
            return
        try:
            codec, frame = item
            if codec is not self._codec:
                self._codec = codec
                self._codec_name = codec.name.upper()
                self._video = codec.mimeType.lower().startswith("video/")
                if self._time_base.denominator != codec.clockRate:
                    self._time_base = Fraction(1, codec.clockRate)
                stats.codec = codec.mimeType
            data: bytes = frame.data
            if not data:
                # Padding only: a browser probes its bandwidth with RTP packets that carry
                # no payload, most in the first seconds of a connection. aiortc makes them
                # an empty frame; forwarded, it would take a picture id of its own that no
                # real frame refers to, and the receiver would stall until the next
                # keyframe (Chromium asks after 3 s).
                stats.padding += 1
                return
            keyframe = is_keyframe(self._codec_name, data)
            stats.frames += 1
            stats.bytes += len(data)
            if keyframe and self._video:
                stats.keyframes += 1
            self.source.publish(data, frame.timestamp, self._time_base, keyframe)
        except Exception:  # never into aiortc's receive path
            logger.exception("%s: could not forward an encoded frame", stats.label)

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self._on_end()
        self._output_q.put_nowait(None)


class ForwardingHook:
    """While started, receivers passed to ``forward()`` emit encoded packets.

    Install before the peer connections that should forward start receiving: a receiver
    picks its worker when its transport connects. Stopping restores aiortc's worker for
    receivers started afterwards; receivers already forwarding go on until they stop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._original: DecoderWorker | None = None
        self._active = False
        self._registry: dict[asyncio.Queue[Any], _InlineFeed] = {}
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
        _swap_jitter_buffer(receiver, track.kind, label)
        stats = WorkerStats(label=label)

        def unregister() -> None:
            with self._lock:
                if self._registry.get(output_q) is feed:
                    del self._registry[output_q]

        def release() -> None:
            stats.discard = True
            unregister()

        source = EncodedSource(track, request_keyframe=request_keyframe,
                               keyframe_interval=keyframe_interval, label=label,
                               worker=stats, on_stop=release)
        feed = _InlineFeed(stats, source, output_q, on_end=unregister)
        with self._lock:
            if output_q in self._decoding:
                raise ForwardingError(f"{label}: the receiver already decodes; call forward() "
                                      "in the 'track' handler")
            if output_q in self._registry:
                raise ForwardingError(f"{label}: the receiver is already forwarded")
            self._registry[output_q] = feed
        source.start()
        return source

    def _worker(self, loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any],
                output_q: asyncio.Queue[Any], decode_error: threading.Event) -> None:
        with self._lock:
            feed = self._registry.get(output_q) if self._active else None
            if feed is None:
                self._decoding.add(output_q)
                self.decoding_workers += 1
            else:
                self.forwarding_workers += 1
        if feed is not None:
            feed.stats.mode = "forward"
            try:  # the rest happens on the loop, where the receiver queues its frames
                loop.call_soon_threadsafe(feed.install, input_q)
            except RuntimeError:  # the loop is closed: nobody is left to read
                pass
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


