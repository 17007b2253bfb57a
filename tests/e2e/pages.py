"""Page helpers for the e2e tests: log in, wait for decoded video frames."""

from __future__ import annotations

from playwright.async_api import Page, expect

# An init script: keeps every RTCPeerConnection the page makes in `window.__pcs`, so a
# test can read its stats.
RECORD_PCS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})();
"""

FRAME_JS = """
async ([selector, timeoutMs]) => {
  const deadline = Date.now() + timeoutMs;
  let v = null;
  while (Date.now() < deadline) {
    v = document.querySelector(selector);
    if (v && v.srcObject) break;
    await new Promise(r => setTimeout(r, 10));
  }
  if (!v || !v.srcObject) throw new Error('no video for ' + selector);
  // Only frames composited on screen get callbacks: bring the tile into view.
  v.scrollIntoView({block: 'center'});
  if (v.paused) { try { await v.play(); } catch (e) { /* autoplay policy: muted below */ } }
  // Wait for real decoded frames: two frame callbacks with a known size.
  const meta = await new Promise((resolve, reject) => {
    let n = 0;
    const t = setTimeout(() => reject(new Error('no frames on ' + selector)),
                         Math.max(deadline - Date.now(), 100));
    const cb = (now, m) => {
      n += 1;
      if (n === 1) window.__firstFrameAt = window.__firstFrameAt || {};
      if (n === 1) window.__firstFrameAt[selector] = Date.now();
      if (n >= 2) { clearTimeout(t); resolve(m); } else v.requestVideoFrameCallback(cb);
    };
    v.requestVideoFrameCallback(cb);
  });
  return {width: meta.width, height: meta.height, videoWidth: v.videoWidth,
          videoHeight: v.videoHeight, firstAt: window.__firstFrameAt[selector],
          presented: meta.presentedFrames};
}
"""


async def video_frames(page: Page, selector: str, timeout_s: float = 20) -> dict[str, int]:
    """Wait until ``selector`` (a <video>) renders decoded frames; return their size."""
    result: dict[str, int] = await page.evaluate(FRAME_JS, [selector, int(timeout_s * 1000)])
    return result


async def captured_size(page: Page) -> tuple[int, int]:
    """Width and height of the page's own camera track, as captured."""
    size: list[int] = await page.evaluate(
        """() => { const s = document.querySelector('#local-camera').srcObject
                     .getVideoTracks()[0].getSettings(); return [s.width, s.height]; }""")
    return size[0], size[1]


async def login_staff(page: Page, base: str, path: str, username: str,
                      password: str = "demo1234") -> None:
    await page.goto(f"{base}{path}")
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")


async def login_kiosk(page: Page, base: str) -> None:
    await page.goto(f"{base}/kiosk/")
    await page.fill("#login-code", "kiosk-tx01")
    await page.fill("#login-key", "demo-kiosk-key")
    await page.click("#login-submit")


async def set_ready(page: Page) -> None:
    """Press 就绪 until the server confirms (the socket may still be connecting)."""
    state = page.locator("#agent-state")
    for _ in range(20):
        await page.click("#state-ready")
        try:
            await expect(state).to_have_attribute("data-state", "ready", timeout=1000)
            return
        except AssertionError:
            continue
    raise AssertionError("the agent console never became ready")


FRESH_FRAMES_JS = """
async ([selector, sinceMs, timeoutMs]) => {
  // Two frames presented at or after `sinceMs` on whichever element matches `selector`
  // now or later: a rejoin replaces the <video> (and its track) under us.
  const deadline = Date.now() + timeoutMs;
  const watched = new WeakSet();
  let first = null;
  let count = 0;
  let size = null;
  return await new Promise((resolve, reject) => {
    const tick = () => {
      if (count >= 2) return;
      if (Date.now() > deadline) {
        reject(new Error('no fresh frames on ' + selector));
        return;
      }
      for (const v of document.querySelectorAll(selector)) {
        if (watched.has(v) || !v.srcObject) continue;
        watched.add(v);
        v.scrollIntoView({block: 'center'});
        if (v.paused) v.play().catch(() => {});
        const cb = (now, meta) => {
          if (!v.isConnected || count >= 2) return;
          if (Date.now() >= sinceMs) {
            count += 1;
            if (first === null) first = Date.now();
            size = {width: meta.width, height: meta.height};
            if (count >= 2) {
              resolve({firstAt: first, ...size});
              return;
            }
          }
          v.requestVideoFrameCallback(cb);
        };
        v.requestVideoFrameCallback(cb);
      }
      setTimeout(tick, 50);
    };
    tick();
  });
}
"""


async def fresh_frames(page: Page, selector: str, since_ms: float,
                       timeout_s: float = 30) -> dict[str, int]:
    """Wait for frames presented from ``since_ms`` (epoch ms) on; ``firstAt`` is the first."""
    result: dict[str, int] = await page.evaluate(
        FRESH_FRAMES_JS, [selector, since_ms, int(timeout_s * 1000)])
    return result


async def answer_on_console(agent: Page, kiosk: Page, base: str,
                            username: str = "agent1") -> str:
    """The kiosk has called: ``username`` logs in to the console, comes on duty, takes the
    ringing call, and the kiosk goes live. Returns the call id."""
    await login_staff(agent, base, "/agent/", username)
    await set_ready(agent)
    ringing = agent.locator("#ringing li[data-call-id]")
    await expect(ringing).to_have_count(1)
    call_id = await ringing.first.get_attribute("data-call-id")
    await ringing.first.locator(".accept-call").click()
    await expect(kiosk.locator("body")).to_have_attribute("data-state", "live")
    return str(call_id)


def turn_via_impairer(turn_port: int, impairer_port: int, *, log: bool = False) -> str:
    """An init script: the page sees TURN at the impairer's port (``tests/netimpair.py``)
    and keeps its peer connections in ``window.__pcs``; ``log`` also records their state
    changes and gathered candidate types in ``window.__vwLog``."""
    logging = "" if not log else """
      const id = `pc${window.__pcs.length}`;
      const log = (what) => window.__vwLog.push([Date.now(), id, what]);
      log('new');
      this.addEventListener('connectionstatechange', () => log(this.connectionState));
      this.addEventListener('icecandidate',
                            (e) => log(e.candidate ? e.candidate.type : 'gathered'));"""
    return f"""
(() => {{
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.__vwLog = [];
  const via = (u) => u.replace('127.0.0.1:{turn_port}', '127.0.0.1:{impairer_port}');
  window.RTCPeerConnection = class extends Native {{
    constructor(config = {{}}, ...rest) {{
      const iceServers = (config.iceServers || []).map(
        (s) => ({{ ...s, urls: [].concat(s.urls).map(via) }}));
      super({{ ...config, iceServers }}, ...rest);
      window.__pcs.push(this);{logging}
    }}
  }};
}})();
"""
