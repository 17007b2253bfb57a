// Media towards the session hub (PROTOCOL.md "Media negotiation").
//
// HubConnection: one RTCPeerConnection; the server always offers, we only answer.
// CallMedia: keeps a HubConnection alive for one call, rejoining with a fresh
// RTCPeerConnection when ICE fails (aiortc has no ICE restart) or the socket came back.

import { Emitter } from '/common/emitter.js';

const MAX_REJOIN_BACKOFF_S = 5;
// Request failures that mean "the socket is down", not "the server said no".
const RETRYABLE = new Set(['disconnected', 'timeout', 'closed']);
const DISCONNECTED_GRACE_MS = 6000;

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
 * One call's media: joins, rejoins on ICE failure with back-off, and on request after
 * the signalling socket came back.  Events: 'track', 'trackremoved' (as HubConnection),
 * 'status' ('connecting' | 'connected' | 'reconnecting' | 'stopped'),
 * 'joinfailed' (err) when the server refuses to join us (call over, not allowed),
 * 'publishfailed' (role, err) when a track added during a join was refused.
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
  }

  /** Start media for `callId`, publishing each `{role: track}` given. */
  async start(callId, localTracksByRole) {
    this.stop();
    this.callId = callId;
    this.local = { ...localTracksByRole };
    this.active = true;
    this._attempt = 0;
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
    clearTimeout(this._disconnectTimer);
    const wasActive = this.active;
    this.active = false;
    if (leave && wasActive && this.callId && this.signal.connected) {
      this.signal.request('rtc.leave', { call_id: this.callId }).catch(() => {});
    }
    this._closeHub();
    if (wasActive) this.emit('status', 'stopped');
  }

  _closeHub() {
    clearTimeout(this._disconnectTimer);
    if (this.hub) {
      const hub = this.hub;
      this.hub = null;
      hub.close();
    }
  }

  async _join() {
    if (!this.active || this._joining) return;
    this._joining = true;
    this._closeHub();
    this.emit('status', this._attempt === 0 ? 'connecting' : 'reconnecting');
    const hub = new HubConnection(this.signal, this.signal.iceServers, {
      iceTransportPolicy: this.signal.iceTransportPolicy,
    });
    this.hub = hub;
    hub.on('track', (track, info) => this.emit('track', track, info));
    hub.on('trackremoved', (track, info) => this.emit('trackremoved', track, info));
    hub.on('state', (state) => {
      if (hub !== this.hub) return;
      clearTimeout(this._disconnectTimer);
      if (state === 'connected') {
        this._attempt = 0;
        this.emit('status', 'connected');
      } else if (state === 'disconnected') {
        this.emit('status', 'reconnecting');
        // Browsers wait ~30 s before 'failed'; the hub cannot ICE-restart anyway.
        this._disconnectTimer = setTimeout(() => {
          if (hub === this.hub && hub.pc.connectionState !== 'connected') this._retry();
        }, DISCONNECTED_GRACE_MS);
      }
    });
    hub.on('failed', () => {
      if (hub === this.hub) this._retry();
    });
    const publish = Object.entries(this.local)
      .filter(([, track]) => track)
      .map(([role, track]) => ({ role, kind: track.kind }));
    try {
      await hub.join(this.callId, publish, this.local);
      if (hub === this.hub) this._syncPublished(hub, publish.map((p) => p.role));
    } catch (err) {
      if (hub !== this.hub) return;
      if (err.code === 'disconnected' || err.code === 'timeout' || err.code === 'closed') {
        // The socket is down; the page calls rejoin() once it is back.
        this.emit('status', 'reconnecting');
        if (err.code === 'timeout') this._retry();
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
    this.emit('status', 'reconnecting');
    this._attempt += 1;
    const delay = Math.min(this._attempt, MAX_REJOIN_BACKOFF_S) * 1000;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._join(), delay);
  }
}
