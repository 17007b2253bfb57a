"""Cheaper, equivalent versions of functions aiortc and aioice run for every packet.

The hub runs them in one Python thread for every packet of every session, so their
cost is the hub's capacity. Each replacement keeps the original's results:

- ``aiortc.clock.current_ms`` and ``current_ntp_time`` (read per packet received and
  twice per packet sent) go through ``datetime`` arithmetic; ``current_ms`` and
  ``current_ntp_time`` below compute the same integers from ``time.time_ns()``.
- ``aioice.ice.StunProtocol.datagram_received`` tries to parse every datagram as STUN
  and takes the ``ValueError`` as "media": an exception per RTP packet. RFC 7983 tells
  STUN (first byte 0-3) from DTLS, RTP and RTCP (20-191) by the first byte, which
  ``datagram_received`` below does before handing anything else to the connection.
  aioice's parse could also take an RTP packet for STUN: one of payload type 1-9
  (PCMA, G.722: they read as a STUN method) whose sequence number equals its length
  minus 20. That cannot happen here. An empty datagram, which aioice passes on as media
  and aiortc's DTLS task then fails on (``data[0]``), ending the connection, is dropped.
- Every datagram a connection receives goes into aioice's ``asyncio.Queue``, from which
  the DTLS transport's task takes it: a future, a task step and five coroutine frames
  per packet. Once the DTLS transport is connected (its SRTP keys set up),
  ``DirectMedia`` takes SRTP and SRTCP datagrams (first byte 128-191) off the
  connection as they arrive and does, synchronously, what the task does with them:
  count, unprotect, parse, route to the receiver or sender. DTLS records, and
  everything while anything is still queued (to keep the order), go through the queue
  as before. Nothing on that path waits; if a handler ever did, ``_drive`` finishes it
  as a task would. An exception is logged and the packet dropped: it must not reach
  the datagram transport, which would close the connection.

``PatchSet`` installs such replacements process-wide while started (the forwarding hook
is process-wide too) and puts the originals back when stopped. Every replaced name is
listed in ``media.private_hooks``; ``tests/unit/media/test_speedups.py`` checks each
replacement against the original, ``tests/integration/media/test_direct_media.py`` the
direct path with real peers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aioice.ice
import pylibsrtp
from aiortc import clock
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtp import is_rtcp

from media.errors import MediaError
from media.private_hooks import (
    CLOCK_CURRENT_MS,
    CLOCK_CURRENT_NTP_TIME,
    CONNECTION_DATA_RECEIVED,
    DTLS_SET_STATE,
    STUN_DATAGRAM_RECEIVED,
)

logger = logging.getLogger(__name__)

NTP_OFFSET_NS = 2_208_988_800 * 1_000_000_000  # 1900-01-01 to 1970-01-01


class SpeedupError(MediaError):
    code = "speedup"


def current_ms() -> int:
    """Milliseconds since the NTP epoch, as ``aiortc.clock.current_ms``."""
    return (time.time_ns() + NTP_OFFSET_NS) // 1_000_000


def current_ntp_time() -> int:
    """The 64-bit NTP time (32.32 fixed point), microsecond resolution as aiortc's."""
    seconds, ns = divmod(time.time_ns() + NTP_OFFSET_NS, 1_000_000_000)
    return (seconds << 32) | ((ns // 1000) << 32) // 1_000_000


_stun_datagram_received = aioice.ice.StunProtocol.datagram_received


def datagram_received(self: Any, data: bytes, addr: tuple[Any, ...]) -> None:
    """``StunProtocol.datagram_received``: media straight to the connection, STUN
    through aioice's own parsing, an empty datagram nowhere."""
    if not data:
        return  # aioice would hand it on, and aiortc's DTLS task fail on it, ending the call
    if data[0] > 3:
        self.receiver.data_received(data, self.local_candidate.component)
        return
    _stun_datagram_received(self, data, addr)


def _drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` now, as far as it goes without waiting; should it wait on a future,
    go on when that is done (what a task would do, without making one per packet)."""
    try:
        waited = coro.send(None)
    except StopIteration:
        return
    except Exception:
        logger.exception("a media packet's handler failed; the packet is dropped")
        return
    if isinstance(waited, asyncio.Future):
        waited._asyncio_future_blocking = False
        waited.add_done_callback(lambda _: _drive(coro))
    else:  # a bare yield (sleep(0))
        asyncio.get_running_loop().call_soon(_drive, coro)


class DirectMedia:
    """One connected DTLS transport's SRTP path, taken off its ICE connection's queue."""

    __slots__ = ("dtls", "packets")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.dtls = dtls
        self.packets = 0

    def __call__(self, data: bytes) -> bool:
        """Handle one datagram; False: not ours (not connected any more), queue it."""
        dtls = self.dtls
        srtp = dtls._rx_srtp
        if dtls._state is not State.CONNECTED or srtp is None:
            return False
        fields = vars(dtls)
        fields["_RTCDtlsTransport__rx_bytes"] += len(data)
        fields["_RTCDtlsTransport__rx_packets"] += 1
        self.packets += 1
        arrival_time_ms = clock.current_ms()
        try:
            if is_rtcp(data):
                _drive(dtls._handle_rtcp_data(srtp.unprotect_rtcp(data)))
            else:
                _drive(dtls._handle_rtp_data(srtp.unprotect(data),
                                             arrival_time_ms=arrival_time_ms))
        except pylibsrtp.Error:
            pass  # aiortc drops it too (a replay, a packet that fails authentication)
        return True


_connection_data_received = aioice.ice.Connection.data_received
_dtls_set_state = RTCDtlsTransport._set_state


def connection_data_received(self: Any, data: bytes, component: int) -> None:
    """``Connection.data_received``: SRTP straight to a connected DTLS transport."""
    direct = self.__dict__.get("_direct_media")
    if (direct is not None and data and 127 < data[0] < 192 and not self._queue.qsize()
            and direct(data)):
        return
    _connection_data_received(self, data, component)


def dtls_set_state(self: Any, state: State) -> None:
    """``RTCDtlsTransport._set_state``: a transport that is connected (its SRTP keys are
    set up by then) takes its media off the connection's queue."""
    _dtls_set_state(self, state)
    if state is State.CONNECTED and self._rx_srtp is not None:
        self.transport._connection._direct_media = DirectMedia(self)


class PatchSet:
    """Replacements for class or module attributes, installed while started.

    If another started set already installed a replacement, it is left to that one to
    undo; an attribute that is no longer there (an upgrade) fails ``start`` by name.
    """

    def __init__(self, label: str,
                 patches: tuple[tuple[Any, str, Callable[..., Any]], ...]) -> None:
        self.label = label
        self._patches = patches
        self._originals: list[tuple[Any, str, object]] = []
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        if self._started:
            return
        installs: list[tuple[Any, str, object, Callable[..., Any]]] = []
        for owner, name, replacement in self._patches:
            current = vars(owner).get(name)
            if current is replacement:
                continue  # another set (another service) installed it: theirs to undo
            if not callable(current):
                owner_name = getattr(owner, "__qualname__", getattr(owner, "__name__", owner))
                raise SpeedupError(f"{owner_name}.{name} is gone: the {self.label} "
                                   "speed-up needs updating")
            installs.append((owner, name, current, replacement))
        for owner, name, _, replacement in installs:
            setattr(owner, name, replacement)
        self._originals = [(owner, name, current) for owner, name, current, _ in installs]
        self._started = True
        logger.info("%s speed-up installed", self.label)

    def stop(self) -> None:
        for owner, name, original in self._originals:
            setattr(owner, name, original)
        self._originals = []
        self._started = False


class PacketPathSpeedup(PatchSet):
    """The clock, STUN demultiplexing and direct media replacements above."""

    def __init__(self) -> None:
        super().__init__("packet path", (
            (clock, CLOCK_CURRENT_MS.name, current_ms),
            (clock, CLOCK_CURRENT_NTP_TIME.name, current_ntp_time),
            (aioice.ice.StunProtocol, STUN_DATAGRAM_RECEIVED.name, datagram_received),
            (aioice.ice.Connection, CONNECTION_DATA_RECEIVED.name, connection_data_received),
            (RTCDtlsTransport, DTLS_SET_STATE.name, dtls_set_state),
        ))
