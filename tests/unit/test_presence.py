"""Presence after a reconnect: messages for a participant go to its newest socket."""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from signaling.presence import Connection, Presence
from vwindow.auth import Principal
from vwindow.models import Role


def _conn(principal: Principal, client: str, opened_ns: int) -> Connection:
    ws = cast(web.WebSocketResponse, cast(Any, object()))  # never used: no send here
    return Connection(ws=ws, principal=principal, client=client, opened_ns=opened_ns)


def test_newest_socket_wins_whatever_the_order_added() -> None:
    kiosk = Principal(Role.KIOSK, "1", "乡镇便民服务中心")
    stale, fresh = _conn(kiosk, "page", 10), _conn(kiosk, "page", 20)
    devices = _conn(kiosk, "devices", 30)
    for order in ((stale, fresh, devices), (devices, fresh, stale)):
        presence = Presence()
        for conn in order:
            presence.add(conn)
        assert presence.by_participant("kiosk:1/page") is fresh
        assert presence.by_participant("kiosk:1/devices") is devices
        presence.remove(fresh)
        assert presence.by_participant("kiosk:1/page") is stale
        assert presence.by_participant("kiosk:2/page") is None
