// County/city agent console: ready/away, ringing calls, live video with the kiosk,
// case panel (materials, remote capture, surveyor link), chat.
// body[data-state]: login | idle | ringing | live

import { Api } from '/common/api.js';
import { SignalClient } from '/common/signal.js';
import { CallMedia } from '/common/rtc.js';
import { initI18n } from '/common/i18n.js';
import {
  byId, h, setState, setText, t, ConnectionIndicator, Chat, CaptureProgress, MaterialList, RingTone,
  attachTrack, getLocalMedia, stopStream, showError, hideError, errorKey, captionKey, startTicker,
  formatClock, kindKey, sinceText,
} from '/common/ui.js';

const api = new Api({ key: 'vw.agent.session' });
const conn = new ConnectionIndicator();
const capture = new CaptureProgress();
const materials = new MaterialList(api, byId('materials'));
const ring = new RingTone();

const app = {
  signal: null,
  media: null,
  chat: null,
  call: null,
  agentState: 'offline',
  localStream: null,
  mediaGen: 0,
};

const state = () => document.body.dataset.state;

// ---- login -------------------------------------------------------------------

async function onLogin(ev) {
  ev.preventDefault();
  ring.unlock(); // a click: the only moment the browser lets audio start later
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
    if (answer.role !== 'agent') {
      api.clear();
      return showError(errEl, null, 'agent.login.notAgent');
    }
    byId('login-password').value = '';
    await startSession();
  } catch (err) {
    const bad = ['unauthenticated', 'forbidden', 'not_found', 'invalid_message'].includes(err.code);
    showError(errEl, err, bad ? 'login.bad' : errorKey(err));
  } finally {
    btn.disabled = false;
  }
}

async function logout(reasonKey = null) {
  if (app.signal && app.signal.connected && !reasonKey) {
    await app.signal.request('agent.state', { state: 'offline' }).catch(() => {});
  }
  leaveLive();
  clearRinging();
  if (app.signal) app.signal.close();
  app.signal = null;
  api.clear();
  conn.clear();
  setState('login');
  if (reasonKey) showError(byId('login-error'), null, reasonKey);
  byId('login-username').focus();
}

// ---- session -----------------------------------------------------------------

async function startSession() {
  const signal = new SignalClient(api.token);
  app.signal = signal;
  app.media = new CallMedia(signal);
  app.chat = new Chat(signal, { kind: 'agent', name: '' });
  wireSignal(signal);
  wireMedia(app.media);
  setState('idle');
  let welcome;
  try {
    welcome = await signal.connect();
  } catch {
    return logout('err.sessionExpired');
  }
  const name = welcome.principal ? welcome.principal.name : (api.session || {}).name || '';
  app.chat.self.name = name;
  byId('agent-name').textContent = name;
  if (welcome.active_call) enterLive(welcome.active_call);
}

function wireSignal(signal) {
  signal.on('reconnecting', () => conn.set('socket', true));
  signal.on('reconnected', (welcome) => {
    conn.set('socket', false);
    const active = welcome.active_call;
    if (active && app.call && active.call_id === app.call.call_id) app.media.rejoin();
    else if (active) enterLive(active);
    else if (app.call) leaveLive();
  });
  signal.on('unauthenticated', () => logout('err.sessionExpired'));
  signal.on('agent.state', (msg) => showAgentState(msg.state));
  signal.on('call.ringing', (msg) => addRinging(msg.call));
  signal.on('call.taken', (msg) => dropRinging(msg.call_id, 'agent.ringing.taken', { name: msg.agent_name || '' }));
  signal.on('call.cancelled', (msg) => dropRinging(msg.call_id, 'agent.ringing.cancelled'));
  signal.on('call.accepted', (msg) => enterLive(msg.call));
  signal.on('call.ended', (msg) => {
    if (app.call && msg.call_id === app.call.call_id) leaveLive();
  });
  signal.on('participant.joined', (msg) => participantNote(msg, 'agent.participant.joined'));
  signal.on('participant.left', (msg) => {
    if (!isThisCall(msg)) return;
    for (const tile of [...byId('tiles').querySelectorAll('[data-participant-id]')]) {
      if (tile.dataset.participantId === String(msg.participant.id)) removeTile(tile);
    }
    participantNote(msg, 'agent.participant.left');
  });
  signal.on('capture.progress', (msg) => { if (isThisCall(msg)) capture.update(msg); });
  signal.on('case.material', (msg) => {
    if (app.call && msg.case_id === app.call.case_id) addMaterial(msg.material);
  });
  signal.on('chat.message', (msg) => app.chat.add(msg));
  signal.on('error', (msg) => console.warn('signalling error:', msg.code));
}

