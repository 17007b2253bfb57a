"""media.fast_send with real aiortc peers: the packets a forwarding sender puts on the
wire are well formed RTP (sequence, marker, timestamp, extensions), the counters and
NACK history are kept, frames go out as the source offers them, a congested socket sends
video to the next keyframe, and a pair that is not a plain socket still gets its
packets."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.rtp import RtpPacket

from media.fast_send import HISTORY, MAX_BACKLOG, FastRtpLoop, install
from media.forwarding import ForwardingHook
from tests.integration.media.peers import Middle, forwarded_call

SIZE = (640, 480)  # frames of several packets


class _Recording:
    """Stands in for a DTLS transport's SRTP session: keeps what it protects."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.rtp: list[bytes] = []

    def protect(self, data: bytes) -> bytes:
        self.rtp.append(data)
        return bytes(self.session.protect(data))

    def protect_rtcp(self, data: bytes) -> bytes:
        return bytes(self.session.protect_rtcp(data))


def _loop(sender: RTCRtpSender) -> FastRtpLoop:
    loop = getattr(vars(sender).get("_run_rtp"), "__self__", None)
    assert isinstance(loop, FastRtpLoop), "the forwarding sender kept aiortc's loop"
    return loop


def _outgoing(middle: Middle) -> tuple[RTCPeerConnection, Any]:
    pc = middle.pcs[-1]  # the subscriber's
    return pc, pc.getTransceivers()[0].sender.transport


def _nominated_pair(middle: Middle) -> Any:
    """The subscriber connection's ICE pair the hub sends on."""
    _, dtls = _outgoing(middle)
    return dtls.transport._connection._nominated[1]


async def test_forwarded_packets_are_well_formed(hook: ForwardingHook) -> None:
    async with forwarded_call(hook, *SIZE) as (_, middle, subscriber):
        await subscriber.wait_video(5)
        _, dtls = _outgoing(middle)
        recording = _Recording(dtls._tx_srtp)
        dtls._tx_srtp = recording
        seen = len(subscriber.video)
        next(s for s in middle.sources if s.kind == "video").request_keyframe()
        await subscriber.wait_video(seen + 30)
        dtls._tx_srtp = recording.session

        senders = {t.sender._ssrc: t.sender for t in middle.pcs[-1].getTransceivers()}
        packets: dict[int, list[RtpPacket]] = defaultdict(list)
        for data in recording.rtp:
            ssrc = int.from_bytes(data[8:12], "big")
            extensions = vars(senders[ssrc])["_RTCRtpSender__rtp_header_extensions_map"]
            packets[ssrc].append(RtpPacket.parse(data, extensions))
        assert set(packets) == set(senders)
        frames_with_several_packets = 0
        for ssrc, stream in packets.items():
            sender = senders[ssrc]
            mid = vars(sender)["_RTCRtpSender__mid"]
            for before, after in itertools.pairwise(stream):
                assert after.sequence_number == (before.sequence_number + 1) % 65536
                if after.timestamp == before.timestamp:  # one frame, several packets
                    frames_with_several_packets += 1
                    assert before.marker == 0
                    assert after.extensions.abs_send_time == before.extensions.abs_send_time
                else:
                    assert before.marker == 1, "a frame's last packet carries the marker"
            for packet in stream:
                assert packet.extensions.mid == mid
                if sender.kind == "video":  # aiortc negotiates abs-send-time for video
                    assert packet.extensions.abs_send_time is not None
        assert frames_with_several_packets > 0

        for sender in senders.values():
            loop = _loop(sender)
            stats = await sender.getStats()
            outbound = next(s for s in stats.values() if s.type == "outbound-rtp")
            assert outbound.packetsSent == loop.packets > 0
            assert outbound.bytesSent > 0
            transport = next(s for s in stats.values() if s.type == "transport")
            assert transport.packetsSent >= sum(_loop(s).packets for s in senders.values())


async def test_a_lost_packet_is_sent_again_from_the_history(hook: ForwardingHook) -> None:
    async with forwarded_call(hook, *SIZE) as (_, middle, subscriber):
        await subscriber.wait_video(5)
        pc, dtls = _outgoing(middle)
        video = next(t.sender for t in pc.getTransceivers() if t.kind == "video")
        loop = _loop(video)
        fields = vars(video)
        assert fields["_RTCRtpSender__rtx_payload_type"] is None  # pinned VP8: no RTX
        extensions = fields["_RTCRtpSender__rtp_header_extensions_map"]
        recording = _Recording(dtls._tx_srtp)
        dtls._tx_srtp = recording
        try:
            kept = [d for d in loop.history if d is not None]
            original = RtpPacket.parse(kept[-1], extensions)
            await loop.retransmit(original.sequence_number)  # as it was
            await loop.retransmit((original.sequence_number + HISTORY) % 65536)  # not kept
            fields["_RTCRtpSender__rtx_payload_type"] = rtx_type = 125
            await loop.retransmit(original.sequence_number)  # wrapped in RTX
            fields["_RTCRtpSender__rtx_payload_type"] = None
        finally:
            dtls._tx_srtp = recording.session
        resent = [p for p in (RtpPacket.parse(d, extensions) for d in recording.rtp)
                  if p.sequence_number == original.sequence_number
                  or p.payload_type == rtx_type]
        assert len(resent) == 2, resent
        again, rtx = resent
        assert (again.ssrc, again.payload, again.marker, again.timestamp) == (
            original.ssrc, original.payload, original.marker, original.timestamp)
        assert rtx.payload_type == rtx_type and rtx.ssrc == video._rtx_ssrc
        assert int.from_bytes(rtx.payload[:2], "big") == original.sequence_number
        assert rtx.payload[2:] == original.payload


