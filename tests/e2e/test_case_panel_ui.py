"""The case panel's lifecycle in real Chromium: the kiosk finds its service by a colloquial
search; the agent answers, sees the checklist with what is missing, answers the situation
questions; a page captured by the kiosk's document camera ticks the ID card; completing
is refused while the photo is missing; the agent tags a second capture as the photo and
completes the case."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from devices.sim.doccam import SimulatedDocumentCamera
from signaling.kioskagent import KioskAgent
from tests.conftest import Server
from tests.e2e.pages import answer_on_console, login_kiosk

pytestmark = pytest.mark.e2e


async def capture(agent: Page, document: str) -> None:
    await agent.fill("#capture-document", document)
    await agent.click("#capture-button")
    progress = agent.locator("#capture-progress")
    await expect(progress).to_have_attribute("data-stage", "done", timeout=30000)
    await expect(agent.locator("#capture-button")).to_be_enabled(timeout=5000)


async def test_checklist_refuses_then_completes(server: Server, browser: Browser,
                                                tmp_path: Path) -> None:
    base = server.url
    # No background spool drain: it can race a capture for the same spooled page (the
    # capture then reports "queued"); the network never fails in this test anyway.
    devices = KioskAgent(base, "kiosk-tx01", "demo-kiosk-key",
                         SimulatedDocumentCamera(seed=11), spool_dir=tmp_path / "spool",
                         drain_every_s=3600)
    await devices.start()
    kiosk_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    agent_ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        kiosk = await kiosk_ctx.new_page()
        agent = await agent_ctx.new_page()
        await login_kiosk(kiosk, base)
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await asyncio.wait_for(devices.connected.wait(), 10)

        # Colloquial search, by keyboard: type, arrow down to the best hit, Enter.
        await kiosk.fill("#service-search", "领养老金要刷脸认证")
        hit = kiosk.locator("#search-results button[data-hit-code]").first
        await expect(hit).to_have_attribute("data-hit-code", "SB-001")
        await expect(kiosk.locator("#services")).to_be_hidden()
        await expect(kiosk.locator("#catalog-status")).to_contain_text("找到")
        await kiosk.focus("#service-search")
        await kiosk.keyboard.press("ArrowDown")
        await expect(hit).to_be_focused()
        await kiosk.keyboard.press("Enter")
        await expect(hit).to_have_attribute("aria-pressed", "true")
        await kiosk.click("#call-button")

        await answer_on_console(agent, kiosk, base, "agent1")

        status = agent.locator("#case-status")
        await expect(status).to_have_attribute("data-status", "in_progress")
        await expect(status).to_have_text("办理中")
        await expect(agent.locator("#case-sla .sla-badge")).to_have_count(1)
        checklist = agent.locator("#checklist")
        id_card = checklist.locator('li[data-key="id_card"]')
        photo = checklist.locator('li[data-key="photo"]')
        await expect(id_card).to_have_attribute("data-state", "missing")
        await expect(photo).to_have_attribute("data-state", "missing")
        await expect(checklist.locator('li[data-key="proxy_letter"]')).to_have_attribute(
            "data-state", "conditional")
        await expect(agent.locator("#checklist-summary")).to_contain_text("情形问答")

        # The situation questions: 本人, able to come / video.
        await agent.get_by_label("本人", exact=True).check()
        await agent.get_by_label("能到场或视频").check()
        await agent.click("#questions-save")
        await expect(agent.locator("#questions-status")).to_have_attribute("data-outcome", "ok")
        await expect(agent.locator("#checklist-summary")).to_contain_text("还缺 2 项")

        # A page of the ID card from the kiosk's document camera ticks it.
        await capture(agent, "居民身份证")
        await expect(id_card).to_have_attribute("data-state", "ok", timeout=10000)
        await expect(id_card).to_contain_text("居民身份证")
        await expect(photo).to_have_attribute("data-state", "missing")

        # Completing is refused while the photo is missing; the override appears.
        await agent.click('#case-transitions button[data-to="completed"]')
        await expect(agent.locator("#case-reason")).to_be_focused()
        await agent.click("#case-transition-submit")
        error = agent.locator("#case-flow-error")
        await expect(error).to_be_visible()
        await expect(error).to_contain_text("本人近期免冠照片")
        await expect(agent.locator("#case-override-row")).to_be_visible()
        await expect(status).to_have_attribute("data-status", "in_progress")
        await agent.click("#case-transition-cancel")
        await expect(agent.locator("#case-transition-confirm")).to_be_hidden()

        # A second capture the agent tags as the photo.
        await capture(agent, "材料2")
        select = photo.locator("select.tag-select")
        await expect(select.locator("option", has_text="材料2")).to_have_count(1,
                                                                               timeout=10000)
        await select.select_option(label="材料2.pdf")
        await photo.locator("button.tag-button").click()
        await expect(photo).to_have_attribute("data-state", "ok")
        await expect(photo).to_contain_text("坐席标记")
        await expect(agent.locator("#checklist-box")).to_have_attribute("data-complete", "true")

        await agent.click('#case-transitions button[data-to="completed"]')
        await agent.fill("#case-reason", "材料齐全，当场办结")
        await agent.click("#case-transition-submit")
        await expect(status).to_have_attribute("data-status", "completed")
        await expect(status).to_have_text("已办结")
        await expect(agent.locator("#case-transitions button")).to_have_count(0)
        await expect(agent.locator("#case-outcome")).to_contain_text("材料齐全，当场办结")

        # English follows the language switch.
        await agent.click("#lang-toggle")
        await expect(status).to_have_text("Completed")
    finally:
        await devices.stop()
        await kiosk_ctx.close()
        await agent_ctx.close()
