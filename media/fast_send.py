"""A forwarding sender's RTP loop, working a frame at a time instead of a packet at a time.

aiortc's ``RTCRtpSender._run_rtp`` builds an ``RtpPacket`` per packet, sets its header
extensions, serializes it and awaits four coroutines down to the socket (DTLS transport
→ ICE transport → ICE connection → candidate pair), reading the clock twice per packet.
``install`` gives one sender ``FastRtpLoop.run`` instead, which keeps the original's
behaviour and private state, per frame:

- the track's next ``av.Packet`` is packetized by ``RTCRtpSender._next_encoded_frame``
  (the codec's ``pack``, no encoding: see ``media.forwarding``);
- the RTP header (with its extensions) is serialized by aiortc's ``RtpPacket.serialize``
  once; the frame's packets share it with their own sequence number and marker bit (a
  frame's packets share timestamp and extensions, and, sent in one burst, the
  abs-send-time), and later frames reuse it with their sequence number, timestamp and
  abs-send-time written in, for as long as the sender's mid, payload type and
  extensions stay the same;
- each packet is protected with the DTLS transport's SRTP session and handed to the
  nominated ICE pair's datagram transport without awaiting (``sendto`` on a UDP socket
  does not block). A pair whose protocol is not aioice's plain ``StunProtocol`` (a TURN
  allocation) gets its packets through its ``send_data`` as before;
- the RTCP sender-report counters, the DTLS transport's byte and packet counts and a
  history of the last ``HISTORY`` packets for NACK (``_retransmit`` is replaced to read
  it) are kept as aiortc keeps them.

The loop is also its ``ForwardingTrack``'s ``FrameSink``: once it runs, with DTLS up and a
plain socket nominated, each frame is packetized (as ``_next_encoded_frame`` does: the
sender's encoder's ``pack``, nothing for a disabled sender) and sent as the source offers
it, with no queue, event or task switch; the loop's own ``recv()`` then only sees what the
sink did not accept. Nothing sent that way waits in the hub: a frame meeting a socket
asyncio already buffers more than ``MAX_BACKLOG`` bytes for is dropped, and video waits
for the next keyframe.

Every private name read or written is listed in ``media.private_hooks`` (``SENDER_*``,
``DTLS_SENDS_RTP``, ``ICE_*``), so an upgrade that changes one fails a test instead of
a sender that silently stops.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from struct import pack_into
from typing import Any

import aioice.ice
from aiortc import RTCRtpSender, clock
from aiortc.codecs import get_encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RtpPacket, wrap_rtx
from aiortc.utils import random32, uint16_add, uint32_add

from media.encoded_frame import EncodedFrame, as_packet
from media.private_hooks import SENDER_RETRANSMIT, SENDER_RUN_RTP

logger = logging.getLogger(__name__)

HISTORY = 128  # aiortc's RTP_HISTORY_SIZE: packets kept for NACK
# Bytes asyncio may hold for a socket whose kernel buffer is full before a subscriber's
# frames are dropped (video then waits for a keyframe): the bound on the way out.
MAX_BACKLOG = 256 * 1024
_FRAME_PACKERS = (Vp8Encoder, OpusEncoder)


class FastRtpLoop:
    """One sender's replacement ``_run_rtp`` and ``_retransmit``, and the ``FrameSink``
    its ``ForwardingTrack`` hands frames to as they are offered (``accepts``/``take``)."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.sender = sender
        self.history: list[bytes | None] = [None] * HISTORY
        self.sequence = random_sequence_number()
        self.origin = random32()
        self.frames = 0
        self.packets = 0
        self.direct = 0  # of ``frames``: sent as offered, not through run()
        self.congested = 0  # frames refused: the socket's backlog was over MAX_BACKLOG
        self.via_protocol = 0  # packets a TURN pair's send_data took
        self._codec: RTCRtpCodecParameters | None = None  # while run() runs
        self._payload_type = 0
        self._busy = False  # run() is awaiting a TURN pair's send_data
        self._way: tuple[Any, Any] | None = None  # (DTLS transport, pair) accepts() found
        # The last header serialized: ((mid, payload type), extension map, bytes,
        # abs-send-time offset).
        self._template: tuple[tuple[str | None, int], object, bytes, int | None] | None = None

    async def run(self, codec: RTCRtpCodecParameters) -> None:
        sender = self.sender
        fields = vars(sender)
        fields["_RTCRtpSender__rtp_started"].set()
        try:
            payload_type = codec.payloadType
            if payload_type is None:
                raise ValueError(f"the sender's codec {codec.mimeType} has no payload type")
            self._payload_type = payload_type
            self._codec = codec
            while True:
                if not fields["_RTCRtpSender__track"]:
                    await asyncio.sleep(0.02)
                    continue
                frame = await sender._next_encoded_frame(codec)
                if frame is None:
                    continue
                way = self._connected_pair()
                if way is None:
                    raise ConnectionError("Cannot send encrypted RTP, not connected")
                dtls, pair = way
                protocol, addr = pair.protocol, pair.remote_addr
                packets = self._packets(frame.payloads, frame.timestamp, frame.audio_level)
                if type(protocol) is aioice.ice.StunProtocol:
                    self._send_now(dtls, protocol.transport, addr, packets)
                    continue
                self._busy = True  # a frame offered meanwhile is queued behind this one
                try:
                    protect = dtls._tx_srtp.protect
                    counters = vars(dtls)
                    for data in packets:
                        wire = protect(data)
                        await protocol.send_data(wire, addr)
                        counters["_RTCDtlsTransport__tx_bytes"] += len(wire)
                        counters["_RTCDtlsTransport__tx_packets"] += 1
                        self.via_protocol += 1
                finally:
                    self._busy = False
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            # stop() waits for rtp_exited: whatever happens, set it (as aiortc does).
            logger.warning("a forwarding sender's RTP loop failed:\n%s",
                           traceback.format_exc())
        self._codec = None
        track = fields["_RTCRtpSender__track"]
        if track:
            track.stop()
            fields["_RTCRtpSender__track"] = None
        fields["_RTCRtpSender__encoder"] = None
        fields["_RTCRtpSender__rtp_exited"].set()

    # -- the FrameSink side: frames as they are offered, no task switch ----------------

    def accepts(self, track: MediaStreamTrack) -> bool:
        """Whether ``take`` can send ``track``'s next frame now: the loop runs with this
        track, nothing of its own is under way, DTLS is up and the nominated pair is a
        plain socket. Otherwise the frame is queued for the loop (which fails the way
        aiortc's does if the connection is gone)."""
        if self._codec is None or self._busy:
            return False
        sender = self.sender
        if vars(sender)["_RTCRtpSender__track"] is not track:
            return False
        way = self._connected_pair()
        if way is None or type(way[1].protocol) is not aioice.ice.StunProtocol:
            return False
        self._way = way
        return True

    def take(self, track: MediaStreamTrack, frame: EncodedFrame) -> bool:
        """Packetize and send one frame now (right after ``accepts``, on the way it
        found). False: the socket already holds more than ``MAX_BACKLOG`` bytes the
        kernel would not take, and the frame is dropped instead of adding to them."""
        way, self._way = self._way, None
        if way is None:
            raise ConnectionError("take() without accepts()")
        sender = self.sender
        if not sender._enabled:
            return True  # aiortc reads a disabled sender's frames and drops them
        dtls, pair = way
        socket: Any = pair.protocol.transport  # asyncio's (or uvloop's) UDP transport
        if socket.get_write_buffer_size() > MAX_BACKLOG:
            self.congested += 1
            return False
        fields = vars(sender)
        encoder = fields["_RTCRtpSender__encoder"]
        if encoder is None:
            codec = self._codec
            if codec is None:  # accepts() said the loop runs
                raise ConnectionError("the sender's RTP loop is not running")
            encoder = fields["_RTCRtpSender__encoder"] = get_encoder(codec)
        # VP8's and Opus's pack() read bytes(), pts and time_base, which the frame has;
        # H.264's wants an av.Packet.
        payloads, timestamp = encoder.pack(
            frame if type(encoder) in _FRAME_PACKERS else as_packet(frame))
        if payloads:
            self._send_now(dtls, socket, pair.remote_addr,
                           self._packets(payloads, timestamp, None))
            self.direct += 1
        return True

    # -- per frame -------------------------------------------------------------------

    def _connected_pair(self) -> tuple[Any, Any] | None:
        """The DTLS transport and the nominated ICE pair, or None while either is not
        up (``_send_rtp`` and ``Connection.sendto`` refuse then)."""
        dtls = self.sender.transport
        if dtls._state is not State.CONNECTED:
            return None
        pair = dtls.transport._connection._nominated.get(1)
        return None if pair is None else (dtls, pair)

    def _packets(self, payloads: list[bytes], rtp_timestamp: int,
                 audio_level: int | None) -> list[bytes]:
        """One frame's RTP packets in the clear, kept in the history; the sequence
        numbers and the sender-report counters move on."""
        fields = vars(self.sender)
        sequence = self.sequence
        timestamp = uint32_add(self.origin, rtp_timestamp)
        ntp = clock.current_ntp_time()
        header = self._header(sequence, timestamp, (ntp >> 14) & 0x00FFFFFF, audio_level)
        history = self.history
        packets = []
        octets = 0
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            if i:
                sequence = uint16_add(sequence, 1)
                header[2] = sequence >> 8
                header[3] = sequence & 0xFF
            if i == last:
                header[1] |= 0x80  # the marker: the frame's last packet
            data = bytes(header) + payload
            history[sequence % HISTORY] = data
            packets.append(data)
            octets += len(payload)
        self.sequence = uint16_add(sequence, 1)
        fields["_RTCRtpSender__ntp_timestamp"] = ntp
        fields["_RTCRtpSender__rtp_timestamp"] = timestamp
        fields["_RTCRtpSender__octet_count"] += octets
        fields["_RTCRtpSender__packet_count"] += last + 1
        self.frames += 1
        self.packets += last + 1
        return packets

    def _header(self, sequence: int, timestamp: int, abs_send_time: int,
                audio_level: int | None) -> bytearray:
        """A frame's RTP header (marker clear) with its extensions, as aiortc's
        ``RtpPacket.serialize`` writes it. Only the sequence number, the timestamp and
        the abs-send-time change from frame to frame: after the first, the header is the
        first one's with those patched (found by serializing it twice, with two
        abs-send-times), until the mid, the payload type or the extension map
        changes."""
        fields = vars(self.sender)
        mid = fields["_RTCRtpSender__mid"]
        extensions = fields["_RTCRtpSender__rtp_header_extensions_map"]
        key = (mid, self._payload_type)
        template = self._template
        if (audio_level is None and template is not None and template[0] == key
                and template[1] is extensions):
            header = bytearray(template[2])
            pack_into("!HI", header, 2, sequence, timestamp)
            at = template[3]
            if at is not None:
                header[at:at + 3] = abs_send_time.to_bytes(3, "big")
            return header
        header = self._serialize(sequence, timestamp, abs_send_time, audio_level)
        if audio_level is None:
            other = self._serialize(sequence, timestamp, abs_send_time ^ 0xFFFFFF, None)
            differ = [i for i, (a, b) in enumerate(zip(header, other, strict=False))
                      if a != b]
            self._template = None
            if len(other) == len(header):
                if not differ:  # no abs-send-time negotiated (aiortc's audio)
                    self._template = (key, extensions, bytes(header), None)
                elif differ == [differ[0], differ[0] + 1, differ[0] + 2]:
                    self._template = (key, extensions, bytes(header), differ[0])
        return header

    def _serialize(self, sequence: int, timestamp: int, abs_send_time: int,
                   audio_level: int | None) -> bytearray:
        sender = self.sender
        fields = vars(sender)
        packet = RtpPacket(payload_type=self._payload_type, sequence_number=sequence,
                           timestamp=timestamp)
        packet.ssrc = sender._ssrc
        packet.extensions.abs_send_time = abs_send_time
        packet.extensions.mid = fields["_RTCRtpSender__mid"]
        if audio_level is not None:
            packet.extensions.audio_level = (False, -audio_level)
        return bytearray(packet.serialize(fields["_RTCRtpSender__rtp_header_extensions_map"]))

    def _send_now(self, dtls: Any, socket: Any, addr: tuple[str, int],
                  packets: list[bytes]) -> None:
        """Protect and hand each packet to the pair's datagram transport (``sendto`` on
        a UDP socket does not block), counting as the DTLS transport counts."""
        protect = dtls._tx_srtp.protect
        sendto = socket.sendto
        wire_bytes = 0
        for data in packets:
            wire = protect(data)
            sendto(wire, addr)
            wire_bytes += len(wire)
        counters = vars(dtls)
        counters["_RTCDtlsTransport__tx_bytes"] += wire_bytes
        counters["_RTCDtlsTransport__tx_packets"] += len(packets)

    async def retransmit(self, sequence_number: int) -> None:
        """Send a packet the subscriber reported lost again (over RTX if negotiated)."""
        data = self.history[sequence_number % HISTORY]
        if data is None:
            return
        sender = self.sender
        fields = vars(sender)
        extensions = fields["_RTCRtpSender__rtp_header_extensions_map"]
        packet = RtpPacket.parse(data, extensions)
        if packet.sequence_number != sequence_number:
            return  # overwritten by a later one: too old
        rtx_payload_type = fields["_RTCRtpSender__rtx_payload_type"]
        if rtx_payload_type is not None:
            rtx_sequence = fields["_RTCRtpSender__rtx_sequence_number"]
            packet = wrap_rtx(packet, payload_type=rtx_payload_type,
                              sequence_number=rtx_sequence, ssrc=sender._rtx_ssrc)
            fields["_RTCRtpSender__rtx_sequence_number"] = uint16_add(rtx_sequence, 1)
        await sender.transport._send_rtp(packet.serialize(extensions))


def installed(sender: RTCRtpSender) -> FastRtpLoop | None:
    """The per-frame loop ``install`` gave ``sender``, if any."""
    existing = vars(sender).get(SENDER_RUN_RTP.name)
    owner: Any = getattr(existing, "__self__", None)
    return owner if isinstance(owner, FastRtpLoop) else None


def install(sender: RTCRtpSender) -> FastRtpLoop | None:
    """Give ``sender`` the per-frame loop. Only before it starts sending (``send()``
    starts the loop): a started sender keeps aiortc's, and None is returned."""
    if SENDER_RUN_RTP.name in vars(sender):
        return installed(sender)
    if vars(sender)["_RTCRtpSender__started"]:
        return None
    loop = FastRtpLoop(sender)
    setattr(sender, SENDER_RUN_RTP.name, loop.run)
    setattr(sender, SENDER_RETRANSMIT.name, loop.retransmit)
    return loop
