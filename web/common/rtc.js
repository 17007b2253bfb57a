// Media towards the session hub (PROTOCOL.md "Media negotiation").
//
// HubConnection: one RTCPeerConnection; the server always offers, we only answer.
// FlowWatch: notices within seconds that media stopped arriving (ours or one participant's).
// CallMedia: keeps a HubConnection alive for one call, rejoining with a fresh
// RTCPeerConnection when ICE fails (aiortc has no ICE restart) or the socket came back.

import { Emitter } from '/common/emitter.js';

const REJOIN_DELAYS_S = [0, 1, 2, 3, 5]; // by attempt; the last one repeats
// Request failures that mean "the socket is down", not "the server said no".
const RETRYABLE = new Set(['disconnected', 'timeout', 'closed']);
// ICE 'disconnected' (or nothing arriving) this long with the socket still answering: the
// media path alone is broken; rejoin rather than wait for 'failed' (Chromium: ~30 s).
const DISCONNECTED_GRACE_MS = 6000;
const STATS_EVERY_MS = 500;
// Nothing received for this long = the link is down. The hub sends many packets a second
// while media flows (forwarded RTP, RTCP reports every 0.5-1.5 s); Chromium's ICE takes
// ~5.5 s to say 'disconnected', aiortc's consent check ~30 s to say 'failed'.
const STALL_MS = 2500;
// A stalled participant whose tracks went (its rejoin renegotiates them away before the
// new ones come) is still shown as reconnecting for this long.
const GONE_GRACE_MS = 5000;

function trackKey(info, track) {
  const p = info.participant || {};
  return `${p.id}|${p.kind}|${info.role}|${info.kind}|${track ? track.id : ''}`;
}

function isStopped(tr) {
  return tr.currentDirection === 'stopped' || tr.stopped === true;
}

/**
 * Events: 'track' (track, info), 'trackremoved' (track, info), 'state' (connectionState),
 * 'failed' (reason).  `info` is the TrackInfo of the latest offer for that mid.
 */
