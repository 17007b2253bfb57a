"""Shared fixtures: a real server on 127.0.0.1 over real SQLite or PostgreSQL."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from signaling.app import make_app
from signaling.services import SERVICES, Services
from tests.pgserver import PgServer
from tests.turnserver import TurnServer
from vwindow.config import Config, MediaConfig, RoutingConfig, load_config
from vwindow.seed import seed_demo

_db_counter = itertools.count(1)

# Fails the run if a log line carries personal data (tests/logscan.py).
pytest_plugins = ["tests.logscan"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``slow`` tests run only when asked for by marker (``-m slow``)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer | str]:
    url = os.environ.get("VWINDOW_TEST_PG_URL")
    if url:
        yield url
        return
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pg_database(pg: PgServer | str) -> str:
    if isinstance(pg, str):
        return pg
    return pg.create_database(f"vw_test_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return pg_database(request.getfixturevalue("pg_server"))
    return f"sqlite+aiosqlite:///{tmp_path / 'vw.db'}"


def make_config(db_url: str, tmp_path: Path, **server: object) -> Config:
    return load_config(environ={}, overrides={
        "server": {"host": "127.0.0.1", "port": 0, **server},
        "db": {"url": db_url},
        "storage": {"root": str(tmp_path / "files")},
        "auth": {"secret": "test-secret-0123456789-abcdefghijklmnop"},
        # The call-flow tests ring every ready agent and place calls back to back;
        # tests/integration/test_routing.py runs the default strategy and wrap-up.
        "routing": {"wrap_up_s": 0, "strategy": "ring_all"},
    })


def with_media(config: Config, **media: object) -> Config:
    """``config`` with some ``media`` keys replaced (validated like any config)."""
    section = MediaConfig.model_validate({**config.media.model_dump(), **media})
    return config.model_copy(update={"media": section})


def with_routing(config: Config, **routing: object) -> Config:
    """``config`` with some ``routing`` keys replaced (validated like any config)."""
    section = RoutingConfig.model_validate({**config.routing.model_dump(), **routing})
    return config.model_copy(update={"routing": section})


@pytest.fixture
def turn_server() -> Iterator[TurnServer]:
    """A real coturn on 127.0.0.1 (``use-auth-secret``, random secret), stopped after."""
    turn = TurnServer()
    turn.start()
    try:
        yield turn
    finally:
        turn.stop()


@dataclass
class Server:
    url: str
    services: Services
    http: aiohttp.ClientSession

    async def login(self, username: str, password: str = "demo1234") -> str:
        async with self.http.post(f"{self.url}/api/v1/auth/login",
                                  json={"username": username, "password": password}) as r:
            assert r.status == 200, await r.text()
            token: str = (await r.json())["token"]
            return token

    async def kiosk_token(self, code: str = "kiosk-tx01", key: str = "demo-kiosk-key") -> str:
        async with self.http.post(f"{self.url}/api/v1/auth/kiosk",
                                  json={"kiosk_code": code, "device_key": key}) as r:
            assert r.status == 200, await r.text()
            token: str = (await r.json())["token"]
            return token


async def start_server(config: Config, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    app = make_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    await seed_demo(app[SERVICES].db)
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def server(db_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    runner, url = await start_server(make_config(db_url, tmp_path))
    services = runner.app[SERVICES]
    async with aiohttp.ClientSession() as http:
        yield Server(url, services, http)
    await runner.cleanup()
