"""Benchmark: routing latency and claim throughput across two nodes on PostgreSQL.

    python -m tests.bench.routing --calls 1000 --agents 200

Starts a throw-away PostgreSQL and two ``vwindow serve`` processes, queues ``--calls``
calls and signs in and connects ``--agents`` agents split over both nodes (before the
clock starts). Times are as the agent's client sees them, from sending
``agent.state ready`` to receiving ``call.ringing`` (so they include a WebSocket round
trip). Three phases, the queue full throughout:

1. ``--idle`` cycles by one agent at a time, alternating nodes: ready, the offer,
   accept, end (into a long wrap-up, so the next ``ready`` is explicit). ``p50_ms``,
   ``p99_ms``: the routing path's own time from "ready" to the offer. ``--warmup``
   untimed cycles come first.
2. Every agent sends "ready" at the same moment: ``claims_per_s`` is the offers (each a
   call claimed with ``FOR UPDATE SKIP LOCKED``) per second from the first "ready" to
   the last offer; ``burst_p50_ms`` and ``burst_p99_ms`` each agent's wait in that crowd.
   Each then answers and ends its call.
3. Every agent cycles (ready, offer, accept, end) until every call has been answered:
   ``answered_per_s`` is whole calls per second, ``busy_p50_ms`` / ``busy_p99_ms`` the
   ready → offer times, mostly waiting behind the other agents' accepts and ends.

Prints one JSON object last.
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

from signaling.client import ClientError, SignalClient
from tests.multinode import Node, queue_calls, seed, start_node, wait_ready
from tests.pgserver import PgServer

ROUTING = {"strategy": "longest_idle", "offer_timeout_s": 60, "wrap_up_s": 3600,
           "tick_s": 1.0, "callback_after_s": 0, "node_timeout_s": 60}


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


async def burst(consoles: list[tuple[SignalClient, asyncio.Queue[dict[str, Any]]]]
                ) -> tuple[list[float], float]:
    """Every agent sends "ready" at the same moment, the queue full: each one's ready →
    offer, and the offers (claims) per second from the first "ready" sent to the last
    offer received. Then each answers and ends its call."""
    async def one(client: SignalClient, offers: asyncio.Queue[dict[str, Any]]
                  ) -> tuple[float, float, int]:
        sent = time.perf_counter()
        await client.request("agent.state", state="ready")
        ring = await asyncio.wait_for(offers.get(), 30.0)
        return sent, time.perf_counter(), int(ring["call"]["call_id"])

    started = time.perf_counter()
    rung = await asyncio.gather(*(one(client, offers) for client, offers in consoles))
    elapsed = max(got for _, got, _ in rung) - started
    for (client, _), (_, _, call_id) in zip(consoles, rung, strict=True):
        await client.request("call.accept", call_id=call_id)
        await client.request("call.end", call_id=call_id)
    return [got - sent for sent, got, _ in rung], len(rung) / elapsed


def _ms(values: list[float]) -> tuple[float, float, float]:
    """Median, 99th percentile and maximum of ``values`` (seconds) in milliseconds."""
    ms = sorted(x * 1000 for x in values)
    return (round(statistics.median(ms), 1), round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
            round(ms[-1], 1))


async def run(calls: int, agents: int, idle: int, warmup: int) -> dict[str, Any]:
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
            # Untimed first cycles: each node's pooled connections prepare their
            # statements on first use (~40 ms once each), as on any node after start-up.
            for i in range(warmup):
                await cycle(*consoles[i % len(consoles)])
            alone = [await cycle(*consoles[(warmup + i) % len(consoles)]) for i in range(idle)]
            together, claims_per_s = await burst(consoles)
            left = [calls - warmup - idle - len(consoles)]
            started = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(
                agent_loop(client, offers, latencies, claims, left)
                for client, offers in consoles)), 600)
        elapsed = (claims[-1] if claims else time.perf_counter()) - started
        busy_p50, busy_p99, busy_max = _ms(latencies)
        p50, p99, most = _ms(alone) if alone else (None, None, None)
        burst_p50, burst_p99, _ = _ms(together)
        return {"calls": calls, "agents": agents, "nodes": 2,
                "answered": len(claims) + warmup + idle + len(together),
                "p50_ms": p50, "p99_ms": p99, "max_ms": most, "idle_cycles": idle,
                "warmup_cycles": warmup,
                "claims_per_s": round(claims_per_s, 1),
                "burst_p50_ms": burst_p50, "burst_p99_ms": burst_p99,
                "answered_per_s": round(len(claims) / elapsed, 1),
                "busy_p50_ms": busy_p50, "busy_p99_ms": busy_p99, "busy_max_ms": busy_max,
                "busy_seconds": round(elapsed, 1)}
    finally:
        for node in nodes:
            node.stop()
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--idle", type=int, default=300,
                        help="cycles made by one agent at a time before the saturated run")
    parser.add_argument("--warmup", type=int, default=20,
                        help="untimed cycles (one agent at a time) before the timed ones")
    args = parser.parse_args()
    if not 0 < args.idle or args.warmup < 0 or (
            args.warmup + args.idle + args.agents >= args.calls):
        parser.error("--idle must be at least 1, --warmup at least 0, and together with "
                     "--agents fewer than --calls")
    print(json.dumps(asyncio.run(run(args.calls, args.agents, args.idle, args.warmup))))


if __name__ == "__main__":
    main()
