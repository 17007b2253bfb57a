"""The agent console with the kiosk's devices, in real Chromium: a remote capture shows
its progress and arrives as a scanned page and a PDF; an ID read shows masked and is
revealed on request; a scanned code appears; a booking slip scanned at the idle kiosk
fills its booking-code field."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from devices.sim.doccam import SimulatedDocumentCamera
from devices.sim.idcard import SimulatedIdCardReader, fixture_card
from devices.sim.scanner import SimulatedScanner
from signaling.kioskagent import KioskAgent
from tests.conftest import Server
from tests.e2e.pages import answer_on_console, login_kiosk

pytestmark = pytest.mark.e2e


async def test_capture_idcard_and_codes_in_the_agent_console(server: Server, browser: Browser,
                                                             tmp_path: Path) -> None:
    base = server.url
    scanner = SimulatedScanner()
    devices = KioskAgent(base, "kiosk-tx01", "demo-kiosk-key",
                         SimulatedDocumentCamera(seed=8, qr_text="91340100MA2N123456"),
                         idcard=SimulatedIdCardReader(), scanner=scanner,
                         spool_dir=tmp_path / "spool")
    await devices.start()
    kiosk_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    agent_ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    card = fixture_card()
    try:
        kiosk = await kiosk_ctx.new_page()
        agent = await agent_ctx.new_page()
        await login_kiosk(kiosk, base)
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await asyncio.wait_for(devices.connected.wait(), 10)
        # A booking slip under the scanner before calling: the field fills itself.
        await scanner.scan("ABCD2345")
        await expect(kiosk.locator("#booking-code-input")).to_have_value("ABCD2345")
        await expect(kiosk.locator("#booking-scanned")).to_be_visible()
        await kiosk.fill("#booking-code-input", "")

        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await answer_on_console(agent, kiosk, base, "agent1")

        # The ID card lying on the reader is read into the case: masked.
        read = agent.locator("#idreads li.idread")
        await expect(read).to_have_count(1, timeout=15000)
        masked = card.id_number[:4] + "*" * 10 + card.id_number[-4:]
        await expect(read.locator(".id-number")).to_have_text(masked)
        assert card.id_number not in await agent.content()
        await read.locator("button").click()
        await expect(read.locator(".id-number")).to_have_text(card.id_number)
        await expect(read.locator("[role=status]")).to_contain_text("已记录")

        # A remote capture into a named document, in black and white, with progress.
        await agent.fill("#capture-document", "营业执照")
        await agent.select_option("#capture-mode", "bw")
        await agent.click("#capture-button")
        progress = agent.locator("#capture-progress")
        await expect(progress).to_be_visible()
        await expect(progress).to_have_attribute("data-stage", "done", timeout=30000)
        await expect(progress.locator(".capture-text")).to_contain_text("第 1 页")
        document = agent.locator("#materials li.material-document")
        await expect(document).to_have_count(1)
        await expect(document).to_contain_text("营业执照.pdf")
        page = agent.locator("#materials li.material-page img")
        await expect(page).to_be_visible()
        size = await page.evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert abs(size[1] / size[0] - 297 / 210) < 0.03  # an upright A4 page
        # The credit code printed on the page shows as a scanned code from the camera.
        code = agent.locator("#codes li.code-licence")
        await expect(code).to_contain_text("91340100MA2N123456")

        # A code from the kiosk's scanner during the call.
        await scanner.scan("https://zwfw.example.gov.cn/e-licence/42")
        await expect(agent.locator("#codes li.code-url")).to_contain_text("e-licence/42")
        await expect(agent.locator("#codes li.code-url a")).to_have_count(0)
    finally:
        await devices.stop()
        await kiosk_ctx.close()
        await agent_ctx.close()
