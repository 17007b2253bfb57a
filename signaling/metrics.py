"""Prometheus metrics (``/metrics``) and the readiness probe (``/readyz``) of a node.

Each app owns one ``Metrics`` with its own ``CollectorRegistry`` (never the global
default one: tests run several apps in one process). Three kinds of numbers:

- cluster-wide, read from the database when scraped: calls started / answered / ended
  by reason, the waiting queue by service and township, agents by state and level. Every
  node reports the same values; aggregate them with ``max``, not ``sum``.
- this node's media hubs, read from the live hubs when scraped: frames and bytes in,
  packets out and dropped per session, the inbound bitrate since the last scrape, and
  the process's CPU seconds and memory (``process_*``; the hubs run in this process).
- this node's HTTP traffic, counted by ``middleware``: requests by route and status,
  errors by code, bytes received by the upload routes. WebSocket errors are counted
  through ``Metrics.error``.

Labels never carry personal data: services, townships, states and numeric ids only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from media.fanout import DecodedPublication, EncodedPublication
from media.service import MediaService
from signaling.bus import LocalBus
from signaling.protocol import WS_PATH
from vwindow.db import Database
from vwindow.errors import VWindowError
from vwindow.models import Call, CallStatus
from vwindow.store import FileStore

logger = logging.getLogger(__name__)

Snapshot = Callable[[], Awaitable[Mapping[str, Any]]]
"""The switchboard's dashboard snapshot (``Switchboard.snapshot``)."""

UPLOAD_ROUTES = frozenset({
    ("POST", "/api/v1/cases/{case_id}/materials"),
    ("PATCH", "/api/v1/uploads/{upload_id}"),
})
"""Routes whose request bodies are case material: counted as upload bytes."""

CLUSTER_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 2.0


class MetricsError(VWindowError):
    code = "metrics"


@dataclass
class ClusterState:
    """What the database said at the last scrape."""

    calls: Tally[tuple[str, str]] = field(default_factory=Tally)
    """(status, ended_by) → calls; ended_by is "" unless ended."""
    answered: int = 0
    queue: Tally[tuple[str, str]] = field(default_factory=Tally)
    """(service code, township) → waiting calls."""
    oldest_wait_s: float = 0.0
    agents: Tally[tuple[str, str]] = field(default_factory=Tally)
    """(state, level) → agents."""
    live_sessions: int = 0
    ok: bool = False


class _ClusterCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        state = self._metrics.cluster
        ok = GaugeMetricFamily("vwindow_cluster_scrape_ok",
                               "1 when the database answered this scrape's queries")
        ok.add_metric([], 1.0 if state.ok else 0.0)
        yield ok
        if not state.ok:
            return
        started = CounterMetricFamily("vwindow_calls_started",
                                      "Calls placed by kiosks (cluster-wide)")
        started.add_metric([], float(sum(state.calls.values())))
        yield started
        answered = CounterMetricFamily("vwindow_calls_answered",
                                       "Calls an agent answered (cluster-wide)")
        answered.add_metric([], float(state.answered))
        yield answered
        ended = CounterMetricFamily("vwindow_calls_ended",
                                    "Calls that ended, by who or what ended them "
                                    "(cancelled: left the queue unanswered)",
                                    labels=["reason"])
        reasons: Tally[str] = Tally()
        for (status, ended_by), count in state.calls.items():
            if status == CallStatus.ENDED:
                reasons[ended_by or "unknown"] += count
            elif status == CallStatus.CANCELLED:
                reasons["cancelled"] += count
        for reason, count in sorted(reasons.items()):
            ended.add_metric([reason], float(count))
        yield ended
        by_status = GaugeMetricFamily("vwindow_calls", "Calls by current status",
                                      labels=["status"])
        statuses: Tally[str] = Tally()
        for (status, _), count in state.calls.items():
            statuses[status] += count
        for status in CallStatus:
            by_status.add_metric([status.value], float(statuses.get(status.value, 0)))
        yield by_status
        queue = GaugeMetricFamily("vwindow_queue_length",
                                  "Calls waiting for an agent, by service item and township",
                                  labels=["service", "township"])
        for (service, township), count in sorted(state.queue.items()):
            queue.add_metric([service, township], float(count))
        yield queue
        oldest = GaugeMetricFamily("vwindow_queue_oldest_wait_seconds",
                                   "How long the longest-waiting call has waited")
        oldest.add_metric([], state.oldest_wait_s)
        yield oldest
        agents = GaugeMetricFamily("vwindow_agents", "Agents by working state and level",
                                   labels=["state", "level"])
        for (agent_state, level), count in sorted(state.agents.items()):
            agents.add_metric([agent_state, level], float(count))
        yield agents
        live = GaugeMetricFamily("vwindow_live_sessions",
                                 "Answered calls in progress (cluster-wide)")
        live.add_metric([], float(state.live_sessions))
        yield live


