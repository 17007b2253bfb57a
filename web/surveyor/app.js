// Field surveyor on a phone: opened as /surveyor/#code=…, joins one call with the
// rear camera and the mic. A dropped link rejoins by itself (CallMedia) and shows
// "reconnecting"; a weak one lowers the picture before the voice (UplinkGuard).
// body[data-state]: joining | live | ended | error

import { Api } from '/common/api.js';
import { SignalClient } from '/common/signal.js';
import { CallMedia } from '/common/rtc.js';
import { UplinkGuard } from '/surveyor/uplink.js';
import { initI18n } from '/common/i18n.js';
import {
  byId, h, setState, setText, initElderly, ConnectionIndicator, attachTrack, getLocalMedia, stopStream,
  showError, hideError,
} from '/common/ui.js';

const api = new Api({ key: 'vw.surveyor.session' });
const conn = new ConnectionIndicator();
// Voice first on a weak mobile uplink; the hub connection changes with every rejoin.
const uplink = new UplinkGuard(() => (app.media && app.media.hub ? app.media.hub.pc : null),
  (weak) => { byId('weak-network').hidden = !weak; });

const app = {
  code: null, // kept in memory only, for a retry after a network error
  signal: null,
  media: null,
  stream: null,
  facing: 'environment',
  muted: false,
  wakeLock: null,
  retry: null,
  watch: null, // geolocation watch id
  lastSent: null, // {at, lat, lon} of the last position sent
  lastFix: null, // the latest fix, re-sent now and then (a socket may have been down)
  gpsTimer: null,
  torch: false,
};

const SEND_EVERY_MS = 3000;
const SEND_IF_MOVED_M = 5;

const status = (key, args = null) => setText(byId('status'), key, args);

function fail(key, retry = null) {
  stopAll();
  setState('error');
  status(key);
  app.retry = retry;
  byId('retry').hidden = !retry;
}

// ---- start -------------------------------------------------------------------

function takeCodeFromHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const code = params.get('code');
  if (location.hash) {
    // The one-time code must not stay in the address bar, history or screenshots.
    history.replaceState(null, '', location.pathname + location.search);
  }
  return code;
}

async function redeem() {
  setState('joining');
  status('surveyor.status.checking');
  try {
    await api.login('/auth/surveyor', { code: app.code });
    app.code = null;
  } catch (err) {
    if (err.code === 'network' || err.code === 'timeout' || err.code === 'internal') {
      return fail('err.network', redeem);
    }
    app.code = null;
    return fail('surveyor.err.expired');
  }
  return join();
}

async function join() {
  const session = api.session;
  if (!session) return fail('surveyor.err.expired');
  setState('joining');
  byId('retry').hidden = true;
  status('surveyor.status.camera');
  const { stream, warning } = await getLocalMedia({ facingMode: { ideal: app.facing }, width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 20 } }, true);
  if (!stream) return fail(warning, join);
  if (warning) showError(byId('media-warning'), null, warning);
  else hideError(byId('media-warning'));
  app.stream = stream;
  applyMute();
  const local = byId('local-camera');
  local.srcObject = stream;
  local.play().catch(() => {});
  keepScreenOn();

  status('surveyor.status.connecting');
  const signal = new SignalClient(session.token);
  app.signal = signal;
  app.media = new CallMedia(signal);
  wire(signal, app.media, session);
  try {
    await signal.connect();
  } catch {
    api.clear();
    return fail('surveyor.err.expired');
  }
  const tracks = {};
  if (stream.getVideoTracks()[0]) tracks.camera = stream.getVideoTracks()[0];
  if (stream.getAudioTracks()[0]) tracks.mic = stream.getAudioTracks()[0];
  app.media.start(session.call_id, tracks);
  uplink.start();
  startGps(session.call_id);
  updateTorch();
}

// ---- position ------------------------------------------------------------------

function metres(a, b) {
  const rad = (d) => (d * Math.PI) / 180;
  const s = Math.sin(rad(b.lat - a.lat) / 2) ** 2
    + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(rad(b.lon - a.lon) / 2) ** 2;
  return 2 * 6371008.8 * Math.asin(Math.min(1, Math.sqrt(s)));
}

