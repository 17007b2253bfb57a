"""Every private aiortc/aioice name the media package relies on, in one place.

aiortc 1.16 has no public API for forwarding encoded frames or for choosing ICE host
addresses, so ``media.forwarding`` and ``media.ice`` reach into a few internals;
``media.bitrate_estimator`` replaces two slow loops of its bandwidth estimator and
``media.speedups`` the clock, the STUN demultiplexing and the queue every packet goes
through; ``media.fast_send`` gives forwarding senders a loop that works per frame. Each is
listed here with the signature we call it with and, where we depend on *how* aiortc uses
it, the names its body must mention. ``tests/unit/media/test_private_hooks.py`` checks
every entry, so an upgrade that renames or reshapes one fails with the entry's ``why``
instead of a hub that silently decodes, re-encodes or ignores PLI.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PrivateHook:
    module: str
    qualname: str
    kind: Literal["function", "class", "attribute"]
    why: str
    params: tuple[str, ...] | None = None
    """Parameter names, in order: a function or method (``self`` included), a class's
    constructor (``self`` excluded)."""
    references: tuple[str, ...] = ()
    """Names the function's body must mention (attribute or variable names)."""

    @property
    def target(self) -> str:
        return f"{self.module}.{self.qualname}"

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    def resolve(self) -> object:
        """The object named, for a module-level or class-level name (not an instance one)."""
        obj: object = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        return obj


