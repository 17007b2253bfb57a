"""Real headless Chromium (Debian's /usr/bin/chromium) with fake camera and microphone."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright

from signaling.services import SERVICES
from tests.conftest import Server, make_config, start_server, with_media
from tests.netns import netlab  # noqa: F401  (a fixture, for test_outage.py)
from tests.turnserver import TurnServer

CHROMIUM = os.environ.get("VWINDOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

pytestmark = pytest.mark.e2e


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def relay_server(tmp_path: Path, turn_server: TurnServer) -> AsyncIterator[Server]:
    """A server whose clients reach the hub only through the real coturn (relay ICE)."""
    config = with_media(make_config(f"sqlite+aiosqlite:///{tmp_path / 'vw.db'}", tmp_path),
                        turn_urls=[turn_server.url], turn_secret=turn_server.secret,
                        ice_transport_policy="relay")
    runner, url = await start_server(config)
    async with aiohttp.ClientSession() as http:
        yield Server(url, runner.app[SERVICES], http)
    await runner.cleanup()
