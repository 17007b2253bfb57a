"""Remote site inspection from a phone on a weak mobile network, in real Chromium.

Every client reaches the hub only through a real coturn (relay-only ICE); the phone
(mobile viewport, fake camera and GPS) reaches coturn only through ``tests.netimpair``:
300 kbit/s up (2 Mbit/s down), 5 % random loss and 150 ms each way (a 300 ms round trip).
``tc netem`` is missing in this kernel, so the impairment is a userspace UDP relay on
127.0.0.1 and covers the phone's media path (everything between its browser and coturn),
not its signalling WebSocket.

On that link the agent must still see the phone's picture (frames decoded keep rising)
and hear it (audio packets and energy arrive), the phone must say its network is weak,
and an evidence snapshot must be saved with its stamp. Then the phone's link drops for
10 s: the phone says "reconnecting", an evidence photo the agent asks for meanwhile is
queued (the console shows it waiting), the phone rejoins by itself within
``RECOVERY_LIMIT_S`` of the link's return, and the queued photo is saved from its first
picture after that. The observed figures are printed (``-s``).

    flock /tmp/vw-chromium.lock python -m pytest -s tests/e2e/test_weak_network.py
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest
from playwright.async_api import Browser, Error, Geolocation, Page, expect

from tests.conftest import Server
from tests.e2e.pages import (
    RECORD_PCS,
    answer_on_console,
    fresh_frames,
    login_kiosk,
    turn_via_impairer,
    video_frames,
)
from tests.netimpair import LinkImpairer, LinkProfile
from tests.turnserver import TurnServer

pytestmark = pytest.mark.e2e

SITE = (30.13010, 118.17020)
PHONE: Geolocation = {"latitude": 30.13100, "longitude": 118.17020, "accuracy": 12}
UP_BPS = 300_000
UPLINK = LinkProfile(rate_bps=UP_BPS, loss=0.05, delay_s=0.15)
DOWNLINK = LinkProfile(rate_bps=2_000_000, loss=0.05, delay_s=0.15, queue_bytes=60_000)
MEASURE_S = 8.0
DROP_S = 10.0
# From the link's return to the phone's picture on the agent's console again. The phone
# notices the drop in ~2.5 s and rejoins with a new peer connection after a 6 s grace
# (web/common/rtc.js), i.e. inside the drop; that join's TURN Allocate is retransmitted
# by Chromium at growing intervals (0.25, 0.5, 1, 2, 4 s ...), so the first one after the
# return goes out within ~4 s; ICE, DTLS and the first keyframe then take ~8 round trips
# of 300 ms with 5 % loss, ~3-4 s. A join that failed in the drop retries after 1-5 s.
RECOVERY_LIMIT_S = 15.0
MIN_SENT_PPS = 20.0  # audio packets/s the phone must send for the figures to mean much
# Audio frames at the hub, and packets at the agent, per packet the phone sent over the
# window: ~0.95 with 5 % loss on the uplink; the three counters are read a few ms apart.
MIN_AUDIO_SHARE = 0.8

SURVEYOR_VIDEO = 'video[data-participant-kind="surveyor"][data-role="camera"]'


# What the agent's console receives from the surveyor: the inbound-rtp of the tracks
# shown in the surveyor's tile and played by its <audio>.
AGENT_INBOUND_JS = """
async () => {
  const pc = window.__pcs.filter(p => p.connectionState === 'connected').pop();
  if (!pc) return null;
  const tile = document.querySelector('figure.tile:has(video[data-participant-kind="surveyor"]'
                                      + '[data-role="camera"])');
  const audio = document.querySelector('audio[data-participant-kind="surveyor"]');
  const ids = {video: tile && tile.dataset.trackId, audio: audio && audio.dataset.trackId};
  const out = {at: performance.now()};
  (await pc.getStats()).forEach(s => {
    if (s.type !== 'inbound-rtp') return;
    if (s.trackIdentifier === ids.video) {
      out.video = {framesDecoded: s.framesDecoded || 0, width: s.frameWidth || 0,
                   height: s.frameHeight || 0, fps: s.framesPerSecond || 0,
                   packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0,
                   freezes: s.freezeCount || 0, frozenS: s.totalFreezesDuration || 0};
    } else if (s.trackIdentifier === ids.audio) {
      out.audio = {packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0,
                   energy: s.totalAudioEnergy || 0, concealed: s.concealedSamples || 0,
                   samples: s.totalSamplesReceived || 0};
    }
  });
  return out;
}
"""

# What the phone sends and what the hub reports back about it.
PHONE_OUTBOUND_JS = """
async () => {
  const pc = window.__pcs.filter(p => p.connectionState === 'connected').pop();
  if (!pc) return null;
  const stats = new Map();
  (await pc.getStats()).forEach(s => stats.set(s.id, s));
  const all = [...stats.values()];
  const out = {video: null, audio: null, remote: {}, localType: null, available: null,
               remb: pc.localDescription.sdp.includes('goog-remb'),
               absSendTime: pc.localDescription.sdp.includes('abs-send-time'),
               params: {}};
  for (const s of all) {
    if (s.type === 'outbound-rtp') {
      out[s.kind] = {width: s.frameWidth || 0, height: s.frameHeight || 0,
                     fps: s.framesPerSecond || 0, limitation: s.qualityLimitationReason || null,
                     target: s.targetBitrate || 0, packetsSent: s.packetsSent || 0,
                     retransmitted: s.retransmittedPacketsSent || 0,
                     bytesSent: s.bytesSent || 0};
    } else if (s.type === 'remote-inbound-rtp') {
      out.remote[s.kind] = {fractionLost: s.fractionLost, rtt: s.roundTripTime,
                            packetsLost: s.packetsLost};
    } else if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      out.available = pair ? pair.availableOutgoingBitrate || null : null;
      out.localType = pair ? stats.get(pair.localCandidateId).candidateType : null;
    }
  }
  for (const sender of pc.getSenders()) {
    if (!sender.track) continue;
    const enc = sender.getParameters().encodings[0] || {};
    out.params[sender.track.kind] = {maxBitrate: enc.maxBitrate, maxFramerate: enc.maxFramerate,
                                     scale: enc.scaleResolutionDownBy, priority: enc.priority};
  }
  return out;
}
"""


@pytest.fixture
async def mobile_link(turn_server: TurnServer) -> AsyncIterator[LinkImpairer]:
    async with LinkImpairer(("127.0.0.1", turn_server.port), up=UPLINK, down=DOWNLINK,
                            seed=2024) as link:
        yield link


def _collect(errors: list[str], name: str) -> Callable[[Error], None]:
    return lambda err: errors.append(f"{name}: {err}")


async def _print_log(page: Page, since: float) -> None:
    log: list[list[Any]] = await page.evaluate("window.__vwLog")
    print("  phone: " + ", ".join(f"{float(t) / 1000 - since:+.1f} {pc} {what}"
                                  for t, pc, what in log))


async def _inbound(agent: Page) -> dict[str, Any]:
    found: dict[str, Any] | None = await agent.evaluate(AGENT_INBOUND_JS)
    assert found is not None and "video" in found and "audio" in found, found
    return found


def _hub_frames(server: Server, call_id: int) -> dict[str, int]:
    """Frames the hub received from the surveyor, per role (its mic's are audio)."""
    hub = server.services.media.find(call_id)
    assert hub is not None
    return {p.role: int(getattr(p, "frames", 0)) for p in hub.publications()
            if p.owner.kind == "surveyor"}


async def _evidence_times(server: Server, agent: Page, inspection_id: int) -> list[str]:
    token = await agent.evaluate(
        "JSON.parse(sessionStorage.getItem('vw.agent.session')).token")
    async with server.http.get(f"{server.url}/api/v1/inspections/{inspection_id}",
                               headers={"Authorization": f"Bearer {token}"}) as r:
        body = await r.json()
    return [str(e["taken_at"]) for e in body["evidence"]]


async def test_inspection_on_a_weak_mobile_link(relay_server: Server, turn_server: TurnServer,
                                                mobile_link: LinkImpairer,
                                                browser: Browser) -> None:
    server = relay_server
    kiosk_ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    agent_ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844},
                                          is_mobile=True, has_touch=True,
                                          geolocation=PHONE, permissions=["geolocation"])
    errors: list[str] = []
    try:
        await agent_ctx.add_init_script(RECORD_PCS)
        await phone_ctx.add_init_script(turn_via_impairer(turn_server.port,
                                                            mobile_link.address[1], log=True))
        kiosk = await kiosk_ctx.new_page()
        agent = await agent_ctx.new_page()
        await login_kiosk(kiosk, server.url)
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        call_id = int(await answer_on_console(agent, kiosk, server.url, "agent1"))

        await agent.fill("#insp-address", "汤口镇寨西村 12 号")
        await agent.fill("#insp-lat", str(SITE[0]))
        await agent.fill("#insp-lon", str(SITE[1]))
        await agent.click("#insp-create")
        link = agent.locator("a#insp-link")
        await expect(link).to_have_attribute("href", re.compile(r"#code="))
        href = await link.get_attribute("href")
        assert href is not None
        opened = await server.services.inspections.open_for_call(call_id)
        assert opened is not None
        inspection_id = opened.id

        phone = await phone_ctx.new_page()
        for name, page in (("agent", agent), ("phone", phone)):
            page.on("pageerror", _collect(errors, name))
        joined_at, joined_wall = time.monotonic(), time.time()
        await phone.goto(href)
        await expect(phone.locator("body")).to_have_attribute("data-state", "live",
                                                               timeout=30000)
        await video_frames(agent, SURVEYOR_VIDEO, timeout_s=30)
        print(f"\nphone live and its picture on the console after "
              f"{time.monotonic() - joined_at:.1f} s over the weak link")
        await _print_log(phone, joined_wall)

        # -- on the weak link: picture and voice keep coming ---------------------------
        await expect(phone.locator("#weak-network")).to_be_visible(timeout=15000)
        await expect(phone.locator("#weak-network")).to_contain_text("网络较差")
        before, hub_before = await _inbound(agent), _hub_frames(server, call_id)
        sent_before = await phone.evaluate(PHONE_OUTBOUND_JS)
        up_before = mobile_link.up.stats.delivered_bytes
        await asyncio.sleep(MEASURE_S)
        after, hub_after = await _inbound(agent), _hub_frames(server, call_id)
        up_bps = (mobile_link.up.stats.delivered_bytes - up_before) * 8 / MEASURE_S
        span = (after["at"] - before["at"]) / 1000
        fps = (after["video"]["framesDecoded"] - before["video"]["framesDecoded"]) / span
        audio_pps = (after["audio"]["packetsReceived"] - before["audio"]["packetsReceived"]) / span
        energy = after["audio"]["energy"] - before["audio"]["energy"]
        concealed = ((after["audio"]["concealed"] - before["audio"]["concealed"])
                     / max(1, after["audio"]["samples"] - before["audio"]["samples"]))
        hub_audio = (hub_after.get("mic", 0) - hub_before.get("mic", 0)) / MEASURE_S
        sent = await phone.evaluate(PHONE_OUTBOUND_JS)
        phone_audio = (sent["audio"]["packetsSent"]
                       - sent_before["audio"]["packetsSent"]) / MEASURE_S
        print(f"agent sees the surveyor at {fps:.1f} fps, "
              f"{after['video']['width']}x{after['video']['height']}, "
              f"freezes {after['video']['freezes']} ({after['video']['frozenS']:.1f} s); "
              f"audio {phone_audio:.0f} packets/s sent, {hub_audio:.0f} frames/s at the hub, "
              f"{audio_pps:.0f} packets/s at the agent, energy +{energy:.3f}, "
              f"concealed {concealed:.1%}")
        print(f"phone sends {sent['video']['width']}x{sent['video']['height']} at "
              f"{sent['video']['fps']} fps, target {sent['video']['target'] / 1000:.0f} "
              f"kbit/s, limited by {sent['video']['limitation']}, estimate "
              f"{(sent['available'] or 0) / 1000:.0f} kbit/s, hub reports {sent['remote']}; "
              f"sender params {sent['params']}; REMB negotiated {sent['remb']}, "
              f"abs-send-time {sent['absSendTime']}")
        print(f"uplink carried {up_bps / 1000:.0f} kbit/s; up {mobile_link.up.stats}; "
              f"down {mobile_link.down.stats}")
        assert sent["localType"] == "relay"
        assert fps >= 3, "the picture degrades, it does not stall"
        assert after["video"]["width"] > 0
        # The voice keeps coming: judged against what the phone's browser sent, since a
        # starved machine makes its fake microphone skip buffers (Opus sends 50/s; 22/s
        # seen in a cgroup held to 0.7 CPU). 5 % is lost on the uplink only.
        assert phone_audio >= MIN_SENT_PPS, (
            f"the phone sent only {phone_audio:.1f} audio packets/s: the machine is too busy "
            "for this test to measure the link")
        assert hub_audio >= MIN_AUDIO_SHARE * phone_audio, (
            f"the voice reaches the hub: {hub_audio:.1f} frames/s of {phone_audio:.1f} sent")
        assert audio_pps >= MIN_AUDIO_SHARE * phone_audio, (
            f"the voice reaches the agent: {audio_pps:.1f} packets/s of {phone_audio:.1f} sent")
        assert energy > 0
        assert sent["params"]["audio"]["priority"] == "high"
        assert sent["params"]["video"]["maxBitrate"] <= 200_000
        assert up_bps <= UP_BPS * 1.02

        tile = agent.locator(f"figure.tile:has({SURVEYOR_VIDEO})")
        await tile.locator(".snapshot-button").click()
        evidence = agent.locator("#insp-evidence li")
        await expect(evidence).to_have_count(1, timeout=20000)
        await expect(evidence.first).to_contain_text("30.13100")

        # -- the link drops for 10 s -----------------------------------------------
        cut_at = time.time()
        mobile_link.blackhole = True
        try:
            status = phone.locator("#connection-status")
            await expect(status).to_have_attribute("data-reconnecting", "true",
                                                   timeout=int(DROP_S * 1000) - 2000)
            await expect(status).to_contain_text("正在重新连接")
            shown_after = time.time() - cut_at
            await agent.click("#insp-snapshot")
            pending = agent.locator("#snapshot-pending li")
            await expect(pending).to_have_attribute("data-state", "pending", timeout=6000)
            await expect(pending).to_contain_text("终端重连后")
            queued_after = time.time() - cut_at
            await asyncio.sleep(max(0.0, cut_at + DROP_S - time.time()))
        finally:
            restored_at = time.time()
            mobile_link.blackhole = False
        print(f"drop: reconnecting shown after {shown_after:.1f} s, snapshot queued "
              f"{queued_after:.1f} s into the drop")
        back = await fresh_frames(agent, SURVEYOR_VIDEO, restored_at * 1000,
                                  timeout_s=RECOVERY_LIMIT_S + 5)
        recovery_s = back["firstAt"] / 1000 - restored_at
        await expect(phone.locator("#connection-status")).to_be_hidden(timeout=15000)
        await expect(evidence).to_have_count(2, timeout=20000)
        await expect(agent.locator("#snapshot-pending")).to_be_hidden()
        times = await _evidence_times(server, agent, inspection_id)
        late = datetime.fromisoformat(times[-1]).timestamp()
        print(f"phone's picture back {recovery_s:.1f} s after the link returned; "
              f"queued snapshot taken {late - restored_at:.1f} s after it "
              f"({back['width']}x{back['height']})")
        assert recovery_s <= RECOVERY_LIMIT_S, recovery_s
        assert late >= restored_at, "taken from a picture after the rejoin"
        await expect(phone.locator("body")).to_have_attribute("data-state", "live")
        assert not errors, errors
    finally:
        for ctx in (kiosk_ctx, agent_ctx, phone_ctx):
            await ctx.close()
