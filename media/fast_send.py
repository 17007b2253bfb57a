"""A forwarding sender's RTP loop, working a frame at a time instead of a packet at a time.

aiortc's ``RTCRtpSender._run_rtp`` builds an ``RtpPacket`` per packet, sets its header
extensions, serializes it and awaits four coroutines down to the socket (DTLS transport
→ ICE transport → ICE connection → candidate pair), reading the clock twice per packet.
``install`` gives one sender ``FastRtpLoop.run`` instead, which keeps the original's
behaviour and private state, per frame:

- the track's next ``av.Packet`` is packetized by ``RTCRtpSender._next_encoded_frame``
  (the codec's ``pack``, no encoding: see ``media.forwarding``);
- the frame's first packet is serialized by aiortc's ``RtpPacket.serialize``; the
  frame's other packets reuse that header with their own sequence number and marker bit
  (a frame's packets share timestamp and extensions, and, sent in one burst, the
  abs-send-time);
- each packet is protected with the DTLS transport's SRTP session and handed to the
  nominated ICE pair's datagram transport without awaiting (``sendto`` on a UDP socket
  does not block). A pair whose protocol is not aioice's plain ``StunProtocol`` (a TURN
  allocation) gets its packets through its ``send_data`` as before;
- the RTCP sender-report counters, the DTLS transport's byte and packet counts and a
  history of the last ``HISTORY`` packets for NACK (``_retransmit`` is replaced to read
  it) are kept as aiortc keeps them.

Every private name read or written is listed in ``media.private_hooks`` (``SENDER_*``,
``DTLS_SENDS_RTP``, ``ICE_*``), so an upgrade that changes one fails a test instead of
a sender that silently stops.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any

import aioice.ice
from aiortc import RTCRtpSender, clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RtpPacket, wrap_rtx
from aiortc.utils import random32, uint16_add, uint32_add

from media.private_hooks import SENDER_RETRANSMIT, SENDER_RUN_RTP

logger = logging.getLogger(__name__)

HISTORY = 128  # aiortc's RTP_HISTORY_SIZE: packets kept for NACK


class FastRtpLoop:
    """One sender's replacement ``_run_rtp`` and ``_retransmit``."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self.sender = sender
        self.history: list[bytes | None] = [None] * HISTORY
        self.frames = 0
        self.packets = 0
        self.via_protocol = 0  # packets a TURN pair's send_data took

    async def run(self, codec: RTCRtpCodecParameters) -> None:
        sender = self.sender
        fields = vars(sender)
        fields["_RTCRtpSender__rtp_started"].set()
        sequence = random_sequence_number()
        origin = random32()
        history = self.history
        try:
            payload_type = codec.payloadType
            if payload_type is None:
                raise ValueError(f"the sender's codec {codec.mimeType} has no payload type")
            while True:
                if not fields["_RTCRtpSender__track"]:
                    await asyncio.sleep(0.02)
                    continue
                frame = await sender._next_encoded_frame(codec)
                if frame is None:
                    continue
                payloads = frame.payloads
                timestamp = uint32_add(origin, frame.timestamp)
                ntp = clock.current_ntp_time()
                first = RtpPacket(payload_type=payload_type, sequence_number=sequence,
                                  timestamp=timestamp)
                first.ssrc = sender._ssrc
                first.payload = payloads[0]
                first.marker = 1 if len(payloads) == 1 else 0
                first.extensions.abs_send_time = (ntp >> 14) & 0x00FFFFFF
                first.extensions.mid = fields["_RTCRtpSender__mid"]
                if frame.audio_level is not None:
                    first.extensions.audio_level = (False, -frame.audio_level)
                data = first.serialize(fields["_RTCRtpSender__rtp_header_extensions_map"])
                header = bytearray(data[:len(data) - len(payloads[0])])

                dtls = sender.transport
                if dtls._state is not State.CONNECTED:
                    raise ConnectionError("Cannot send encrypted RTP, not connected")
                protect = dtls._tx_srtp.protect
                pair = dtls.transport._connection._nominated.get(1)
                if pair is None:
                    raise ConnectionError("Cannot send data, not connected")
                protocol = pair.protocol
                addr = pair.remote_addr
                socket = protocol.transport if type(protocol) is aioice.ice.StunProtocol else None

                last = len(payloads) - 1
                wire_bytes = octets = 0
                for i, payload in enumerate(payloads):
                    if i:
                        header[2] = sequence >> 8
                        header[3] = sequence & 0xFF
                        if i == last:
                            header[1] |= 0x80  # the marker: the frame's last packet
                        data = bytes(header) + payload
                    history[sequence % HISTORY] = data
                    wire = protect(data)
                    if socket is not None:
                        socket.sendto(wire, addr)
                    else:
                        await protocol.send_data(wire, addr)
                        self.via_protocol += 1
                    wire_bytes += len(wire)
                    octets += len(payload)
                    sequence = uint16_add(sequence, 1)

                count = last + 1
                counters = vars(dtls)
                counters["_RTCDtlsTransport__tx_bytes"] += wire_bytes
                counters["_RTCDtlsTransport__tx_packets"] += count
                fields["_RTCRtpSender__ntp_timestamp"] = ntp
                fields["_RTCRtpSender__rtp_timestamp"] = timestamp
                fields["_RTCRtpSender__octet_count"] += octets
                fields["_RTCRtpSender__packet_count"] += count
                self.frames += 1
                self.packets += count
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            # stop() waits for rtp_exited: whatever happens, set it (as aiortc does).
            logger.warning("a forwarding sender's RTP loop failed:\n%s",
                           traceback.format_exc())
        track = fields["_RTCRtpSender__track"]
        if track:
            track.stop()
            fields["_RTCRtpSender__track"] = None
        fields["_RTCRtpSender__encoder"] = None
        fields["_RTCRtpSender__rtp_exited"].set()

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


def install(sender: RTCRtpSender) -> FastRtpLoop | None:
    """Give ``sender`` the per-frame loop. Only before it starts sending (``send()``
    starts the loop): a started sender keeps aiortc's, and None is returned."""
    existing = vars(sender).get(SENDER_RUN_RTP.name)
    if existing is not None:
        owner: Any = getattr(existing, "__self__", None)
        return owner if isinstance(owner, FastRtpLoop) else None
    if vars(sender)["_RTCRtpSender__started"]:
        return None
    loop = FastRtpLoop(sender)
    setattr(sender, SENDER_RUN_RTP.name, loop.run)
    setattr(sender, SENDER_RETRANSMIT.name, loop.retransmit)
    return loop
