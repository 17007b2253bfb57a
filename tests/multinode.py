"""Several real ``vwindow serve`` processes on one PostgreSQL database, for tests and benches."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from vwindow.auth import hash_secret
from vwindow.cases import Cases
from vwindow.config import Config
from vwindow.db import Database
from vwindow.models import (
    Call,
    CallStatus,
    Case,
    CaseStatus,
    Kiosk,
    Role,
    ServiceItem,
    Township,
    User,
    utcnow,
)
from vwindow.models import Node as NodeRow
from vwindow.nodes import Beat
from vwindow.queue import CallQueue
from vwindow.seed import seed_demo

SECRET = "multinode-test-secret-0123456789-abcdef"
KIOSK_KEY = "key"


@dataclass
class Node:
    node_id: str
    proc: subprocess.Popen[str]
    url: str = ""
    log: list[str] = field(default_factory=list)

    def kill(self) -> None:
        """kill -9: no clean shutdown, no last heartbeat."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def seed(db_url: str, *, agents: int, kiosks: int) -> tuple[list[str], list[str]]:
    """Demo data plus ``agents`` all-round county agents and ``kiosks`` kiosks."""
    db = Database(db_url)
    await db.start()
    try:
        await seed_demo(db)
        async with db.session() as s:
            town = (await s.scalars(select(Township).where(Township.code == "TX"))).one()
            pw = hash_secret("demo1234")
            for i in range(agents):
                s.add(User(username=f"mn-agent{i}", display_name=f"坐席{i}", role=Role.AGENT,
                           password_hash=pw, level="county", county=town.county,
                           dialects=["普通话"], skills=["*"]))
            key = hash_secret(KIOSK_KEY)
            for i in range(kiosks):
                s.add(Kiosk(code=f"mn-kiosk{i}", name=f"{i} 号机", township_id=town.id,
                            key_hash=key))
    finally:
        await db.stop()
    return [f"mn-agent{i}" for i in range(agents)], [f"mn-kiosk{i}" for i in range(kiosks)]


async def queue_calls(db_url: str, n: int) -> None:
    """``n`` waiting calls, one per kiosk, written straight into the database."""
    db = Database(db_url)
    try:
        async with db.session() as s:
            item = (await s.scalars(select(ServiceItem).where(
                ServiceItem.code == "SB-001"))).one()
            kiosks = (await s.scalars(select(Kiosk).where(Kiosk.code.like("mn-kiosk%"))
                                      .order_by(Kiosk.id).limit(n))).all()
            for i, kiosk in enumerate(kiosks):
                case = Case(number=f"BENCH-{i:05d}", service_item_id=item.id,
                            kiosk_id=kiosk.id, township_id=kiosk.township_id,
                            status=CaseStatus.RECEIVED)
                s.add(case)
                await s.flush()
                s.add(Call(case_id=case.id, kiosk_id=kiosk.id, service_item_id=item.id,
                           status=CallStatus.QUEUED, category=item.category, priority=0,
                           queued_at=utcnow()))
    finally:
        await db.stop()


async def declare_dead(db: Database, config: Config, node_id: str) -> Beat:
    """Another node (a ``CallQueue`` of its own on ``db``) finds ``node_id``'s beat long
    lapsed and reaps it, as it would a node that stalled."""
    other = CallQueue(db, Cases(db), config.routing, "node-other")
    await other.start()
    async with db.session() as s:
        await s.execute(update(NodeRow).where(NodeRow.id == node_id).values(
            heartbeat_at=utcnow() - timedelta(seconds=config.routing.node_timeout_s + 100)))
    reaped = await other.heartbeat()
    assert reaped.dead == [node_id]
    return reaped


def start_node(node_id: str, db_url: str, data: Path, *, port: int = 0,
               **routing: object) -> Node:
    """``vwindow serve`` in a subprocess; ``port`` 0 picks a free one (a restarted node
    given its old port is where its clients reconnect)."""
    env = {**os.environ,
           "VWINDOW_SERVER__NODE_ID": node_id,
           "VWINDOW_AUTH__SECRET": SECRET,
           "VWINDOW_STORAGE__ROOT": str(data / node_id / "files"),
           "VWINDOW_MEDIA__RECORD": "false"}
    for key, value in routing.items():
        env[f"VWINDOW_ROUTING__{key.upper()}"] = str(value)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vwindow.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--db", db_url], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Node(node_id, proc)


async def wait_ready(node: Node, timeout: float = 60.0) -> str:
    """Read the node's output until it says where it serves; keep draining it after."""
    assert node.proc.stdout is not None
    stream = node.proc.stdout

    async def first_line() -> str:
        while True:
            line = await asyncio.to_thread(stream.readline)
            if not line:
                raise RuntimeError(f"node {node.node_id} exited:\n" + "".join(node.log[-30:]))
            node.log.append(line)
            if "vwindow serving on " in line:
                return line.split("vwindow serving on ", 1)[1].split()[0]

    node.url = await asyncio.wait_for(first_line(), timeout)

    def drain() -> None:
        for line in stream:
            node.log.append(line)
            del node.log[:-500]

    asyncio.get_running_loop().run_in_executor(None, drain)
    return node.url
