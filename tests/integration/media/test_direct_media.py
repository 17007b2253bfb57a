"""media.speedups.DirectMedia with real aiortc peers: once a DTLS transport is
connected its SRTP skips the connection's queue, media flows the same, and a handler
that fails costs one packet, not the connection."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from media.forwarding import ForwardingHook
from media.speedups import DirectMedia
from tests.integration.media.peers import forwarded_call


def _connection(pc: RTCPeerConnection) -> Any:
    dtls = pc.getTransceivers()[0].receiver.transport
    return dtls, dtls.transport._connection


async def test_media_skips_the_queue_once_connected(hook: ForwardingHook) -> None:
    async with forwarded_call(hook) as (_, middle, subscriber):
        await subscriber.wait_video(30)
        for pc in middle.pcs:
            dtls, connection = _connection(pc)
            direct = connection.__dict__.get("_direct_media")
            assert isinstance(direct, DirectMedia) and direct.dtls is dtls
            assert direct.packets > 0
            stats = dtls._get_stats()
            transport = next(s for s in stats.values() if s.type == "transport")
            # The transport's own counters include what took the direct path.
            assert transport.packetsReceived >= direct.packets
        # The publisher's media (RTP) and the subscriber's reports (RTCP) both did.
        received = [_connection(pc)[1]._direct_media.packets for pc in middle.pcs]
        assert received[0] > 100 and received[1] > 0, received
        assert len(subscriber.audio) > 0


async def test_a_failing_handler_costs_a_packet_not_the_call(
        hook: ForwardingHook, caplog: pytest.LogCaptureFixture) -> None:
    async with forwarded_call(hook) as (_, middle, subscriber):
        await subscriber.wait_video(10)
        dtls, _ = _connection(middle.pcs[0])
        handle = dtls._handle_rtp_data
        failures = 0

        async def fail_once(data: bytes, arrival_time_ms: int) -> None:
            nonlocal failures
            if not failures:
                failures += 1
                raise RuntimeError("boom")
            await handle(data, arrival_time_ms=arrival_time_ms)

        dtls._handle_rtp_data = fail_once
        with caplog.at_level(logging.ERROR, logger="media.speedups"):
            seen = len(subscriber.video)
            await subscriber.wait_video(seen + 15)
        assert failures == 1
        assert "a media packet's handler failed" in caplog.text
        assert dtls.state == "connected"


async def test_junk_from_anywhere_costs_nothing(hook: ForwardingHook) -> None:
    async with forwarded_call(hook) as (_, middle, subscriber):
        await subscriber.wait_video(5)
        dtls, connection = _connection(middle.pcs[0])
        pair = connection._nominated[1]
        rng = random.Random(7)
        # An empty datagram (aiortc's DTLS task would fail on it), then the SRTP range.
        junk = [b"", b"\x80", b"\x80\xc8", bytes([0x80, 96]) + bytes(10), bytes([0x81, 200, 0, 1]),
                *(bytes([rng.randrange(128, 192)]) + rng.randbytes(rng.randrange(1, 1400))
                  for _ in range(200))]
        for data in junk:
            pair.protocol.datagram_received(data, ("127.0.0.1", 9))
        seen = len(subscriber.video)
        await subscriber.wait_video(seen + 5)
        assert dtls.state == "connected"


async def test_without_the_speedup_media_goes_through_the_queue() -> None:
    hook = ForwardingHook()
    hook.start()
    try:
        async with forwarded_call(hook) as (_, middle, subscriber):
            await subscriber.wait_video(10)
            assert all("_direct_media" not in vars(_connection(pc)[1]) for pc in middle.pcs)
    finally:
        hook.stop()
