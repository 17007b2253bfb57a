"""The relay bench's clients, cheap per packet once their connection is up.

A simulated client (``tests.bench.relay_clients``) does its signalling, ICE and DTLS
with aiortc, as before. Once a DTLS transport is connected, what the bench needs from
each packet is little: that a frame came through, when, and with which RTP timestamp.
aiortc's receive path does much more per packet (parse every header extension, a
jitter buffer, a bandwidth estimator, statistics, a queue hop) and its send path
sleeps per frame and track. On two cores, with the clients beside the hub under test,
that work took as much CPU as the hub itself. ``WireClients`` (started in a client
process) trims both ends:

- **Receiving**: ``WireMedia`` takes each SRTP datagram off the ICE connection (through
  ``media.speedups``' direct-media hook, which the process starts too) and reads the
  fixed RTP header, which SRTP leaves in the clear: sequence number, timestamp, SSRC and
  marker. The packet is still unprotected with the DTLS transport's SRTP session, so one
  that fails authentication is dropped as aiortc drops it. ``FrameTally`` counts a video
  frame when its marked last packet arrives and none of its packets went missing: it
  began with a packet whose VP8 payload descriptor marks a frame's first (S set,
  partition 0), and no sequence number is missing since (aiortc's jitter buffer too
  hands on a frame only when all of its packets are in). An audio packet is a frame. The
  SSRC is matched to its receiver through the DTLS transport's RTP router (from the
  remote description's ``a=ssrc`` lines); a packet whose SSRC or payload type the router
  does not know yet, and every RTCP packet (sender reports, keyframe requests for the
  client's senders), goes through aiortc as before.
- **Sending**: every sender of a ``PacketLoopTrack`` gets the hub's own per-frame loop
  (``media.fast_send.install``, before ``send()`` starts it) and the track is paced by
  one ``Pacer`` task per process, which hands each due frame to that loop's sink side
  (``accepts``/``take``) instead of one sleeping ``recv()`` per frame and track.

The hubs under test get the same media as from aiortc's clients: the same RTP headers
and extensions (aiortc's serialization, through the hub's template), the same SRTP,
RTCP sender reports. What the clients no longer send is the receiver-side feedback that
came out of the parts they skip: NACK, REMB, and report blocks in their receiver
reports. A frame counts when its last packet arrives, not when aiortc's jitter buffer
would hand it on (video: when the next frame's first packet arrives; audio: four
packets later, its prefetch), so latencies come out lower than with aiortc's clients:
by up to a frame interval for video, by about 80 ms for audio. Every run of every mode
(forward, transcode, Janus) uses the same clients; ``--aiortc-clients`` runs the old
ones. Without REMB from its subscribers the transcoding hub's VP8 encoders stay at
aiortc's starting bitrate instead of ramping up, which makes transcoding somewhat
cheaper than with aiortc's clients (or browsers), so ``transcode_ratio`` leans low.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import unpack_from
from typing import Any

import pylibsrtp
from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtp import is_rtcp

from media import fast_send
from media.private_hooks import DTLS_SET_STATE, SENDER_STARTS_LOOP
from media.speedups import DirectMedia, PacketPathSpeedup
from tests.bench.relay_media import FrameCounter, Pacer, PacketLoopTrack, StreamCount


def vp8_frame_start(packet: bytes) -> bool | None:
    """Whether an RTP packet (in the clear) starts a VP8 frame: its payload descriptor
    has S set and partition index 0 (RFC 7741). None: too short to tell."""
    first = packet[0]
    offset = 12 + 4 * (first & 0x0F)  # past the CSRCs
    if first & 0x10:  # past the header extension
        if len(packet) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(packet[offset + 2:offset + 4], "big")
    if first & 0x20:  # padding: its count is the last byte
        end = len(packet) - packet[-1]
    else:
        end = len(packet)
    if end <= offset:
        return None
    return packet[offset] & 0x17 == 0x10


class FrameTally:
    """One received stream's frames, from its RTP headers alone (and, for VP8, the
    payload descriptor's first byte)."""

    __slots__ = ("_expect", "_timestamp", "_whole", "payload_type", "starts", "stream",
                 "video")

    def __init__(self, stream: StreamCount, *, video: bool, payload_type: int,
                 starts: Callable[[bytes], bool | None] | None = None) -> None:
        self.stream = stream
        self.video = video
        self.payload_type = payload_type
        self.starts = starts  # tells a frame's first packet, where the codec can
        self._expect: int | None = None  # the sequence number that should come next
        self._timestamp: int | None = None  # the frame under way
        self._whole = False  # no packet of it went missing so far

    def packet(self, sequence: int, timestamp: int, marker: bool,
               plain: bytes | None = None) -> None:
        """One packet; ``plain`` is the whole packet in the clear (for ``starts``)."""
        stream = self.stream
        if not self.video:
            if timestamp != self._timestamp:
                self._timestamp = timestamp
                stream.add(timestamp)
            return
        if timestamp != self._timestamp:
            # A new frame. Whole so far if this is its first packet: as the codec says,
            # else if nothing went missing since the last packet (which cannot tell a
            # lost first packet of this frame from a lost last one of the previous).
            self._timestamp = timestamp
            start = self.starts(plain) if self.starts is not None and plain else None
            self._whole = sequence == self._expect if start is None else start
        elif sequence != self._expect:
            self._whole = False
        self._expect = (sequence + 1) & 0xFFFF
        if marker and self._whole:
            self._whole = False  # counted once
            stream.add(timestamp)


