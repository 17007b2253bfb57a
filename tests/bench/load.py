"""Benchmark: 1,000 kiosks idling with heartbeats and 100 agents taking calls, one node.

    python -m tests.bench.load --kiosks 1000 --agents 100 --minutes 10

Starts a throw-away PostgreSQL (``--db sqlite`` for the embedded default) and one
``vwindow serve``. Connects ``--kiosks`` kiosk sockets (tokens signed with the node's
secret: logins are not what is measured) that ping every 15 s like the kiosk page, and
reads the node's resident memory before and after they connect (after a first 20,
which pay the one-time costs): the memory an idle connection costs, on average and as
the cost of the second half (what one more socket adds once a burst of connects has
left its allocator arenas behind). Then ``--agents``
agents come on duty and take calls (ring, accept, talk 2-6 s, end), while callers
keep ``agents + 10`` calls placed by random idle kiosks, for ``--minutes``. Every ping
and request must be answered within 10 s (one that is not is a lost message) and every
call placed must be answered and ended. The node's memory is sampled every 15 s; its
growth is the slope after the first minute.

Last line: one JSON object with ``kiosks``, ``agents``, ``seconds``, ``calls``,
``requests``, ``lost``, ``p50_ms``, ``p99_ms`` (request to reply, all requests),
``idle_kib_per_connection``, ``idle_kib_per_added_connection``, ``rss_start_mib``, ``rss_end_mib``,
``rss_growth_mib_per_min`` (after the first minute), ``rss_growth_mib_per_min_last_half``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select

from signaling.client import ClientError, SignalClient
from tests.multinode import SECRET, Node, seed, start_node, wait_ready
from tests.pgserver import PgServer
from vwindow.auth import TokenIssuer
from vwindow.db import Database
from vwindow.models import Kiosk, Role, User

ROUTING: dict[str, Any] = {"strategy": "longest_idle", "offer_timeout_s": 30, "wrap_up_s": 0,
           "tick_s": 1.0, "callback_after_s": 0}
PING_EVERY_S = 15.0
WARM_UP = 20
LOST_AFTER_S = 10.0


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    by_type: dict[str, list[float]] = field(default_factory=dict)
    requests: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)
    calls: int = 0
    answered: int = 0
    ended: int = 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


async def timed(tally: Tally, client: SignalClient, msg_type: str,
                **fields: Any) -> dict[str, Any] | None:
    """A request whose reply time is recorded; None (counted lost) when none came."""
    tally.requests += 1
    started = time.perf_counter()
    try:
        reply = await client.request(msg_type, timeout=LOST_AFTER_S, **fields)
    except TimeoutError:
        tally.lost += 1
        return None
    except ClientError as err:
        tally.latencies.append(time.perf_counter() - started)
        tally.errors.append(f"{msg_type}: {err.code}")
        return None
    tally.latencies.append(time.perf_counter() - started)
    tally.by_type.setdefault(msg_type, []).append(time.perf_counter() - started)
    return reply


async def pinger(client: SignalClient, tally: Tally, stop: asyncio.Event) -> None:
    await asyncio.sleep(random.uniform(0, PING_EVERY_S))  # spread like real kiosks
    while not stop.is_set():
        await timed(tally, client, "ping")
        try:
            await asyncio.wait_for(stop.wait(), PING_EVERY_S)
        except TimeoutError:
            pass


async def agent(client: SignalClient, tally: Tally, done: asyncio.Event) -> None:
    """Takes calls until ``done`` (set once every caller has finished)."""
    offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on("call.ringing", offers.put_nowait)
    await timed(tally, client, "agent.state", state="ready")
    while not done.is_set():
        try:
            ring = await asyncio.wait_for(offers.get(), 1.0)
        except TimeoutError:
            continue
        call_id = ring["call"]["call_id"]
        if await timed(tally, client, "call.accept", call_id=call_id) is None:
            continue
        await asyncio.sleep(random.uniform(2, 6))
        await timed(tally, client, "call.end", call_id=call_id)


async def caller(kiosks: list[SignalClient], idle: set[int], tally: Tally,
                 stop: asyncio.Event) -> None:
    while not stop.is_set():
        index = random.choice(sorted(idle))
        idle.discard(index)
        kiosk = kiosks[index]
        answered = asyncio.get_running_loop().create_future()
        ended = asyncio.get_running_loop().create_future()

        def on_answered(m: dict[str, Any], f: asyncio.Future[None] = answered) -> None:
            if not f.done():
                f.set_result(None)

        def on_ended(m: dict[str, Any], f: asyncio.Future[None] = ended) -> None:
            if not f.done():
                f.set_result(None)

        kiosk.on("call.answered", on_answered)
        kiosk.on("call.ended", on_ended)
        queued = await timed(tally, kiosk, "call.start", service_code="SB-001")
        if queued is not None:
            tally.calls += 1
            try:
                await asyncio.wait_for(answered, 180)
                tally.answered += 1
                await asyncio.wait_for(ended, 60)
                tally.ended += 1
            except TimeoutError:
                tally.errors.append(f"call {queued['call']['call_id']} not answered/ended")
        kiosk.off("call.answered", on_answered)
        kiosk.off("call.ended", on_ended)
        idle.add(index)


async def run(kiosks: int, agents: int, seconds: float, db: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vw-bench-load-"))
    pg: PgServer | None = None
    node: Node | None = None
    try:
        if db == "postgres":
            pg = PgServer()
            pg.start()
            db_url = pg.create_database("vw_bench_load")
        else:
            db_url = f"sqlite+aiosqlite:///{tmp / 'vw.db'}"
        names, codes = await seed(db_url, agents=agents, kiosks=kiosks)
        database = Database(db_url)
        try:
            async with database.session() as s:
                kiosk_ids = (await s.execute(select(Kiosk.id, Kiosk.name).where(
                    Kiosk.code.in_(codes)))).all()
                agent_ids = (await s.execute(select(User.id, User.display_name).where(
                    User.username.in_(names)))).all()
        finally:
            await database.stop()
        node = start_node("load", db_url, tmp, **ROUTING)
        url = await wait_ready(node)
        tokens = TokenIssuer(SECRET)
        pid = node.proc.pid
        tally = Tally()
        stop = asyncio.Event()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            # The first connections pay one-time costs (lazy imports, caches, pools):
            # they connect before the baseline is read.
            booths: list[SignalClient] = []
            for i, n in kiosk_ids[:WARM_UP]:
                booths.append(SignalClient(http, url, tokens.issue(Role.KIOSK, str(i), n,
                                                                   86400)[0]))
                await booths[-1].connect()
                await timed(tally, booths[-1], "ping")
            await asyncio.sleep(2.0)
            before = rss_kib(pid)
            half = WARM_UP + (len(kiosk_ids) - WARM_UP) // 2
            for start in range(WARM_UP, len(kiosk_ids), 100):
                if start <= half < start + 100:
                    await asyncio.sleep(5.0)
                    halfway, halfway_n = rss_kib(pid), len(booths)
                batch = [SignalClient(http, url, tokens.issue(Role.KIOSK, str(i), n, 86400)[0])
                         for i, n in kiosk_ids[start:start + 100]]
                await asyncio.gather(*(b.connect() for b in batch))
                booths += batch
            await asyncio.sleep(5.0)
            idle_rss = rss_kib(pid)
            per_connection = (idle_rss - before) / max(1, len(booths) - WARM_UP)
            # The second half's cost: what one more idle socket adds once the memory a
            # burst of connects leaves behind (allocator arenas, pools) is there.
            marginal = (idle_rss - halfway) / max(1, len(booths) - halfway_n)
            pingers = [asyncio.create_task(pinger(b, tally, stop)) for b in booths]
            staff = [SignalClient(http, url, tokens.issue(Role.AGENT, str(i), n, 86400)[0])
                     for i, n in agent_ids]
            await asyncio.gather(*(c.connect() for c in staff))
            started = time.perf_counter()
            samples: list[tuple[float, int]] = [(0.0, rss_kib(pid))]
            idle = set(range(len(booths)))
            done = asyncio.Event()
            workers = [asyncio.create_task(agent(c, tally, done)) for c in staff]
            callers = [asyncio.create_task(caller(booths, idle, tally, stop))
                       for _ in range(min(len(booths), agents + 10))]
            while (elapsed := time.perf_counter() - started) < seconds:
                await asyncio.sleep(min(15.0, seconds - elapsed))
                samples.append((time.perf_counter() - started, rss_kib(pid)))
            stop.set()
            # No new calls; the ones placed are all answered and ended before agents go.
            await asyncio.wait_for(asyncio.gather(*callers), 240)
            done.set()
            await asyncio.wait_for(asyncio.gather(*workers), 30)
            await asyncio.gather(*pingers)
            for client in (*booths, *staff):
                await client.close()
        late = [(t, kib) for t, kib in samples if t >= 60.0] or samples
        slope = _slope(late)
        # A bounded cache filling up slows down; a leak does not: the last half's slope.
        last_half = _slope([(t, kib) for t, kib in samples if t >= seconds / 2] or samples)
        print("rss MiB by minute:", [round(kib / 1024, 1) for t, kib in samples
                                     if round(t) % 60 < 15])
        ms = sorted(x * 1000 for x in tally.latencies) or [0.0]
        return {"kiosks": len(kiosk_ids), "agents": len(agent_ids), "db": db,
                "seconds": round(seconds), "calls": tally.calls, "answered": tally.answered,
                "ended": tally.ended, "requests": tally.requests, "lost": tally.lost,
                "errors": len(tally.errors), "first_errors": tally.errors[:5],
                "p50_ms": round(statistics.median(ms), 1),
                "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
                "max_ms": round(ms[-1], 1),
                "p99_ms_by_type": {k: round(1000 * sorted(v)[int(len(v) * 0.99)], 1)
                                   for k, v in sorted(tally.by_type.items())},
                "idle_kib_per_connection": round(per_connection, 1),
                "idle_kib_per_added_connection": round(marginal, 1),
                "rss_start_mib": round(samples[0][1] / 1024, 1),
                "rss_end_mib": round(samples[-1][1] / 1024, 1),
                "rss_growth_mib_per_min": round(slope * 60 / 1024, 2),
                "rss_growth_mib_per_min_last_half": round(last_half * 60 / 1024, 2)}
    finally:
        if node is not None:
            node.stop()
        if pg is not None:
            pg.stop()


def _slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares KiB per second."""
    if len(samples) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in samples)
    mean_r = statistics.fmean(kib for _, kib in samples)
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return sum((t - mean_t) * (kib - mean_r) for t, kib in samples) / var if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.kiosks, args.agents, args.minutes * 60, args.db)),
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
