"""A userspace impaired link for UDP: rate limit, random loss, delay and outages.

``tc netem`` and ``tbf`` are missing in this kernel ("Specified qdisc kind is unknown"),
so weak-network tests put this relay in the media path instead: the phone's browser is
pointed at it as if it were the TURN server, and it forwards to the real coturn. What it
impairs is therefore the media path only (every RTP/RTCP/STUN/DTLS datagram between the
browser and coturn); the signalling WebSocket is TCP straight to the server and is not
impaired. A dropped media link with a live socket is what a phone on a failing mobile
network often shows first; ``tests.netns`` covers the case where everything drops.

Each direction is a ``LinkProfile``: packets are lost at random (a seeded RNG, so a run
is repeatable), then queue for a bottleneck of ``rate_bps`` (a FIFO drained at that
rate; a packet that would make the backlog exceed ``queue_bytes`` is tail-dropped, as
a router's buffer does), then arrive ``delay_s`` later. ``blackhole`` drops everything
both ways, packets already in flight too, while it is on.

Forwarding is NAT-like: every client source address gets its own upstream socket, so
the target (coturn) sees one distinct 5-tuple per client and its allocations work.

    async with LinkImpairer(("127.0.0.1", turn_port),
                            up=LinkProfile(rate_bps=300_000, loss=0.05, delay_s=0.15),
                            down=LinkProfile(loss=0.05, delay_s=0.15)) as link:
        link.address                    # ("127.0.0.1", port): give this to the client
        link.blackhole = True           # the link is gone ...
        link.blackhole = False          # ... and back
        link.up.stats.delivered_bytes
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import cast

logger = logging.getLogger(__name__)

Address = tuple[str, int]

MAX_FLOWS = 64
"""Client source addresses kept at once (a browser uses a handful per page)."""


@dataclass(frozen=True)
class LinkProfile:
    """One direction of a link. ``rate_bps`` None: no bottleneck (only loss and delay)."""

    rate_bps: float | None = None
    loss: float = 0.0
    delay_s: float = 0.0
    queue_bytes: int = 20_000  # ~0.5 s at 300 kbit/s: a mobile network's buffer, not a LAN's

    def __post_init__(self) -> None:
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError(f"rate_bps must be positive or None, got {self.rate_bps}")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must not be negative, got {self.delay_s}")
        if self.queue_bytes <= 0:
            raise ValueError(f"queue_bytes must be positive, got {self.queue_bytes}")


@dataclass
class LinkStats:
    """What one direction did with the datagrams offered to it."""

    offered: int = 0
    offered_bytes: int = 0
    lost: int = 0  # random loss
    tail_dropped: int = 0  # the bottleneck's queue was full
    blackholed: int = 0
    delivered: int = 0
    delivered_bytes: int = 0
    max_backlog_bytes: int = 0

    @property
    def dropped(self) -> int:
        return self.lost + self.tail_dropped + self.blackholed


@dataclass
class ImpairedLink:
    """One direction: loss, then a rate-limited FIFO with a tail drop, then delay."""

    profile: LinkProfile
    rng: random.Random
    is_blackholed: Callable[[], bool]
    stats: LinkStats = field(default_factory=LinkStats)
    _busy_until: float = 0.0  # when the bottleneck has sent everything queued so far

    def offer(self, data: bytes, deliver: Callable[[bytes], None],
              loop: asyncio.AbstractEventLoop) -> None:
        """Take one datagram; ``deliver(data)`` runs when (and if) it arrives."""
        size = len(data)
        self.stats.offered += 1
        self.stats.offered_bytes += size
        if self.is_blackholed():
            self.stats.blackholed += 1
            return
        if self.profile.loss and self.rng.random() < self.profile.loss:
            self.stats.lost += 1
            return
        now = loop.time()
        departs = now
        rate = self.profile.rate_bps
        if rate is not None:
            start = max(now, self._busy_until)
            backlog = int((start - now) * rate / 8)
            if backlog + size > self.profile.queue_bytes:
                self.stats.tail_dropped += 1
                return
            self.stats.max_backlog_bytes = max(self.stats.max_backlog_bytes, backlog + size)
            departs = start + size * 8 / rate
            self._busy_until = departs
        # Departures only grow and the delay is fixed, so call_at keeps the order.
        loop.call_at(departs + self.profile.delay_s, self._arrive, data, deliver)

    def _arrive(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        if self.is_blackholed():  # in flight when the link went: gone as well
            self.stats.blackholed += 1
            return
        self.stats.delivered += 1
        self.stats.delivered_bytes += len(data)
        deliver(data)


class _Listener(asyncio.DatagramProtocol):
    """The address clients send to (what they take for the TURN server)."""

    def __init__(self, owner: LinkImpairer) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.owner._from_client(data, (str(addr[0]), int(str(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        logger.debug("impairer listener: %s", exc)


class _Flow(asyncio.DatagramProtocol):
    """One client's upstream socket: the target answers this client here."""

    def __init__(self, owner: LinkImpairer, client: Address) -> None:
        self.owner = owner
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A DatagramTransport in all but its class (asyncio's selector transport).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.owner._from_target(data, self.client)

    def error_received(self, exc: Exception) -> None:
        logger.debug("impairer flow %s: %s", self.client, exc)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)