/** The phone's GPS fix to the officer: every few seconds, or at once after moving. */
function startGps(callId) {
  const el = byId('gps-status');
  el.hidden = false;
  if (!('geolocation' in navigator)) {
    setText(el, 'surveyor.gps.none');
    return;
  }
  if (app.watch !== null) navigator.geolocation.clearWatch(app.watch);
  clearInterval(app.gpsTimer);
  app.gpsTimer = setInterval(() => sendFix(true), 10000);
  setText(el, 'surveyor.gps.waiting');
  app.watch = navigator.geolocation.watchPosition((pos) => {
    const fix = { lat: pos.coords.latitude, lon: pos.coords.longitude,
      accuracy: Math.min(pos.coords.accuracy || 0, 100000) };
    setText(el, 'surveyor.gps.fix', { acc: Math.round(fix.accuracy) });
    const heading = pos.coords.heading;
    const msg = { call_id: callId, ...fix, at: Math.round(pos.timestamp || Date.now()) };
    if (Number.isFinite(heading) && heading >= 0 && heading < 360) msg.heading = heading;
    app.lastFix = msg;
    sendFix(false);
  }, (err) => {
    setText(el, err.code === 1 ? 'surveyor.gps.denied' : 'surveyor.gps.unavailable');
  }, { enableHighAccuracy: true, maximumAge: 5000, timeout: 30000 });
}

function sendFix(force) {
  const fix = app.lastFix;
  if (!fix) return;
  const now = Date.now();
  const last = app.lastSent;
  if (!force && last && now - last.at < SEND_EVERY_MS && metres(last, fix) < SEND_IF_MOVED_M) return;
  if (app.signal && app.signal.send('surveyor.position', fix)) app.lastSent = { at: now, ...fix };
}

function stopGps() {
  clearInterval(app.gpsTimer);
  app.gpsTimer = null;
  app.lastFix = null;
  if (app.watch !== null && 'geolocation' in navigator) navigator.geolocation.clearWatch(app.watch);
  app.watch = null;
  app.lastSent = null;
}

// ---- torch ---------------------------------------------------------------------

function cameraTrack() {
  return app.stream ? app.stream.getVideoTracks()[0] : null;
}

/** Show the torch button only where the camera has one (rear cameras of most phones). */
function updateTorch() {
  const track = cameraTrack();
  const caps = track && track.getCapabilities ? track.getCapabilities() : {};
  const btn = byId('torch');
  btn.hidden = !caps.torch;
  app.torch = false;
  btn.setAttribute('aria-pressed', 'false');
}

async function toggleTorch() {
  const track = cameraTrack();
  if (!track) return;
  const next = !app.torch;
  try {
    await track.applyConstraints({ advanced: [{ torch: next }] });
    app.torch = next;
    byId('torch').setAttribute('aria-pressed', String(next));
  } catch {
    byId('torch').hidden = true;
  }
}

function wire(signal, media, session) {
  signal.on('reconnecting', () => conn.set('socket', true));
  // The other side's media link is down: say so here too until it is back.
  signal.on('participant.state', (msg) => conn.set(`peer:${msg.participant_id}`, msg.state === 'reconnecting'));
  // The call is known from the link, so after a lost socket simply join again;
  // a call that ended meanwhile refuses the join (joinfailed below).
  signal.on('reconnected', () => {
    conn.set('socket', false);
    media.rejoin();
    sendFix(true);
  });
  signal.on('unauthenticated', () => {
    api.clear();
    fail('surveyor.err.expired');
  });
  signal.on('call.ended', (msg) => {
    if (msg.call_id === session.call_id) ended('surveyor.status.ended', true);
  });
  signal.on('chat.message', (msg) => {
    const from = msg.from || {};
    if (from.kind === 'surveyor') return;
    const el = byId('last-message');
    el.hidden = false;
    el.textContent = `${from.name || ''}: ${msg.text || ''}`;
  });
  signal.on('error', (msg) => console.warn('signalling error:', msg.code));

  media.on('status', (s) => {
    conn.set('media', s === 'reconnecting');
    if (s === 'connected' && document.body.dataset.state !== 'live') {
      setState('live');
      status('surveyor.status.live');
      sendFix(true);
    }
  });
  media.on('joinfailed', (err) => {
    if (err.code === 'not_found' || err.code === 'invalid_state') ended('surveyor.status.ended', true);
    else {
      api.clear();
      fail('surveyor.err.expired');
    }
  });
  media.on('track', (track, info) => {
    if (track.kind === 'audio') {
      const el = h('audio', { autoplay: true, dataset: { trackId: track.id } });
      byId('remote-audio').append(el);
      attachTrack(el, track);
    } else if (info.role === 'camera' && info.participant && info.participant.kind === 'agent') {
      const video = byId('remote-agent-camera');
      video.dataset.trackId = track.id;
      attachTrack(video, track);
    }
  });
  media.on('trackremoved', (track) => {
    for (const el of byId('remote-audio').querySelectorAll('audio')) {
      if (el.dataset.trackId === track.id) { el.srcObject = null; el.remove(); }
    }
    const video = byId('remote-agent-camera');
    if (video.dataset.trackId === track.id) { video.srcObject = null; delete video.dataset.trackId; }
  });
}

