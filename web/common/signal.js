// WebSocket signalling client for /ws (see signaling/PROTOCOL.md).
//
// Events: every server message by its `type` (pushes, and replies too, so a page can
// keep one handler per type), plus
//   'welcome' (msg)         after each successful auth,
//   'reconnecting' ()       once per outage,
//   'reconnected' (welcome) after the socket is back and authenticated again,
//   'unauthenticated' (err) when the token is refused; no more reconnects,
//   'error' (msg)           an error frame that answers nothing we are waiting for.

import { Emitter } from '/common/emitter.js';

const PING_EVERY_MS = 15000;
const PING_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 20000;
const MAX_BACKOFF_S = 5;
// A socket that dropped is reopened after this (jittered); a refused one backs off to 5 s.
const FIRST_RETRY_MS = 250;
// Open + authenticate within this (plus a few round trips), else try a new socket. Past a
// network outage the kernel resends a pending SYN after 1, 3, 7, 15 s: a fresh attempt
// every ~2 s gets through about 1 s after the network is back instead of up to 8 s.
const CONNECT_TIMEOUT_MS = 1500;
// probe(): a ping unanswered for this (plus a few round trips) means the socket is dead.
const PROBE_TIMEOUT_MS = 1500;
const MAX_WAIT_MS = 10000;
// Replies that only settle a request and are not worth an event of their own.
const SILENT_REPLIES = new Set(['ack', 'pong', 'error']);

export class SignalError extends Error {
  constructor(code, message, field = null) {
    super(message || code);
    this.name = 'SignalError';
    this.code = code;
    this.field = field;
  }
}

function defaultUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/ws`;
}

export class SignalClient extends Emitter {
  /**
   * @param {string} token  JWT from REST; sent in the `auth` frame, never in the URL.
   * @param {{client?: string, url?: string}} opts
   */
  constructor(token, { client = null, url = defaultUrl() } = {}) {
    super();
    this.token = token;
    this.client = client;
    this.url = url;
    this.ws = null;
    this.ready = false;
    this.welcome = null;
    this.resumeToken = null;
    this.iceServers = [];
    this.iceTransportPolicy = 'all';
    this._nextId = 1;
    this._pending = new Map();
    this._closedByUser = false;
    this._everConnected = false;
    this._outage = false;
    this._attempt = 0;
    this._retryTimer = null;
    this._pingTimer = null;
    this._connectTimer = null;
    this._connectTimedOut = false;
    this._probe = null;
    this._rttMs = 0;
    this._connectWaiters = null;
    if (typeof window !== 'undefined') {
      // The machine's own network came back: do not sit out the back-off.
      window.addEventListener('online', () => this._onOnline());
    }
  }

  get connected() {
    return this.ready;
  }

  /** Open the socket and authenticate; resolves with the first `welcome`. */
  connect() {
    if (this.ready) return Promise.resolve(this.welcome);
    if (!this._connectWaiters) {
      this._connectWaiters = {};
      this._connectWaiters.promise = new Promise((resolve, reject) => {
        this._connectWaiters.resolve = resolve;
        this._connectWaiters.reject = reject;
      });
      this._closedByUser = false;
      this._open();
    }
    return this._connectWaiters.promise;
  }

  /** Send a message and wait for the reply carrying its `ref`. Rejects on `error`. */
  request(type, fields = {}, { timeout = REQUEST_TIMEOUT_MS } = {}) {
    if (!this.ready) return Promise.reject(new SignalError('disconnected', 'not connected'));
    const id = this._id();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new SignalError('timeout', `no answer to ${type}`));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer, type });
      this._raw({ ...fields, v: 1, type, id });
    });
  }

  /** Fire and forget (e.g. `rtc.candidate`); errors, if any, come back as 'error' events. */
  send(type, fields = {}) {
    if (!this.ready) return false;
    this._raw({ ...fields, v: 1, type, id: this._id() });
    return true;
  }

  /**
   * Is the socket alive? A ping that must be answered within a few round trips; if it is
   * not, the socket is dropped (and reopened). For when media says the link went quiet:
   * TCP may take minutes to notice a dead path, and resends with growing gaps after one.
   * Resolves true if the server answered.
   */
  probe() {
    if (!this.ready) return Promise.resolve(false);
    if (this._probe) return this._probe;
    const ws = this.ws;
    this._probe = this._ping(this._wait(PROBE_TIMEOUT_MS))
      .then(() => true, (err) => {
        if (err.code === 'timeout' && ws === this.ws) this._dropSocket();
        return false;
      })
      .finally(() => {
        this._probe = null;
      });
    return this._probe;
  }

  close() {
    this._closedByUser = true;
    clearTimeout(this._retryTimer);
    this._teardown();
    this._failPending('closed');
  }

  // ---- internals -------------------------------------------------------------

  _id() {
    return String(this._nextId++);
  }

  _raw(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  /** `base` ms plus a few round trips, so a slow link is not taken for a dead one. */
  _wait(base) {
    return Math.min(MAX_WAIT_MS, base + 4 * this._rttMs);
  }

  /** A ping; measures the round trip. */
  _ping(timeout) {
    const sent = performance.now();
    return this.request('ping', {}, { timeout }).then((reply) => {
      const rtt = performance.now() - sent;
      this._rttMs = this._rttMs ? 0.8 * this._rttMs + 0.2 * rtt : rtt;
      return reply;
    });
  }

  _onOnline() {
    if (this._closedByUser || this.ready || !this._outage) return;
    if (this.ws) return; // an attempt is under way
    clearTimeout(this._retryTimer);
    this._open();
  }

  _open() {
    let ws;
    this._connectTimedOut = false;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    clearTimeout(this._connectTimer);
    this._connectTimer = setTimeout(() => {
      if (ws !== this.ws || this.ready) return;
      // Nothing came back: the path is dead, not the server refusing. Try a new socket
      // soon rather than wait out the kernel's SYN back-off on this one.
      this._connectTimedOut = true;
      this._dropSocket();
    }, this._wait(CONNECT_TIMEOUT_MS));
    ws.onopen = () => this._authenticate(true);
    ws.onmessage = (ev) => this._onMessage(ev);
    ws.onclose = () => this._onClose(ws);
    ws.onerror = () => { /* followed by close; nothing else to do */ };
  }

  _authenticate(withResume) {
    const id = this._id();
    const frame = { v: 1, type: 'auth', id, token: this.token };
    if (this.client) frame.client = this.client;
    const usedResume = withResume && this.resumeToken;
    if (usedResume) frame.resume_token = this.resumeToken;
    const timer = setTimeout(() => {
      this._pending.delete(id);
      this._dropSocket();
    }, REQUEST_TIMEOUT_MS);
    this._pending.set(id, {
      type: 'auth',
      timer,
      resolve: (welcome) => this._onWelcome(welcome),
      reject: (err) => {
        if (usedResume) {
          // The resume token may be stale (server restarted); try a fresh session.
          this.resumeToken = null;
          this._authenticate(false);
        } else if (err.code === 'unauthenticated' || err.code === 'forbidden') {
          this._fatal(err);
        } else {
          this._dropSocket();
        }
      },
    });
    this._raw(frame);
  }

  _onWelcome(welcome) {
    clearTimeout(this._connectTimer);
    this.ready = true;
    this.welcome = welcome;
    this.resumeToken = welcome.resume_token || null;
    this.iceServers = Array.isArray(welcome.ice_servers) ? welcome.ice_servers : [];
    this.iceTransportPolicy = welcome.ice_transport_policy === 'relay' ? 'relay' : 'all';
    this._attempt = 0;
    this._startPing();
    const wasOutage = this._outage;
    this._outage = false;
    const first = !this._everConnected;
    this._everConnected = true;
    if (this._connectWaiters) {
      this._connectWaiters.resolve(welcome);
      this._connectWaiters = null;
    }
    this.emit('welcome', welcome);
    if (!first && wasOutage) this.emit('reconnected', welcome);
  }

  _onMessage(ev) {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    const waiter = msg.ref != null ? this._pending.get(msg.ref) : null;
    if (waiter) {
      this._pending.delete(msg.ref);
      clearTimeout(waiter.timer);
      if (msg.type === 'error') {
        waiter.reject(new SignalError(msg.code || 'error', msg.message, msg.field || null));
      } else {
        waiter.resolve(msg);
      }
      if (waiter.type === 'auth' || SILENT_REPLIES.has(msg.type)) return;
    }
    if (msg.type === 'error') {
      if (!waiter) this.emit('error', msg);
      return;
    }
    if (msg.type === 'ack' || msg.type === 'pong') return;
    this.emit(msg.type, msg);
  }

  _startPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = setInterval(() => {
      this._ping(PING_TIMEOUT_MS).catch((err) => {
        // A silent dead socket never fires `close` quickly; drop it ourselves.
        if (err.code === 'timeout') this._dropSocket();
      });
    }, PING_EVERY_MS);
  }

  _onClose(ws) {
    if (ws !== this.ws) return;
    this._teardown();
    this._failPending('disconnected');
    if (this._closedByUser) return;
    this._scheduleReconnect();
  }

  /** Forget the current socket (without waiting for its close) and reconnect. */
  _dropSocket() {
    const ws = this.ws;
    if (!ws) return;
    this._onClose(ws);
  }

  _teardown() {
    clearInterval(this._pingTimer);
    clearTimeout(this._connectTimer);
    this._pingTimer = null;
    this.ready = false;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        // already closed
      }
    }
  }

  _failPending(code) {
    for (const [id, w] of this._pending) {
      clearTimeout(w.timer);
      this._pending.delete(id);
      if (w.type !== 'auth') w.reject(new SignalError(code, code));
    }
  }

  _scheduleReconnect() {
    if (!this._outage) {
      this._outage = true;
      this.emit('reconnecting');
    }
    this._attempt += 1;
    // A timed-out attempt found no path: retrying soon costs a SYN. One refused or closed
    // at once reached a server that is down or restarting: back off.
    const base = this._connectTimedOut || this._attempt === 1
      ? FIRST_RETRY_MS : Math.min(this._attempt - 1, MAX_BACKOFF_S) * 1000;
    const delay = base * (0.8 + 0.4 * Math.random());
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (!this._closedByUser) this._open();
    }, delay);
  }

  _fatal(err) {
    this._closedByUser = true;
    this._teardown();
    this._failPending('unauthenticated');
    if (this._connectWaiters) {
      this._connectWaiters.reject(err);
      this._connectWaiters = null;
    }
    this.emit('unauthenticated', err);
  }
}