class WireMedia:
    """A connected DTLS transport's SRTP, counted as it arrives (see the module)."""

    __slots__ = ("counter", "direct", "packets", "passed", "tallies", "video_packets")

    def __init__(self, direct: DirectMedia, counter: FrameCounter) -> None:
        self.direct = direct
        self.counter = counter
        self.tallies: dict[int, FrameTally] = {}
        self.packets = 0  # counted here
        self.video_packets = 0  # of which video
        self.passed = 0  # RTP handed to aiortc (a stream not known yet)

    def __call__(self, data: bytes) -> bool:
        dtls = self.direct.dtls
        srtp = dtls._rx_srtp
        if dtls._state is not State.CONNECTED or srtp is None:
            return False
        if is_rtcp(data) or len(data) < 12:
            return self.direct(data)
        # SRTP leaves the fixed header in the clear: the stream is known before the
        # packet is unprotected (which still checks it came from the hub, unaltered).
        second = data[1]
        sequence, timestamp, ssrc = unpack_from("!HII", data, 2)
        tally = self.tallies.get(ssrc)
        if tally is None:
            tally = self._learn(dtls, ssrc, second & 0x7F)
        if tally is None or tally.payload_type != second & 0x7F:
            self.passed += 1
            return self.direct(data)
        try:
            plain = srtp.unprotect(data)
        except pylibsrtp.Error:
            return True  # aiortc drops it too (a replay, a failed authentication)
        self.packets += 1
        if tally.video:
            self.video_packets += 1
        tally.packet(sequence, timestamp, bool(second & 0x80), plain)
        return True

    def _learn(self, dtls: RTCDtlsTransport, ssrc: int, payload_type: int) -> FrameTally | None:
        """The tally of the receiver aiortc's router sends ``ssrc`` to, if it knows it
        and the payload type is that receiver's (not RTX)."""
        router = dtls._rtp_router
        receiver: Any = router.ssrc_table.get(ssrc)
        if receiver is None or receiver not in router.payload_type_table.get(payload_type, ()):
            return None
        track = receiver.track
        codecs = vars(receiver).get("_RTCRtpReceiver__codecs", {})
        codec = codecs.get(payload_type)
        if track is None or codec is None or codec.mimeType.lower().endswith("/rtx"):
            return None
        vp8 = codec.mimeType.lower() == "video/vp8"
        tally = FrameTally(self.counter.for_track(track), video=track.kind == "video",
                           payload_type=payload_type, starts=vp8_frame_start if vp8 else None)
        self.tallies[ssrc] = tally
        return tally


class WireClients:
    """In a client process: aiortc's per-packet paths replaced as the module says, while
    started (over ``media.speedups``' packet path, which it starts and stops with it)."""

    def __init__(self, counter: FrameCounter) -> None:
        self.counter = counter
        self.speedup = PacketPathSpeedup()
        self.pacer = Pacer()
        self.wired: list[WireMedia] = []  # one per DTLS transport that connected
        self._originals: list[tuple[type, str, Any]] = []

    def report(self) -> dict[str, int]:
        """RTP packets counted here, and those handed to aiortc (a stream it knew and
        this did not: a fallback that would make the clients cost what they did)."""
        return {"transports": len(self.wired),
                "counted": sum(w.packets for w in self.wired),
                "counted_video": sum(w.video_packets for w in self.wired),
                "to_aiortc": sum(w.passed for w in self.wired)}

    def start(self) -> None:
        if self._originals:
            return
        self.speedup.start()
        set_state = RTCDtlsTransport._set_state  # the speed-up's: attaches DirectMedia
        send = RTCRtpSender.send

        def dtls_set_state(transport: RTCDtlsTransport, state: State) -> None:
            set_state(transport, state)
            fields = vars(transport.transport._connection)
            direct = fields.get("_direct_media")
            if state is State.CONNECTED and type(direct) is DirectMedia:
                wired = WireMedia(direct, self.counter)
                fields["_direct_media"] = wired
                self.wired.append(wired)

        async def sender_send(sender: RTCRtpSender, parameters: Any) -> None:
            track = sender.track
            if isinstance(track, PacketLoopTrack):
                loop = fast_send.install(sender)  # before send() starts aiortc's loop
                if loop is not None:
                    self.pacer.pace(track, loop)
            await send(sender, parameters)

        for owner, name, replacement in ((RTCDtlsTransport, DTLS_SET_STATE.name, dtls_set_state),
                                         (RTCRtpSender, SENDER_STARTS_LOOP.name, sender_send)):
            self._originals.append((owner, name, vars(owner)[name]))
            setattr(owner, name, replacement)

    def stop(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals = []
        self.speedup.stop()
