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
  minus 20. That cannot happen here.

``PatchSet`` installs such replacements process-wide while started (the forwarding hook
is process-wide too) and puts the originals back when stopped. Every replaced name is
listed in ``media.private_hooks``; ``tests/unit/media/test_speedups.py`` checks each
replacement against the original.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import aioice.ice
from aiortc import clock

from media.errors import MediaError
from media.private_hooks import CLOCK_CURRENT_MS, CLOCK_CURRENT_NTP_TIME, STUN_DATAGRAM_RECEIVED

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
    """``StunProtocol.datagram_received``: media straight to the connection, STUN (and
    anything too short to tell) through aioice's own parsing."""
    if data and data[0] > 3:
        self.receiver.data_received(data, self.local_candidate.component)
        return
    _stun_datagram_received(self, data, addr)


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
    """The clock and STUN demultiplexing replacements above."""

    def __init__(self) -> None:
        super().__init__("packet path", (
            (clock, CLOCK_CURRENT_MS.name, current_ms),
            (clock, CLOCK_CURRENT_NTP_TIME.name, current_ntp_time),
            (aioice.ice.StunProtocol, STUN_DATAGRAM_RECEIVED.name, datagram_received),
        ))
