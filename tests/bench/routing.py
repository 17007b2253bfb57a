"""Benchmark: routing latency and claim throughput across two nodes on PostgreSQL.

    python -m tests.bench.routing --calls 1000 --agents 200

Starts a throw-away PostgreSQL and two ``vwindow serve`` processes, queues ``--calls``
calls and signs in and connects ``--agents`` agents split over both nodes (before the
clock starts). Each agent loops: send
``agent.state ready``, wait for ``call.ringing``, accept, end (into a long wrap-up, so
the next ``ready`` is explicit) — until every call has been answered. It reports the
time from sending "ready" to receiving the offer (as the agent's client sees it, so it
includes a WebSocket round trip) and the claims per second of the whole run. Prints one
JSON object last: ``p50_ms``, ``p99_ms``, ``claims_per_s``.

Every agent at once keeps both nodes saturated, so those latencies are mostly waiting
behind the other agents' work. Before that run, ``--idle`` cycles are made by one agent at
a time, alternating nodes, with the queue still full: ``idle_p50_ms`` and ``idle_p99_ms``
are the routing path's own time from "ready" to the offer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select

from signaling.client import ClientError, SignalClient
from tests.multinode import Node, seed, start_node, wait_ready
from tests.pgserver import PgServer
from vwindow.db import Database
from vwindow.models import Call, CallStatus, Case, CaseStatus, Kiosk, ServiceItem, utcnow

ROUTING = {"strategy": "longest_idle", "offer_timeout_s": 60, "wrap_up_s": 3600,
           "tick_s": 1.0, "callback_after_s": 0, "node_timeout_s": 60}


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


async def sign_in(http: aiohttp.ClientSession, url: str, username: str
                  ) -> tuple[SignalClient, asyncio.Queue[dict[str, Any]]]:
    async with http.post(f"{url}/api/v1/auth/login",
                         json={"username": username, "password": "demo1234"}) as r:
        token = (await r.json())["token"]
    client = SignalClient(http, url, token)
    offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on("call.ringing", offers.put_nowait)
    await client.connect()
    return client, offers


async def cycle(client: SignalClient, offers: asyncio.Queue[dict[str, Any]]) -> float:
    """One agent alone: ready, the offer (timed), accept, end."""
    sent = time.perf_counter()
    await client.request("agent.state", state="ready")
    ring = await asyncio.wait_for(offers.get(), 5.0)
    took = time.perf_counter() - sent
    call_id = ring["call"]["call_id"]
    await client.request("call.accept", call_id=call_id)
    await client.request("call.end", call_id=call_id)
    return took


async def agent_loop(client: SignalClient, offers: asyncio.Queue[dict[str, Any]],
                     latencies: list[float], claims: list[float], left: list[int]) -> None:
    try:
        while left[0] > 0:
            sent = time.perf_counter()
            await client.request("agent.state", state="ready")
            try:
                ring = await asyncio.wait_for(offers.get(), 5.0)
            except TimeoutError:
                continue  # nothing left for this agent
            latencies.append(time.perf_counter() - sent)
            call_id = ring["call"]["call_id"]
            try:
                await client.request("call.accept", call_id=call_id)
            except ClientError:
                continue
            claims.append(time.perf_counter())
            left[0] -= 1
            await client.request("call.end", call_id=call_id)
    finally:
        await client.close()


def _ms(values: list[float]) -> tuple[float, float, float]:
    """Median, 99th percentile and maximum of ``values`` (seconds) in milliseconds."""
    ms = sorted(x * 1000 for x in values)
    return (round(statistics.median(ms), 1), round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
            round(ms[-1], 1))


async def run(calls: int, agents: int, idle: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vw-bench-routing-"))
    pg = PgServer()
    pg.start()
    nodes: list[Node] = []
    try:
        db_url = pg.create_database("vw_bench_routing")
        names, _ = await seed(db_url, agents=agents, kiosks=calls)
        await queue_calls(db_url, calls)
        nodes = [start_node(f"node-{n}", db_url, tmp, **ROUTING) for n in "ab"]
        urls = [await wait_ready(n) for n in nodes]
        latencies: list[float] = []
        claims: list[float] = []
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0)) as http:
            # Everyone signed in first: the clock measures routing, not 200 scrypt checks.
            consoles = await asyncio.gather(*(sign_in(http, urls[i % 2], name)
                                              for i, name in enumerate(names)))
            alone = [await cycle(*consoles[i % len(consoles)]) for i in range(idle)]
            left = [calls - idle]
            started = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(
                agent_loop(client, offers, latencies, claims, left)
                for client, offers in consoles)), 600)
        elapsed = (claims[-1] if claims else time.perf_counter()) - started
        p50, p99, most = _ms(latencies)
        idle_p50, idle_p99, _ = _ms(alone) if alone else (None, None, None)
        return {"calls": calls, "agents": agents, "nodes": 2, "answered": len(claims) + idle,
                "p50_ms": p50, "p99_ms": p99, "max_ms": most,
                "claims_per_s": round(len(claims) / elapsed, 1),
                "seconds": round(elapsed, 1), "idle_cycles": idle,
                "idle_p50_ms": idle_p50, "idle_p99_ms": idle_p99}
    finally:
        for node in nodes:
            node.stop()
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--idle", type=int, default=100,
                        help="cycles made by one agent at a time before the saturated run")
    args = parser.parse_args()
    if not 0 <= args.idle < args.calls:
        parser.error("--idle must be at least 0 and fewer than --calls")
    print(json.dumps(asyncio.run(run(args.calls, args.agents, args.idle))))


if __name__ == "__main__":
    main()
