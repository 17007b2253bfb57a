"""Events between the nodes of one deployment: PostgreSQL ``LISTEN/NOTIFY``.

A node publishes small JSON events ("the queue changed", "deliver this message to
kiosk:3 wherever its socket is", "tell every agent"); every other node receives them
and acts locally. SQLite deployments are a single node: ``LocalBus`` drops events, as
there is nobody else to tell. Events carry no personal data beyond what the pushed
message itself carries, and must stay under PostgreSQL's 8000-byte payload limit.

When the listening connection dies (PostgreSQL restarted, a network blip), ``PgBus``
connects again with backoff (0.5 s doubling to 5 s) and then hands its handler a
``{"k": "wake"}`` event: whatever was published meanwhile is lost, so the node routes
again from the database rather than waiting for the next change.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

CHANNEL = "vwindow_events"
MAX_PAYLOAD = 7900
RECONNECT_S = (0.5, 5.0)
"""First and longest wait between attempts to listen again after the connection died."""

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class LocalBus:
    """One node: nothing to tell anyone."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.handler: Handler | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, event: dict[str, Any]) -> bool:
        return False


class PgBus(LocalBus):
    """``NOTIFY`` on one channel; each node ignores its own events."""

    def __init__(self, node_id: str, db_url: str) -> None:
        super().__init__(node_id)
        self._dsn = make_url(db_url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._reconnect: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping = False
        await self._listen()
        logger.info("node %s listening for events on %s", self.node_id, CHANNEL)

    async def _listen(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn)
        await conn.add_listener(CHANNEL, self._on_notify)
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn

    def _on_terminated(self, conn: Any) -> None:
        if self._stopping or conn is not self._conn:
            return
        logger.warning("node %s lost its event connection; listening again", self.node_id)
        self._conn = None
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_running_loop().create_task(
                self._listen_again(), name="bus-reconnect")

    async def _listen_again(self) -> None:
        delay = RECONNECT_S[0]
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._listen()
            except (TimeoutError, OSError) as err:
                logger.info("event connection: %s; retrying in %.1f s", type(err).__name__,
                            min(delay * 2, RECONNECT_S[1]))
            except Exception as err:  # asyncpg's own errors: starting up, too many clients
                logger.info("event connection: %s; retrying", type(err).__name__)
            else:
                logger.info("node %s listening for events again", self.node_id)
                self._spawn({"k": "wake", "from": "bus"})
                return
            delay = min(delay * 2, RECONNECT_S[1])

    async def stop(self) -> None:
        self._stopping = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        async with self._lock:  # not while a publish is using the connection
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if not conn.is_closed():
                    await conn.remove_listener(CHANNEL, self._on_notify)
            finally:
                await conn.close()
        for task in list(self._tasks):
            task.cancel()

    async def publish(self, event: dict[str, Any]) -> bool:
        if self._conn is None:
            return False
        payload = json.dumps({**event, "from": self.node_id}, ensure_ascii=False,
                             default=str)
        if len(payload.encode()) > MAX_PAYLOAD:
            # SDP offers with many m-lines: they compress several-fold.
            packed = base64.b64encode(zlib.compress(payload.encode(), 9)).decode()
            payload = json.dumps({"z": packed, "from": self.node_id})
        if len(payload.encode()) > MAX_PAYLOAD:
            logger.error("event %s of %d bytes is too large for NOTIFY; dropped",
                         event.get("k"), len(payload))
            return False
        try:
            async with self._lock:
                if self._conn is None:
                    return False
                await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        except Exception:
            logger.exception("could not publish event %s", event.get("k"))
            return False
        return True

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = json.loads(payload)
            if isinstance(event, dict) and isinstance(event.get("z"), str):
                event = json.loads(zlib.decompress(base64.b64decode(event["z"])))
        except (json.JSONDecodeError, zlib.error, ValueError):
            logger.warning("ignoring an event that is not (packed) JSON")
            return
        if not isinstance(event, dict) or event.get("from") == self.node_id:
            return
        self._spawn(event)

    def _spawn(self, event: dict[str, Any]) -> None:
        if self.handler is None:
            return
        task = asyncio.get_running_loop().create_task(self._handle(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, event: dict[str, Any]) -> None:
        try:
            if self.handler is not None:
                await self.handler(event)
        except Exception:
            logger.exception("handling event %s from %s failed", event.get("k"),
                             event.get("from"))


def make_bus(node_id: str, db_url: str) -> LocalBus:
    if db_url.startswith("postgresql"):
        return PgBus(node_id, db_url)
    return LocalBus(node_id)