const isThisCall = (msg) => app.call && msg.call_id === app.call.call_id;

// ---- agent state -------------------------------------------------------------

async function requestState(next) {
  ring.unlock();
  if (!app.signal) return;
  try {
    const reply = await app.signal.request('agent.state', { state: next });
    showAgentState(reply.state || next);
  } catch (err) {
    setText(byId('ringing-note'), errorKey(err));
  }
}

function showAgentState(s) {
  app.agentState = s;
  const el = byId('agent-state');
  el.dataset.state = s;
  const known = ['ready', 'away', 'offline', 'busy', 'in_call'];
  if (known.includes(s)) setText(el, `agentState.${s}`);
  else { delete el.dataset.i18n; el.textContent = s; }
  byId('state-ready').setAttribute('aria-pressed', String(s === 'ready'));
  byId('state-away').setAttribute('aria-pressed', String(s === 'away'));
  // Calls ring only for ready agents; anything still listed would be stale.
  if (s === 'away' || s === 'offline') clearRinging();
}

// ---- ringing -----------------------------------------------------------------

function addRinging(call) {
  if (!call || (app.call && app.call.call_id === call.call_id)) return;
  const list = byId('ringing');
  if (list.querySelector(`li[data-call-id="${CSS.escape(call.call_id)}"]`)) return;
  const kiosk = call.kiosk || {};
  const accept = h('button', { type: 'button', class: 'accept-call primary', i18n: ['agent.accept'] });
  accept.addEventListener('click', () => onAccept(call.call_id, accept));
  const li = h('li', { class: 'ringing-call', dataset: { callId: call.call_id } },
    h('div', { class: 'ring-info' },
      h('strong', { class: 'ring-service' }, call.service ? call.service.name : ''),
      h('span', { class: 'ring-kiosk' }, [kiosk.township, kiosk.name].filter(Boolean).join(' · ')),
      h('span', { class: 'ring-wait' }, h('span', { i18n: ['agent.ringing.waiting'] }), ' ',
        h('span', { dataset: { since: call.queued_at || new Date().toISOString() } }, sinceText(call.queued_at)))),
    accept);
  list.append(li);
  updateRinging();
}

function dropRinging(callId, noteKey = null, args = null) {
  const li = byId('ringing').querySelector(`li[data-call-id="${CSS.escape(callId || '')}"]`);
  if (!li) return;
  li.remove();
  if (noteKey) setText(byId('ringing-note'), noteKey, args);
  updateRinging();
}

function clearRinging() {
  byId('ringing').replaceChildren();
  updateRinging();
}

function updateRinging() {
  const n = byId('ringing').children.length;
  byId('ringing-count').textContent = String(n);
  byId('ringing-empty').hidden = n > 0;
  if (n > 0 && !app.call) ring.start();
  else ring.stop();
  if (state() === 'idle' || state() === 'ringing') setState(n > 0 ? 'ringing' : 'idle');
}

async function onAccept(callId, btn) {
  ring.unlock();
  btn.disabled = true;
  try {
    const reply = await app.signal.request('call.accept', { call_id: callId });
    enterLive(reply.call);
  } catch (err) {
    btn.disabled = false;
    if (err.code === 'conflict') dropRinging(callId, 'agent.ringing.takenOther');
    else if (err.code === 'not_found' || err.code === 'invalid_state') dropRinging(callId, 'agent.ringing.gone');
    else setText(byId('ringing-note'), errorKey(err));
  }
}

// ---- live --------------------------------------------------------------------

