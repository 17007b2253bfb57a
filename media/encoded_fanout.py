"""Fan-out of one forwarded (still encoded) track to its subscribers, bounded.

An ``EncodedSource`` reads the ``av.Packet``s a forwarding receiver emits (see
``media.forwarding``) for as long as it lives, and offers each to every subscribed
``ForwardingTrack``. A subscriber's sender packetizes those packets without encoding.
Video subscribers start at a keyframe, drop to the next keyframe when they fall behind,
and ask the publisher for keyframes through the source, throttled.

A subscriber whose consumer can take frames synchronously (a forwarding sender's
``media.fast_send`` loop, the recorder) has a ``FrameSink``: while the sink accepts and
nothing is queued, each frame goes straight to it, with no queue, event or task switch
per frame and subscriber.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol

from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.packet import Packet

from media import fast_send
from media.encoded_frame import EncodedFrame, as_packet
from media.errors import MediaError
from media.keyframes import KeyframeRequester, SendRequest
from media.private_hooks import SENDER_SEND_KEYFRAME
from media.timeline import Timeline

logger = logging.getLogger(__name__)

VIDEO_QUEUE = 8  # ~0.5 s at 15 fps
AUDIO_QUEUE = 25  # 0.5 s of 20 ms Opus frames
KEYFRAME_INTERVAL = 0.5  # at most two PLIs a second to one publisher
KEYFRAME_RETRY = 1.0  # a subscriber still waiting for its keyframe asks again


class ForwardingError(MediaError):
    code = "forwarding"


class FrameSink(Protocol):
    """Takes a subscriber's frames as they are offered, on the event loop, instead of a
    reader awaiting ``recv()`` for each (``ForwardingTrack.set_sink``)."""

    def accepts(self, track: ForwardingTrack) -> bool:
        """Whether ``take`` can have the next frame now. False: it is queued for
        ``recv()`` as usual (and the frames after it, until the queue is empty again)."""
        ...

    def take(self, track: ForwardingTrack, frame: EncodedFrame) -> bool:
        """Handle one frame. False: the way out is congested and the frame was dropped
        (video then waits for the next keyframe, as after a queue overflow)."""
        ...


@dataclass
class WorkerStats:
    """What one forwarding receiver's worker thread did (written by that thread only)."""

    label: str
    mode: Literal["pending", "forward"] = "pending"
    codec: str | None = None  # mime type, once the first frame arrived
    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    padding: int = 0  # frames of padding packets only (bandwidth probes), not forwarded
    discard: bool = False  # the source stopped: drop instead of filling an undrained queue


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a setattr call per field
class _Encoded:
    data: bytes
    pts: int
    time_base: Fraction
    keyframe: bool
    arrival: float
    source: EncodedSource


