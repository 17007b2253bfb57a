"""TURN: the `welcome` hands out coturn `use-auth-secret` credentials that a real coturn
on 127.0.0.1 accepts, and it refuses them once expired or wrongly signed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aioice import stun
from aioice.turn import TurnTransport, create_turn_endpoint

from signaling.client import SignalClient
from signaling.services import SERVICES
from tests.conftest import Server, make_config, start_server, with_media
from tests.turnserver import TurnServer

TTL_S = 600


@pytest.fixture
async def turn_app(db_url: str, tmp_path: Path, turn_server: TurnServer) -> AsyncIterator[Server]:
    config = with_media(make_config(db_url, tmp_path), turn_urls=[turn_server.url],
                        turn_secret=turn_server.secret, turn_ttl_s=TTL_S,
                        ice_transport_policy="relay")
    runner, url = await start_server(config)
    async with aiohttp.ClientSession() as http:
        yield Server(url, runner.app[SERVICES], http)
    await runner.cleanup()


class Receiver(asyncio.DatagramProtocol):
    """What arrives through the relay, and when the allocation is gone."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, addr))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class Echo(asyncio.DatagramProtocol):
    """A UDP peer on loopback that answers every datagram (stands in for the hub)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(b"echo:" + data, addr)


def sign(secret: str, username: str) -> str:
    return base64.b64encode(
        hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


async def allocate(turn: TurnServer, username: str,
                   credential: str) -> tuple[TurnTransport, Receiver]:
    return await create_turn_endpoint(Receiver, ("127.0.0.1", turn.port), username, credential)


async def release(transport: TurnTransport, receiver: Receiver) -> None:
    transport.close()
    await asyncio.wait_for(receiver.lost, 5)


async def test_welcome_credentials_allocate_and_relay(turn_app: Server,
                                                      turn_server: TurnServer) -> None:
    kiosk = SignalClient(turn_app.http, turn_app.url, await turn_app.kiosk_token())
    welcome = await kiosk.connect()
    participant = f"kiosk:{welcome['principal']['id']}/page"
    assert welcome["ice_transport_policy"] == "relay"
    [server] = welcome["ice_servers"]
    assert server["urls"] == [turn_server.url]
    expiry, _, who = server["username"].partition(":")
    assert who == participant
    assert abs(int(expiry) - (time.time() + TTL_S)) < 5
    assert server["credential"] == sign(turn_server.secret, server["username"])

    # coturn grants an allocation for exactly those credentials and relays through it
    # to a peer on loopback, as it must for a relay-only browser to reach the hub.
    transport, receiver = await allocate(turn_server, server["username"],
                                         server["credential"])
    relayed = transport.get_extra_info("sockname")
    assert relayed[0] == "127.0.0.1"
    assert turn_server.min_port <= relayed[1] <= turn_server.max_port
    loop = asyncio.get_running_loop()
    echo_transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    try:
        peer = echo_transport.get_extra_info("sockname")
        transport.sendto(b"hello", peer)
        data, addr = await asyncio.wait_for(receiver.received.get(), 5)
        assert (data, addr) == (b"echo:hello", peer)
    finally:
        echo_transport.close()
        await release(transport, receiver)
        await kiosk.close()
    log = turn_server.log_text()
    assert f"username=<{server['username']}>" in log
    assert "ALLOCATE processed, success" in log


async def test_expired_or_forged_credentials_are_refused(turn_server: TurnServer) -> None:
    participant = "agent:1/page"
    now = int(time.time())
    fresh = f"{now + TTL_S}:{participant}"
    expired = f"{now - 60}:{participant}"
    refused = {
        "expired": (expired, sign(turn_server.secret, expired)),
        "wrong secret": (fresh, sign("not-the-secret", fresh)),
        "expiry moved": (f"{now + 10 * TTL_S}:{participant}", sign(turn_server.secret, fresh)),
    }
    for case, (username, credential) in refused.items():
        with pytest.raises(stun.TransactionFailed) as failed:
            await allocate(turn_server, username, credential)
        assert failed.value.response.attributes["ERROR-CODE"][0] == 401, case
    # The same participant with an unexpired, correctly signed username gets through.
    transport, receiver = await allocate(turn_server, fresh, sign(turn_server.secret, fresh))
    await release(transport, receiver)
