"""The queue as people see it, in real Chromium, with the default routing: the kiosk's
position and wait estimate and its callback offer; the agent's offer with a deadline,
the missed offer that moves on and sets the agent away, wrap-up, and the supervisor's
view of agent states."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from signaling.services import SERVICES
from tests.conftest import Server, make_config, start_server, with_routing
from tests.e2e.pages import login_kiosk, login_staff, video_frames
from tests.multinode import declare_dead
from vwindow.db import Database

pytestmark = pytest.mark.e2e


@pytest.fixture
async def routed(db_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    config = with_routing(make_config(db_url, tmp_path), strategy="longest_idle",
                          offer_timeout_s=3.0, wrap_up_s=2.0, callback_after_s=1.5,
                          tick_s=0.2)
    runner, url = await start_server(config)
    async with aiohttp.ClientSession() as http:
        yield Server(url, runner.app[SERVICES], http)
    await runner.cleanup()


async def _press_ready(page: Page) -> None:
    """Press 就绪 until the server answers (ready, or ringing at once if a call waits)."""
    state = page.locator("#agent-state")
    for _ in range(20):
        await page.click("#state-ready")
        try:
            await expect(state).to_have_attribute("data-state", re.compile("^(ready|ringing)$"),
                                                  timeout=1000)
            return
        except AssertionError:
            continue
    raise AssertionError("the agent console never became ready")


@asynccontextmanager
async def _pages(browser: Browser, *names: str, height: int = 900
                 ) -> AsyncIterator[tuple[dict[str, Page], list[str]]]:
    """One browser context per person; script errors on any page are collected."""
    errors: list[str] = []
    contexts: list[BrowserContext] = []
    pages: dict[str, Page] = {}
    try:
        for name in names:
            ctx = await browser.new_context(viewport={"width": 1280, "height": height})
            contexts.append(ctx)
            page = await ctx.new_page()
            page.on("pageerror", lambda err, n=name: errors.append(f"{n}: {err}"))
            pages[name] = page
        yield pages, errors
    finally:
        for ctx in contexts:
            await ctx.close()


async def _call_rings(base: str, kiosk: Page, agent: Page) -> None:
    """agent1 signs in and comes on duty; the kiosk calls for SB-001; agent1's rings."""
    await login_staff(agent, base, "/agent/", "agent1")
    await _press_ready(agent)
    await login_kiosk(kiosk, base)
    await _call_again(kiosk, agent)


async def _call_again(kiosk: Page, agent: Page) -> None:
    await kiosk.click('[data-service-code="SB-001"]')
    await kiosk.click("#call-button")
    await expect(agent.locator("#ringing li[data-call-id]")).to_have_count(1)


async def _call_answered(base: str, kiosk: Page, agent: Page) -> None:
    """The kiosk calls for SB-001 and ``agent`` (logged in as agent1) answers."""
    await _call_rings(base, kiosk, agent)
    await agent.locator("#ringing li[data-call-id] .accept-call").click()
    await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")


