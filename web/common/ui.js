// Page helpers shared by the four pages: state switching, elderly mode, connection
// indicator, capture progress, materials list, media elements, timers.

import { t, has, setText, setAttr } from '/common/i18n.js';

export const byId = (id) => document.getElementById(id);

/** Build an element. Children are nodes or strings (always text, never HTML). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'i18n') setText(el, v[0], v[1] || null);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Set `body[data-state]` and show only elements whose `data-show` lists that state. */
export function setState(state) {
  document.body.dataset.state = state;
  for (const el of document.querySelectorAll('[data-show]')) {
    el.hidden = !el.dataset.show.split(/\s+/).includes(state);
  }
}

/** Wire `#elderly-toggle`; the choice is remembered on this device. */
export function initElderly() {
  const btn = byId('elderly-toggle');
  let on = false;
  try {
    on = localStorage.getItem('vw.elderly') === '1';
  } catch {
    on = false;
  }
  const apply = () => {
    document.body.classList.toggle('elderly', on);
    if (btn) btn.setAttribute('aria-pressed', String(on));
  };
  apply();
  if (btn) {
    btn.addEventListener('click', () => {
      on = !on;
      try {
        localStorage.setItem('vw.elderly', on ? '1' : '0');
      } catch {
        // not remembered, still applied
      }
      apply();
    });
  }
}

/** `#connection-status`: visible while any source (socket, media) is reconnecting. */
export class ConnectionIndicator {
  constructor(el = byId('connection-status')) {
    this.el = el;
    this.sources = new Set();
    this._render();
  }

  set(source, reconnecting) {
    if (reconnecting) this.sources.add(source);
    else this.sources.delete(source);
    this._render();
  }

  clear() {
    this.sources.clear();
    this._render();
  }

  _render() {
    if (!this.el) return;
    const on = this.sources.size > 0;
    this.el.hidden = !on;
    this.el.dataset.reconnecting = String(on);
    if (on) setText(this.el, 'conn.reconnecting');
    else this.el.textContent = '';
  }
}

export function pad2(n) {
  return String(n).padStart(2, '0');
}

/** 65000 → "01:05"; an hour or more → "1:01:05". */
export function formatDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  return hh ? `${hh}:${pad2(mm)}:${pad2(ss)}` : `${pad2(mm)}:${pad2(ss)}`;
}

export function formatClock(iso) {
  const d = iso ? new Date(iso) : new Date();
  if (Number.isNaN(d.getTime())) return '';
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** Time elapsed since an ISO timestamp, e.g. "03:12"; "—" when unknown. */
export function sinceText(iso) {
  const since = Date.parse(iso);
  return Number.isNaN(since) ? '—' : formatDuration(Date.now() - since);
}

/** Once a second, every `[data-since]` element shows the time elapsed since then. */
export function startTicker() {
  const tick = () => {
    for (const el of document.querySelectorAll('[data-since]')) el.textContent = sinceText(el.dataset.since);
  };
  tick();
  return setInterval(tick, 1000);
}

/** Put a track into a <video>/<audio> and start it; autoplay refusals offer a button. */
export function attachTrack(el, track) {
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) playMedia(el);
}

export function playMedia(el) {
  const p = el.play && el.play();
  if (!p || !p.catch) return;
  p.catch((err) => {
    if (!err || err.name !== 'NotAllowedError') return;
    // Browsers may block sound until the user touches the page.
    let btn = byId('enable-sound');
    if (!btn) {
      btn = h('button', { id: 'enable-sound', type: 'button', class: 'enable-sound', i18n: ['media.enableSound'] });
      document.body.append(btn);
    }
    btn.hidden = false;
    btn.addEventListener('click', () => {
      for (const m of document.querySelectorAll('video, audio')) if (m.srcObject) m.play().catch(() => {});
      btn.hidden = true;
    }, { once: true });
  });
}

/**
 * getUserMedia that falls back to whatever is available. Resolves
 * `{stream, warning}`; `warning` is an i18n key when camera or mic is missing.
 */
export async function getLocalMedia(video, audio = { echoCancellation: true, noiseSuppression: true }) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { stream: null, warning: 'media.unsupported' };
  }
  const attempts = [[video, audio, null], [false, audio, 'media.noCamera'], [video, false, 'media.noMic']];
  let lastErr = null;
  for (const [v, a, warning] of attempts) {
    if (!v && !a) continue;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: v, audio: a });
      return { stream, warning };
    } catch (err) {
      lastErr = err;
      if (err && (err.name === 'NotAllowedError' || err.name === 'SecurityError')) break;
    }
  }
  const denied = lastErr && (lastErr.name === 'NotAllowedError' || lastErr.name === 'SecurityError');
  return { stream: null, warning: denied ? 'media.denied' : 'media.none' };
}

export function stopStream(stream) {
  if (stream) for (const tr of stream.getTracks()) tr.stop();
}

