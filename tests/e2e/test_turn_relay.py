"""Relay-only browsers: kiosk and agent reach the hub only through a real coturn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import Server
from tests.e2e.pages import RECORD_PCS, answer_on_console, login_kiosk, video_frames
from tests.turnserver import TurnServer

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# The live connection's policy, local candidates, selected pair and RTP bytes.
ICE_STATS_JS = """
async () => {
  const pc = window.__pcs.filter(p => p.connectionState === 'connected').pop();
  if (!pc) return null;
  const stats = new Map();
  (await pc.getStats()).forEach(s => stats.set(s.id, s));
  const all = [...stats.values()];
  const transport = all.find(s => s.type === 'transport');
  const pair = transport && stats.get(transport.selectedCandidatePairId);
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  const config = pc.getConfiguration();
  const sum = (type, key) => all.filter(s => s.type === type)
    .reduce((n, s) => n + (s[key] || 0), 0);
  return {policy: config.iceTransportPolicy, username: config.iceServers[0].username,
          localTypes: [...new Set(all.filter(s => s.type === 'local-candidate')
                                     .map(s => s.candidateType))],
          localType: local.candidateType, relayProtocol: local.relayProtocol || null,
          localUrl: local.url || null, localPort: local.port,
          remoteType: remote.candidateType, remoteAddress: remote.address,
          rtpReceived: sum('inbound-rtp', 'bytesReceived'),
          rtpSent: sum('outbound-rtp', 'bytesSent')};
}
"""


async def ice_stats(page: Page) -> dict[str, Any]:
    found: dict[str, Any] | None = await page.evaluate(ICE_STATS_JS)
    assert found is not None, "no connected RTCPeerConnection with a selected pair"
    return found


async def test_relay_only_call(relay_server: Server, turn_server: TurnServer,
                               browser: Browser) -> None:
    base = relay_server.url
    kiosk_ctx = await browser.new_context()
    agent_ctx = await browser.new_context()
    try:
        for ctx in (kiosk_ctx, agent_ctx):
            await ctx.add_init_script(RECORD_PCS)
        kiosk = await kiosk_ctx.new_page()
        agent = await agent_ctx.new_page()
        await login_kiosk(kiosk, base)
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "queued")
        await answer_on_console(agent, kiosk, base, "agent1")

        await video_frames(agent, 'video[data-role="camera"][data-participant-kind="kiosk"]')
        await video_frames(kiosk, "video#remote-agent-camera")

        for page in (kiosk, agent):
            ice = await ice_stats(page)
            # The page had nothing but TURN relay candidates, so every media byte it sent
            # or received went through coturn ...
            assert ice["policy"] == "relay" and ice["localTypes"] == ["relay"], ice
            assert ice["rtpReceived"] > 1000 and ice["rtpSent"] > 1000, ice
            assert ice["localType"] == "relay" and ice["relayProtocol"] == "udp", ice
            assert ice["localUrl"] == turn_server.url, ice
            assert turn_server.min_port <= ice["localPort"] <= turn_server.max_port, ice
            # ... to the hub's host candidate: the hub is the public side, it relays nothing.
            assert (ice["remoteType"], ice["remoteAddress"]) == ("host", "127.0.0.1"), ice
            # coturn saw that page's credentials: an allocation, a permission for the
            # hub's address and a channel to it.
            log = turn_server.log_text()
            for step in ("ALLOCATE", "CREATE_PERMISSION", "CHANNEL_BIND"):
                assert f"user <{ice['username']}>: incoming packet {step} processed, " \
                    "success" in log, (step, ice["username"])
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "e2e-turn.log").write_text(turn_server.log_text())
        for ctx in (kiosk_ctx, agent_ctx):
            await ctx.close()