function wireMedia(media) {
  media.on('status', (s) => conn.set('media', s === 'reconnecting'));
  media.on('track', (track, info) => addTile(track, info));
  media.on('trackremoved', (track) => {
    for (const tile of [...byId('tiles').querySelectorAll('[data-track-id]')]) {
      if (tile.dataset.trackId === track.id) removeTile(tile);
    }
  });
  media.on('joinfailed', (err) => console.warn('media join refused:', err.code));
}

function addTile(track, info) {
  const p = info.participant || {};
  const pid = p.id == null ? '' : String(p.id);
  // One participant sends one track per role: a newer one (after their rejoin) replaces it.
  for (const el of [...byId('tiles').querySelectorAll('[data-participant-id]')]) {
    if (el.dataset.participantId === pid && el.dataset.tileRole === info.role && el.dataset.tileKind === track.kind) {
      removeTile(el);
    }
  }
  const attrs = { dataset: { role: info.role, participantKind: p.kind || '' } };
  if (track.kind === 'audio') {
    const audio = h('audio', { ...attrs, autoplay: true, hidden: true });
    Object.assign(audio.dataset, { trackId: track.id, participantId: pid, tileRole: info.role, tileKind: 'audio' });
    byId('tiles').append(audio);
    attachTrack(audio, track);
    return;
  }
  const video = h('video', { ...attrs, autoplay: true, playsInline: true, muted: true });
  const caption = h('figcaption', {}, h('span', { i18n: [captionKey(info)] }), p.name ? ` · ${p.name}` : '');
  const tile = h('figure', {
    class: `tile role-${info.role}`,
    dataset: { trackId: track.id, participantId: pid, tileRole: info.role, tileKind: 'video' },
  },
    video, caption);
  byId('tiles').append(tile);
  attachTrack(video, track);
  updateTilesEmpty();
}

function removeTile(el) {
  for (const m of el.matches('video, audio') ? [el] : el.querySelectorAll('video, audio')) m.srcObject = null;
  el.remove();
  updateTilesEmpty();
}

function updateTilesEmpty() {
  byId('tiles-empty').hidden = byId('tiles').querySelector('video') !== null;
}

function participantNote(msg, key) {
  if (!isThisCall(msg) || !msg.participant) return;
  setText(byId('participants-note'), key, { name: msg.participant.name || '', kind: t(kindKey(msg.participant.kind)) });
}

async function enterLive(call) {
  if (!call) return;
  if (app.call && app.call.call_id === call.call_id) return;
  app.call = call;
  clearRinging();
  ring.stop();
  byId('case-number').textContent = call.case_number || '';
  byId('case-service').textContent = call.service ? call.service.name : '';
  const kiosk = call.kiosk || {};
  byId('case-kiosk').textContent = [kiosk.township, kiosk.name].filter(Boolean).join(' · ');
  byId('case-duration').dataset.since = call.answered_at || new Date().toISOString();
  byId('case-duration').textContent = sinceText(byId('case-duration').dataset.since);
  byId('participants-note').textContent = '';
  resetSurveyor();
  capture.reset();
  materials.clear();
  updateMaterialsEmpty();
  app.chat.start(call.call_id);
  updateTilesEmpty();
  setState('live');
  api.get(`/cases/${encodeURIComponent(call.case_id)}`)
    .then((c) => { for (const m of (c && c.materials) || []) addMaterial(m); })
    .catch((err) => console.warn('case could not be loaded:', err.code));

  const gen = app.mediaGen;
  const { stream, warning } = await getLocalMedia(
    { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 15, max: 20 } },
    { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  );
  if (gen !== app.mediaGen || !app.call || app.call.call_id !== call.call_id) {
    stopStream(stream);
    return;
  }
  const warn = byId('media-warning');
  if (warning) showError(warn, null, warning);
  else hideError(warn);
  app.localStream = stream;
  byId('local-camera').srcObject = stream;
  const tracks = {};
  if (stream) {
    if (stream.getVideoTracks()[0]) tracks.camera = stream.getVideoTracks()[0];
    if (stream.getAudioTracks()[0]) tracks.mic = stream.getAudioTracks()[0];
  }
  app.media.start(call.call_id, tracks);
}

