"""Benchmark: accept → first decoded remote frame, Chromium kiosk ↔ Chromium agent.

    python -m tests.bench.setup --calls 10 [--ring-s 1.0]

Runs a real server (SQLite, in a temp dir, the default longest-idle routing) and two
headless Chromium contexts with fake camera and microphone; for each call, the agent's
console rings for ``--ring-s`` seconds (a person's reaction: the kiosk and the console
connect their media meanwhile, held apart by the hub), the agent clicks accept, and both
pages time their first decoded frame of the other side (requestVideoFrameCallback) from
the click event on the accept button. Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright, expect

from tests.conftest import make_config, start_server, with_routing
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.pages import login_kiosk, login_staff, set_ready, video_frames

# The moment the accept button is clicked, as the page sees it (Playwright's click itself
# takes tens of milliseconds of scrolling and actionability checks before it).
CLICK_JS = """() => { window.__acceptAt = null; document.addEventListener('click', (e) => {
  if (e.target.closest('.accept-call')) window.__acceptAt = Date.now(); },
  { capture: true, once: true }); }"""


async def run(calls: int, ring_s: float = 1.0) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="vw-bench-"))
    config = make_config(f"sqlite+aiosqlite:///{tmp / 'vw.db'}", tmp)
    # The product's default routing (the test config rings every agent at once).
    runner, base = await start_server(with_routing(config, strategy="longest_idle"))
    kiosk_ms: list[int] = []
    agent_ms: list[int] = []
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            kiosk = await (await browser.new_context()).new_page()
            agent = await (await browser.new_context()).new_page()
            await login_kiosk(kiosk, base)
            await login_staff(agent, base, "/agent/", "agent1")
            await set_ready(agent)
            for _ in range(calls):
                await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
                await kiosk.click('[data-service-code="SB-001"]')
                await kiosk.click("#call-button")
                ring = agent.locator("#ringing li[data-call-id] .accept-call")
                await expect(ring).to_have_count(1)
                await asyncio.sleep(ring_s)
                await kiosk.evaluate("window.__firstFrameAt = {}")
                await agent.evaluate("window.__firstFrameAt = {}")
                await agent.evaluate(CLICK_JS)
                await ring.first.click()
                # Both pages watched at once: a page's first frame is only seen if its
                # frame callback is in place before that frame is shown.
                a, k = await asyncio.gather(
                    video_frames(agent,
                                 'video[data-role="camera"][data-participant-kind="kiosk"]'),
                    video_frames(kiosk, "video#remote-agent-camera"))
                accept_at = await agent.evaluate("window.__acceptAt")
                agent_ms.append(a["firstAt"] - accept_at)
                kiosk_ms.append(k["firstAt"] - accept_at)
                await agent.click("#end-call")
                await expect(kiosk.locator("body")).to_have_attribute("data-state", "ended")
                await kiosk.click("#new-call")
                await expect(agent.locator("#agent-state")).to_have_attribute("data-state",
                                                                              "ready")
            await browser.close()
    finally:
        await runner.cleanup()
    return {"calls": calls, "ring_s": ring_s, "kiosk_ms_median": statistics.median(kiosk_ms),
            "agent_ms_median": statistics.median(agent_ms), "kiosk_ms": kiosk_ms,
            "agent_ms": agent_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--ring-s", type=float, default=1.0,
                        help="how long the console rings before the agent accepts")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.calls, args.ring_s))))


if __name__ == "__main__":
    main()