/** `{camera, mic}` of a getLocalMedia stream, for CallMedia.start (a missing one left out). */
export function tracksByRole(stream) {
  const tracks = {};
  const camera = stream ? stream.getVideoTracks()[0] : null;
  const mic = stream ? stream.getAudioTracks()[0] : null;
  if (camera) tracks.camera = camera;
  if (mic) tracks.mic = mic;
  return tracks;
}

/** An i18n key (and args) for an error from the API or the socket. */
export function errorKey(err) {
  const code = err && err.code;
  const known = {
    network: 'err.network', timeout: 'err.network', disconnected: 'err.disconnected',
    unauthenticated: 'err.unauthenticated', forbidden: 'err.forbidden', not_found: 'err.notFound',
    conflict: 'err.conflict', invalid_state: 'err.invalidState', internal: 'err.internal',
    invalid_message: 'err.invalidInput', too_large: 'err.tooLarge',
  };
  return known[code] || 'err.generic';
}

/** Show an error in `el` in words a person can act on. */
/** A form's status line: a message (or none) and its outcome ('', 'ok', 'error') in
 * `data-outcome`, so styles and tests can tell success from failure. */
export function setStatus(el, key, args = null, outcome = '') {
  if (!el) return;
  el.dataset.outcome = outcome;
  if (key) setText(el, key, args);
  else {
    delete el.dataset.i18n;
    el.textContent = '';
  }
}

export function showError(el, err, key = null) {
  if (!el) return;
  el.hidden = false;
  setText(el, key || errorKey(err));
}

export function hideError(el) {
  if (!el) return;
  el.hidden = true;
  el.textContent = '';
}

/** "township · kiosk name" of a CallInfo's `kiosk`. */
export function kioskText(kiosk) {
  return kiosk ? [kiosk.township, kiosk.name].filter(Boolean).join(' · ') : '';
}

/** Caption for a remote track: whose and what. */
export function captionKey(info) {
  const kind = info.participant && info.participant.kind;
  if (info.role === 'doccam') return 'caption.doccam';
  if (info.role === 'screen') return 'caption.screen';
  if (kind === 'surveyor') return 'caption.surveyor';
  if (kind === 'kiosk' || kind === 'devices') return 'caption.citizen';
  if (kind === 'agent') return 'caption.agent';
  if (kind === 'expert') return 'caption.expert';
  if (kind === 'supervisor') return 'caption.supervisor';
  return 'caption.other';
}

export function kindKey(kind) {
  return has(`kind.${kind}`) ? `kind.${kind}` : 'kind.other';
}

/** `#capture-progress`: a <progress> plus a line of text, fed by `capture.progress`. */
export class CaptureProgress {
  constructor(el = byId('capture-progress')) {
    this.el = el;
    this.bar = el.querySelector('progress');
    this.text = el.querySelector('.capture-text');
  }

  reset() {
    this.el.hidden = true;
    this.el.dataset.stage = '';
    this.bar.value = 0;
    this.text.textContent = '';
  }

  requested() {
    this.update({ stage: 'requested' });
  }

  update({ stage, percent, message }) {
    this.el.hidden = false;
    this.el.dataset.stage = stage;
    if (stage === 'done' || stage === 'queued') this.bar.value = 100;
    else if (typeof percent === 'number') this.bar.value = Math.max(0, Math.min(100, percent));
    else if (stage === 'failed') this.bar.value = 0;
    else this.bar.removeAttribute('value'); // indeterminate
    const pct = typeof percent === 'number' ? Math.round(percent) : null;
    const key = stage === 'failed' ? (message ? 'capture.failedWith' : 'capture.failed')
      : stage === 'uploading' && pct !== null ? 'capture.uploadingPct'
        : stage === 'done' && message ? 'capture.doneWith'
          : `capture.${stage}`;
    setText(this.text, key, { percent: pct, message: message || '' });
  }
}

/** `#materials`: one `li.material` per MaterialInfo, images as thumbnails. */
export class MaterialList {
  constructor(api, el = byId('materials'), { openable = true } = {}) {
    this.api = api;
    this.el = el;
    this.openable = openable;
    this.urls = [];
    this.ids = new Set();
  }

  clear() {
    for (const u of this.urls) URL.revokeObjectURL(u);
    this.urls = [];
    this.ids.clear();
    this.el.replaceChildren();
  }

  addAll(list) {
    for (const m of list || []) this.add(m);
  }

