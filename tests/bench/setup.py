"""Benchmark: accept → first decoded remote frame, Chromium kiosk ↔ Chromium agent.

    python -m tests.bench.setup --calls 10

Runs a real server (SQLite, in a temp dir) and two headless Chromium contexts with fake
camera and microphone; for each call, the agent accepts and both pages time their first
decoded frame of the other side (requestVideoFrameCallback). Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright, expect

from tests.conftest import make_config, start_server
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.pages import login_kiosk, login_staff, set_ready, video_frames


async def run(calls: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="vw-bench-"))
    runner, base = await start_server(make_config(f"sqlite+aiosqlite:///{tmp / 'vw.db'}", tmp))
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
                await kiosk.evaluate("window.__firstFrameAt = {}")
                await agent.evaluate("window.__firstFrameAt = {}")
                accept_at = await agent.evaluate("Date.now()")
                await ring.first.click()
                # Both pages watched at once: a page's first frame is only seen if its
                # frame callback is in place before that frame is shown.
                a, k = await asyncio.gather(
                    video_frames(agent,
                                 'video[data-role="camera"][data-participant-kind="kiosk"]'),
                    video_frames(kiosk, "video#remote-agent-camera"))
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
    return {"calls": calls, "kiosk_ms_median": statistics.median(kiosk_ms),
            "agent_ms_median": statistics.median(agent_ms), "kiosk_ms": kiosk_ms,
            "agent_ms": agent_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.calls))))


if __name__ == "__main__":
    main()