async def test_queue_offer_missed_wrap_up(routed: Server, browser: Browser) -> None:
    base = routed.url
    async with _pages(browser, "kiosk", "agent1", "agent2", "supervisor",
                      height=860) as (pages, errors):
        kiosk, agent1, agent2, board = (pages[n] for n in ("kiosk", "agent1", "agent2",
                                                            "supervisor"))
        await login_staff(agent1, base, "/agent/", "agent1")
        await login_staff(agent2, base, "/agent/", "agent2")
        await login_staff(board, base, "/supervisor/", "super1")

        # Nobody on duty: the kiosk says so instead of inventing a wait.
        await login_kiosk(kiosk, base)
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await expect(kiosk.locator("#queue-status")).to_have_attribute("data-position", "1")
        await expect(kiosk.locator("#queue-status")).to_contain_text("第 1 位")
        await expect(kiosk.locator("#queue-eta")).to_have_attribute("data-eta", "none")
        await expect(kiosk.locator("#queue-eta")).to_contain_text("暂无坐席在线")

        # A long wait is offered a callback; the kiosk books it.
        await expect(kiosk.locator("#callback-offer")).to_be_visible(timeout=5000)
        await kiosk.click("#callback-accept")
        await expect(kiosk.locator("#callback-registered")).to_be_visible()
        await expect(kiosk.locator("#callback-offer")).to_be_hidden()

        # agent1 comes on duty and is offered the call alone, with a deadline.
        await _press_ready(agent1)
        offer = agent1.locator("#ringing li[data-call-id]")
        await expect(offer).to_have_count(1)
        await expect(offer.locator(".ring-deadline")).to_contain_text("秒内接听")
        await expect(offer.locator(".callback-badge")).to_be_visible()
        await expect(agent1.locator("#agent-state")).to_have_attribute("data-state", "ringing")
        await expect(kiosk.locator("#queue-eta")).to_contain_text("即将为您接通")
        await _press_ready(agent2)
        await expect(agent2.locator("#ringing li[data-call-id]")).to_have_count(0)
        await expect(board.locator('#agents li[data-state="ringing"]')).to_have_count(1)

        # agent1 lets it ring out: the call moves to agent2, agent1 is set away (missed).
        await expect(offer).to_have_count(0, timeout=6000)
        await expect(agent1.locator("#ringing-note")).to_contain_text("未及时接听")
        state1 = agent1.locator("#agent-state")
        await expect(state1).to_have_attribute("data-state", "away")
        await expect(state1).to_have_attribute("data-reason", "missed")
        await expect(board.locator('#agents li[data-state="away"] .badge')).to_contain_text(
            "未接来电")
        offer2 = agent2.locator("#ringing li[data-call-id]")
        await expect(offer2).to_have_count(1)
        await offer2.locator(".accept-call").click()
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")

        # After the call: wrap-up with a countdown, then ready by itself.
        await agent2.click("#end-call")
        state2 = agent2.locator("#agent-state")
        await expect(state2).to_have_attribute("data-state", "wrap_up")
        await expect(agent2.locator("#wrap-note")).to_contain_text("秒后自动就绪")
        await expect(state2).to_have_attribute("data-state", "ready", timeout=6000)
        await expect(agent2.locator("#wrap-note")).to_be_hidden()

        # An away reason is shown as chosen, to the agent and the supervisor.
        await agent2.select_option("#away-reason", "lunch")
        await agent2.click("#state-away")
        await expect(state2).to_have_attribute("data-reason", "lunch")
        await expect(state2).to_contain_text("午餐")
        await expect(board.locator('#agents li[data-state="away"]')).to_have_count(2)
        assert not errors, errors


async def test_a_call_whose_media_node_was_lost_waits_again(
        db_url: str, tmp_path: Path, browser: Browser) -> None:
    """The node carrying a live call is declared dead by another (it stalled): the
    kiosk goes back to waiting, saying why, the agent's console says the call went back
    to the queue, and the call is answered again with video."""
    config = with_routing(make_config(db_url, tmp_path), strategy="longest_idle",
                          wrap_up_s=0, node_timeout_s=600, tick_s=0.2)
    runner, base = await start_server(config)
    services = runner.app[SERVICES]
    other_db = Database(db_url)
    try:
        async with _pages(browser, "kiosk", "agent1") as (pages, errors):
            kiosk, agent = pages["kiosk"], pages["agent1"]
            await _call_answered(base, kiosk, agent)
            await video_frames(kiosk, "video#remote-agent-camera")

            await declare_dead(other_db, config, config.server.node_id)
            assert (await services.switchboard.router.beat()).revived
            await expect(kiosk.locator("body")).to_have_attribute("data-state", "queued")
            notice = kiosk.locator("#requeue-notice")
            await expect(notice).to_be_visible()
            await expect(notice).to_contain_text("重新排队")
            await expect(agent.locator("#ringing-note")).to_contain_text("转回排队")

            # The agent is free again and rung with the same call; answered, the video
            # comes back over a new session.
            offer = agent.locator("#ringing li[data-call-id]")
            await expect(offer).to_have_count(1, timeout=10000)
            await offer.locator(".accept-call").click()
            await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")
            await expect(notice).to_be_hidden()
            await video_frames(kiosk, "video#remote-agent-camera")
            assert not errors, errors
    finally:
        await other_db.stop()
        await runner.cleanup()


COUNT_CAMERA_OPENS = """
window.__gum = {calls: 0, tracks: []};
const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  window.__gum.calls += 1;
  const stream = await open(constraints);
  window.__gum.tracks.push(...stream.getTracks());
  return stream;
};
"""