export class HubConnection extends Emitter {
  constructor(signal, iceServers = [],
    { iceTransportPolicy = 'all', onTrack = null, onTrackRemoved = null } = {}) {
    super();
    this.signal = signal;
    this.callId = null;
    this.closed = false;
    this.local = new Map(); // role -> MediaStreamTrack
    this.published = null; // roles the server knows we send (CallMedia keeps it), null before the join
    this.tracks = new Map(); // mid -> TrackInfo, from the offer being / last applied
    this.announced = new Map(); // mid -> {key, info, track}
    this._queue = Promise.resolve();
    if (onTrack) this.on('track', onTrack);
    if (onTrackRemoved) this.on('trackremoved', onTrackRemoved);

    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy });
    this.pc = pc;
    pc.onicecandidate = (ev) => this._sendCandidate(ev.candidate);
    pc.ontrack = (ev) => {
      const mid = ev.transceiver && ev.transceiver.mid;
      const info = mid != null ? this.tracks.get(mid) : null;
      if (info && info.direction === 'subscribe') this._announce(mid, ev.track, info);
    };
    pc.onconnectionstatechange = () => {
      if (this.closed) return;
      this.emit('state', pc.connectionState);
      if (pc.connectionState === 'failed') this.emit('failed', 'ice');
    };
    this._unsubscribe = signal.on('rtc.offer', (msg) => {
      if (!this.closed && msg.call_id === this.callId) this._enqueue(msg);
    });
  }

  /**
   * Ask the hub for media. `publish` is `[{role, kind}]`; `localTracksByRole` maps each
   * role to the MediaStreamTrack to send for it.  Resolves on the `ack`.
   */
  async join(callId, publish, localTracksByRole = {}) {
    this.callId = callId;
    this.local = new Map(Object.entries(localTracksByRole).filter(([, t]) => t));
    await this.signal.request('rtc.join', { call_id: callId, publish });
  }

  /**
   * Send `track` for `role` from the next offer on (`null`: send nothing for it). For a
   * slot the server adds mid-call after `rtc.publish` (screen share).
   */
  setLocalTrack(role, track) {
    if (track) this.local.set(role, track);
    else this.local.delete(role);
  }

  /** Swap the track sent for `role` (e.g. front/rear camera) without renegotiating. */
  async replaceLocalTrack(role, track) {
    this.local.set(role, track);
    for (const tr of this.pc.getTransceivers()) {
      const info = tr.mid != null ? this.tracks.get(tr.mid) : null;
      if (info && info.direction === 'publish' && info.role === role && !isStopped(tr)) {
        await tr.sender.replaceTrack(track);
      }
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this._unsubscribe();
    for (const { track, info } of this.announced.values()) this.emit('trackremoved', track, info);
    this.announced.clear();
    try {
      this.pc.close();
    } catch {
      // already closed
    }
  }

  // ---- internals -------------------------------------------------------------

  _enqueue(msg) {
    // Offers must be applied strictly one after another.
    this._queue = this._queue.then(() => this._handleOffer(msg)).catch((err) => {
      if (this.closed) return;
      console.warn('rtc.offer could not be applied:', err && err.name);
      this.emit('failed', 'negotiation');
    });
  }

  async _handleOffer(msg) {
    if (this.closed) return;
    const infos = new Map((msg.tracks || []).map((t) => [t.mid, t]));
    this.tracks = infos; // before setRemoteDescription: ontrack fires inside it
    const pc = this.pc;
    await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    if (this.closed) return;
    for (const tr of pc.getTransceivers()) {
      if (tr.mid == null || isStopped(tr)) continue;
      const info = infos.get(tr.mid);
      if (!info && tr.sender.track) {
        // A publish slot the server retired (rtc.unpublish): stop sending into it.
        await tr.sender.replaceTrack(null);
        tr.direction = 'inactive';
        continue;
      }
      if (!info || info.direction !== 'publish') continue;
      const track = this.local.get(info.role) || null;
      if (track && track.kind === tr.receiver.track.kind) {
        await tr.sender.replaceTrack(track);
        tr.direction = 'sendonly';
      } else {
        // Nothing to send for that role (device missing or refused).
        await tr.sender.replaceTrack(null);
        tr.direction = 'inactive';
      }
    }
    const answer = await pc.createAnswer();
    if (this.closed) return;
    await pc.setLocalDescription(answer);
    if (this.closed) return;
    await this.signal.request('rtc.answer', { call_id: this.callId, sdp: pc.localDescription.sdp });
    this._reconcile(infos);
  }

  /** After an answer: announce new/changed subscribe tracks, retire the ones gone. */
  _reconcile(infos) {
    const live = new Set();
    for (const tr of this.pc.getTransceivers()) {
      if (tr.mid == null || isStopped(tr)) continue;
      const info = infos.get(tr.mid);
      if (!info || info.direction !== 'subscribe') continue;
      const receiving = tr.currentDirection === 'recvonly' || tr.currentDirection === 'sendrecv';
      if (!receiving) continue;
      live.add(tr.mid);
      this._announce(tr.mid, tr.receiver.track, info);
    }
    for (const [mid, prev] of [...this.announced]) {
      if (!live.has(mid)) {
        this.announced.delete(mid);
        this.emit('trackremoved', prev.track, prev.info);
      }
    }
  }

  _announce(mid, track, info) {
    const key = trackKey(info, track);
    const prev = this.announced.get(mid);
    if (prev && prev.key === key) return;
    if (prev) this.emit('trackremoved', prev.track, prev.info);
    this.announced.set(mid, { key, info, track });
    this.emit('track', track, info);
  }

  _sendCandidate(c) {
    if (this.closed || !this.callId) return;
    // Skip Firefox's per-m-line empty end markers; `null` is the one end-of-candidates.
    if (c && !c.candidate) return;
    let candidate = null;
    if (c) {
      const j = c.toJSON();
      candidate = { candidate: j.candidate, sdpMid: j.sdpMid, sdpMLineIndex: j.sdpMLineIndex };
    }
    this.signal.send('rtc.candidate', { call_id: this.callId, candidate });
  }
}

/**
 * Watches what one HubConnection receives (getStats every STATS_EVERY_MS). `own`: nothing
 * at all arrived for STALL_MS while media was flowing, so our link is down. Per remote
 * participant: its tracks stopped for STALL_MS while the rest still arrives, so its link
 * is down (the hub only learns that after aiortc's ~30 s consent timeout).
 * `onChange(ownStalled, stalledParticipantIds)` is called on every change.
 */
class FlowWatch {
  constructor(hub, onChange) {
    this.hub = hub;
    this.onChange = onChange;
    this.ownStalled = false;
    this.stalled = new Set();
    this._received = -1;
    this._receivedAt = performance.now();
    this._bytes = new Map(); // "mid|ssrc" -> bytes received (a reused mid gets a new ssrc)
    this._peers = new Map(); // participant id -> {flowed, progressAt, goneAt, stalled}
    this._busy = false;
    this._timer = setInterval(() => this._poll(), STATS_EVERY_MS);
  }

