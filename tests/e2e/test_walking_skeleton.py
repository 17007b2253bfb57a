"""The whole path in real Chromium: kiosk calls, agent answers, page lands, rating stored."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from devices.registry import create_device
from signaling.kioskagent import KioskAgent
from tests.conftest import Server
from tests.e2e.pages import captured_size, login_kiosk, login_staff, set_ready, video_frames
from vwindow.models import Rating

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _file_log() -> logging.Handler:
    ARTIFACTS.mkdir(exist_ok=True)
    handler = logging.FileHandler(ARTIFACTS / "e2e-server.log", mode="w")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def assert_scaled_from(seen: dict[str, int], captured: tuple[int, int]) -> None:
    width, height = seen["width"], seen["height"]
    assert captured[0] // 4 <= width <= captured[0], (seen, captured)
    assert abs(width / height - captured[0] / captured[1]) < 0.02, (seen, captured)


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_kiosk_agent_supervisor_surveyor(server: Server, browser: Browser) -> None:
    base = server.url
    logging.getLogger().addHandler(_file_log())
    devices = KioskAgent(base, "kiosk-tx01", "demo-kiosk-key",
                         create_device("doccam", "sim", seed=5))  # type: ignore[arg-type]
    await devices.start()
    kiosk_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    agent_ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    sup_ctx = await browser.new_context()
    try:
        kiosk = await kiosk_ctx.new_page()
        agent = await agent_ctx.new_page()
        supervisor = await sup_ctx.new_page()

        await login_staff(supervisor, base, "/supervisor/", "super1")
        await login_kiosk(kiosk, base)
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "queued")
        await expect(kiosk.locator("#queue-status")).to_have_attribute("data-position", "1")
        await expect(supervisor.locator("#queue tr[data-call-id]")).to_have_count(1)

        await login_staff(agent, base, "/agent/", "agent1")
        await set_ready(agent)
        ringing = agent.locator("#ringing li[data-call-id]")
        await expect(ringing).to_have_count(1)
        call_id = await ringing.first.get_attribute("data-call-id")
        await asyncio.wait_for(devices.connected.wait(), 10)
        accept_at = await agent.evaluate("Date.now()")
        await ringing.first.locator(".accept-call").click()
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")
        await expect(kiosk.locator("#recording-notice")).to_be_visible()

        agent_view = await video_frames(
            agent, 'video[data-role="camera"][data-participant-kind="kiosk"]')
        kiosk_view = await video_frames(kiosk, "video#remote-agent-camera")
        # Each side renders the other's camera: the captured picture, which the sending
        # browser may scale down (not crop) while its bandwidth estimate ramps up.
        assert_scaled_from(agent_view, await captured_size(kiosk))
        assert_scaled_from(kiosk_view, await captured_size(agent))
        doc_view = await video_frames(agent, 'video[data-role="doccam"]')
        assert (doc_view["width"], doc_view["height"]) == (640, 480)
        print(f"accept→first frame: agent {agent_view['firstAt'] - accept_at} ms, "
              f"kiosk {kiosk_view['firstAt'] - accept_at} ms")

        # The supervisor sees the live session with its participants, pushed.
        session_row = supervisor.locator(f'#sessions tr[data-call-id="{call_id}"]')
        await expect(session_row).to_have_count(1)
        await expect(supervisor.locator("#queue tr[data-call-id]")).to_have_count(0)

        # Capture from the agent console: the original still, the scanned page and the
        # document's PDF arrive in the case panel.
        await agent.click("#capture-button")
        material = agent.locator("#materials .material")
        await expect(material).to_have_count(3, timeout=20000)
        img = agent.locator("#materials .material-original img").first
        await expect(img).to_be_visible()
        natural = await img.evaluate("i => i.complete ? i.naturalWidth : 0")
        assert natural == 2592
        # And from the kiosk: a second page; the document's PDF is replaced by the new one.
        await kiosk.click("#capture-button")
        await expect(material).to_have_count(5, timeout=20000)
        await expect(agent.locator("#materials .material-document")).to_have_count(1)
        # An evidence snapshot of the citizen's camera, decoded on the hub.
        kiosk_tile = agent.locator('figure.tile:has(video[data-role="camera"]'
                                   '[data-participant-kind="kiosk"])')
        await kiosk_tile.locator(".snapshot-button").click()
        await expect(material).to_have_count(6, timeout=20000)
        await expect(agent.locator("#materials .material-snapshot img")).to_be_visible()

        # A surveyor joins from a phone with the one-time link.
        await agent.click("#surveyor-link-button")
        link = agent.locator("a#surveyor-link")
        await expect(link).to_have_attribute("href", re.compile(r"#code="))
        href = await link.get_attribute("href")
        assert href is not None
        phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844},
                                              is_mobile=True, has_touch=True)
        phone = await phone_ctx.new_page()
        await phone.goto(href)
        await expect(phone.locator("body")).to_have_attribute("data-state", "live",
                                                               timeout=20000)
        assert "#code=" not in phone.url
        surveyor_view = await video_frames(agent, 'video[data-participant-kind="surveyor"]')
        assert surveyor_view["width"] > 0
        await expect(session_row).to_contain_text("踏勘人员")
        # The link is one-time: a second phone is refused with a readable reason.
        other = await phone_ctx.new_page()
        await other.goto(href)
        await expect(other.locator("body")).to_have_attribute("data-state", "error")
        await expect(other.locator("#status")).not_to_be_empty()

        ARTIFACTS.mkdir(exist_ok=True)
        for page in (agent, kiosk):
            await page.evaluate("window.scrollTo(0, 0)")
        await agent.screenshot(path=str(ARTIFACTS / "agent-console.png"))
        await kiosk.screenshot(path=str(ARTIFACTS / "kiosk.png"))

        await agent.click("#end-call")
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "ended")
        await kiosk.click('[data-stars="5"]')
        await kiosk.fill("#rating-comment", "不用跑县城了")
        await kiosk.click("#rating-submit")
        await expect(kiosk.locator("#rating-thanks")).to_be_visible()
        await expect(supervisor.locator(f'#sessions tr[data-call-id="{call_id}"]')).to_have_count(0)
        # The session's recording reaches the case, as a material the agent can play.
        assert call_id is not None
        case_id = (await server.services.cases.get_call(int(call_id))).case_id
        for _ in range(100):
            case = await server.services.cases.case_view(case_id)
            if any(m.source == "recording" for m in case.materials):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no recording in the case")
        async with server.services.db.session() as s:
            rating = (await s.scalars(select(Rating))).one()
        assert rating.stars == 5 and rating.comment == "不用跑县城了"
        await phone_ctx.close()
    finally:
        started = time.monotonic()
        for ctx in (kiosk_ctx, agent_ctx, sup_ctx):
            await ctx.close()
        await devices.stop()
        assert time.monotonic() - started < 30