async def test_the_agents_camera_opens_while_a_call_rings(routed: Server,
                                                           browser: Browser) -> None:
    """Answering does not wait for the camera: it opens while the call rings, closes
    again if the ringing stops unanswered, and the opened one is what the call uses."""
    base = routed.url
    async with _pages(browser, "kiosk", "agent1") as (pages, errors):
        kiosk, agent = pages["kiosk"], pages["agent1"]
        await agent.add_init_script(COUNT_CAMERA_OPENS)
        await _call_rings(base, kiosk, agent)
        await agent.wait_for_function(
            "window.__gum.calls === 1 && window.__gum.tracks.length === 2"
            " && window.__gum.tracks.every((t) => t.readyState === 'live')")

        # The kiosk gives up: the ringing stops and the camera is closed again.
        await kiosk.click("#cancel-call")
        await expect(agent.locator("#ringing li[data-call-id]")).to_have_count(0)
        await agent.wait_for_function(
            "window.__gum.tracks.every((t) => t.readyState === 'ended')")

        # Rung again and answered: the call uses the camera opened while it rang.
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await agent.locator("#ringing li[data-call-id] .accept-call").click()
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")
        await video_frames(kiosk, "video#remote-agent-camera")
        same = await agent.evaluate(
            "() => window.__gum.calls === 2 && document.querySelector('#local-camera')"
            ".srcObject.getTracks().every((t) => window.__gum.tracks.slice(2).includes(t))")
        assert same
        assert errors == []


COUNT_PEER_CONNECTIONS = """
window.__pcs = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) { super(...args); window.__pcs.push(this); }
};
"""

CONNECTED = ("window.__pcs.length === 1"
             " && window.__pcs[0].connectionState === 'connected'")


async def test_media_connects_while_a_call_rings(routed: Server, browser: Browser) -> None:
    """Both pages connect their media while the agent's console rings; nothing of the
    other side shows until the answer, which then needs no new connection. A ring that
    ends unanswered closes the agent's connection and the server's hub."""
    base = routed.url
    remote_kiosk = 'video[data-role="camera"][data-participant-kind="kiosk"]'
    async with _pages(browser, "kiosk", "agent1") as (pages, errors):
        kiosk, agent = pages["kiosk"], pages["agent1"]
        for page in (kiosk, agent):
            await page.add_init_script(COUNT_PEER_CONNECTIONS)
        # Rung, then given up by the kiosk: both connections close, and the hub.
        await _call_rings(base, kiosk, agent)
        await agent.wait_for_function(CONNECTED, timeout=10000)
        await kiosk.wait_for_function(CONNECTED, timeout=10000)
        first_call = routed.services.media.live_sessions
        assert len(first_call) == 1
        await kiosk.click("#cancel-call")
        await agent.wait_for_function("window.__pcs[0].connectionState === 'closed'")
        assert routed.services.media.live_sessions == []

        # Rung again: connected while it rings, and nothing shown before the answer.
        await agent.evaluate("window.__pcs = []")
        await kiosk.evaluate("window.__pcs = []")
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await _call_again(kiosk, agent)
        await agent.wait_for_function(CONNECTED, timeout=10000)
        await kiosk.wait_for_function(CONNECTED, timeout=10000)
        await asyncio.sleep(1.0)
        received = await agent.evaluate("""async () => {
            let frames = 0;
            (await window.__pcs[0].getStats()).forEach((s) => {
              if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
            });
            return frames; }""")
        assert received == 0

        await agent.locator("#ringing li[data-call-id] .accept-call").click()
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")
        await video_frames(agent, remote_kiosk)
        await video_frames(kiosk, "video#remote-agent-camera")
        # The connections made while it rang carry the call: none was made after.
        assert await agent.evaluate("window.__pcs.length") == 1
        assert await kiosk.evaluate("window.__pcs.length") == 1
        assert errors == []