// ---- controls ----------------------------------------------------------------

function applyMute() {
  if (app.stream) for (const tr of app.stream.getAudioTracks()) tr.enabled = !app.muted;
  const btn = byId('toggle-mic');
  btn.setAttribute('aria-pressed', String(app.muted));
  setText(btn.querySelector('.control-text'), app.muted ? 'surveyor.unmute' : 'surveyor.mute');
}

async function switchCamera() {
  if (!app.stream) return;
  const btn = byId('switch-camera');
  btn.disabled = true;
  const next = app.facing === 'environment' ? 'user' : 'environment';
  const old = app.stream.getVideoTracks()[0];
  // Many phones cannot open two cameras at once: release the old one first.
  if (old) old.stop();
  let track = null;
  for (const facing of [next, app.facing]) {
    try {
      const s = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: facing }, width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 20 } } });
      track = s.getVideoTracks()[0];
      app.facing = facing;
      break;
    } catch {
      track = null;
    }
  }
  if (old) app.stream.removeTrack(old);
  if (track) {
    app.stream.addTrack(track);
    if (app.media) await app.media.replaceTrack('camera', track).catch(() => {});
    const local = byId('local-camera');
    local.srcObject = app.stream;
    local.classList.toggle('mirrored', app.facing === 'user');
    hideError(byId('media-warning'));
    updateTorch();
  } else {
    showError(byId('media-warning'), null, 'media.noCamera');
  }
  btn.disabled = false;
}

function leave() {
  ended('surveyor.status.left', false);
}

function ended(key, callOver) {
  if (app.media) app.media.stop({ leave: !callOver });
  stopAll();
  if (callOver) api.clear();
  setState('ended');
  status(key);
  // Left by mistake while the call goes on: the link's session still works.
  app.retry = callOver ? null : join;
  byId('retry').hidden = callOver;
  setText(byId('retry'), callOver ? 'ui.retry' : 'surveyor.rejoin');
}

function stopAll() {
  stopGps();
  uplink.stop();
  if (app.media) app.media.stop();
  app.media = null;
  if (app.signal) app.signal.close();
  app.signal = null;
  stopStream(app.stream);
  app.stream = null;
  byId('local-camera').srcObject = null;
  byId('remote-agent-camera').srcObject = null;
  byId('remote-audio').replaceChildren();
  conn.clear();
  if (app.wakeLock) app.wakeLock.release().catch(() => {});
  app.wakeLock = null;
}

async function keepScreenOn() {
  // The phone must not lock while the surveyor walks the site.
  try {
    if ('wakeLock' in navigator && document.visibilityState === 'visible') {
      app.wakeLock = await navigator.wakeLock.request('screen');
    }
  } catch {
    app.wakeLock = null;
  }
}

// ---- wiring ------------------------------------------------------------------

function init() {
  initI18n();
  initElderly();
  byId('toggle-mic').addEventListener('click', () => { app.muted = !app.muted; applyMute(); });
  byId('switch-camera').addEventListener('click', switchCamera);
  byId('leave').addEventListener('click', leave);
  byId('torch').addEventListener('click', toggleTorch);
  byId('retry').addEventListener('click', () => { if (app.retry) app.retry(); });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && app.stream) keepScreenOn();
  });
  applyMute();
  app.code = takeCodeFromHash();
  if (app.code) {
    api.clear(); // a new link replaces any earlier surveyor session in this tab
    redeem();
  } else if (api.session) {
    join();
  } else {
    fail('surveyor.err.noCode');
  }
}

init();
