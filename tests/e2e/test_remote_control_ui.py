"""Remote control (远程操控协办) through the real pages: the agent sees the kiosk window
(captured from an Xvfb display), asks for control, the citizen allows it on the kiosk
page, the agent's click on the picture lands in the kiosk window at the same spot, and
the citizen's stop button ends it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from devices.screen import ScreenCapture
from devices.sim.doccam import SimulatedDocumentCamera
from signaling.kioskagent import KioskAgent
from tests.conftest import Server
from tests.e2e.pages import login_kiosk, login_staff, set_ready, video_frames
from tests.unit.devices.xvfb import Press, ProbeWindow, XServer, xvfb
from vwindow.config import RemoteControlConfig

pytestmark = pytest.mark.e2e

KIOSK_CLASS = ("vwindow-kiosk", "VWindowKiosk")


@pytest.fixture
def xserver() -> Iterator[XServer]:
    with xvfb(640, 480) as x:
        yield x


async def test_agent_operates_the_kiosk_window_after_the_citizen_allows_it(
        server: Server, browser: Browser, xserver: XServer, tmp_path: Path) -> None:
    window = ProbeWindow(xserver.display, 100, 50, 200, 150, name="kiosk",
                         wm_class=KIOSK_CLASS)
    devices = KioskAgent(
        server.url, "kiosk-tx01", "demo-kiosk-key", SimulatedDocumentCamera(seed=3),
        screen=ScreenCapture(display=xserver.display, fps=5, window_class=KIOSK_CLASS[0]),
        remote=RemoteControlConfig(enabled=True, display=xserver.display,
                                   window_class=KIOSK_CLASS[0]),
        spool_dir=tmp_path / "spool")
    await devices.start()
    kiosk_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    agent_ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        kiosk = await kiosk_ctx.new_page()
        agent = await agent_ctx.new_page()
        await login_kiosk(kiosk, server.url)
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await login_staff(agent, server.url, "/agent/", "agent1")
        await set_ready(agent)
        ringing = agent.locator("#ringing li[data-call-id]")
        await expect(ringing).to_have_count(1)
        await asyncio.wait_for(devices.connected.wait(), 10)
        await ringing.first.locator(".accept-call").click()
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")

        await agent.click("#kiosk-screen-button")
        screen = 'video[data-role="screen"][data-participant-kind="devices"]'
        seen = await video_frames(agent, screen)
        assert (seen["videoWidth"], seen["videoHeight"]) == (200, 150)  # the kiosk window

        await agent.click("#remote-request-button")
        consent = kiosk.locator("#remote-consent")
        await expect(consent).to_be_visible(timeout=10000)
        await expect(kiosk.locator("#remote-consent-text")).to_contain_text("王芳")
        await kiosk.click("#remote-consent-allow")
        await expect(kiosk.locator("#remote-banner")).to_be_visible()
        await expect(agent.locator("#remote-status")).to_contain_text("远程操控中")

        # A click a quarter across and half down the picture (letterboxed in its 16:9
        # tile) lands at the same spot of the kiosk window, and nowhere else.
        await agent.locator(screen).scroll_into_view_if_needed()
        box = await agent.locator(screen).bounding_box()
        assert box is not None
        scale = min(box["width"] / 200, box["height"] / 150)
        left = box["x"] + (box["width"] - 200 * scale) / 2
        top = box["y"] + (box["height"] - 150 * scale) / 2
        await agent.mouse.click(left + 200 * scale * 0.25, top + 150 * scale * 0.5)
        for _ in range(40):
            if window.presses():
                break
            await asyncio.sleep(0.05)
        presses = window.presses()
        assert len(presses) == 1 and presses[0].button == 1
        assert abs(presses[0].x - 50) <= 3 and abs(presses[0].y - 75) <= 3, presses

        await kiosk.click("#remote-banner-stop")
        await expect(kiosk.locator("#remote-banner")).to_be_hidden()
        await expect(agent.locator("#remote-status")).to_contain_text("群众已停止")
        await agent.mouse.click(box["x"] + 5, box["y"] + 5)
        await asyncio.sleep(0.3)
        assert window.presses() == [presses[0]]
        assert isinstance(presses[0], Press)
    finally:
        await devices.stop()
        await kiosk_ctx.close()
        await agent_ctx.close()
        window.close()
