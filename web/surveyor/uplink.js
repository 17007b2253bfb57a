// The phone's uplink on a weak mobile network: voice first, and a picture that gets
// smaller and slower rather than freezing.
//
// The hub (aiortc) sends REMB (from the abs-send-time extension) for video and RTCP
// receiver reports with loss for everything it receives, so Chromium's own estimate
// already follows the link. Left alone it still spends that estimate on the picture,
// large keyframes included, and the voice queues behind them on a thin link. So every
// POLL_MS this reads the connection's stats and sets the senders' parameters: audio at
// priority 'high' (and networkPriority, for DSCP where the network honours it); video
// capped by a tier. A link is "weak" while the hub reports loss, the round trip is long,
// the estimate is low or the encoder says bandwidth limits it; a weak link gets a low
// bitrate, fewer frames and a smaller picture, and the page says so. Back to normal
// after GOOD_FOR_MS without any of that.
//
// body[data-uplink]: normal | weak

const POLL_MS = 2000;
const GOOD_FOR_MS = 15000;

// 640x480 at 15 fps looks good at well under a megabit.
const NORMAL = { maxBitrate: 900000, maxFramerate: 15, scaleResolutionDownBy: 1 };
// A 300 kbit/s uplink: ~55 kbit/s of Opus with its headers, RTCP and retransmissions
// must fit beside the picture, or the voice breaks up first.
const WEAK = { maxBitrate: 170000, maxFramerate: 10, scaleResolutionDownBy: 1.5 };

const WEAK_LOSS = 0.03; // of the packets sent since the last poll
const GOOD_LOSS = 0.015;
const WEAK_RTT_S = 0.25;
const GOOD_RTT_S = 0.2;
const WEAK_AVAILABLE_BPS = 350000;

export class UplinkGuard {
  /**
   * @param {() => RTCPeerConnection|null} getPc  the hub connection of the moment (a rejoin
   *   makes a new one)
   * @param {(weak: boolean) => void} onChange
   */
  constructor(getPc, onChange) {
    this.getPc = getPc;
    this.onChange = onChange;
    this.weak = false;
    this.goodSince = 0;
    this.last = null; // {pc, sent, lost} of the previous poll
    this.latest = null; // what the last poll measured (for tests and the console)
    this._timer = null;
    this._busy = false;
  }

  start() {
    if (this._timer) return;
    this._timer = setInterval(() => this.poll(), POLL_MS);
    document.body.dataset.uplink = this.weak ? 'weak' : 'normal';
  }

  stop() {
    clearInterval(this._timer);
    this._timer = null;
    this.last = null;
    this._set(false);
  }

  async poll() {
    const pc = this.getPc();
    if (!pc || this._busy || pc.connectionState === 'closed') return;
    this._busy = true;
    try {
      const m = await this._measure(pc);
      this.latest = m;
      if (m) this._judge(m);
      await this._apply(pc);
    } catch (err) {
      console.warn('uplink check failed:', err && err.name);
    } finally {
      this._busy = false;
    }
  }

  async _measure(pc) {
    const report = await pc.getStats();
    let sent = 0;
    let lost = 0;
    let rtt = null;
    let available = null;
    let limitation = null;
    let video = null;
    const pairs = new Map();
    let selectedPair = null;
    report.forEach((s) => {
      if (s.type === 'outbound-rtp') {
        sent += s.packetsSent || 0;
        if (s.kind === 'video') {
          limitation = s.qualityLimitationReason || null;
          video = { width: s.frameWidth || 0, height: s.frameHeight || 0,
            fps: s.framesPerSecond || 0, target: s.targetBitrate || 0 };
        }
      } else if (s.type === 'remote-inbound-rtp') {
        lost += Math.max(0, s.packetsLost || 0);
        if (typeof s.roundTripTime === 'number') rtt = Math.max(rtt || 0, s.roundTripTime);
      } else if (s.type === 'candidate-pair') {
        pairs.set(s.id, s);
      } else if (s.type === 'transport' && s.selectedCandidatePairId) {
        selectedPair = s.selectedCandidatePairId;
      }
    });
    const pair = selectedPair ? pairs.get(selectedPair) : null;
    if (pair && typeof pair.availableOutgoingBitrate === 'number') available = pair.availableOutgoingBitrate;
    if (pair && rtt === null && typeof pair.currentRoundTripTime === 'number') rtt = pair.currentRoundTripTime;
    const prev = this.last && this.last.pc === pc ? this.last : null;
    this.last = { pc, sent, lost };
    if (!prev || sent <= prev.sent) return null; // a new connection, or nothing sent yet
    const loss = Math.max(0, lost - prev.lost) / (sent - prev.sent);
    return { loss, rtt, available, limitation, video };
  }

  _judge(m) {
    const bad = m.loss >= WEAK_LOSS || (m.rtt !== null && m.rtt >= WEAK_RTT_S)
      || (m.available !== null && m.available < WEAK_AVAILABLE_BPS)
      || m.limitation === 'bandwidth';
    const good = m.loss < GOOD_LOSS && (m.rtt === null || m.rtt < GOOD_RTT_S);
    const now = performance.now();
    if (bad) {
      this.goodSince = 0;
      this._set(true);
    } else if (this.weak && good) {
      if (!this.goodSince) this.goodSince = now;
      if (now - this.goodSince >= GOOD_FOR_MS) this._set(false);
    } else {
      this.goodSince = 0;
    }
  }

  _set(weak) {
    if (weak === this.weak) return;
    this.weak = weak;
    document.body.dataset.uplink = weak ? 'weak' : 'normal';
    this.onChange(weak);
  }

  async _apply(pc) {
    for (const sender of pc.getSenders()) {
      const track = sender.track;
      if (!track) continue;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) continue;
      const wanted = track.kind === 'audio'
        ? { priority: 'high', networkPriority: 'high' }
        : { ...(this.weak ? WEAK : NORMAL) };
      const enc = params.encodings[0];
      const changed = Object.entries(wanted).filter(([k, v]) => enc[k] !== v);
      const balanced = track.kind === 'video' && 'degradationPreference' in params
        && params.degradationPreference !== 'balanced';
      if (!changed.length && !balanced) continue;
      for (const [k, v] of changed) enc[k] = v;
      // A hand-held camera on a thin link: give up some of both, not all of one.
      if (balanced) params.degradationPreference = 'balanced';
      try {
        await sender.setParameters(params);
      } catch (err) {
        console.warn(`setParameters (${track.kind}) refused:`, err && err.name);
      }
    }
  }
}