DECODER_WORKER = PrivateHook(
    "aiortc.rtcrtpreceiver", "decoder_worker", "function",
    "ForwardingHook replaces it (while started) to emit av.Packet instead of frames",
    params=("loop", "input_q", "output_q", "decode_error"),
)
RECEIVER_STARTS_WORKER = PrivateHook(
    "aiortc.rtcrtpreceiver", "RTCRtpReceiver.receive", "function",
    "the worker must be looked up by its module-level name when the receiver starts, "
    "with the track's queue as output_q (the forwarding registry key)",
    params=("self", "parameters"),
    references=("decoder_worker", "_track", "_queue"),
)
RECEIVER_QUEUES_FRAMES = PrivateHook(
    "aiortc.rtcrtpreceiver", "RTCRtpReceiver._handle_rtp_packet", "function",
    "the worker's input is (codec, JitterFrame) with the RTP timestamp already unwrapped "
    "by the receiver's TimestampMapper: forwarded pts rely on it; it is queued with "
    "input_q.put on the event loop, which the forwarding hook shadows to fan frames out "
    "there instead of in a thread; frames come from self.__jitter_buffer.add, whose "
    "pli_flag makes it send a PLI",
    params=("self", "packet", "arrival_time_ms"),
    references=("__decoder_queue", "__timestamp_mapper", "depayload", "put",
                "__jitter_buffer", "_send_rtcp_pli"),
)
RECEIVER_STOPS_WORKER = PrivateHook(
    "aiortc.rtcrtpreceiver", "RTCRtpReceiver._RTCRtpReceiver__stop_decoder", "function",
    "the receiver ends its worker with input_q.put(None), then joins the thread: the "
    "shadowed put ends a forwarded track, and the forwarding worker's thread has "
    "already returned",
    params=("self",),
    references=("__decoder_queue", "put", "join"),
)
REMOTE_TRACK_QUEUE = PrivateHook(
    "aiortc.rtcrtpreceiver", "RemoteStreamTrack._queue", "attribute",
    "the remote track's asyncio.Queue is the worker's output_q: forwarding is registered "
    "under it, and recv() returns whatever the worker put there",
)
JITTER_FRAME = PrivateHook(
    "aiortc.jitterbuffer", "JitterFrame", "class",
    "the reassembled encoded frame handed to the worker (.data payload, .timestamp)",
    params=("data", "timestamp"),
)
RECEIVER_JITTER_BUFFER = PrivateHook(
    "aiortc.rtcrtpreceiver", "RTCRtpReceiver._RTCRtpReceiver__jitter_buffer", "attribute",
    "ForwardingHook.forward swaps a receiver's jitter buffer (set in __init__) for one "
    "of media.jitter: video gives up a lost packet after a bound, audio never waits",
)
RECEIVER_USES_JITTER_BUFFER = PrivateHook(
    "aiortc.rtcrtpreceiver", "RTCRtpReceiver.__init__", "function",
    "the receiver must create its jitter buffer as self.__jitter_buffer in __init__, so "
    "the swap in the 'track' handler happens before the first packet",
    params=("self", "kind", "transport"),
    references=("__jitter_buffer", "JitterBuffer"),
)
JITTER_BUFFER_ADD = PrivateHook(
    "aiortc.jitterbuffer", "JitterBuffer.add", "function",
    "BoundedWaitJitterBuffer extends it: (pli_flag, frame) per packet, over the ring "
    "_packets of _capacity slots from _origin",
    params=("self", "packet"),
    references=("_origin", "_packets", "_capacity", "_remove_frame", "smart_remove"),
)
JITTER_BUFFER_REMOVE_FRAME = PrivateHook(
    "aiortc.jitterbuffer", "JitterBuffer._remove_frame", "function",
    "BoundedWaitJitterBuffer overrides it (add must call it, see JITTER_BUFFER_ADD) to "
    "hand a frame on at its marker packet, and calls it after dropping a hole",
    params=("self", "sequence_number"),
)
RECEIVER_SEND_PLI = PrivateHook(
    "aiortc.rtcrtpreceiver", "RTCRtpReceiver._send_rtcp_pli", "function",
    "a subscriber's PLI/FIR is forwarded to the publisher through the hub's receiver",
    params=("self", "media_ssrc"),
)
SENDER_SEND_KEYFRAME = PrivateHook(
    "aiortc.rtcrtpsender", "RTCRtpSender._send_keyframe", "function",
    "overridden per sender instance to route the subscriber's PLI/FIR to the source "
    "(the sender only sets a flag its encoder reads, and a forwarding sender has none)",
    params=("self",),
)
SENDER_HANDLES_PLI = PrivateHook(
    "aiortc.rtcrtpsender", "RTCRtpSender._handle_rtcp_packet", "function",
    "PLI and FIR must reach the sender through self._send_keyframe",
    params=("self", "packet"),
    references=("_send_keyframe", "RTCP_PSFB_PLI", "RTCP_PSFB_FIR"),
)
SENDER_PACKS_PACKETS = PrivateHook(
    "aiortc.rtcrtpsender", "RTCRtpSender._next_encoded_frame", "function",
    "a track's av.Packet must be packetized with the codec's pack(), not encoded; "
    "FastRtpLoop.take does the same for a frame offered to it: nothing while the sender "
    "is disabled, the encoder made by get_encoder on first use and kept in __encoder",
    params=("self", "codec"),
    references=("recv", "pack", "encode", "_enabled", "__encoder", "get_encoder"),
)
ENCODER_PACK = PrivateHook(
    "aiortc.codecs.base", "Encoder.pack", "function",
    "packetizes one encoded frame (pts and time_base give the RTP timestamp)",
    params=("self", "packet"),
)
RATE_COUNTER_ERASE_OLD = PrivateHook(
    "aiortc.rate", "RateCounter._erase_old", "function",
    "media.bitrate_estimator replaces it with an equivalent that does not loop over "
    "every millisecond in Python; it relies on the bucket layout named here",
    params=("self", "now_ms"),
    references=("_window_size", "_origin_ms", "_origin_index", "_buckets", "_total",
                "count", "value"),
)
UPDATE_MIN_FRAME_PERIOD = PrivateHook(
    "aiortc.rate", "OveruseEstimator.update_min_frame_period", "function",
    "media.bitrate_estimator replaces it with an equivalent using one min() call",
    params=("self", "ts_delta"),
    references=("ts_delta_hist", "MIN_FRAME_PERIOD_HISTORY_LENGTH"),
)
CLOCK_CURRENT_MS = PrivateHook(
    "aiortc.clock", "current_ms", "function",
    "media.speedups replaces it (milliseconds since the NTP epoch, read per packet "
    "received) with an equivalent without datetime arithmetic",
    params=(),
)
CLOCK_CURRENT_NTP_TIME = PrivateHook(
    "aiortc.clock", "current_ntp_time", "function",
    "media.speedups replaces it (the 64-bit NTP time, read twice per packet sent) with "
    "an equivalent without datetime arithmetic",
    params=(),
)
STUN_DATAGRAM_RECEIVED = PrivateHook(
    "aioice.ice", "StunProtocol.datagram_received", "function",
    "media.speedups hands media datagrams (first byte > 3, RFC 7983) straight to "
    "self.receiver.data_received instead of failing a STUN parse on each; the original "
    "must still do that for what is not STUN",
    params=("self", "data", "addr"),
    references=("parse_message", "data_received", "local_candidate", "component"),
)
CONNECTION_DATA_RECEIVED = PrivateHook(
    "aioice.ice", "Connection.data_received", "function",
    "media.speedups.connection_data_received hands SRTP to DirectMedia before it; the "
    "original queues each datagram on self._queue for the DTLS transport's task",
    params=("self", "data", "component"),
    references=("_queue", "put_nowait"),
)
DTLS_SET_STATE = PrivateHook(
    "aiortc.rtcdtlstransport", "RTCDtlsTransport._set_state", "function",
    "media.speedups.dtls_set_state attaches DirectMedia when the state becomes "
    "CONNECTED, which start() sets after _setup_srtp",
    params=("self", "state"),
)
DTLS_HANDLES_SRTP = PrivateHook(
    "aiortc.rtcdtlstransport", "RTCDtlsTransport._recv_next", "function",
    "DirectMedia does for SRTP what this does, with the same names: the rx counters, "
    "_rx_srtp.unprotect/unprotect_rtcp, then _handle_rtp_data (with the arrival time) or "
    "_handle_rtcp_data; datagrams come from self.transport._recv (the queue). It reads "
    "the clock through the module (clock.current_ms), so media.speedups' replacement "
    "reaches it",
    params=("self",),
    references=("__rx_bytes", "__rx_packets", "_rx_srtp", "unprotect", "unprotect_rtcp",
                "_handle_rtp_data", "_handle_rtcp_data", "is_rtcp", "clock", "current_ms",
                "_recv"),
)
DTLS_START_ORDER = PrivateHook(
    "aiortc.rtcdtlstransport", "RTCDtlsTransport.start", "function",
    "the SRTP sessions must be set up (_setup_srtp) by the time the state is CONNECTED",
    params=("self", "remoteParameters"),
    references=("_setup_srtp", "_set_state", "CONNECTED"),
)
SENDER_RUN_RTP = PrivateHook(
    "aiortc.rtcrtpsender", "RTCRtpSender._run_rtp", "function",
    "media.fast_send.FastRtpLoop.run replaces it per forwarding sender and must do what "
    "it does with the same private state: the started/exited events, the track, the "
    "packet's ssrc, mid, abs-send-time and audio level, the history, the report "
    "counters, the encoder released at the end",
    params=("self", "codec"),
    references=("__rtp_started", "__track", "_next_encoded_frame", "random_sequence_number",
                "random32", "uint32_add", "_ssrc", "__mid", "abs_send_time", "audio_level",
                "__rtp_header_extensions_map", "__rtp_history", "_send_rtp",
                "__ntp_timestamp", "__rtp_timestamp", "__octet_count", "__packet_count",
                "__encoder", "__rtp_exited"),
)
SENDER_RETRANSMIT = PrivateHook(
    "aiortc.rtcrtpsender", "RTCRtpSender._retransmit", "function",
    "FastRtpLoop.retransmit replaces it (the history is FastRtpLoop's): RTX wrapping "
    "with the sender's RTX payload type, sequence number and SSRC",
    params=("self", "sequence_number"),
    references=("__rtp_history", "__rtx_payload_type", "__rtx_sequence_number", "wrap_rtx",
                "_rtx_ssrc", "_send_rtp"),
)
SENDER_STARTS_LOOP = PrivateHook(
    "aiortc.rtcrtpsender", "RTCRtpSender.send", "function",
    "send() must start the loop through self._run_rtp (an instance attribute shadows it) "
    "and mark the sender started (fast_send.install leaves a started sender alone)",
    params=("self", "parameters"),
    references=("_run_rtp", "__started"),
)
SENDER_SEQUENCE_NUMBER = PrivateHook(
    "aiortc.rtcrtpsender", "random_sequence_number", "function",
    "FastRtpLoop starts its sequence numbers as aiortc does",
    params=(),
)
DTLS_SENDS_RTP = PrivateHook(
    "aiortc.rtcdtlstransport", "RTCDtlsTransport._send_rtp", "function",
    "FastRtpLoop does what this does for RTP: connected state, _tx_srtp.protect, send "
    "through the ICE transport, the tx counters",
    params=("self", "data"),
    references=("_state", "_tx_srtp", "protect", "_send", "__tx_bytes", "__tx_packets"),
)
ICE_TRANSPORT_CONNECTION = PrivateHook(
    "aiortc.rtcicetransport", "RTCIceTransport.__init__", "function",
    "the ICE transport's _recv and _send are its aioice connection's (self._connection), "
    "which FastRtpLoop and DirectMedia reach directly",
    params=("self", "gatherer"),
    references=("_connection", "_recv", "_send", "recv", "send"),
)
ICE_CONNECTION_SENDTO = PrivateHook(
    "aioice.ice", "Connection.sendto", "function",
    "FastRtpLoop sends as this does: the nominated pair of the component (_nominated), "
    "its protocol's send_data to its remote_addr",
    params=("self", "data", "component"),
    references=("_nominated", "protocol", "send_data", "remote_addr"),
)
ICE_STUN_SEND_DATA = PrivateHook(
    "aioice.ice", "StunProtocol.send_data", "function",
    "a plain StunProtocol's send_data is its datagram transport's sendto, which "
    "FastRtpLoop calls without awaiting",
    params=("self", "data", "addr"),
    references=("transport", "sendto"),
)
ICE_HOST_ADDRESSES = PrivateHook(
    "aioice.ice", "get_host_addresses", "function",
    "media.ice.HostAddresses replaces it to choose the hub's ICE host candidates",
    params=("use_ipv4", "use_ipv6"),
)