class _RelayedProtocol:
    """A pair protocol that is not aioice's plain StunProtocol (as a TURN one is)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent = 0

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent += 1
        await self.inner.send_data(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_pair_that_is_not_a_plain_socket_gets_packets_through_send_data(
        hook: ForwardingHook) -> None:
    async with forwarded_call(hook, *SIZE) as (_, middle, subscriber):
        await subscriber.wait_video(5)
        pair = _nominated_pair(middle)
        loops = [_loop(t.sender) for t in middle.pcs[-1].getTransceivers()]
        before = sum(loop.packets for loop in loops)
        relayed = _RelayedProtocol(pair.protocol)
        pair.protocol = relayed
        try:
            seen = len(subscriber.video)
            await subscriber.wait_video(seen + 10)
            sent = sum(loop.packets for loop in loops) - before
            via_protocol = sum(loop.via_protocol for loop in loops)
        finally:
            pair.protocol = relayed.inner
        # Every media packet went through send_data (and RTCP, through aiortc, too).
        assert 0 < sent == via_protocol <= relayed.sent


async def test_a_started_sender_keeps_aiortcs_loop(hook: ForwardingHook) -> None:
    async with forwarded_call(hook, *SIZE) as (_, middle, subscriber):
        await subscriber.wait_video(2)
        sender = middle.pcs[-1].getTransceivers()[0].sender
        assert install(sender) is _loop(sender)  # installed once, found again
        plain = middle.pcs[0].getTransceivers()[0]  # the publisher's m-line: recvonly
        started = RTCRtpSender(plain.kind, plain.receiver.transport)
        vars(started)["_RTCRtpSender__started"] = True
        assert install(started) is None
        assert "_run_rtp" not in vars(started)


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_frames_go_out_as_the_source_offers_them(hook: ForwardingHook,
                                                       codec: str) -> None:
    async with forwarded_call(hook, *SIZE, codec=codec) as (_, middle, subscriber):
        await subscriber.wait_video(30)
        for track, sender in middle.subscriptions:
            loop = _loop(sender)
            # Only what came before DTLS was up went through the loop's recv().
            assert loop.direct > 0 and loop.frames - loop.direct <= 3, (
                track.kind, loop.frames, loop.direct)
            assert track.direct == loop.direct and track.depth == 0
            assert track.first_sent_at is not None
        assert {type(encoder).__name__ for encoder in middle.encoders()} == {
            f"{codec.capitalize()}Encoder", "OpusEncoder"}


class _Backlog:
    """Makes a real datagram transport report a backlog (loopback never builds one)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.on = False

    def __enter__(self) -> _Backlog:
        original = self.transport.get_write_buffer_size
        self.transport.get_write_buffer_size = lambda: (MAX_BACKLOG + 1 if self.on
                                                        else original())
        return self

    def __exit__(self, *exc: object) -> None:
        del self.transport.get_write_buffer_size


async def test_a_congested_socket_sends_video_to_the_next_keyframe(
        hook: ForwardingHook) -> None:
    async with forwarded_call(hook, *SIZE) as (_, middle, subscriber):
        await subscriber.wait_video(10)
        pair = _nominated_pair(middle)
        video, sender = next(s for s in middle.subscriptions if s[0].kind == "video")
        loop = _loop(sender)
        source = next(s for s in middle.sources if s.kind == "video")
        with _Backlog(pair.protocol.transport) as backlog:
            backlog.on = True
            frames = loop.frames
            await asyncio.sleep(0.5)
            assert loop.frames == frames, "frames went out onto a congested socket"
            assert video.congested >= 1 and loop.congested == video.congested
            assert video.waiting_for_keyframe
            assert source.keyframe_requester is not None
            requested = source.keyframe_requester.sent
            backlog.on = False
            seen = len(subscriber.video)
            await subscriber.wait_video(seen + 5, timeout=5)
        assert source.keyframe_requester.sent > requested, "no keyframe was asked for"
        assert not video.waiting_for_keyframe and video.depth == 0


async def test_headers_made_from_the_template_are_what_aiortc_serializes(
        hook: ForwardingHook) -> None:
    async with forwarded_call(hook, *SIZE) as (_, middle, subscriber):
        await subscriber.wait_video(5)
        for track, sender in middle.subscriptions:
            loop = _loop(sender)
            template = loop._template
            assert template is not None, f"{track.kind}: every header is serialized"
            # aiortc negotiates abs-send-time for video only.
            assert (template[3] is not None) == (track.kind == "video")
            for sequence, timestamp, abs_send_time in [
                    (0, 0, 0), (65535, 2**32 - 1, 0xFFFFFF), (1234, 987654, 0x123456)]:
                made = loop._header(sequence, timestamp, abs_send_time, None)
                assert made == loop._serialize(sequence, timestamp, abs_send_time, None)
            assert loop._template is template  # made from it, not serialized again
            loop._header(1, 2, 3, 40)  # a frame with aiortc's audio level is serialized ...
            assert loop._template is template  # ... and leaves the template alone
