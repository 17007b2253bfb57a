"""``/metrics`` and ``/readyz`` on a real server over real SQLite and PostgreSQL."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from signaling import metrics as node_metrics
from signaling import rest, rest_appointments, rest_readings, rest_uploads
from signaling.app import WEB_ROOT, _lifecycle, build_services, make_app, openapi, static_file
from signaling.bus import LocalBus
from signaling.services import SERVICES
from signaling.ws import websocket_handler
from tests.conftest import make_config
from vwindow.config import Config
from vwindow.db import Database
from vwindow.models import Call, Kiosk, User, utcnow
from vwindow.seed import DEMO, seed_demo
from vwindow.store import FileStore


def _app_with_metrics(config: Config) -> web.Application:
    """The app as ``make_app`` builds it once /metrics and /readyz are wired in; until
    then, the same assembly done here (the metrics routes before the catch-all)."""
    app = make_app(config)
    if node_metrics.METRICS in app:
        return app
    services = build_services(config)
    app = web.Application(middlewares=[rest.error_middleware, node_metrics.middleware],
                          client_max_size=config.server.max_upload_bytes + 1024)
    app[SERVICES] = services
    for table in (rest.routes, rest_appointments.routes, rest_uploads.routes,
                  rest_readings.routes):
        app.add_routes(table)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/api/v1/openapi.yaml", openapi)
    node_metrics.install(app, node_id=config.server.node_id, db=services.db,
                         store=services.store, bus=services.presence.bus,
                         media=services.media, snapshot=services.switchboard.snapshot)
    app[WEB_ROOT] = Path(__file__).resolve().parents[2] / "web"
    app.router.add_get("/{path:.*}", static_file)
    app.cleanup_ctx.append(_lifecycle)
    return app


class Node:
    def __init__(self, app: web.Application, url: str, http: aiohttp.ClientSession) -> None:
        self.app = app
        self.url = url
        self.http = http

    async def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with self.http.get(f"{self.url}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            body = await r.text()
        samples = {}
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples


@pytest.fixture
async def node(db_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    config = make_config(db_url, tmp_path)
    app = _app_with_metrics(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await seed_demo(app[SERVICES].db)
    async with aiohttp.ClientSession() as http:
        yield Node(app, f"http://127.0.0.1:{runner.addresses[0][1]}", http)
    await runner.cleanup()


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_metrics_show_queue_calls_agents_errors_and_uploads(node: Node) -> None:
    services = node.app[SERVICES]
    async with services.db.session() as s:
        kiosk = (await s.scalars(select(Kiosk).where(Kiosk.code == DEMO.kiosk_code))).one()
        agents = (await s.scalars(select(User).where(User.role == "agent"))).all()
    view = await services.cases.start_call(kiosk.id, "SB-001")

    samples = await node.scrape()
    assert _value(samples, "vwindow_cluster_scrape_ok") == 1.0
    assert _value(samples, "vwindow_queue_length", service="SB-001",
                  township=view.kiosk.township) == 1.0
    assert _value(samples, "vwindow_calls_started_total") == 1.0
    assert _value(samples, "vwindow_calls", status="queued") == 1.0
    assert _value(samples, "vwindow_calls_answered_total") == 0.0
    offline = sum(v for (name, labels), v in samples.items()
                  if name == "vwindow_agents" and ("state", "offline") in labels)
    assert offline == len(agents)
    assert _value(samples, "vwindow_node_info", node="node-1") == 1.0
    assert (_value(samples, "process_cpu_seconds_total") or 0.0) > 0.0

    # A wrong password: the error code and the request's status are counted.
    async with node.http.post(f"{node.url}/api/v1/auth/login",
                              json={"username": "nobody", "password": "wrong"}) as r:
        assert r.status == 401
    # A whole-file upload by the kiosk onto its case: its body bytes are counted.
    async with node.http.post(f"{node.url}/api/v1/auth/kiosk",
                              json={"kiosk_code": DEMO.kiosk_code,
                                    "device_key": DEMO.kiosk_key}) as r:
        token = (await r.json())["token"]
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
    async with node.http.post(f"{node.url}/api/v1/cases/{view.case_id}/materials",
                              data=photo, headers={"Authorization": f"Bearer {token}",
                                                   "Content-Type": "image/jpeg"}) as r:
        assert r.status == 201, await r.text()

    async with services.db.session() as s:  # answered by an agent (routing is tested apart)
        call = await s.get_one(Call, view.call_id)
        call.status, call.agent_id, call.answered_at = "live", agents[0].id, utcnow()
    await services.cases.end_call(view.call_id, "agent", "agent:test")
    samples = await node.scrape()
    assert _value(samples, "vwindow_errors_total", code="unauthenticated",
                  transport="http") == 1.0
    assert _value(samples, "vwindow_http_requests_total", method="POST",
                  route="/api/v1/auth/login", status="401") == 1.0
    assert _value(samples, "vwindow_upload_bytes_total",
                  route="/api/v1/cases/{case_id}/materials") == float(len(photo))
    assert _value(samples, "vwindow_calls_ended_total", reason="agent") == 1.0
    assert _value(samples, "vwindow_calls_answered_total") == 1.0
    assert _value(samples, "vwindow_queue_length", service="SB-001",
                  township=view.kiosk.township) is None


async def test_hub_metrics_follow_the_live_hubs(node: Node) -> None:
    media = node.app[SERVICES].media
    media.hub(4242)
    samples = await node.scrape()
    assert _value(samples, "vwindow_hub_sessions") == 1.0
    assert _value(samples, "vwindow_hub_participants", session="4242") == 0.0
    await media.close_hub(4242)
    samples = await node.scrape()
    assert _value(samples, "vwindow_hub_sessions") == 0.0
    assert _value(samples, "vwindow_hub_participants", session="4242") is None


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    one = node_metrics.Metrics(node_id="a", process=False)
    two = node_metrics.Metrics(node_id="b", process=False)
    one.error("conflict")
    app = web.Application()
    app[node_metrics.METRICS] = two
    node_metrics.count_ws_error(app, "too_large")
    node_metrics.count_ws_error(web.Application(), "ignored")  # no metrics: no error
    assert b'vwindow_errors_total{code="conflict",transport="ws"} 1.0' in \
        await one.exposition()
    assert b"conflict" not in await two.exposition()
    assert b'vwindow_errors_total{code="too_large",transport="ws"} 1.0' in \
        await two.exposition()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_readyz_names_the_failed_check(node: Node, db_url: str, tmp_path: Path) -> None:
    async with node.http.get(f"{node.url}/readyz") as r:
        assert r.status == 200
        assert await r.json() == {"ok": True, "failed": [],
                                  "checks": {"db": "ok", "store": "ok", "bus": "ok"}}
    readiness = node.app[node_metrics.READINESS]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's folder should be")
    readiness.store = FileStore(blocker / "files")
    async with node.http.get(f"{node.url}/readyz") as r:
        assert r.status == 503
        body = await r.json()
    assert body["failed"] == ["store"]
    assert body["checks"]["db"] == "ok"
    assert body["checks"]["store"].startswith("failed: ")

    if db_url.startswith("postgresql"):
        # The LISTEN connection is gone: this node would miss the others' events.
        await node.app[SERVICES].presence.bus.stop()
        async with node.http.get(f"{node.url}/readyz") as r:
            body = await r.json()
        assert body["checks"]["bus"] == "failed: not listening"


async def test_readyz_reports_an_unreachable_database(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    db = Database(f"postgresql+asyncpg://vw@127.0.0.1:{port}/none")
    store = FileStore(tmp_path / "files")
    checks = await node_metrics.Readiness(db, store, LocalBus("n"), timeout_s=2).check()
    await db.stop()
    assert checks["store"] == "ok" and checks["bus"] == "ok"
    assert checks["db"].startswith("failed: ")
