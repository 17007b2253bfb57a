"""Remote site inspection in real Chromium: the agent starts it, a phone (mobile viewport,
fake camera, fake GPS) joins by the one-time link, its position and distance show in
the console, an evidence snapshot is stamped and positioned, the checklist is ticked,
and closing produces a parsable PDF report in the case; the link does not work twice."""

from __future__ import annotations

import io
import re

import pikepdf
import pytest
from playwright.async_api import Browser, expect

from tests.conftest import Server
from tests.e2e.pages import answer_on_console, login_kiosk, video_frames

pytestmark = pytest.mark.e2e

SITE = (30.13010, 118.17020)
PHONE = {"latitude": 30.13100, "longitude": 118.17020, "accuracy": 12}  # ~100 m north


async def test_inspection_from_phone_to_report(server: Server, browser: Browser) -> None:
    kiosk_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    agent_ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844},
                                          is_mobile=True, has_touch=True,
                                          geolocation=PHONE, permissions=["geolocation"])
    try:
        kiosk = await kiosk_ctx.new_page()
        agent = await agent_ctx.new_page()
        await login_kiosk(kiosk, server.url)
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await answer_on_console(agent, kiosk, server.url, "agent1")

        await agent.fill("#insp-address", "汤口镇寨西村 12 号")
        await agent.fill("#insp-lat", str(SITE[0]))
        await agent.fill("#insp-lon", str(SITE[1]))
        await agent.click("#insp-create")
        link = agent.locator("a#insp-link")
        await expect(link).to_have_attribute("href", re.compile(r"#code="))
        href = await link.get_attribute("href")
        assert href is not None
        await expect(agent.locator("#insp-qr svg")).to_have_count(1)

        phone = await phone_ctx.new_page()
        await phone.goto(href)
        await expect(phone.locator("body")).to_have_attribute("data-state", "live",
                                                               timeout=20000)
        await expect(phone.locator("#gps-status")).to_contain_text("±12")
        position = agent.locator("#insp-position")
        await expect(position).to_contain_text("30.131000", timeout=15000)
        text = await position.inner_text()
        assert "距登记地址约 10" in text  # 100 m, give or take the rounding

        await video_frames(agent, 'video[data-participant-kind="surveyor"]')
        tile = agent.locator('figure.tile:has(video[data-participant-kind="surveyor"]'
                             '[data-role="camera"])')
        await tile.locator(".snapshot-button").click()
        evidence = agent.locator("#insp-evidence li")
        await expect(evidence).to_have_count(1, timeout=20000)
        await expect(evidence.first).to_contain_text("30.13100")
        await expect(evidence.first.locator("img")).to_be_visible()

        first = agent.locator("#insp-checklist li").first
        await first.locator("select").select_option("pass")
        await first.locator("input[type=checkbox]").check()
        await expect(agent.locator("#insp-checklist li").first).to_have_attribute(
            "data-state", "pass")

        await agent.click("#insp-close")
        await expect(agent.locator("#insp-error")).to_contain_text("结论")
        await agent.fill("#insp-conclusion", "现场与申请一致。")
        await agent.click("#insp-close")
        await expect(agent.locator("#insp-report")).to_contain_text("踏勘报告-", timeout=20000)
        await expect(agent.locator("#insp-status")).to_have_text("已结束")
        report = agent.locator('#materials li.material-document:has-text("踏勘报告")')
        await expect(report).to_have_count(1)

        material_id = await report.get_attribute("data-material-id")
        token = await agent.evaluate("JSON.parse(sessionStorage.getItem('vw.agent.session')).token")
        async with server.http.get(f"{server.url}/api/v1/materials/{material_id}/content",
                                   headers={"Authorization": f"Bearer {token}"}) as r:
            pdf = await r.read()
        with pikepdf.open(io.BytesIO(pdf)) as doc:
            assert len(doc.pages) >= 2
            assert sum(len(list(p.get_images())) for p in doc.pages) == 1

        # The link was used once: a second phone is refused with a reason.
        other = await phone_ctx.new_page()
        await other.goto(href)
        await expect(other.locator("body")).to_have_attribute("data-state", "error")
        await expect(other.locator("#status")).to_contain_text("失效")
    finally:
        for ctx in (kiosk_ctx, agent_ctx, phone_ctx):
            await ctx.close()