class LinkImpairer:
    """A UDP relay from clients to ``target`` through an impaired link (see module)."""

    def __init__(self, target: Address, *, up: LinkProfile | None = None,
                 down: LinkProfile | None = None, seed: int = 7,
                 listen: Address = ("127.0.0.1", 0)) -> None:
        self.target = target
        self.listen = listen
        self.blackhole = False
        rng = random.Random(seed)
        self.up = ImpairedLink(up or LinkProfile(), random.Random(rng.random()),
                               lambda: self.blackhole)
        self.down = ImpairedLink(down or LinkProfile(), random.Random(rng.random()),
                                 lambda: self.blackhole)
        self._listener: asyncio.DatagramTransport | None = None
        self._flows: dict[Address, _Flow] = {}
        self._opening: dict[Address, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> Address:
        if self._listener is None:
            raise RuntimeError("the impairer is not started")
        host, port = self._listener.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def flows(self) -> int:
        return len(self._flows)

    async def start(self) -> Address:
        self._loop = asyncio.get_running_loop()
        self._listener, _ = await self._loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=self.listen)
        return self.address

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for flow in self._flows.values():
            if flow.transport is not None:
                flow.transport.close()
        self._flows.clear()
        self._opening.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def __aenter__(self) -> LinkImpairer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- forwarding ------------------------------------------------------------------

    def _from_client(self, data: bytes, client: Address) -> None:
        loop = self._loop
        if loop is None:
            return
        flow = self._flows.get(client)
        if flow is not None:
            self.up.offer(data, flow.send, loop)
            return
        # The upstream socket is being opened: the link still acts on the datagram now.
        waiting = self._opening.get(client)
        if waiting is None:
            if len(self._flows) + len(self._opening) >= MAX_FLOWS:
                logger.warning("impairer: more than %d clients, %s dropped", MAX_FLOWS, client)
                return
            waiting = self._opening[client] = []
            task = loop.create_task(self._open_flow(client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.up.offer(data, lambda d: self._send_up(client, d), loop)

    def _send_up(self, client: Address, data: bytes) -> None:
        flow = self._flows.get(client)
        if flow is not None:
            flow.send(data)
        elif client in self._opening:
            self._opening[client].append(data)

    async def _open_flow(self, client: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_datagram_endpoint(
                lambda: _Flow(self, client), remote_addr=self.target)
        except OSError as err:
            logger.warning("impairer: no upstream socket for %s: %s", client, err)
            self._opening.pop(client, None)
            return
        self._flows[client] = proto
        for data in self._opening.pop(client, []):
            proto.send(data)

    def _from_target(self, data: bytes, client: Address) -> None:
        loop, listener = self._loop, self._listener
        if loop is None or listener is None:
            return
        self.down.offer(data, lambda d: self._send_down(client, d), loop)

    def _send_down(self, client: Address, data: bytes) -> None:
        if self._listener is not None and not self._listener.is_closing():
            self._listener.sendto(data, client)
