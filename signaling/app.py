"""Assemble the aiohttp application: services, routes, static pages, lifecycle."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from media.service import MediaService
from signaling import metrics as node_metrics
from signaling import (
    rest,
    rest_appointments,
    rest_cases,
    rest_inspections,
    rest_readings,
    rest_reports,
    rest_uploads,
)
from signaling.bus import make_bus
from signaling.presence import Presence
from signaling.protocol import WS_PATH
from signaling.ratelimit import LOGIN_LIMITER, LoginLimiter
from signaling.services import SERVICES, Services
from signaling.switchboard import Switchboard
from signaling.ws import close_all, handle_relay, websocket_handler
from vwindow.appointments import Appointments
from vwindow.auth import TokenIssuer
from vwindow.cases import Cases
from vwindow.config import Config
from vwindow.db import Database
from vwindow.inspections import Inspections
from vwindow.queue import CallQueue
from vwindow.readings import Readings
from vwindow.retention import RetentionJob
from vwindow.store import FileStore
from vwindow.uploads import Uploads

logger = logging.getLogger(__name__)

DEFAULT_WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
PAGES = ("kiosk", "agent", "supervisor", "surveyor")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".svg": "image/svg+xml", ".png": "image/png", ".json": "application/json",
          ".md": "text/markdown", ".yaml": "application/yaml", ".ico": "image/x-icon",
          ".wav": "audio/wav"}


def build_services(config: Config) -> Services:
    db = Database(config.db.url, echo=config.db.echo)
    store = FileStore(config.storage.root)
    secret = config.auth.secret or secrets.token_urlsafe(32)
    tokens = TokenIssuer(secret, config.auth.previous_secrets)
    cases = Cases(db)
    presence = Presence(make_bus(config.server.node_id, config.db.url))
    holder: list[Switchboard] = []

    async def notify(participant_id: str, message: dict[str, object]) -> None:
        await holder[0].notify_participant(participant_id, dict(message))

    recordings: Path | None = None
    if config.media.record:
        recordings = Path(config.media.recordings_dir or
                          Path(config.storage.root).parent / "recordings")
    media = MediaService(notify, ice_addresses=config.media.ice_addresses,
                         video_codec=config.media.video_codec, forward=config.media.forward,
                         recordings_dir=recordings)
    queue = CallQueue(db, cases, config.routing, config.server.node_id)
    switchboard = Switchboard(db, cases, queue, presence, media, config.server.node_id, store,
                              sla=config.sla)
    holder.append(switchboard)
    media.on_member_state = switchboard.member_state
    return Services(config=config, db=db, store=store, tokens=tokens, cases=cases,
                    presence=presence, media=media, switchboard=switchboard,
                    appointments=Appointments(db, cases),
                    uploads=Uploads(db, store, cases,
                                    max_bytes=config.server.max_upload_bytes),
                    readings=Readings(db, store, config.privacy),
                    inspections=Inspections(db))


def make_app(config: Config, services: Services | None = None) -> web.Application:
    app = web.Application(middlewares=[rest.error_middleware, node_metrics.middleware],
                          client_max_size=config.server.max_upload_bytes + 1024)
    app[SERVICES] = services or build_services(config)
    app.add_routes(rest.routes)
    app.add_routes(rest_appointments.routes)
    app.add_routes(rest_uploads.routes)
    app.add_routes(rest_readings.routes)
    app.add_routes(rest_reports.routes)
    app.add_routes(rest_inspections.routes)
    rest_cases.install(app)
    svc = app[SERVICES]
    auth = config.auth
    app[LOGIN_LIMITER] = LoginLimiter(per_account=auth.max_failed_logins,
                                      per_address=auth.max_failed_logins_per_address,
                                      window_s=auth.failed_login_window_s)
    node_metrics.install(app, node_id=config.server.node_id, db=svc.db, store=svc.store,
                         bus=svc.presence.bus, media=svc.media,
                         snapshot=svc.switchboard.snapshot)
    app.router.add_get(WS_PATH, websocket_handler)
    app.router.add_get("/api/v1/openapi.yaml", openapi)
    web_root = Path(config.server.web_root) if config.server.web_root else DEFAULT_WEB_ROOT
    app[WEB_ROOT] = web_root.resolve()
    app.router.add_get("/{path:.*}", static_file)
    app.cleanup_ctx.append(_lifecycle)
    return app


WEB_ROOT = web.AppKey("web_root", Path)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    await services.db.start()
    await services.store.start()
    await services.media.start()
    await services.switchboard.start()
    bus = services.presence.bus
    router = services.switchboard.router

    async def on_event(event: dict[str, Any]) -> None:
        await router.on_event(event)
        await services.switchboard.on_event(event)
        await services.presence.on_event(event)
        await handle_relay(services, event)

    bus.handler = on_event
    await bus.start()
    # Every node runs it; on PostgreSQL an advisory lock lets one node purge per run.
    retention = RetentionJob(services.db, services.store, services.config.retention)
    await retention.start()
    logger.info("node %s started", services.config.server.node_id)
    yield
    await retention.stop()
    await close_all(services)
    await bus.stop()
    await services.switchboard.stop()
    await services.media.stop()
    services.presence.stop()
    await services.store.stop()
    await services.db.stop()
    logger.info("node %s stopped", services.config.server.node_id)


async def openapi(request: web.Request) -> web.FileResponse:
    return web.FileResponse(Path(__file__).parent / "openapi.yaml",
                            headers={"Content-Type": "application/yaml"})


async def static_file(request: web.Request) -> web.StreamResponse:
    root = request.app[WEB_ROOT]
    rel = request.match_info["path"]
    try:
        target = (root / rel).resolve()
    except (ValueError, OSError):  # a NUL byte, a name too long: no such page
        raise web.HTTPNotFound() from None
    if not target.is_relative_to(root):
        raise web.HTTPNotFound()
    if target.is_dir():
        if rel and not rel.endswith("/"):
            raise web.HTTPFound(f"/{rel}/")
        target = target / "index.html"
    if not target.is_file():
        raise web.HTTPNotFound(text="not found")
    ctype = _TYPES.get(target.suffix, "application/octet-stream")
    return web.FileResponse(target, headers={
        "Content-Type": ctype + ("; charset=utf-8" if ctype.startswith("text/") else ""),
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    })