  stop() {
    clearInterval(this._timer);
  }

  async _poll() {
    const pc = this.hub.pc;
    if (this._busy || this.hub.closed) return;
    this._busy = true;
    let report = null;
    try {
      report = await pc.getStats();
    } catch {
      // closing under us
    } finally {
      this._busy = false;
    }
    if (!report || this.hub.closed) return;
    const now = performance.now();
    let received = 0;
    let sent = 0;
    let transports = 0;
    const bytes = new Map();
    const progressed = new Set(); // mids that received something since the last poll
    report.forEach((s) => {
      if (s.type === 'transport') {
        transports += 1;
        received += s.bytesReceived || 0;
      } else if (s.type === 'outbound-rtp') {
        sent += s.packetsSent || 0;
      } else if (s.type === 'inbound-rtp' && s.mid != null) {
        const key = `${s.mid}|${s.ssrc}`;
        bytes.set(key, s.bytesReceived || 0);
        if ((s.bytesReceived || 0) > (this._bytes.get(key) || 0)) progressed.add(s.mid);
      }
    });
    this._bytes = bytes;
    if (received !== this._received) {
      this._received = received;
      this._receivedAt = now;
    }
    const forgot = this._updatePeers(progressed, now);
    // Armed only once media flows: the hub then sends something many times a second.
    const flowing = sent > 0 || [...this._peers.values()].some((p) => p.flowed);
    const own = transports > 0 && flowing && pc.connectionState !== 'new'
      && now - this._receivedAt >= STALL_MS;
    const stalled = new Set();
    for (const [id, p] of this._peers) {
      // While our own link is down everyone looks stalled: say nothing about them.
      if (!own && p.flowed && now - p.progressAt >= STALL_MS) p.stalled = true;
      else if (!p.goneAt) p.stalled = false;
      if (p.stalled) stalled.add(id);
    }
    const same = own === this.ownStalled && stalled.size === this.stalled.size
      && [...stalled].every((id) => this.stalled.has(id));
    this.ownStalled = own;
    this.stalled = stalled;
    if (!same || forgot) this.onChange(own, new Set(stalled));
  }

  /** Per participant: when its tracks last received anything. True if one went away. */
  _updatePeers(progressed, now) {
    const seen = new Set();
    for (const [mid, { info }] of this.hub.announced) {
      const id = info.participant && info.participant.id;
      if (!id) continue;
      seen.add(id);
      let p = this._peers.get(id);
      if (!p) {
        p = { flowed: false, progressAt: now, goneAt: 0, stalled: false };
        this._peers.set(id, p);
      }
      p.goneAt = 0;
      if (progressed.has(mid)) {
        p.flowed = true;
        p.progressAt = now;
      }
    }
    let removed = false;
    for (const [id, p] of this._peers) {
      if (seen.has(id)) continue;
      if (!p.goneAt) p.goneAt = now;
      // A participant gone for good (or long) is forgotten; one mid-rejoin stays stalled.
      if (!p.stalled || now - p.goneAt >= GONE_GRACE_MS) {
        this._peers.delete(id);
        removed = true;
      }
    }
    return removed;
  }
}

/**
 * One call's media: joins, rejoins on ICE failure with back-off, and on request after
 * the signalling socket came back.  Events: 'track', 'trackremoved' (as HubConnection),
 * 'status' ('connecting' | 'connected' | 'reconnecting' | 'stopped'): 'reconnecting'
 * while our media link, or any other participant's, is down or being rebuilt;
 * 'peerstate' (participantId, 'reconnecting' | 'connected') for another participant whose
 * media stopped arriving, and came back;
 * 'joinfailed' (err) when the server refuses to join us (call over, not allowed),
 * 'publishfailed' (role, err) when a track added during a join was refused.
 *
 * An outage: nothing arrives for STALL_MS, so we ask the socket (signal.probe()). If it
 * answers, only the media path is broken: ICE gets DISCONNECTED_GRACE_MS to come back,
 * then we rejoin. If the socket is dead too, the peer connection is dropped at once and
 * we rejoin as soon as the socket is back (the page's rejoin() on 'reconnected', or ours):
 * a fresh socket and a fresh join are faster than waiting out TCP and ICE back-off.
 */
