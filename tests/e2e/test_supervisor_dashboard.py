"""The supervisor's "今日数据" panel in real Chromium: today's figures and charts follow a
call as it is answered, ended and rated, and a date-range export downloads as CSV."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import Server
from tests.e2e.pages import login_kiosk, login_staff, set_ready

pytestmark = pytest.mark.e2e

# A push arrives at once; the panel refreshes at most every 3 s after one.
FIGURE_WAIT_MS = 15000


async def test_todays_figures_follow_a_call(server: Server, browser: Browser,
                                            tmp_path: Path) -> None:
    base = server.url
    errors: list[str] = []
    contexts = []
    pages: dict[str, Page] = {}
    try:
        for name in ("supervisor", "agent", "kiosk"):
            ctx = await browser.new_context(viewport={"width": 1280, "height": 900},
                                            accept_downloads=True)
            contexts.append(ctx)
            page = await ctx.new_page()
            page.on("pageerror", lambda err, n=name: errors.append(f"{n}: {err}"))
            pages[name] = page
        board, agent, kiosk = pages["supervisor"], pages["agent"], pages["kiosk"]

        await login_staff(board, base, "/supervisor/", "super1")
        offered = board.locator('#today-figures [data-figure="offered"]')
        await expect(offered).to_have_attribute("data-value", "0")
        await expect(offered.locator("dt")).to_have_text("呼入")
        await expect(board.locator('#today-figures [data-figure="service-level"] dt')
                     ).to_have_text("服务水平（20 秒内接听）")
        queue_chart = board.locator('#queue-chart svg[role="img"]')
        await expect(queue_chart).to_have_attribute("data-answered", "0")
        await expect(queue_chart).to_have_attribute("aria-label", re.compile("已接听 0 通"))
        await expect(board.locator('#csat-chart svg[role="img"] rect.bar')).to_have_count(0)

        # A citizen calls and an agent answers: the push brings the figures along.
        await login_staff(agent, base, "/agent/", "agent1")
        await set_ready(agent)
        await login_kiosk(kiosk, base)
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await agent.locator("#ringing li[data-call-id] .accept-call").click()
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")
        answered = board.locator('#today-figures [data-figure="answered"]')
        await expect(answered).to_have_attribute("data-value", "1", timeout=FIGURE_WAIT_MS)
        await expect(offered).to_have_attribute("data-value", "1")
        level = board.locator('#today-figures [data-figure="service-level"]')
        await expect(level).to_have_attribute("data-value", "100")
        await expect(board.locator('#today-figures [data-figure="travel-km"] dd')).to_have_text(
            "124 公里")  # 汤口镇 is 62 km from the county seat, both ways
        await expect(queue_chart).to_have_attribute("data-answered", "1")
        await expect(board.locator("#waits-chart svg circle.dot.median")).to_have_count(1)
        await expect(board.locator("#queue-table tbody tr")).to_have_count(1)

        # The agent ends the call; the kiosk rates it 5 stars.
        await agent.click("#end-call")
        await expect(answered.locator("dd small")).to_have_text("已办结 1 通",
                                                                timeout=FIGURE_WAIT_MS)
        await expect(board.locator('#today-figures [data-figure="aht"]')).not_to_have_attribute(
            "data-value", "")
        await kiosk.click('#rating button[data-stars="5"]')
        await kiosk.click("#rating-submit")
        await expect(kiosk.locator("#rating-thanks")).to_be_visible()
        csat = board.locator('#today-figures [data-figure="csat"]')
        await expect(csat).to_have_attribute("data-value", "5", timeout=FIGURE_WAIT_MS)
        await expect(csat.locator("dd")).to_contain_text("5 星")
        await expect(board.locator('#csat-chart svg[role="img"] rect.bar')).to_have_count(1)
        await expect(board.locator('#csat-chart svg[role="img"]')).to_have_attribute(
            "aria-label", re.compile(r"5 星（1 条）"))

        # Today's calls as a CSV file (fetched with the token, saved from a blob).
        async with board.expect_download() as info:
            await board.click('#reports button[data-report="calls"][data-format="csv"]')
        download = await info.value
        assert re.fullmatch(r"calls_\d{4}-\d\d-\d\d_\d{4}-\d\d-\d\d\.csv",
                            download.suggested_filename)
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        data = saved.read_bytes()
        assert data.startswith(b"\xef\xbb\xbf")
        lines = data.decode("utf-8-sig").strip().splitlines()
        assert len(lines) == 2 and "已结束" in lines[1] and "王芳" in lines[1]
        await expect(board.locator("#report-status")).to_contain_text("通话明细已下载")

        # The township summary as a table; then the whole panel in English.
        await board.click('#reports button[data-report="townships"][data-format="table"]')
        row = board.locator('#report-table tr[data-name="汤口镇"]')
        await expect(row).to_contain_text("124 公里")
        await board.click("#lang-toggle")
        await expect(answered.locator("dt")).to_have_text("Answered")
        await expect(row).to_contain_text("124 km")
        await expect(queue_chart).to_have_attribute("aria-label",
                                                    re.compile("1 answered"))
        assert not errors, errors
    finally:
        for ctx in contexts:
            await ctx.close()