class _HubCollector(Collector):
    """The media hubs live on this node, read when scraped (media/ keeps the counts)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._last: dict[int, tuple[float, int]] = {}  # session → (monotonic, bytes in)

    def collect(self) -> Iterable[Metric]:
        media = self._metrics.media
        sessions = GaugeMetricFamily("vwindow_hub_sessions", "Media hubs open on this node")
        participants = GaugeMetricFamily("vwindow_hub_participants",
                                         "Participants connected to a hub", labels=["session"])
        frames_in = CounterMetricFamily("vwindow_hub_frames_in",
                                        "Frames received from publishers",
                                        labels=["session", "kind"])
        bytes_in = CounterMetricFamily("vwindow_hub_bytes_in",
                                       "Encoded bytes received from publishers (forwarding)",
                                       labels=["session", "kind"])
        packets_out = CounterMetricFamily("vwindow_hub_packets_out",
                                          "Encoded frames forwarded to subscribers",
                                          labels=["session", "kind"])
        dropped = CounterMetricFamily("vwindow_hub_packets_dropped",
                                      "Frames not forwarded to a slow or waiting subscriber",
                                      labels=["session", "kind"])
        bitrate = GaugeMetricFamily("vwindow_hub_bitrate_in_bps",
                                    "Inbound bits per second since the previous scrape",
                                    labels=["session"])
        live = media.live_sessions if media is not None else []
        sessions.add_metric([], float(len(live)))
        now = time.monotonic()
        seen: dict[int, tuple[float, int]] = {}
        for session_id in live:
            hub = media.find(session_id) if media is not None else None
            if hub is None:
                continue
            label = str(session_id)
            participants.add_metric([label], float(len(hub.participants)))
            totals: dict[str, list[int]] = {}  # kind → frames, bytes, out, dropped
            for pub in hub.publications():
                row = totals.setdefault(pub.kind, [0, 0, 0, 0])
                if isinstance(pub, EncodedPublication):
                    source = pub.source
                    row[0] += source.frames
                    row[1] += source.worker.bytes if source.worker is not None else 0
                    for sub in source.subscribers:
                        row[2] += sub.sent
                        row[3] += sub.dropped
                elif isinstance(pub, DecodedPublication):
                    row[0] += pub.frames
            for kind, (frames, nbytes, out, drop) in sorted(totals.items()):
                frames_in.add_metric([label, kind], float(frames))
                bytes_in.add_metric([label, kind], float(nbytes))
                packets_out.add_metric([label, kind], float(out))
                dropped.add_metric([label, kind], float(drop))
            total_bytes = sum(row[1] for row in totals.values())
            previous = self._last.get(session_id)
            if previous is not None and now > previous[0]:
                rate = max(0, total_bytes - previous[1]) * 8 / (now - previous[0])
                bitrate.add_metric([label], rate)
            seen[session_id] = (now, total_bytes)
        self._last = seen  # closed sessions drop out here
        yield from (sessions, participants, frames_in, bytes_in, packets_out, dropped,
                    bitrate)


class Metrics:
    """The metrics of one app: a registry, the HTTP counters, the scrape-time readers."""

    def __init__(self, *, node_id: str, db: Database | None = None,
                 snapshot: Snapshot | None = None, media: MediaService | None = None,
                 process: bool = True) -> None:
        self.node_id = node_id
        self.db = db
        self.snapshot = snapshot
        self.media = media
        self.cluster = ClusterState()
        self.registry = CollectorRegistry()
        info = Gauge("vwindow_node_info", "Constant 1, labelled with this node's id",
                     ["node"], registry=self.registry)
        info.labels(node_id).set(1)
        self.requests = Counter("vwindow_http_requests", "HTTP requests handled",
                                ["method", "route", "status"], registry=self.registry)
        self.errors = Counter("vwindow_errors", "Errors reported to clients, by error code",
                              ["code", "transport"], registry=self.registry)
        self.upload_bytes = Counter("vwindow_upload_bytes",
                                    "Request body bytes received by the upload routes",
                                    ["route"], registry=self.registry)
        self.registry.register(_ClusterCollector(self))
        self.registry.register(_HubCollector(self))
        if process:
            # process_cpu_seconds_total, resident memory, open fds (Linux /proc).
            ProcessCollector(registry=self.registry)

    def error(self, code: str, transport: str = "ws") -> None:
        """Count one error sent to a client (the WebSocket handler calls this)."""
        self.errors.labels(code, transport).inc()

    async def refresh(self) -> None:
        """Read the cluster-wide numbers; on failure they are left out of this scrape."""
        try:
            async with asyncio.timeout(CLUSTER_TIMEOUT_S):
                self.cluster = await self._read_cluster()
        except (TimeoutError, OSError, VWindowError) as err:
            logger.warning("metrics: cluster numbers unavailable on node %s: %s",
                           self.node_id, type(err).__name__)
            self.cluster = ClusterState(ok=False)
        except Exception:
            logger.exception("metrics: reading the cluster numbers failed on node %s",
                             self.node_id)
            self.cluster = ClusterState(ok=False)

    async def _read_cluster(self) -> ClusterState:
        state = ClusterState(ok=True)
        if self.db is not None:
            async with self.db.session() as s:
                rows = (await s.execute(
                    select(Call.status, Call.ended_by, func.count(),
                           func.count(Call.answered_at))
                    .group_by(Call.status, Call.ended_by))).all()
            for status, ended_by, count, answered in rows:
                state.calls[(str(status), str(ended_by or ""))] += int(count)
                state.answered += int(answered)
        if self.snapshot is not None:
            snap = await self.snapshot()
            now = datetime.now(UTC)
            for entry in snap.get("queue", []):
                service = str(entry.get("service", {}).get("code", ""))
                township = str(entry.get("kiosk", {}).get("township", ""))
                state.queue[(service, township)] += 1
                queued_at = entry.get("queued_at")
                if isinstance(queued_at, str):
                    waited = (now - datetime.fromisoformat(queued_at)).total_seconds()
                    state.oldest_wait_s = max(state.oldest_wait_s, waited)
            for agent in snap.get("agents", []):
                state.agents[(str(agent.get("state", "offline")),
                              str(agent.get("level", "")))] += 1
            state.live_sessions = len(snap.get("sessions", []))
        return state

    async def exposition(self) -> bytes:
        """The text exposition of every metric, cluster numbers read fresh."""
        await self.refresh()
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


def count_ws_error(app: web.Application, code: str) -> None:
    """Count an error sent over a WebSocket (a no-op in an app without metrics)."""
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.error(code, "ws")


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
def middleware(request: web.Request, handler: Any) -> Awaitable[web.StreamResponse]:
    """Count requests, errors and upload bytes. Sits inside ``rest.error_middleware``
    (listed after it), so it sees the named error before it becomes a response.

    Not for the signalling socket: one "request" lasting the socket's life tells
    nothing (its errors are counted per message), and handing its handler's coroutine
    straight back keeps this frame off the stack of every idle connection."""
    metrics = request.app.get(METRICS)
    if metrics is None or request.path == WS_PATH:
        return cast(Awaitable[web.StreamResponse], handler(request))
    return _count(request, handler, metrics)


async def _count(request: web.Request, handler: Any, metrics: Metrics) -> web.StreamResponse:
    route = _route_of(request)
    status = 500
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    except VWindowError as err:
        status = err.http_status
        metrics.errors.labels(err.code, "http").inc()
        raise
    except web.HTTPException as err:
        status = err.status
        raise
    except Exception:
        metrics.errors.labels("internal", "http").inc()
        raise
    finally:
        metrics.requests.labels(request.method, route, str(status)).inc()
        if (request.method, route) in UPLOAD_ROUTES:
            metrics.upload_bytes.labels(route).inc(request.content.total_bytes)


async def metrics_handler(request: web.Request) -> web.Response:
    body = await request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST,
                                            "Cache-Control": "no-store"})


# -- readiness ---------------------------------------------------------------------------


async def check_db(db: Database, timeout_s: float = READY_TIMEOUT_S) -> None:
    async with asyncio.timeout(timeout_s), db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def _probe_store(root: Path) -> None:
    probe_dir = root / "tmp"
    probe_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=probe_dir, prefix="readyz-")
    try:
        os.write(fd, b"ok")
        os.fsync(fd)
    finally:
        os.close(fd)
        Path(name).unlink(missing_ok=True)


async def check_store(store: FileStore, timeout_s: float = READY_TIMEOUT_S) -> None:
    async with asyncio.timeout(timeout_s):
        await asyncio.to_thread(_probe_store, store.root)


def bus_running(bus: LocalBus) -> bool:
    """A single-node ``LocalBus`` has nothing to run; a ``PgBus`` needs its connection."""
    running = getattr(bus, "running", None)
    if isinstance(running, bool):
        return running
    if type(bus) is LocalBus:
        return True
    # PgBus keeps its LISTEN connection in ``_conn`` (None before start and after stop).
    conn = getattr(bus, "_conn", None)
    return conn is not None and not conn.is_closed()


def _reason(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, VWindowError):
        return err.message
    return type(err).__name__


@dataclass
class Readiness:
    """What ``/readyz`` checks: the database answers, the store takes a file, the bus
    listens. Every check runs each time and none blocks for long."""

    db: Database
    store: FileStore
    bus: LocalBus
    timeout_s: float = READY_TIMEOUT_S

    async def check(self) -> dict[str, str]:
        """``{"db": "ok" | "failed: why", "store": …, "bus": …}``."""
        results: dict[str, str] = {}
        for name, probe in (("db", check_db(self.db, self.timeout_s)),
                            ("store", check_store(self.store, self.timeout_s))):
            try:
                await probe
                results[name] = "ok"
            except Exception as err:  # any failure means "not ready": reported, not raised
                results[name] = f"failed: {_reason(err)}"
        results["bus"] = "ok" if bus_running(self.bus) else "failed: not listening"
        return results


READINESS = web.AppKey("readiness", Readiness)


async def readyz_handler(request: web.Request) -> web.Response:
    checks = await request.app[READINESS].check()
    failed = sorted(k for k, v in checks.items() if v != "ok")
    if failed:
        logger.warning("not ready: %s", ", ".join(f"{k} {checks[k]}" for k in failed))
    return web.json_response({"ok": not failed, "checks": checks, "failed": failed},
                             status=503 if failed else 200,
                             headers={"Cache-Control": "no-store"})


def install(app: web.Application, *, node_id: str, db: Database, store: FileStore,
            bus: LocalBus, media: MediaService | None, snapshot: Snapshot | None) -> Metrics:
    """Add ``/metrics`` and ``/readyz`` to ``app`` (before any catch-all route)."""
    metrics = Metrics(node_id=node_id, db=db, snapshot=snapshot, media=media)
    app[METRICS] = metrics
    app[READINESS] = Readiness(db, store, bus)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/readyz", readyz_handler)
    return metrics

