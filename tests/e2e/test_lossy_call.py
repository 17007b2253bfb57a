"""A kiosk call over a lossy, high-latency link, in real Chromium: the voice carries on.

The kiosk page and the agent console each reach the hub only through a real coturn
(relay-only ICE), and each reaches coturn only through its own ``tests.netimpair`` link:
5 % random loss and 150 ms delay each way (a 300 ms round trip), 2 Mbit/s so the rate is
not what is tested. ``tc netem`` is missing in this kernel, so the impairment is a
userspace UDP relay on 127.0.0.1 and covers each page's media path (everything between
its browser and coturn), not its signalling WebSocket.

Every audio packet crosses two impaired links (sender -> hub -> receiver: ~9.75 % lost
end to end, 300 ms one way plus the hub). Over ``MEASURE_S`` each page must keep
receiving the other's voice: no more than ``MAX_MISSING`` of the audio packets the other
page sent go missing, and no 1 s step receives less than ``MIN_STEP_SHARE`` of what was
sent around it (a gap of about half a second); they carry sound (the fake microphone's
beep: total audio energy rises); concealment stays under ``MAX_CONCEALED``; and the other
side's picture still decodes frames. The observed figures are printed (``-s``)::

    flock /tmp/vw-chromium.lock python -m pytest -s tests/e2e/test_lossy_call.py
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Error, Page, expect

from tests.conftest import Server
from tests.e2e.pages import answer_on_console, login_kiosk, turn_via_impairer, video_frames
from tests.netimpair import LinkImpairer, LinkProfile
from tests.turnserver import TurnServer

pytestmark = pytest.mark.e2e

LINK = LinkProfile(rate_bps=2_000_000, loss=0.05, delay_s=0.15, queue_bytes=60_000)
MEASURE_S = 10
# Measured against what the other page's browser sent, not against Opus's nominal 50/s:
# a starved machine makes Chromium's fake microphone skip buffers, so its page sends
# fewer packets (37/s on a busy CI machine, 28-30/s in a cgroup held to half a CPU),
# which is no fault of the link or the hub. 5 % loss on each of two legs loses ~9.75 %
# (6.6-14 % seen); 20 % is ~5 binomial sigmas above it at 20 packets/s over 10 s.
MAX_MISSING = 0.20
MIN_SENT_PPS = 20.0  # fewer and the figures mean little: the machine is too busy
# Each 1 s step receives ~90 % of what was sent in it and the step before (the one-way
# trip is ~0.3 s); a half-second gap leaves ~45 %.
MIN_STEP_SHARE = 0.55
# Concealed: ~10 % of the voice with 5 % loss on each of two legs (7-11 % seen before the
# hub asked for Opus in-band FEC, 7-8 % after: how much FEC the browser's encoder adds is
# its own choice, from its loss estimate). Twice that means the jitter buffer also ran
# dry; a 1.5 s cut inside the window gives ~21 %.
MAX_CONCEALED = 0.20
# Frames decoded per frame the other page sent: a lower bound only. A lost video packet
# costs a NACK round trip of 300 ms+, so the picture freezes now and then (0.8-0.98
# decoded seen on a quiet machine, ~0.5 on a starved one); a frozen picture gives 0.
MIN_FPS_SHARE = 0.3

KIOSK_SEES_AGENT = "video#remote-agent-camera"
AGENT_SEES_KIOSK = 'video[data-role="camera"][data-participant-kind="kiosk"]'


# The inbound-rtp of the other side's voice (the <audio> whose data-track-id is given)
# and camera, with the round trip to the hub and the candidate type in use. The newest
# connection that is not closed, so a link that stalls reads as a stall, not as null.
INBOUND_JS = """
async ([audioSelector, videoSelector]) => {
  const pc = window.__pcs.filter(p => p.connectionState !== 'closed').pop();
  if (!pc) return null;
  const trackOf = (sel) => { const el = document.querySelector(sel);
                             return el ? el.dataset.trackId || null : null; };
  const ids = {audio: trackOf(audioSelector), video: trackOf(videoSelector)};
  const stats = new Map();
  (await pc.getStats()).forEach(s => stats.set(s.id, s));
  const out = {at: performance.now(), state: pc.connectionState, audio: null, video: null,
               rtt: null, localType: null, audioSent: 0, videoSent: null};
  for (const s of stats.values()) {
    if (s.type === 'outbound-rtp' && s.kind === 'audio') out.audioSent += s.packetsSent || 0;
    if (s.type === 'outbound-rtp' && s.kind === 'video' && s.frameWidth) {
      out.videoSent = {fps: s.framesPerSecond || 0, frames: s.framesSent || 0,
                       width: s.frameWidth,
                       height: s.frameHeight, target: s.targetBitrate || 0,
                       limitation: s.qualityLimitationReason || null};
    }
    if (s.type === 'inbound-rtp' && s.trackIdentifier === ids.audio) {
      out.audio = {packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0,
                   energy: s.totalAudioEnergy || 0, concealed: s.concealedSamples || 0,
                   silentConcealed: s.silentConcealedSamples || 0,
                   samples: s.totalSamplesReceived || 0, fec: s.fecPacketsReceived || 0,
                   jitterDelay: s.jitterBufferDelay || 0,
                   jitterEmitted: s.jitterBufferEmittedCount || 0};
    } else if (s.type === 'inbound-rtp' && s.trackIdentifier === ids.video) {
      out.video = {framesDecoded: s.framesDecoded || 0, width: s.frameWidth || 0,
                   height: s.frameHeight || 0, packetsReceived: s.packetsReceived || 0,
                   packetsLost: s.packetsLost || 0, nacks: s.nackCount || 0,
                   plis: s.pliCount || 0, freezes: s.freezeCount || 0,
                   frozenS: s.totalFreezesDuration || 0};
    } else if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      if (pair) {
        out.rtt = pair.currentRoundTripTime ?? null;
        out.localType = stats.get(pair.localCandidateId).candidateType;
      }
    }
  }
  return out;
}
"""


@dataclass
class Side:
    """One page and what it receives of the other side, over its own impaired link."""

    name: str
    page: Page
    audio: str  # selector of the element carrying the other side's voice track id
    video: str  # same for their camera
    link: LinkImpairer

    async def sample(self) -> dict[str, Any]:
        found: dict[str, Any] | None = await self.page.evaluate(INBOUND_JS,
                                                                [self.audio, self.video])
        assert found is not None, f"{self.name}: no peer connection"
        return found


@dataclass
class Figures:
    """What one page received of the other side over the window."""

    sent_pps: float  # audio packets/s the other page sent
    audio_pps: float
    worst_step: float  # the 1 s step that received least of what was sent around it
    lost: float  # packets lost on the hub -> page leg (the hub numbers its own packets)
    missing: float  # 1 - received / sent: both legs
    energy: tuple[float, float]  # rise in the first and in the second half
    concealed: float  # concealed samples / samples played
    fps: float
    sent_fps: float  # frames/s the other page sent
    width: int
    height: int
    line: str = ""


def figures(side: Side, samples: list[dict[str, Any]],
            other: list[dict[str, Any]]) -> Figures:
    """``samples`` from the page, ``other`` from the other page at the same moments."""
    first, mid, last = samples[0], samples[len(samples) // 2], samples[-1]
    for at, sample in (("start", first), ("end", last)):
        missing = [kind for kind in ("audio", "video") if not sample[kind]]
        assert not missing, (f"{side.name} receives no {' and no '.join(missing)} from the "
                             f"other side at the {at} of the window (its connection: "
                             f"{sample['state']})")
    for at, sample in (("start", other[0]), ("end", other[-1])):
        assert sample["videoSent"], f"the other page sends no video at the {at} of the window"

    def delta(kind: str, key: str, a: dict[str, Any] = first,
              b: dict[str, Any] = last) -> float:
        return float(b[kind][key] - a[kind][key])

    span = (last["at"] - first["at"]) / 1000
    received_steps = [delta("audio", "packetsReceived", a, b)
                      for a, b in itertools.pairwise(samples)]
    sent_steps = [float(b["audioSent"] - a["audioSent"]) for a, b in itertools.pairwise(other)]
    # A packet received in a step left the other page in that step or the one before.
    around = [(sent_steps[i - 1] + sent) / 2 if i else sent
              for i, sent in enumerate(sent_steps)]
    received, lost = delta("audio", "packetsReceived"), delta("audio", "packetsLost")
    sent = float(other[-1]["audioSent"] - other[0]["audioSent"])
    played = max(1.0, delta("audio", "samples"))
    frames_sent = float(other[-1]["videoSent"]["frames"] - other[0]["videoSent"]["frames"])
    fig = Figures(
        sent_pps=sent / span, audio_pps=received / span,
        worst_step=min(got / max(1.0, expected)
                       for got, expected in zip(received_steps, around, strict=True)),
        lost=lost / max(1.0, received + lost), missing=1 - received / max(1.0, sent),
        energy=(delta("audio", "energy", first, mid), delta("audio", "energy", mid, last)),
        concealed=delta("audio", "concealed") / played,
        fps=delta("video", "framesDecoded") / span, sent_fps=frames_sent / span,
        width=last["video"]["width"], height=last["video"]["height"])
    jitter_ms = 1000 * delta("audio", "jitterDelay") / max(1.0, delta("audio", "jitterEmitted"))
    rtt = f"{last['rtt'] * 1000:.0f} ms" if last["rtt"] is not None else "?"
    video_sent = delta("video", "packetsReceived") + delta("video", "packetsLost")
    fig.line = (
        f"{side.name} receives audio at {fig.audio_pps:.1f} packets/s of "
        f"{fig.sent_pps:.1f}/s sent (worst 1 s step {fig.worst_step:.0%} of it), "
        f"{fig.missing:.1%} missing end to end, {fig.lost:.1%} lost on the hub's leg, "
        f"FEC {delta('audio', 'fec'):.0f}, concealed {fig.concealed:.1%} (silent "
        f"{delta('audio', 'silentConcealed') / played:.1%}), energy "
        f"+{fig.energy[0]:.3f} +{fig.energy[1]:.3f}, jitter buffer {jitter_ms:.0f} ms; "
        f"video {fig.fps:.1f} fps of {fig.sent_fps:.1f} sent, {fig.width}x{fig.height}, lost "
        f"{delta('video', 'packetsLost'):.0f} of {video_sent:.0f} packets, NACKs "
        f"{delta('video', 'nacks'):.0f}, PLIs {delta('video', 'plis'):.0f}, freezes "
        f"{delta('video', 'freezes'):.0f} ({delta('video', 'frozenS'):.1f} s); "
        f"round trip to the hub {rtt} via {last['localType']}")
    sending = other[-1]["videoSent"]
    if sending:
        fig.line += (f"; the other page sends {sending['width']}x{sending['height']} at "
                     f"{sending['fps']} fps, target {sending['target'] / 1000:.0f} kbit/s, "
                     f"limited by {sending['limitation']}")
    return fig


@pytest.fixture
async def links(turn_server: TurnServer) -> AsyncIterator[dict[str, LinkImpairer]]:
    """The kiosk's and the agent's own impaired links to coturn."""
    target = ("127.0.0.1", turn_server.port)
    async with LinkImpairer(target, up=LINK, down=LINK, seed=11) as kiosk, \
            LinkImpairer(target, up=LINK, down=LINK, seed=12) as agent:
        yield {"kiosk": kiosk, "agent": agent}


def _collect(errors: list[str], name: str) -> Callable[[Error], None]:
    return lambda err: errors.append(f"{name}: {err}")


async def _context(browser: Browser, turn: TurnServer, link: LinkImpairer) -> BrowserContext:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    await ctx.add_init_script(turn_via_impairer(turn.port, link.address[1]))
    return ctx


async def test_voice_carries_on_over_loss_and_latency(
        relay_server: Server, turn_server: TurnServer, links: dict[str, LinkImpairer],
        browser: Browser) -> None:
    server = relay_server
    kiosk_ctx = await _context(browser, turn_server, links["kiosk"])
    agent_ctx = await _context(browser, turn_server, links["agent"])
    errors: list[str] = []
    try:
        kiosk = await kiosk_ctx.new_page()
        agent = await agent_ctx.new_page()
        for name, page in (("kiosk", kiosk), ("agent", agent)):
            page.on("pageerror", _collect(errors, name))
        await login_kiosk(kiosk, server.url)
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "idle")
        await kiosk.click('[data-service-code="SB-001"]')
        await kiosk.click("#call-button")
        await answer_on_console(agent, kiosk, server.url, "agent1")
        await video_frames(agent, AGENT_SEES_KIOSK, timeout_s=30)
        await video_frames(kiosk, KIOSK_SEES_AGENT, timeout_s=30)
        sides = [
            Side("kiosk", kiosk, "#remote-audio audio", KIOSK_SEES_AGENT, links["kiosk"]),
            Side("agent", agent, 'audio[data-participant-kind="kiosk"]',
                 f"figure.tile:has({AGENT_SEES_KIOSK})", links["agent"]),
        ]
        # The hub's offers ask each browser for Opus in-band FEC (media.sdp).
        for side in sides:
            assert await side.page.evaluate(
                "() => window.__pcs.some(p => p.remoteDescription && "
                "/a=fmtp:\\d+ .*useinbandfec=1/.test(p.remoteDescription.sdp))"), side.name
        # Let the jitter buffers and the senders' estimates settle on the link first.
        await asyncio.sleep(2)

        series: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sides}
        for step in range(MEASURE_S + 1):
            taken = await asyncio.gather(*(s.sample() for s in sides))
            for side, sample in zip(sides, taken, strict=True):
                series[side.name].append(sample)
            if step < MEASURE_S:
                await asyncio.sleep(1)

        print()
        results = {a.name: figures(a, series[a.name], series[b.name])
                   for a, b in (sides, sides[::-1])}
        for side in sides:
            up, down = side.link.up.stats, side.link.down.stats
            print(results[side.name].line)
            print(f"  {side.name}'s link over the call: up {up.lost} of {up.offered} lost "
                  f"({up.lost / max(1, up.offered):.1%}), {up.tail_dropped} tail-dropped; "
                  f"down {down.lost} of {down.offered} lost "
                  f"({down.lost / max(1, down.offered):.1%}), {down.tail_dropped} tail-dropped")
        for side in sides:
            fig = results[side.name]
            last = series[side.name][-1]
            # The media went through this page's impaired link, and it did lose packets.
            assert last["localType"] == "relay", last
            assert side.link.up.stats.lost > 0 and side.link.down.stats.lost > 0
            assert fig.sent_pps >= MIN_SENT_PPS, (
                f"the page the {side.name} hears sent only {fig.sent_pps:.1f} audio packets/s "
                "(Opus sends 50): the machine is too busy for this test to measure the link",
                fig.line)
            assert fig.missing <= MAX_MISSING, (side.name, fig.line)
            assert fig.worst_step >= MIN_STEP_SHARE, (side.name, fig.line)
            assert min(fig.energy) > 0, (side.name, fig.line)  # sound in both halves
            assert fig.concealed <= MAX_CONCEALED, (side.name, fig.line)
            assert fig.fps >= MIN_FPS_SHARE * fig.sent_fps and fig.width > 0, (side.name,
                                                                                fig.line)
        await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")
        assert not errors, errors
    finally:
        for ctx in (kiosk_ctx, agent_ctx):
            await ctx.close()