async def test_transfer_with_a_note(routed: Server, browser: Browser) -> None:
    base = routed.url
    async with _pages(browser, "kiosk", "agent1", "agent2") as (pages, errors):
        kiosk, agent1, agent2 = pages["kiosk"], pages["agent1"], pages["agent2"]
        await _call_answered(base, kiosk, agent1)
        await expect(kiosk.locator("#agent-name")).to_contain_text("王芳")
        await video_frames(agent1, 'video[data-role="camera"][data-participant-kind="kiosk"]')

        await login_staff(agent2, base, "/agent/", "agent2")
        await _press_ready(agent2)
        # A transfer needs a note: the form says so and stays.
        await agent1.fill("#transfer-agent", "agent2")
        await agent1.click("#transfer-button")
        await expect(agent1.locator("#transfer-status")).to_have_attribute("data-outcome",
                                                                          "error")
        note = "群众还需办理医保参保，请接续"
        await agent1.fill("#transfer-note", note)
        await agent1.click("#transfer-button")
        await expect(agent1.locator("#ringing-note")).to_contain_text("已转接给 李强")
        await expect(kiosk.locator("#transfer-notice")).to_contain_text("正在为您转接到 李强")
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")

        offer2 = agent2.locator("#ringing li[data-call-id]")
        await expect(offer2.locator(".transfer-note-text")).to_have_text(note)
        await offer2.locator(".accept-call").click()
        await expect(kiosk.locator("#transfer-notice")).to_be_hidden()
        await expect(kiosk.locator("#agent-name")).to_contain_text("李强")
        # The kiosk never left the session: the new agent sees it, and it sees them.
        await video_frames(agent2, 'video[data-role="camera"][data-participant-kind="kiosk"]')
        await video_frames(kiosk, "#remote-agent-camera")
        assert not errors, errors


async def test_booking_a_window_visit(routed: Server, browser: Browser) -> None:
    base = routed.url
    async with _pages(browser, "kiosk", "agent1", "hall", height=1000) as (pages, errors):
        kiosk, agent, hall = pages["kiosk"], pages["agent1"], pages["hall"]
        await _call_answered(base, kiosk, agent)

        await agent.click("#booking-load")
        await expect(agent.locator("#booking-slot option").first).to_contain_text("综合窗口")
        await agent.click("#booking-button")
        await expect(agent.locator("#booking-code")).to_have_text(re.compile(r"^[A-Z2-9]{8}$"))
        code = (await agent.locator("#booking-code").text_content() or "").strip()
        await expect(agent.locator("#booking-qr svg")).to_be_visible()
        # The citizen sees the same code and its QR at the kiosk.
        await expect(kiosk.locator("#booking-notice-code")).to_have_text(code)
        await expect(kiosk.locator("#booking-notice-qr svg")).to_be_visible()

        # At the hall, a colleague types the code as read out and finds the case.
        await login_staff(hall, base, "/agent/", "agent2")
        await hall.fill("#lookup-code", code.lower())
        await hall.click("#lookup-button")
        case_number = await agent.locator("#case-number").text_content()
        await expect(hall.locator("#lookup-case")).to_have_text(case_number or "")
        await expect(hall.locator("#lookup-status")).to_have_text("已预约")
        await hall.fill("#lookup-code", "ZZZZZZZZ")
        await hall.click("#lookup-button")
        await expect(hall.locator("#lookup-error")).to_be_visible()
        assert not errors, errors


async def test_long_wait_books_a_window_visit_instead(routed: Server, browser: Browser) -> None:
    async with _pages(browser, "kiosk", height=1000) as (pages, errors):
        kiosk = pages["kiosk"]
        await login_kiosk(kiosk, routed.url)
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await expect(kiosk.locator("#callback-offer")).to_be_visible(timeout=5000)
        await kiosk.click("#self-book")
        await expect(kiosk.locator("#self-booking-slot option").first).to_contain_text("综合窗口")
        await kiosk.click("#self-booking-confirm")
        # Booked: the code stays on screen, the call is withdrawn and the kiosk is free.
        await expect(kiosk.locator("#booking-notice-code")).to_have_text(
            re.compile(r"^[A-Z2-9]{8}$"))
        await expect(kiosk.locator("#booking-notice-qr svg")).to_be_visible()
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await expect(kiosk.locator("#booking-notice")).to_be_visible()
        code = await kiosk.locator("#booking-notice-code").text_content()
        status, booking = await _staff_get(routed, f"/appointments/{code}")
        assert status == 200 and booking["status"] == "booked"
        # 我已记下: nothing left on screen for the next citizen.
        await kiosk.click("#booking-done")
        await expect(kiosk.locator("#booking-notice")).to_be_hidden()
        assert not errors, errors


async def _staff_get(server: Server, path: str) -> tuple[int, Any]:
    token = await server.login("agent2")
    async with server.http.get(f"{server.url}/api/v1{path}",
                               headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()