export class CallMedia extends Emitter {
  constructor(signal) {
    super();
    this.signal = signal;
    this.hub = null;
    this.callId = null;
    this.local = {};
    this.active = false;
    this._attempt = 0;
    this._timer = null;
    this._disconnectTimer = null;
    this._joining = false;
    this._watch = null;
    this._status = null;
    this._wasConnected = false; // this call's media was up once: going down is "reconnecting"
    this._ownStalled = false;
    this._stalledPeers = new Set();
    signal.on('reconnecting', () => this._onSocketLost());
    signal.on('reconnected', () => {
      // The page normally calls rejoin() from its own 'reconnected' handler; this covers
      // a peer connection we dropped in the outage if it does not.
      setTimeout(() => {
        if (this.active && !this.hub && !this._joining) this.rejoin();
      }, 0);
    });
  }

  /** Start media for `callId`, publishing each `{role: track}` given. */
  async start(callId, localTracksByRole) {
    this.stop();
    this.callId = callId;
    this.local = { ...localTracksByRole };
    this.active = true;
    this._attempt = 0;
    this._wasConnected = false;
    this._status = null;
    await this._join();
  }

  /** Tear the peer connection down and join again (e.g. after the socket reconnected). */
  rejoin() {
    if (!this.active) return;
    clearTimeout(this._timer);
    this._attempt = 0;
    this._join();
  }

  async replaceTrack(role, track) {
    this.local[role] = track;
    if (this.hub) await this.hub.replaceLocalTrack(role, track);
  }

  /**
   * Start sending one more track mid-call (a screen share): `rtc.publish`, and the
   * offer that follows carries its slot. Kept across rejoins until unpublishTrack().
   * Rejects with the server's error (the track is then forgotten).
   */
  async publishTrack(role, track) {
    this.local[role] = track;
    if (this.hub) this.hub.setLocalTrack(role, track);
    const hub = this.hub;
    if (!hub || !hub.published || hub.published.has(role)) return; // the join under way sends it
    hub.published.add(role);
    try {
      await this.signal.request('rtc.publish', { call_id: this.callId, role, kind: track.kind });
    } catch (err) {
      if (RETRYABLE.has(err.code)) return; // the rejoin after the outage publishes it
      hub.published.delete(role);
      if (this.local[role] === track) this.unpublishTrack(role, { tell: false });
      throw err;
    }
  }

  /** Stop sending `role` (`rtc.unpublish`); a rejoin no longer publishes it. */
  async unpublishTrack(role, { tell = true } = {}) {
    delete this.local[role];
    const hub = this.hub;
    if (hub) hub.setLocalTrack(role, null);
    if (!tell || !hub || !hub.published || !hub.published.has(role)) return;
    hub.published.delete(role);
    try {
      await this.signal.request('rtc.unpublish', { call_id: this.callId, role });
    } catch (err) {
      // Socket down: the rejoin leaves it out. Already gone (or we left the media): fine.
      if (!RETRYABLE.has(err.code) && err.code !== 'invalid_state' && err.code !== 'forbidden') throw err;
    }
  }

  /** Stop media. With `leave`, tell the server first (`rtc.leave`). */
  stop({ leave = false } = {}) {
    clearTimeout(this._timer);
    const wasActive = this.active;
    this.active = false;
    if (leave && wasActive && this.callId && this.signal.connected) {
      this.signal.request('rtc.leave', { call_id: this.callId }).catch(() => {});
    }
    this._closeHub();
    if (wasActive) {
      this._status = 'stopped';
      this.emit('status', 'stopped');
    }
  }

  _clearDisconnectTimer() {
    clearTimeout(this._disconnectTimer);
    this._disconnectTimer = null;
  }

  _closeHub() {
    this._clearDisconnectTimer();
    if (this._watch) {
      this._watch.stop();
      this._watch = null;
    }
    this._setFlow(false, new Set());
    if (this.hub) {
      const hub = this.hub;
      this.hub = null;
      hub.close();
    }
  }

  /** 'reconnecting' whenever anyone's media is down once this call's media was up. */
  _updateStatus() {
    if (!this.active) return;
    const hub = this.hub;
    const up = hub && hub.pc.connectionState === 'connected' && !this._ownStalled;
    let status;
    if (!up) status = this._wasConnected || this._attempt > 0 ? 'reconnecting' : 'connecting';
    else status = this._stalledPeers.size ? 'reconnecting' : 'connected';
    if (status === 'connected') {
      this._wasConnected = true;
      this._attempt = 0;
    }
    if (status !== this._status) {
      this._status = status;
      this.emit('status', status);
    }
  }

