"""Mid-call hub features in real Chromium: the agent shares the screen, invites an
expert, and a supervisor listens, then whispers — each seen on the pages themselves."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.conftest import Server
from tests.e2e.pages import login_kiosk, login_staff, video_frames
from vwindow.models import Role

pytestmark = pytest.mark.e2e

# What would give a monitoring supervisor away on the citizen's screen.
SUPERVISOR_WORDS = ("值班长", "张主任", "监督", "监听", "耳语", "强插", "supervisor", "Supervisor")
HAS_SCREEN = re.compile(r"\bhas-screen\b")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(ARTIFACTS / name))


async def _drop_sockets(server: Server, name: str) -> None:
    """Close every WebSocket of the staff member ``name`` from the server side."""
    for conn in server.services.presence.by_role(Role.AGENT):
        if conn.principal.name == name:
            await conn.ws.close()


def _watch_errors(page: Page, errors: list[str], name: str) -> None:
    page.on("pageerror", lambda err: errors.append(f"{name}: {err}"))


async def test_screen_share_expert_and_monitor(server: Server, browser: Browser) -> None:
    base = server.url
    started = time.monotonic()
    errors: list[str] = []
    contexts: list[BrowserContext] = []

    async def open_page(name: str, **kw: object) -> Page:
        ctx = await browser.new_context(**kw)  # type: ignore[arg-type]
        contexts.append(ctx)
        page = await ctx.new_page()
        _watch_errors(page, errors, name)
        return page

    try:
        kiosk = await open_page("kiosk", viewport={"width": 1280, "height": 800})
        agent = await open_page("agent1", viewport={"width": 1440, "height": 900})
        expert = await open_page("agent2", viewport={"width": 1280, "height": 800})
        supervisor = await open_page("supervisor", viewport={"width": 1280, "height": 900})

        # A call, answered by agent1.
        await login_kiosk(kiosk, base)
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "queued")
        await login_staff(agent, base, "/agent/", "agent1")
        await agent.click("#state-ready")
        ringing = agent.locator("#ringing li[data-call-id]")
        await expect(ringing).to_have_count(1)
        call_id = await ringing.first.get_attribute("data-call-id")
        await ringing.first.locator(".accept-call").click()
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")
        await video_frames(agent, 'video[data-role="camera"][data-participant-kind="kiosk"]')
        await video_frames(kiosk, "video#remote-agent-camera")

        # Screen share: headless Chromium's fake capture picks a 1280x720 "screen".
        share = agent.locator("#screen-share")
        await expect(share).to_have_attribute("aria-pressed", "false")
        await share.click()
        await expect(share).to_have_attribute("aria-pressed", "true")
        await expect(share).to_have_text("停止共享")
        screen = await video_frames(kiosk, "video#remote-agent-screen")
        assert screen["width"] > 0 and abs(screen["width"] / screen["height"] - 16 / 9) < 0.02
        await expect(kiosk.locator("#remote-box")).to_have_class(HAS_SCREEN)
        # The officer's camera is still there, in the corner.
        await video_frames(kiosk, "video#remote-agent-camera")
        # The agent's socket drops: the page rejoins the media, still sharing its screen.
        first_track = await kiosk.locator("#remote-agent-screen").get_attribute("data-track-id")
        await _drop_sockets(server, "王芳（县政务中心）")
        await expect(kiosk.locator("#remote-agent-screen")).not_to_have_attribute(
            "data-track-id", first_track or "", timeout=20000
        )
        await video_frames(kiosk, "video#remote-agent-screen")
        await expect(share).to_have_attribute("aria-pressed", "true")
        await _shot(kiosk, "kiosk-screen-share.png")
        await share.click()
        await expect(share).to_have_attribute("aria-pressed", "false")
        await expect(kiosk.locator("#remote-agent-screen")).to_be_hidden()
        await expect(kiosk.locator("#remote-box")).not_to_have_class(HAS_SCREEN)

        # Expert conference: agent1 invites agent2, who joins from the invitation card.
        await login_staff(expert, base, "/agent/", "agent2")
        await expert.click("#state-ready")
        await expect(expert.locator("#agent-state")).to_have_attribute("data-state", "ready")
        await agent.fill("#invite-username", "nobody")
        await agent.click("#invite-button")
        await expect(agent.locator("#invite-status")).to_contain_text("nobody")
        await expect(agent.locator("#invite-status")).to_have_attribute("data-outcome", "error")
        await agent.fill("#invite-username", "agent2")
        await agent.click("#invite-button")
        await expect(agent.locator("#invite-status")).to_have_text("已邀请 李强（县政务中心）")
        card = expert.locator("#invitation")
        await expect(card).to_be_visible()
        await expect(card).to_contain_text("王芳（县政务中心）")
        await expect(expert.locator("#invitation-accept")).to_be_focused()
        await _shot(expert, "agent-invitation.png")
        await expert.click("#invitation-accept")
        await expect(expert.locator("body")).to_have_attribute("data-state", "live")
        await expect(card).to_be_hidden()
        await expect(expert.locator("body")).to_have_attribute("data-call-role", "expert")
        await expect(expert.locator("#end-call")).to_be_hidden()
        await expect(expert.locator("#leave-call")).to_be_visible()
        await expect(expert.locator("#invite-box")).to_be_hidden()
        await video_frames(expert, 'video[data-role="camera"][data-participant-kind="kiosk"]')
        # welcome.active_call names only the call an agent took: after a reload the
        # expert's page joins again by itself.
        await expert.reload()
        await expect(expert.locator("body")).to_have_attribute("data-call-role", "expert")
        await video_frames(expert, 'video[data-role="camera"][data-participant-kind="kiosk"]')
        await video_frames(kiosk, 'video[data-role="camera"][data-participant-kind="expert"]')
        await expect(kiosk.locator("#remote-experts figcaption")).to_contain_text("专家")
        expert_tile = agent.locator('figure:has(video[data-participant-kind="expert"])')
        await expect(expert_tile).to_contain_text("专家 · 李强（县政务中心）")

        # The supervisor listens: every camera of the call, and the agents are told.
        await login_staff(supervisor, base, "/supervisor/", "super1")
        row = supervisor.locator(f'#sessions tr[data-call-id="{call_id}"]')
        await expect(row).to_have_count(1)
        await row.locator(".monitor-listen").click()
        panel = supervisor.locator("#monitor")
        await expect(panel).to_be_visible()
        await expect(supervisor.locator("#monitor-mode")).to_have_attribute("data-mode", "listen")
        await video_frames(
            supervisor, '#monitor video[data-role="camera"][data-participant-kind="kiosk"]'
        )
        await video_frames(
            supervisor, '#monitor video[data-role="camera"][data-participant-kind="agent"]'
        )
        banner = agent.locator("#monitor-banner")
        await expect(banner).to_contain_text("值班长正在监听 — 张主任（值班长）")
        await expect(row.locator(".monitor-listen")).to_have_attribute("aria-pressed", "true")

        # Whisper: the same media session, only the mode changes; the agent hears it.
        await row.locator(".monitor-whisper").click()
        await expect(supervisor.locator("#monitor-mode")).to_have_attribute("data-mode", "whisper")
        # Rows are rebuilt on every dashboard push; keyboard focus stays on the button.
        await expect(row.locator(".monitor-whisper")).to_be_focused()
        await expect(banner).to_contain_text("值班长正在耳语")
        await expect(banner).to_have_attribute("data-mode", "whisper")
        await expect(
            agent.locator('#tiles audio[data-participant-kind="supervisor"]')
        ).to_have_count(1)
        await expect(expert.locator("#monitor-banner")).to_contain_text("耳语")
        await _shot(agent, "agent-monitored.png")
        await _shot(supervisor, "supervisor-monitor.png")

        # Nothing on the citizen's page gives the supervisor away.
        kiosk_text = await kiosk.locator("body").inner_text()
        for word in SUPERVISOR_WORDS:
            assert word not in kiosk_text, word
        assert await kiosk.locator('[data-participant-kind="supervisor"]').count() == 0

        # Stop monitoring: the banner goes. Listening again, then the call ends under it.
        await supervisor.click("#monitor-stop")
        await expect(panel).to_be_hidden()
        await expect(banner).to_be_hidden()
        await row.locator(".monitor-listen").click()
        await expect(supervisor.locator("#monitor-mode")).to_have_attribute("data-mode", "listen")
        await expect(banner).to_contain_text("值班长正在监听")
        await expert.click("#leave-call")
        await expect(expert.locator("body")).not_to_have_attribute("data-state", "live")
        await expect(kiosk.locator("#remote-experts video")).to_have_count(0)
        await agent.click("#end-call")
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "ended")
        await expect(panel).to_be_hidden()
        await expect(supervisor.locator("#monitor-note")).to_have_text("通话已结束，监听已关闭。")
        await expect(row).to_have_count(0)
        await expect(banner).to_be_hidden()
        assert not errors, errors
    finally:
        for ctx in contexts:
            await ctx.close()
    print(f"hub features UI test took {time.monotonic() - started:.1f} s")