  add(m) {
    if (!m || !m.id || this.ids.has(m.id)) return;
    this.ids.add(m.id);
    const isImage = (m.content_type || '').startsWith('image/');
    const name = m.filename || m.id;
    const srcKey = `source.${m.source || 'other'}`;
    const meta = h('span', { class: 'material-meta' }, formatClock(m.created_at), ' · ',
      has(srcKey) ? h('span', { i18n: [srcKey] }) : h('span', {}, m.source));
    const kind = m.kind || 'file';
    if (has(`kind.${kind}`)) {
      meta.append(' · ', h('span', { class: `kind kind-${kind}`, i18n: [`kind.${kind}`] }));
      if (m.page) meta.append(' ', h('span', { i18n: ['kind.pageN', { n: m.page }] }));
    }
    const li = h('li', {
      class: `material material-${kind}`,
      dataset: { sha256: m.sha256 || '', materialId: m.id, kind, document: m.document || '' },
    });
    if (kind === 'document' && m.document) {
      // A document's PDF grows page by page: show only its newest version.
      for (const old of this.el.querySelectorAll('li.material-document')) {
        if (old.dataset.document === m.document) old.remove();
      }
    }
    if (isImage) {
      const img = h('img', { alt: name, class: 'thumb', loading: 'lazy' });
      const holder = this.openable ? h('a', { href: '#', target: '_blank', rel: 'noopener' }, img) : img;
      li.append(holder, h('span', { class: 'material-name' }, name), meta);
      this.api.blob(m.url).then((blob) => {
        const url = URL.createObjectURL(blob);
        this.urls.push(url);
        img.src = url;
        if (this.openable) holder.href = url;
      }).catch(() => {
        li.classList.add('unavailable');
        img.replaceWith(h('span', { class: 'thumb-missing', i18n: ['materials.unavailable'] }));
      });
    } else if (this.openable && (m.content_type || '').startsWith('video/')) {
      // A session recording: a player that loads the file when asked to play it.
      const play = h('button', { type: 'button', class: 'play-recording', i18n: ['materials.play'] });
      li.append(play, h('span', { class: 'material-name' }, name), meta);
      play.addEventListener('click', async () => {
        play.disabled = true;
        try {
          const url = URL.createObjectURL(await this.api.blob(m.url));
          this.urls.push(url);
          const video = h('video', { controls: true, class: 'recording', src: url, 'aria-label': name });
          play.replaceWith(video);
          video.play().catch(() => {});
        } catch {
          play.disabled = false;
          li.classList.add('unavailable');
        }
      });
    } else if (this.openable) {
      const a = h('a', { href: '#', class: 'material-name' }, name);
      a.addEventListener('click', (ev) => this._open(ev, a, m), { once: false });
      li.append(a, meta);
    } else {
      li.append(h('span', { class: 'material-name' }, name), meta);
    }
    this.el.append(li);
  }

  async _open(ev, a, m) {
    if (a.dataset.ready) return; // second click: the blob URL is already in href
    ev.preventDefault();
    try {
      const url = URL.createObjectURL(await this.api.blob(m.url));
      this.urls.push(url);
      a.href = url;
      a.target = '_blank';
      a.rel = 'noopener';
      a.download = m.filename || '';
      a.dataset.ready = '1';
      a.click();
    } catch {
      a.classList.add('unavailable');
    }
  }
}

/** A soft two-note chime repeated while `start()`ed; WebAudio only, no files. */
export class RingTone {
  constructor() {
    this.ctx = null;
    this.timer = null;
  }

  /** Call from a click handler so the browser lets the AudioContext run. */
  unlock() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!this.ctx) this.ctx = new Ctx();
    if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
  }

  get playing() {
    return this.timer !== null;
  }

  start() {
    if (this.timer !== null) return;
    this.unlock();
    this._chime();
    this.timer = setInterval(() => this._chime(), 3000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  _chime() {
    const ctx = this.ctx;
    if (!ctx || ctx.state !== 'running') return;
    const now = ctx.currentTime;
    [[659.25, 0], [880, 0.35]].forEach(([freq, at]) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0, now + at);
      gain.gain.linearRampToValueAtTime(0.08, now + at + 0.04);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.6);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.65);
    });
  }
}

export { setText, setAttr, t };


/**
 * The staff login form (agent console, supervisor dashboard): checks the fields, logs in,
 * refuses an account of another role with `wrongRoleKey`, then calls `onSignedIn()`.
 */
export async function submitStaffLogin(api, role, wrongRoleKey, onSignedIn) {
  const errEl = byId('login-error');
  hideError(errEl);
  const username = byId('login-username').value.trim();
  const password = byId('login-password').value;
  if (!username) return showError(errEl, null, 'login.needUsername');
  if (!password) return showError(errEl, null, 'login.needPassword');
  const btn = byId('login-submit');
  btn.disabled = true;
  try {
    const answer = await api.login('/auth/login', { username, password });
    if (answer.role !== role) {
      api.clear();
      return showError(errEl, null, wrongRoleKey);
    }
    byId('login-password').value = '';
    await onSignedIn();
  } catch (err) {
    const bad = ['unauthenticated', 'forbidden', 'not_found', 'invalid_message'].includes(err.code);
    showError(errEl, err, bad ? 'login.bad' : errorKey(err));
  } finally {
    btn.disabled = false;
  }
  return undefined;
}