function leaveLive() {
  app.mediaGen += 1;
  if (app.media) app.media.stop();
  stopStream(app.localStream);
  app.localStream = null;
  byId('local-camera').srcObject = null;
  for (const el of [...byId('tiles').children]) removeTile(el);
  delete byId('case-duration').dataset.since;
  byId('case-duration').textContent = '';
  if (app.chat) app.chat.clear();
  materials.clear();
  capture.reset();
  resetSurveyor();
  conn.set('media', false);
  const wasLive = app.call !== null;
  app.call = null;
  if (wasLive || state() === 'live') {
    setState('idle');
    updateRinging();
  }
}

async function onEndCall() {
  if (!app.call) return;
  const callId = app.call.call_id;
  const btn = byId('end-call');
  btn.disabled = true;
  try {
    await app.signal.request('call.end', { call_id: callId });
  } catch (err) {
    if (err.code === 'not_found' || err.code === 'invalid_state') leaveLive();
  } finally {
    btn.disabled = false;
  }
  // `call.ended` follows the ack; if it got lost, do not keep a dead call on screen.
  setTimeout(() => { if (app.call && app.call.call_id === callId) leaveLive(); }, 4000);
}

// ---- case panel --------------------------------------------------------------

function addMaterial(m) {
  materials.add(m);
  updateMaterialsEmpty();
}

function updateMaterialsEmpty() {
  byId('materials-empty').hidden = byId('materials').children.length > 0;
}

async function onCapture() {
  if (!app.call) return;
  const btn = byId('capture-button');
  btn.disabled = true;
  capture.requested();
  try {
    await app.signal.request('device.capture', { call_id: app.call.call_id });
  } catch (err) {
    capture.update({ stage: 'failed', message: t(errorKey(err)) });
  } finally {
    setTimeout(() => { btn.disabled = false; }, 1500);
  }
}

function resetSurveyor() {
  byId('surveyor-box').hidden = true;
  byId('surveyor-link').removeAttribute('href');
  byId('surveyor-link').textContent = '';
  byId('surveyor-qr').replaceChildren();
  byId('surveyor-expiry').textContent = '';
  hideError(byId('surveyor-error'));
}

async function onSurveyorLink() {
  if (!app.call) return;
  const btn = byId('surveyor-link-button');
  btn.disabled = true;
  hideError(byId('surveyor-error'));
  try {
    const answer = await api.post(`/cases/${encodeURIComponent(app.call.case_id)}/surveyor-links`,
      { call_id: app.call.call_id });
    const link = byId('surveyor-link');
    const url = location.origin + answer.url;
    link.href = url;
    link.textContent = url;
    // qr_svg is generated by our own server (segno), not user input.
    byId('surveyor-qr').innerHTML = answer.qr_svg || '';
    if (answer.expires_at) setText(byId('surveyor-expiry'), 'agent.surveyor.expires', { time: formatClock(answer.expires_at) });
    byId('surveyor-box').hidden = false;
  } catch (err) {
    showError(byId('surveyor-error'), err);
  } finally {
    btn.disabled = false;
  }
}

async function onCopyLink() {
  const link = byId('surveyor-link');
  try {
    await navigator.clipboard.writeText(link.href);
    setText(byId('surveyor-expiry'), 'agent.surveyor.copied');
  } catch {
    // Clipboard blocked (plain http): select the text so Ctrl+C works.
    const range = document.createRange();
    range.selectNodeContents(link);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
}

// ---- wiring ------------------------------------------------------------------

function init() {
  initI18n();
  byId('login-form').addEventListener('submit', onLogin);
  byId('state-ready').addEventListener('click', () => requestState('ready'));
  byId('state-away').addEventListener('click', () => requestState('away'));
  byId('logout').addEventListener('click', () => logout());
  byId('capture-button').addEventListener('click', onCapture);
  byId('end-call').addEventListener('click', onEndCall);
  byId('surveyor-link-button').addEventListener('click', onSurveyorLink);
  byId('surveyor-copy').addEventListener('click', onCopyLink);
  // After a reload there was no click yet; the first one lets the ring tone play.
  for (const type of ['pointerdown', 'keydown']) document.addEventListener(type, () => ring.unlock(), { once: true });
  startTicker();
  updateRinging();
  if (api.session) {
    startSession();
  } else {
    setState('login');
    byId('login-username').focus();
  }
}

init();