PRIVATE_HOOKS: tuple[PrivateHook, ...] = (
    DECODER_WORKER,
    RECEIVER_STARTS_WORKER,
    RECEIVER_QUEUES_FRAMES,
    RECEIVER_STOPS_WORKER,
    REMOTE_TRACK_QUEUE,
    JITTER_FRAME,
    RECEIVER_JITTER_BUFFER,
    RECEIVER_USES_JITTER_BUFFER,
    JITTER_BUFFER_ADD,
    JITTER_BUFFER_REMOVE_FRAME,
    RECEIVER_SEND_PLI,
    SENDER_SEND_KEYFRAME,
    SENDER_HANDLES_PLI,
    SENDER_PACKS_PACKETS,
    ENCODER_PACK,
    RATE_COUNTER_ERASE_OLD,
    UPDATE_MIN_FRAME_PERIOD,
    CLOCK_CURRENT_MS,
    CLOCK_CURRENT_NTP_TIME,
    STUN_DATAGRAM_RECEIVED,
    CONNECTION_DATA_RECEIVED,
    DTLS_SET_STATE,
    DTLS_HANDLES_SRTP,
    DTLS_START_ORDER,
    SENDER_RUN_RTP,
    SENDER_RETRANSMIT,
    SENDER_STARTS_LOOP,
    SENDER_SEQUENCE_NUMBER,
    DTLS_SENDS_RTP,
    ICE_TRANSPORT_CONNECTION,
    ICE_CONNECTION_SENDTO,
    ICE_STUN_SEND_DATA,
    ICE_HOST_ADDRESSES,
)