class EncodedSource:
    """One forwarded remote track: drained for as long as it lives, fanned out.

    ``request_keyframe`` sends one keyframe request upstream (``ForwardingHook.forward``
    passes a PLI through the receiver); requests are throttled to one per
    ``keyframe_interval`` seconds.
    """

    def __init__(self, track: MediaStreamTrack, *, request_keyframe: SendRequest | None = None,
                 keyframe_interval: float = KEYFRAME_INTERVAL, label: str = "source",
                 worker: WorkerStats | None = None,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.track = track
        self.kind: str = track.kind
        self.label = label
        self.worker = worker
        self._keyframes = (KeyframeRequester(request_keyframe, min_interval=keyframe_interval,
                                             label=label)
                           if request_keyframe is not None and self.kind == "video" else None)
        self._on_stop = on_stop
        self._subscribers: set[ForwardingTrack] = set()
        self._time_base = Fraction(1, 90000 if self.kind == "video" else 48000)
        self._task: asyncio.Task[None] | None = None
        self._now: Callable[[], float] | None = None  # the loop's clock, once started
        self._stopped = False
        self.ended = False
        self.frames = 0
        self.keyframes = 0
        self.unexpected = 0  # decoded frames: forwarding was not on for this receiver

    @property
    def subscribers(self) -> tuple[ForwardingTrack, ...]:
        return tuple(self._subscribers)

    @property
    def keyframe_requester(self) -> KeyframeRequester | None:
        return self._keyframes

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._now = loop.time
            self._task = loop.create_task(self._drain(), name=f"forward {self.label}")

    def publish(self, data: bytes, pts: int, time_base: Fraction, keyframe: bool) -> None:
        """Fan one encoded frame out to the subscribers (on the event loop).

        ``ForwardingHook`` calls it as the receiver reassembles each frame; packets that
        come out of ``track`` (any other packet track) arrive here through ``_drain``.
        """
        if self._stopped:
            return
        if time_base is not self._time_base:
            # Kept by identity: the feed passes the same Fraction every time.
            if time_base != self._time_base or not isinstance(time_base, Fraction):
                time_base = Fraction(time_base.numerator, time_base.denominator)
            self._time_base = time_base
        now = self._now if self._now is not None else asyncio.get_running_loop().time
        item = _Encoded(data, pts, self._time_base, keyframe, now(), self)
        self.frames += 1
        if keyframe and self.kind == "video":
            self.keyframes += 1
            if self._keyframes is not None:
                self._keyframes.keyframe_seen()
        for sub in tuple(self._subscribers):
            sub._offer(item)

    async def _drain(self) -> None:
        try:
            while True:
                try:
                    data = await self.track.recv()
                except MediaStreamError:
                    break
                if not isinstance(data, Packet):
                    self.unexpected += 1
                    if self.unexpected == 1:
                        logger.warning("%s: got a decoded frame, forwarding is not on for "
                                       "this receiver", self.label)
                    continue
                self.publish(bytes(data), data.pts or 0, data.time_base, data.is_keyframe)
        finally:
            self.ended = True
            logger.info("%s: source ended after %d frames (%d keyframes)", self.label,
                        self.frames, self.keyframes)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (throttled; nothing for audio)."""
        if self._keyframes is not None:
            self._keyframes.request()

    def subscribe(self, *, max_queue: int | None = None) -> ForwardingTrack:
        """A new subscriber track; it starts at the next keyframe, which is requested."""
        track = ForwardingTrack(self.kind, max_queue=max_queue)
        self.adopt(track)
        return track

    def adopt(self, track: ForwardingTrack) -> None:
        """Feed an existing subscriber track from this source from now on."""
        if track.kind != self.kind:
            raise ForwardingError(f"{self.label}: cannot feed a {track.kind} track from a "
                                  f"{self.kind} source")
        if self._stopped:
            raise ForwardingError(f"{self.label}: the source has stopped")
        track._attach(self)

    async def stop(self, *, keep_subscribers: bool = False) -> list[ForwardingTrack]:
        """Stop draining. Subscribers end, or with ``keep_subscribers`` are detached
        and returned, waiting for another source to ``adopt`` them."""
        self._stopped = True
        if self._on_stop is not None:
            self._on_stop()
            self._on_stop = None
        if self._keyframes is not None:
            self._keyframes.stop()
        self.track.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.ended = True
        subs = tuple(self._subscribers)
        self._subscribers.clear()
        for sub in subs:
            sub._detach(self)
            if not keep_subscribers:
                sub._end()
        return list(subs) if keep_subscribers else []


class ForwardingTrack(MediaStreamTrack):
    """What one subscriber's sender reads: encoded packets, bounded.

    Holds at most ``max_queue`` packets. Video starts at a keyframe, requested on
    subscribe; on overflow the queue is dropped and the track waits for the next keyframe
    instead of growing, asking for one once its reader calls ``recv()`` again (and every
    ``KEYFRAME_RETRY`` seconds while it waits). pts run on the subscriber's own timeline,
    forward-only across sources.

    With a ``FrameSink`` set (``set_sink``), a frame offered while nothing is queued and
    the sink accepts goes straight to the sink instead: no queue, event or task switch
    per frame. The queue bound still holds for whatever the sink does not accept, and a
    frame the sink drops as congested sends video to the next keyframe.
    """

    def __init__(self, kind: str, *, max_queue: int | None = None) -> None:
        super().__init__()
        if kind not in ("audio", "video"):
            raise ValueError(f"kind must be 'audio' or 'video', got {kind!r}")
        self.kind = kind
        self.max_queue = max_queue or (VIDEO_QUEUE if kind == "video" else AUDIO_QUEUE)
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self.source: EncodedSource | None = None
        self.timeline = Timeline()
        self._queue: deque[_Encoded] = deque()
        self._ready = asyncio.Event()
        self._need_keyframe = kind == "video"
        self._ended = False
        self._sender: RTCRtpSender | None = None
        self._pli_handler: Callable[[], None] | None = None
        self._sink: FrameSink | None = None
        self.sent = 0
        self.direct = 0  # of ``sent``: taken by the sink as offered
        self.congested = 0  # frames the sink dropped
        self.dropped = 0
        self.overflows = 0
        self.max_depth = 0
        self.subscriber_keyframe_requests = 0
        self.first_sent_at: float | None = None  # monotonic time of the first packet out

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._need_keyframe

    def set_sink(self, sink: FrameSink | None) -> None:
        """Hand frames to ``sink`` as they are offered (see ``FrameSink``); None: only
        ``recv()`` again."""
        self._sink = sink

    def bind_sender(self, sender: RTCRtpSender) -> None:
        """Route PLI/FIR that reach ``sender`` (this subscriber's) to the source, and give
        it the per-frame RTP loop (``media.fast_send``) if it has not started, which then
        takes this track's frames as they are offered."""
        self._unbind_sender()
        loop = fast_send.install(sender)
        if loop is not None:
            self._sink = loop

        def on_keyframe_request() -> None:
            self.subscriber_keyframe_requests += 1
            self.request_keyframe()

        # An instance attribute shadows the method for this sender only.
        setattr(sender, SENDER_SEND_KEYFRAME.name, on_keyframe_request)
        self._sender = sender
        self._pli_handler = on_keyframe_request

    def _unbind_sender(self) -> None:
        sender, handler = self._sender, self._pli_handler
        self._sender = self._pli_handler = None
        if sender is not None and self._sink is fast_send.installed(sender):
            self._sink = None
        if sender is not None and vars(sender).get(SENDER_SEND_KEYFRAME.name) is handler:
            delattr(sender, SENDER_SEND_KEYFRAME.name)

    def request_keyframe(self) -> None:
        if self.source is not None:
            self.source.request_keyframe()

    def _attach(self, source: EncodedSource) -> None:
        if self._ended or self.readyState != "live":
            raise ForwardingError(f"{source.label}: the subscriber track has ended")
        if self.source is source:
            return
        if self.source is not None:
            self.source._subscribers.discard(self)
        self.source = source
        source._subscribers.add(self)
        if self.kind == "video":
            self._need_keyframe = True
            source.request_keyframe()

    def park(self) -> None:
        """Stop taking frames from the current source, without ending: the sender keeps
        waiting, and the next ``EncodedSource.adopt`` (a new publication reusing this
        m-line) feeds it again."""
        source = self.source
        if source is not None:
            source._subscribers.discard(self)
            self.source = None
        self._queue.clear()
        if self.kind == "video":
            self._need_keyframe = True

    def restart_at_keyframe(self) -> None:
        """Drop what is queued and start again at the next keyframe (requested)."""
        self._queue.clear()
        if self.kind == "video":
            self._need_keyframe = True
            self.request_keyframe()

    @property
    def ended(self) -> bool:
        return self._ended or self.readyState != "live"

    def end(self) -> None:
        """End the track: its reader gets MediaStreamError."""
        self._end()

    def _detach(self, source: EncodedSource) -> None:
        if self.source is source:
            self.source = None

    def _offer(self, item: _Encoded) -> None:
        if self._ended:
            return
        video = self.kind == "video"
        if video and self._need_keyframe:
            if not item.keyframe:
                self.dropped += 1
                return
            self._need_keyframe = False
        sink = self._sink
        if sink is not None and not self._queue and sink.accepts(self):
            self._hand_over(sink, item)
            return
        if len(self._queue) >= self.max_queue:
            self.overflows += 1
            if video:
                # A delta frame cannot skip the ones before it: drop to a keyframe.
                self.dropped += len(self._queue)
                self._queue.clear()
                if not item.keyframe:
                    # No keyframe request yet: a stalled reader would make the publisher
                    # send one every overflow. recv() asks when the reader is back.
                    self.dropped += 1
                    self._need_keyframe = True
                    return
            else:
                self._queue.popleft()
                self.dropped += 1
        self._queue.append(item)
        self.max_depth = max(self.max_depth, len(self._queue))
        self._ready.set()

    def _hand_over(self, sink: FrameSink, item: _Encoded) -> None:
        try:
            taken = sink.take(self, self._frame(item))
        except Exception:
            # The frame is lost; the reader's recv() gets the next ones, and fails the way
            # it fails if the fault is theirs too.
            logger.exception("a subscriber's frame sink failed: frames go to its reader "
                             "from now on")
            self._sink = None
        else:
            if taken:
                self.sent += 1
                self.direct += 1
                if self.first_sent_at is None:
                    self.first_sent_at = time.monotonic()
                return
            self.congested += 1
        self.dropped += 1
        if self.kind == "video":
            self._need_keyframe = True
            self._ready.set()  # the reader's recv() asks for the keyframe, and again

    def _frame(self, item: _Encoded) -> EncodedFrame:
        """``item`` on this subscriber's timeline."""
        pts = self.timeline.map(item.pts, item.time_base, item.source, item.arrival)
        return EncodedFrame(item.data, pts, self.timeline.time_base or item.time_base,
                            item.keyframe)

    def _end(self) -> None:
        self._ended = True
        self._ready.set()

    async def recv(self) -> Packet[Any]:
        while not self._queue:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            if self._need_keyframe:
                self.request_keyframe()
                try:
                    async with asyncio.timeout(KEYFRAME_RETRY):
                        await self._ready.wait()
                except TimeoutError:
                    pass
            else:
                await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        packet = as_packet(self._frame(self._queue.popleft()))
        self.sent += 1
        if self.first_sent_at is None:
            self.first_sent_at = time.monotonic()
        return packet

    def stop(self) -> None:
        super().stop()
        if self.source is not None:
            self.source._subscribers.discard(self)
            self.source = None
        self._unbind_sender()
        self._sink = None
        self._queue.clear()
        self._ready.set()

