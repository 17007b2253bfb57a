"""Who is connected to this node: sockets by principal, agent states, call rooms."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from signaling.bus import LocalBus
from vwindow.auth import Principal
from vwindow.models import Role

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10.0
MAX_RESUME_TOKENS = 20000


@dataclass(eq=False, slots=True)
class Connection:
    """One authenticated WebSocket."""

    ws: web.WebSocketResponse
    principal: Principal
    client: str
    resume_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    dashboard: bool = False
    opened_ns: int = field(default_factory=time.monotonic_ns)

    @property
    def participant_id(self) -> str:
        return f"{self.principal.key}/{self.client}"

    async def send(self, message: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        message.setdefault("v", 1)
        try:
            # A client that stops reading must not stall whoever is pushing to it (the
            # dashboard loop, a room broadcast): give up on it and let it reconnect.
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self.ws.send_str(json.dumps(message, ensure_ascii=False, default=str))
        except TimeoutError:
            logger.warning("%s stopped reading; closing its socket", self.participant_id)
            await self.ws.close(code=1011, message=b"not reading")
        except (ConnectionError, RuntimeError) as err:
            logger.info("send to %s failed: %s", self.participant_id, err)


@dataclass(eq=False, slots=True)
class RelayedConnection(Connection):
    """A socket on another node, speaking about a call whose room is here.

    Its messages arrive over the bus; what this node sends it goes back over the bus to
    the node that holds the real socket.
    """

    presence: Presence | None = None

    async def send(self, message: dict[str, Any]) -> None:
        message.setdefault("v", 1)
        if self.presence is not None:
            await self.presence.deliver(self.principal.key, message, client=self.client)


@dataclass
class Room:
    """The principals taking part in one live call, for pushes to 'everyone in the call'."""

    call_id: int
    case_id: int
    members: set[str] = field(default_factory=set)  # principal keys


class Presence:
    """In-memory registry of this node's sockets; durable state is in the database."""

    AGENT_GRACE_S = 15.0

    def __init__(self, bus: LocalBus | None = None) -> None:
        self.bus = bus or LocalBus("local")
        self._conns: dict[str, set[Connection]] = {}
        self.agent_states: dict[int, str] = {}
        self.rooms: dict[int, Room] = {}
        self._resume: dict[str, str] = {}  # resume token -> principal key
        self._offline_timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, conn: Connection) -> None:
        self._conns.setdefault(conn.principal.key, set()).add(conn)
        self._resume[conn.resume_token] = conn.principal.key
        while len(self._resume) > MAX_RESUME_TOKENS:  # oldest first: bounded memory
            del self._resume[next(iter(self._resume))]
        timer = self._offline_timers.pop(conn.principal.key, None)
        if timer is not None:
            timer.cancel()

    def remove(self, conn: Connection, on_gone: Any = None) -> None:
        key = conn.principal.key
        conns = self._conns.get(key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._conns[key]
                if on_gone is not None:
                    loop = asyncio.get_running_loop()
                    self._offline_timers[key] = loop.call_later(
                        self.AGENT_GRACE_S, lambda: self._gone(key, on_gone))

    def _gone(self, key: str, on_gone: Any) -> None:
        self._offline_timers.pop(key, None)
        if key not in self._conns:
            on_gone(key)

    def resumes(self, token: str | None, principal: Principal) -> bool:
        return token is not None and self._resume.get(token) == principal.key

    def connections(self, key: str) -> Iterable[Connection]:
        return tuple(self._conns.get(key, ()))

    def connected(self, key: str) -> bool:
        return bool(self._conns.get(key))

    def by_role(self, role: Role) -> Iterable[Connection]:
        return tuple(c for conns in self._conns.values() for c in conns
                     if c.principal.role is role)

    def by_participant(self, participant_id: str) -> Connection | None:
        """The participant's newest socket. After a network outage the client reconnects
        while its old socket, dead but not yet noticed, lingers until the heartbeat closes
        it: what is meant for the participant (its media offers) must take the new one."""
        key, _, client = participant_id.partition("/")
        found: Connection | None = None
        for conn in self._conns.get(key, ()):
            if conn.client == client and (found is None or conn.opened_ns > found.opened_ns):
                found = conn
        return found

    async def send_to(self, key: str, message: dict[str, Any], *,
                      client: str | None = None) -> int:
        sent = 0
        for conn in self.connections(key):
            if client is None or conn.client == client:
                await conn.send(dict(message))
                sent += 1
        return sent

    async def deliver(self, key: str, message: dict[str, Any], *,
                      client: str | None = None) -> bool:
        """Send to ``key`` here, or else to whichever node holds its socket."""
        if await self.send_to(key, message, client=client):
            return True
        return await self.bus.publish({"k": "to", "key": key, "client": client,
                                       "msg": message})

    async def deliver_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """``deliver`` for several: those not connected here go to the other nodes in one
        bus event instead of one each."""
        elsewhere = [{"key": key, "msg": message} for key, message in items
                     if not await self.send_to(key, message)]
        if elsewhere:
            await self.bus.publish({"k": "to_many", "items": elsewhere})

    async def tell_role(self, role: Role, message: dict[str, Any], *,
                        except_key: str | None = None) -> None:
        """Send to every socket of ``role`` on every node (e.g. "stop ringing")."""
        await self._send_role(role, message, except_key)
        await self.bus.publish({"k": "role", "role": role.value, "msg": message,
                                "except": except_key})

    async def _send_role(self, role: Role, message: dict[str, Any],
                         except_key: str | None) -> None:
        for conn in self.by_role(role):
            if conn.principal.key != except_key:
                await conn.send(dict(message))

    async def on_event(self, event: dict[str, Any]) -> None:
        """A delivery another node published."""
        if event.get("k") == "to_many" and isinstance(event.get("items"), list):
            for item in event["items"]:
                if (isinstance(item, dict) and isinstance(item.get("key"), str)
                        and isinstance(item.get("msg"), dict)):
                    await self.send_to(item["key"], item["msg"])
            return
        message = event.get("msg")
        if not isinstance(message, dict):
            return
        if event.get("k") == "to" and isinstance(event.get("key"), str):
            client = event.get("client")
            await self.send_to(event["key"], message,
                               client=client if isinstance(client, str) else None)
        elif event.get("k") == "room" and isinstance(event.get("call_id"), int):
            await self._send_room_here(event["call_id"], message)
        elif event.get("k") == "role" and event.get("role") in {r.value for r in Role}:
            except_key = event.get("except")
            await self._send_role(Role(event["role"]), message,
                                  except_key if isinstance(except_key, str) else None)

    async def send_room(self, call_id: int, message: dict[str, Any]) -> None:
        """Send to everyone in the call; if its room is on another node, that node does."""
        if call_id not in self.rooms:
            await self.bus.publish({"k": "room", "call_id": call_id, "msg": message})
            return
        await self._send_room_here(call_id, message)

    async def _send_room_here(self, call_id: int, message: dict[str, Any]) -> None:
        room = self.rooms.get(call_id)
        if room is None:
            return
        for key in tuple(room.members):
            # A member's socket may be on another node (the hub is on the answering
            # agent's node; the kiosk stays connected where it was).
            await self.deliver(key, message)

    @property
    def count(self) -> int:
        return sum(len(c) for c in self._conns.values())

    def stop(self) -> None:
        for timer in self._offline_timers.values():
            timer.cancel()
        self._offline_timers.clear()
