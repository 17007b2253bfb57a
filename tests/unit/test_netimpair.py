"""The userspace impaired link (tests/netimpair.py) with plain UDP sockets on 127.0.0.1:
rate, loss, delay, tail drop, outages, and one flow per client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest

from tests.netimpair import Address, LinkImpairer, LinkProfile


class Echo(asyncio.DatagramProtocol):
    """The far end: answers every datagram with the same bytes, to where it came from."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.peers: set[Address] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A DatagramTransport in all but its class (asyncio's selector transport).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.peers.add((str(addr[0]), int(str(addr[1]))))
        if self.transport is not None:
            self.transport.sendto(data, addr)


class Client(asyncio.DatagramProtocol):
    """A client socket that records when each datagram came back."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[tuple[float, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A DatagramTransport in all but its class (asyncio's selector transport).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.received.append((time.monotonic(), data))

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(data)


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, Address]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    host, port = transport.get_extra_info("sockname")[:2]
    yield proto, (str(host), int(port))
    transport.close()


async def client_for(link: LinkImpairer) -> Client:
    _, proto = await asyncio.get_running_loop().create_datagram_endpoint(
        Client, remote_addr=link.address)
    return proto


async def settle(client: Client, count: int, timeout: float = 5.0) -> None:
    """Wait until ``count`` datagrams came back, or nothing more came for 0.5 s."""
    deadline = time.monotonic() + timeout
    last = -1
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and len(client.received) < count:
        if len(client.received) != last:
            last, quiet_since = len(client.received), time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            return
        await asyncio.sleep(0.02)


async def test_delay_each_way_adds_up_to_the_round_trip(echo: tuple[Echo, Address]) -> None:
    _, target = echo
    async with LinkImpairer(target, up=LinkProfile(delay_s=0.15),
                            down=LinkProfile(delay_s=0.15)) as link:
        client = await client_for(link)
        rtts = []
        for i in range(3):
            sent = time.monotonic()
            client.send(f"ping {i}".encode())
            await settle(client, i + 1)
            rtts.append(client.received[-1][0] - sent)
        assert all(0.295 <= rtt < 0.38 for rtt in rtts), rtts
        assert [d for _, d in client.received] == [b"ping 0", b"ping 1", b"ping 2"]


async def test_loss_fraction_is_close_to_the_profile(echo: tuple[Echo, Address]) -> None:
    _, target = echo
    async with LinkImpairer(target, up=LinkProfile(loss=0.05), seed=11) as link:
        client = await client_for(link)
        n = 2000
        for i in range(n):
            client.send(i.to_bytes(4, "big"))
            if i % 50 == 49:  # stay clear of the socket buffers: wait for the relay
                for _ in range(200):
                    if link.up.stats.offered == i + 1:
                        break
                    await asyncio.sleep(0.002)
        await settle(client, n)
        assert link.up.stats.offered == n, link.up.stats
        lost = n - len(client.received)
        assert link.up.stats.lost == lost, (link.up.stats, lost)
        assert link.down.stats.lost == 0
        # 5 % of 2000 is 100; the binomial's sd is ~10, so 60..140 is four sd either way.
        assert 60 <= lost <= 140, lost


async def test_rate_limit_and_tail_drop(echo: tuple[Echo, Address]) -> None:
    _, target = echo
    rate = 300_000
    up = LinkProfile(rate_bps=rate, queue_bytes=10_000)
    async with LinkImpairer(target, up=up) as link:
        client = await client_for(link)
        payload = bytes(1000)
        # Offer 2x the rate for 1.5 s: about half must be tail-dropped, the rest
        # arrives paced at the link's rate.
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 1.5:
            for _ in range(15):
                client.send(payload)
                sent += 1
            await asyncio.sleep(0.02)  # 15 kB / 20 ms = 6 Mbit/s bursts, ~600 kbit/s mean
        await settle(client, sent, timeout=4)
        stats = link.up.stats
        assert stats.tail_dropped > 0, stats
        assert stats.max_backlog_bytes <= up.queue_bytes, stats
        times = [t for t, _ in client.received]
        span = times[-1] - times[0]
        measured = (len(times) - 1) * len(payload) * 8 / span
        assert 0.9 * rate <= measured <= 1.1 * rate, (measured, stats)
        assert stats.delivered + stats.tail_dropped == stats.offered, stats
        assert len(client.received) == stats.delivered, stats


async def test_blackhole_drops_both_ways_until_lifted(echo: tuple[Echo, Address]) -> None:
    _, target = echo
    async with LinkImpairer(target, up=LinkProfile(delay_s=0.05),
                            down=LinkProfile(delay_s=0.05)) as link:
        client = await client_for(link)
        client.send(b"before")
        await settle(client, 1)
        assert [d for _, d in client.received] == [b"before"]

        client.send(b"in flight")
        await asyncio.sleep(0.07)  # past the echo, still on its way back
        link.blackhole = True
        for _ in range(5):
            client.send(b"during")
        await asyncio.sleep(0.3)
        assert [d for _, d in client.received] == [b"before"]
        assert link.up.stats.blackholed == 5 and link.down.stats.blackholed == 1

        link.blackhole = False
        client.send(b"after")
        await settle(client, 2)
        assert [d for _, d in client.received] == [b"before", b"after"]


async def test_each_client_gets_its_own_flow(echo: tuple[Echo, Address]) -> None:
    server, target = echo
    async with LinkImpairer(target) as link:
        a, b = await client_for(link), await client_for(link)
        a.send(b"from a")
        b.send(b"from b")
        await settle(a, 1)
        await settle(b, 1)
        assert [d for _, d in a.received] == [b"from a"]
        assert [d for _, d in b.received] == [b"from b"]
        # The target saw two distinct sources, neither of them the clients' own.
        assert link.flows == 2 and len(server.peers) == 2
        assert link.address not in server.peers


def test_profiles_are_checked() -> None:
    for bad in ({"rate_bps": 0}, {"loss": 1.0}, {"loss": -0.1}, {"delay_s": -1},
                {"queue_bytes": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LinkProfile(**bad)