  _setFlow(ownStalled, stalledPeers) {
    for (const id of this._stalledPeers) {
      if (!stalledPeers.has(id)) this.emit('peerstate', id, 'connected');
    }
    for (const id of stalledPeers) {
      if (!this._stalledPeers.has(id)) this.emit('peerstate', id, 'reconnecting');
    }
    this._ownStalled = ownStalled;
    this._stalledPeers = stalledPeers;
  }

  _onFlow(hub, ownStalled, stalledPeers) {
    if (hub !== this.hub) return;
    const wasStalled = this._ownStalled;
    this._setFlow(ownStalled, stalledPeers);
    this._updateStatus();
    if (ownStalled && !wasStalled) this._suspectOutage(hub);
  }

  /** Our media stopped: is the socket dead too? (It then drops, see _onSocketLost.) */
  _suspectOutage(hub) {
    this._armDisconnectTimer(hub);
    if (this.signal.connected && typeof this.signal.probe === 'function') {
      this.signal.probe().catch(() => {});
    }
  }

  /** The socket is gone. With our media down as well this is an outage: drop the peer
   * connection now, so nothing half-alive competes with the rejoin once the socket is back. */
  _onSocketLost() {
    const hub = this.hub;
    if (!this.active || !hub || this._joining) return;
    if (this._ownStalled || hub.pc.connectionState !== 'connected') {
      this._closeHub();
      this._updateStatus();
    }
  }

  /** Rejoin unless the link is back within the grace (from the first sign of trouble). */
  _armDisconnectTimer(hub) {
    if (this._disconnectTimer) return;
    this._disconnectTimer = setTimeout(() => {
      this._disconnectTimer = null;
      if (hub !== this.hub) return;
      if (hub.pc.connectionState !== 'connected' || this._ownStalled) this._retry();
    }, DISCONNECTED_GRACE_MS);
  }

  async _join() {
    if (!this.active || this._joining) return;
    this._joining = true;
    this._closeHub();
    const hub = new HubConnection(this.signal, this.signal.iceServers, {
      iceTransportPolicy: this.signal.iceTransportPolicy,
    });
    this.hub = hub;
    this._updateStatus();
    hub.on('track', (track, info) => this.emit('track', track, info));
    hub.on('trackremoved', (track, info) => this.emit('trackremoved', track, info));
    hub.on('state', (state) => {
      if (hub !== this.hub) return;
      if (state === 'connected') {
        if (!this._ownStalled) this._clearDisconnectTimer();
      } else if (state === 'disconnected') {
        // Browsers wait ~30 s before 'failed'; the hub cannot ICE-restart anyway.
        this._armDisconnectTimer(hub);
      }
      this._updateStatus();
    });
    hub.on('failed', () => {
      if (hub === this.hub) this._retry();
    });
    this._watch = new FlowWatch(hub, (own, peers) => this._onFlow(hub, own, peers));
    const publish = Object.entries(this.local)
      .filter(([, track]) => track)
      .map(([role, track]) => ({ role, kind: track.kind }));
    try {
      await hub.join(this.callId, publish, this.local);
      if (hub === this.hub) this._syncPublished(hub, publish.map((p) => p.role));
    } catch (err) {
      if (hub !== this.hub) return;
      if (RETRYABLE.has(err.code)) {
        // The socket is down; we rejoin once it is back ('reconnected').
        if (err.code === 'timeout') this._retry();
        else this._closeHub();
        this._updateStatus();
      } else {
        this.active = false;
        this._closeHub();
        this.emit('joinfailed', err);
      }
    } finally {
      this._joining = false;
    }
  }

  /** Tracks added or dropped while the join was under way: publish / unpublish them now. */
  _syncPublished(hub, joinedRoles) {
    hub.published = new Set(joinedRoles);
    for (const role of joinedRoles) {
      if (!this.local[role]) {
        this.unpublishTrack(role).catch((err) => console.warn('rtc.unpublish refused:', err.code));
      }
    }
    for (const [role, track] of Object.entries(this.local)) {
      if (track && !hub.published.has(role)) {
        this.publishTrack(role, track).catch((err) => this.emit('publishfailed', role, err));
      }
    }
  }

  _retry() {
    if (!this.active) return;
    this._attempt += 1;
    this._updateStatus();
    const delays = REJOIN_DELAYS_S;
    const delay = delays[Math.min(this._attempt, delays.length) - 1] * 1000;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._join(), delay);
  }
}
