"""media.speedups: each replacement gives what aiortc's or aioice's original gives."""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aioice.ice
import pytest
from aioice import stun
from aiortc import clock

from media.speedups import (
    PacketPathSpeedup,
    PatchSet,
    SpeedupError,
    current_ms,
    current_ntp_time,
    datagram_received,
)

ORIGINAL_CURRENT_MS = clock.current_ms
ORIGINAL_NTP_TIME = clock.current_ntp_time
ORIGINAL_DATAGRAM_RECEIVED = aioice.ice.StunProtocol.datagram_received


def test_current_ms_matches_aiortc() -> None:
    for _ in range(200):
        before = ORIGINAL_CURRENT_MS()
        ours = current_ms()
        after = ORIGINAL_CURRENT_MS()
        assert before <= ours <= after + 1  # aiortc rounds through a float


def test_current_ntp_time_matches_aiortc() -> None:
    for _ in range(200):
        before = ORIGINAL_NTP_TIME()
        ours = current_ntp_time()
        after = ORIGINAL_NTP_TIME()
        assert before >> 32 > 3_900_000_000  # seconds since 1900: after 2023
        slack = 1 << 32 >> 10  # ~1 ms: aiortc's whole seconds come through a float
        assert before - slack <= ours <= after + slack
    # Back to Unix time: the epoch offset and the fraction's scale are right.
    before = time.time()
    ours = current_ntp_time()
    after = time.time()
    unix = (ours >> 32) - 2_208_988_800 + (ours & 0xFFFFFFFF) / (1 << 32)
    assert before - 1e-6 <= unix <= after + 1e-6


class _Receiver:
    """What a StunProtocol hands datagrams to (an aioice Connection)."""

    def __init__(self) -> None:
        self.data: list[tuple[bytes, int]] = []
        self.requests: list[stun.Message] = []

    def data_received(self, data: bytes, component: int) -> None:
        self.data.append((data, component))

    def request_received(self, message: stun.Message, addr: Any, protocol: Any) -> None:
        self.requests.append(message)


@pytest.fixture
async def protocol() -> AsyncIterator[tuple[aioice.ice.StunProtocol, _Receiver]]:
    receiver = _Receiver()  # the protocol needs a running loop (it makes a future)
    proto = aioice.ice.StunProtocol(receiver)  # type: ignore[arg-type]
    proto.local_candidate = SimpleNamespace(component=1)  # type: ignore[assignment]
    yield proto, receiver


def _rtp(sequence: int, payload: bytes, payload_type: int = 96) -> bytes:
    return struct.pack("!BBHLL", 0x80, payload_type, sequence, 1234, 5678) + payload


ADDR = ("127.0.0.1", 5000)


async def test_media_goes_to_the_connection(protocol: tuple[Any, _Receiver]) -> None:
    proto, receiver = protocol
    rtp = _rtp(7, b"x" * 100)
    dtls = bytes([22, 254, 253]) + b"\0" * 40
    rtcp = bytes([0x81, 200]) + b"\0" * 26
    for data in (rtp, dtls, rtcp):
        datagram_received(proto, data, ADDR)
    assert receiver.data == [(rtp, 1), (dtls, 1), (rtcp, 1)]
    assert receiver.requests == []


async def test_stun_still_goes_through_aioice(protocol: tuple[Any, _Receiver]) -> None:
    proto, receiver = protocol
    request = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.REQUEST)
    datagram_received(proto, bytes(request), ADDR)
    assert [m.transaction_id for m in receiver.requests] == [request.transaction_id]
    assert receiver.data == []

async def test_an_empty_datagram_goes_nowhere(protocol: tuple[Any, _Receiver]) -> None:
    proto, receiver = protocol
    ORIGINAL_DATAGRAM_RECEIVED(proto, b"", ADDR)
    assert receiver.data == [(b"", 1)]  # aioice hands it on (aiortc then fails on it)
    datagram_received(proto, b"", ADDR)
    assert receiver.data == [(b"", 1)]


async def test_an_rtp_packet_that_parses_as_stun_is_still_media(
        protocol: tuple[Any, _Receiver]) -> None:
    proto, receiver = protocol
    # PCMA (payload type 8) reads as a STUN CreatePermission request, and a sequence
    # number equal to the length minus 20 passes aioice's length check.
    rtp = _rtp(0, b"\0" * 28, payload_type=8)
    rtp = rtp[:2] + struct.pack("!H", len(rtp) - 20) + rtp[4:]
    ORIGINAL_DATAGRAM_RECEIVED(proto, rtp, ADDR)
    assert receiver.data == []  # taken for STUN by the original
    assert len(receiver.requests) == 1
    datagram_received(proto, rtp, ADDR)
    assert receiver.data == [(rtp, 1)]
    assert len(receiver.requests) == 1


def test_packet_path_speedup_installs_and_restores() -> None:
    first, second = PacketPathSpeedup(), PacketPathSpeedup()
    first.start()
    second.start()  # already installed: the first one undoes it
    assert clock.current_ms is current_ms
    assert clock.current_ntp_time is current_ntp_time
    assert vars(aioice.ice.StunProtocol)["datagram_received"] is datagram_received
    second.stop()
    assert clock.current_ms is current_ms  # still the first one's
    first.stop()
    first.stop()  # twice is fine
    assert clock.current_ms is ORIGINAL_CURRENT_MS
    assert clock.current_ntp_time is ORIGINAL_NTP_TIME
    assert vars(aioice.ice.StunProtocol)["datagram_received"] is ORIGINAL_DATAGRAM_RECEIVED


def test_a_name_that_is_gone_fails_start_by_name() -> None:
    class Renamed:
        def other(self) -> None: ...

    patches = PatchSet("example", ((Renamed, "vanished", lambda self: None),))
    with pytest.raises(SpeedupError, match=r"Renamed\.vanished is gone.*example"):
        patches.start()
    assert not patches.started
