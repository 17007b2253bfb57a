// Township kiosk: pick a service, queue, video call with the agent, rate.
// body[data-state]: login | idle | queued | live | ended | rated

import { Api } from '/common/api.js';
import { SignalClient } from '/common/signal.js';
import { CallMedia } from '/common/rtc.js';
import { initI18n, onLangChange } from '/common/i18n.js';
import {
  byId, h, setState, setText, t, initElderly, ConnectionIndicator, CaptureProgress,
  MaterialList, getLocalMedia, stopStream, tracksByRole, showError, hideError, errorKey,
} from '/common/ui.js';
import { Chat } from '/common/chat.js';
import { RemoteView } from '/kiosk/remote.js';
import { RemoteControlPrompt } from '/kiosk/remotecontrol.js';
import { RatingForm } from '/kiosk/rating.js';
import { CatalogSearchBox } from '/kiosk/search.js';

const RATED_BACK_MS = 10000;
const ENDED_BACK_MS = 120000;

const api = new Api({ storage: window.localStorage, key: 'vw.kiosk.session' });
const conn = new ConnectionIndicator();
const capture = new CaptureProgress();
const materials = new MaterialList(api, byId('materials'), { openable: false });
const remote = new RemoteView();
const remoteControl = new RemoteControlPrompt(() => app);
let rating = null; // RatingForm, made in init() once the language is set
let search = null; // CatalogSearchBox: the server's colloquial search

const app = {
  signal: null,
  media: null,
  chat: null,
  call: null,
  catalog: [],
  selected: null,
  localStream: null,
  localPromise: null,
  mediaGen: 0,
  backTimer: null,
  endFallback: null,
  ringingCall: null, // the call an officer's console rings for (call.connecting)
};

const state = () => document.body.dataset.state;

// ---- login -------------------------------------------------------------------

async function onLogin(ev) {
  ev.preventDefault();
  const errEl = byId('login-error');
  hideError(errEl);
  const code = byId('login-code').value.trim();
  const key = byId('login-key').value;
  if (!code) return showError(errEl, null, 'kiosk.login.needCode');
  if (!key) return showError(errEl, null, 'kiosk.login.needKey');
  const btn = byId('login-submit');
  btn.disabled = true;
  try {
    const answer = await api.login('/auth/kiosk', { kiosk_code: code, device_key: key });
    if (answer.role !== 'kiosk') {
      api.clear();
      return showError(errEl, null, 'kiosk.login.notKiosk');
    }
    byId('login-key').value = '';
    await startSession();
  } catch (err) {
    const bad = ['unauthenticated', 'forbidden', 'not_found', 'invalid_message'].includes(err.code);
    showError(errEl, err, bad ? 'kiosk.login.bad' : errorKey(err));
  } finally {
    btn.disabled = false;
  }
}

function logout(reasonKey = null) {
  leaveCall();
  if (app.signal) app.signal.close();
  app.signal = null;
  api.clear();
  conn.clear();
  setState('login');
  if (reasonKey) showError(byId('login-error'), null, reasonKey);
  byId('login-code').focus();
}

// ---- session -----------------------------------------------------------------

async function startSession() {
  const signal = new SignalClient(api.token);
  app.signal = signal;
  app.media = new CallMedia(signal);
  app.chat = new Chat(signal, { kind: 'kiosk', name: '' }, api);
  wireSignal(signal);
  wireMedia(app.media);
  loadCatalog();
  let welcome;
  try {
    welcome = await signal.connect();
  } catch {
    return logout('err.sessionExpired');
  }
  app.chat.self.name = welcome.principal ? welcome.principal.name : '';
  // Recording is visible to the citizen whenever it is on (a deployment switch).
  if (welcome.recording === false) byId('recording-notice').remove();
  byId('kiosk-name').textContent = app.chat.self.name;
  resumeCall(welcome.active_call);
}

/** After a reload or reconnect: a live call is re-joined; a queued one (if the server
 * reports it) shows the queue again; none at all means idle. */
function resumeCall(call) {
  if (call && call.status === 'queued') onQueued({ call, position: null, eta_s: undefined });
  else if (call) enterLive(call);
  else goIdle();
}

function wireSignal(signal) {
  signal.on('reconnecting', () => conn.set('socket', true));
  // The other side's media link is down: say so here too until it is back.
  signal.on('participant.state', (msg) => conn.set(`peer:${msg.participant_id}`, msg.state === 'reconnecting'));
  signal.on('reconnected', (welcome) => {
    conn.set('socket', false);
    const active = welcome.active_call;
    if (active && app.call && active.call_id === app.call.call_id && state() === 'live') {
      app.media.rejoin();
    } else if (active) {
      resumeCall(active);
    } else if (state() === 'live') {
      // The call ended while we were away.
      onEnded({ call_id: app.call.call_id, ended_by: 'system' });
    }
  });
  signal.on('unauthenticated', () => logout('err.sessionExpired'));
  signal.on('call.queued', (msg) => onQueued(msg));
  signal.on('queue.position', (msg) => {
    if (app.call && msg.call_id === app.call.call_id) showPosition(msg.position, msg.eta_s);
  });
  signal.on('queue.callback_offer', (msg) => {
    if (app.call && msg.call_id === app.call.call_id && !app.call.callback) byId('callback-offer').hidden = false;
  });
  signal.on('call.connecting', (msg) => connectWhileRinging(msg.call_id));
  signal.on('call.answered', (msg) => enterLive(msg.call));
  signal.on('appointment.booked', (msg) => {
    if (!app.call || msg.case_id !== app.call.case_id || !msg.appointment) return;
    showBooking(msg.appointment);
  });
  signal.on('call.transferring', (msg) => {
    if (!app.call || msg.call_id !== app.call.call_id) return;
    byId('agent-name').textContent = '';
    const notice = byId('transfer-notice');
    setText(notice, 'kiosk.transfer.notice', { to: msg.to || '' });
    notice.hidden = false;
  });
  signal.on('call.ended', (msg) => onEnded(msg));
  signal.on('call.requeued', (msg) => onRequeued(msg));
  signal.on('capture.progress', (msg) => {
    if (app.call && msg.call_id === app.call.call_id) capture.update(msg);
  });
  signal.on('case.material', (msg) => {
    if (app.call && msg.case_id === app.call.case_id) materials.add(msg.material);
  });
  signal.on('chat.message', (msg) => app.chat.add(msg));
  signal.on('kiosk.code', (msg) => onScannedCode(msg));
  signal.on('remote.state', (msg) => {
    if (app.call && msg.call_id === app.call.call_id) remoteControl.update(msg);
  });
  signal.on('error', (msg) => console.warn('signalling error:', msg.code));
}

function wireMedia(media) {
  media.on('status', (s) => conn.set('media', s === 'reconnecting'));
  media.on('track', (track, info) => remote.add(track, info));
  media.on('trackremoved', (track) => remote.remove(track));
  media.on('joinfailed', (err) => console.warn('media join refused:', err.code));
}

// ---- catalog / idle ----------------------------------------------------------

async function loadCatalog() {
  const status = byId('catalog-status');
  byId('catalog-retry').hidden = true;
  setText(status, 'kiosk.idle.loading');
  try {
    app.catalog = (await api.get('/catalog')) || [];
    renderCatalog();
  } catch (err) {
    if (err.code === 'unauthenticated') return logout('err.sessionExpired');
    setText(status, 'kiosk.idle.loadFailed');
    byId('catalog-retry').hidden = false;
  }
}

function renderCatalog() {
  const box = byId('services');
  box.replaceChildren();
  const groups = new Map();
  for (const item of app.catalog) {
    const cat = item.category || item.department || '';
    if (!groups.has(cat)) groups.set(cat, []);
    groups.get(cat).push(item);
  }
  for (const [cat, items] of groups) {
    const list = h('div', { class: 'service-list' });
    for (const item of items) {
      const btn = h('button', {
        type: 'button', class: 'service', 'aria-pressed': 'false',
        dataset: { serviceCode: item.code, search: `${item.name} ${item.department || ''} ${item.code}`.toLowerCase() },
      }, item.name);
      if (item.department) btn.title = item.department;
      btn.addEventListener('click', () => selectService(item.code));
      list.append(btn);
    }
    box.append(h('div', { class: 'service-group' }, cat ? h('h3', {}, cat) : null, list));
  }
  filterCatalog();
}

function filterCatalog() {
  if (search && search.active) return; // the server's results are on screen
  const q = byId('service-search').value.trim().toLowerCase();
  let shown = 0;
  for (const group of byId('services').querySelectorAll('.service-group')) {
    let inGroup = 0;
    for (const btn of group.querySelectorAll('button[data-service-code]')) {
      const match = !q || btn.dataset.search.includes(q);
      btn.hidden = !match;
      if (match) inGroup += 1;
    }
    group.hidden = inGroup === 0;
    shown += inGroup;
  }
  const status = byId('catalog-status');
  if (!app.catalog.length) setText(status, 'kiosk.idle.empty');
  else if (!shown) setText(status, 'kiosk.idle.noMatch');
  else if (q) setText(status, 'kiosk.idle.matches', { n: shown });
  else status.textContent = '';
}

function selectService(code) {
  app.selected = app.catalog.find((s) => s.code === code) || null;
  for (const btn of byId('services').querySelectorAll('button[data-service-code]')) {
    btn.setAttribute('aria-pressed', String(btn.dataset.serviceCode === code));
  }
  if (search) search.markSelected(app.selected ? app.selected.code : null);
  byId('call-button').disabled = !app.selected;
  hideError(byId('call-error'));
}

function goIdle() {
  clearTimeout(app.backTimer);
  clearTimeout(app.endFallback);
  leaveCall();
  app.call = null;
  byId('service-search').value = '';
  if (search) search.reset();
  byId('booking-code-input').value = '';
  byId('case-number-input').value = '';
  byId('booking-scanned').hidden = true;
  selectService(null);
  filterCatalog();
  setState('idle');
}

// ---- queue -------------------------------------------------------------------

async function onCall() {
  if (!app.selected || !app.signal) return;
  const btn = byId('call-button');
  btn.disabled = true;
  hideError(byId('call-error'));
  startLocalMedia(); // while we wait: the citizen sees themselves
  try {
    const body = { service_code: app.selected.code };
    const booking = byId('booking-code-input').value.trim();
    if (booking) body.booking_code = booking;
    const caseNumber = byId('case-number-input').value.trim();
    if (caseNumber) body.case_number = caseNumber;
    const reply = await app.signal.request('call.start', body);
    byId('booking-code-input').value = '';
    byId('case-number-input').value = '';
    byId('booking-scanned').hidden = true;
    onQueued(reply);
  } catch (err) {
    stopLocalMedia();
    showError(byId('call-error'), err, err.code === 'disconnected' ? 'err.disconnected' : 'kiosk.idle.callFailed');
  } finally {
    btn.disabled = !app.selected;
  }
}

function onQueued(msg) {
  if (!msg.call || (app.call && app.call.call_id === msg.call.call_id && state() !== 'idle')) return;
  app.call = msg.call;
  byId('call-service').textContent = msg.call.service ? msg.call.service.name : '';
  showPosition(msg.position, msg.eta_s);
  showCallback(Boolean(msg.call.callback));
  byId('self-booking').hidden = true;
  setState('queued');
  startLocalMedia();
  if (app.ringingCall === msg.call.call_id) connectWhileRinging(msg.call.call_id);
}

function showPosition(position, etaS) {
  const el = byId('queue-status');
  if (typeof position !== 'number') {
    el.dataset.position = '';
    setText(el, 'kiosk.queue.waiting');
  } else {
    el.dataset.position = String(position);
    setText(el, 'kiosk.queue.position', { n: position });
  }
  showEstimate(etaS);
}

/** eta_s: seconds; null = nobody on duty for this service; undefined = not known yet. */
function showEstimate(etaS) {
  const el = byId('queue-eta');
  if (etaS === undefined) {
    el.dataset.eta = '';
    el.textContent = '';
    delete el.dataset.i18n;
  } else if (etaS === null) {
    el.dataset.eta = 'none';
    setText(el, 'kiosk.queue.noAgent');
  } else if (etaS < 30) {
    el.dataset.eta = String(etaS);
    setText(el, 'kiosk.queue.soon');
  } else {
    el.dataset.eta = String(etaS);
    setText(el, 'kiosk.queue.eta', { m: Math.max(1, Math.round(etaS / 60)) });
  }
}

const slotLabel = (slot) => `${new Date(slot.starts_at).toLocaleString(document.documentElement.lang || 'zh-CN',
  { month: 'numeric', day: 'numeric', weekday: 'short', hour: '2-digit', minute: '2-digit' })} · ${slot.hall}`;

/** A window booking: code, time and QR, on screen until the citizen presses 我已记下. */
function showBooking(b) {
  byId('booking-notice-code').textContent = b.code;
  byId('booking-notice-when').textContent = slotLabel(b.slot);
  // qr_svg is generated by our own server (segno) from the booking code.
  byId('booking-notice-qr').innerHTML = b.qr_svg || '';
  byId('booking-notice').hidden = false;
  clearTimeout(app.bookingTimer);
  app.bookingTimer = setTimeout(hideBooking, 5 * 60 * 1000); // not left for the next citizen
}

function hideBooking() {
  clearTimeout(app.bookingTimer);
  byId('booking-notice').hidden = true;
  byId('booking-notice-qr').innerHTML = '';
}

/** Waited too long: book a window visit instead (the call is then withdrawn). */
async function openSelfBooking() {
  if (!app.call) return;
  const select = byId('self-booking-slot');
  hideError(byId('self-booking-error'));
  try {
    const slots = await api.get(`/appointment-slots?service=${encodeURIComponent(app.call.service.code)}`);
    select.replaceChildren(...(slots || []).map((slot) => h('option', { value: String(slot.id) }, slotLabel(slot))));
    byId('callback-offer').hidden = true;
    byId('self-booking').hidden = false;
    if (!slots || slots.length === 0) showError(byId('self-booking-error'), null, 'kiosk.selfbook.none');
    byId('self-booking-confirm').disabled = !slots || slots.length === 0;
  } catch (err) {
    showError(byId('self-booking-error'), err);
  }
}

async function confirmSelfBooking() {
  if (!app.call) return;
  const btn = byId('self-booking-confirm');
  btn.disabled = true;
  try {
    const booking = await api.post(`/cases/${encodeURIComponent(app.call.case_id)}/appointments`,
      { slot_id: Number(byId('self-booking-slot').value) });
    showBooking(booking);
    byId('self-booking').hidden = true;
    // Booked for the window: no need to wait for an officer any more.
    await app.signal.request('call.cancel', { call_id: app.call.call_id }).catch(() => {});
    goIdle();
  } catch (err) {
    showError(byId('self-booking-error'), err);
  } finally {
    btn.disabled = false;
  }
}

function showCallback(registered) {
  byId('callback-registered').hidden = !registered;
  if (registered) byId('callback-offer').hidden = true;
}

async function onCallback() {
  if (!app.call) return;
  const btn = byId('callback-accept');
  btn.disabled = true;
  try {
    const reply = await app.signal.request('call.callback', { call_id: app.call.call_id });
    app.call = reply.call;
    showCallback(true);
  } catch (err) {
    showError(byId('call-error'), err, 'kiosk.callback.failed');
  } finally {
    btn.disabled = false;
  }
}

async function onCancel() {
  if (!app.call) return goIdle();
  const btn = byId('cancel-call');
  btn.disabled = true;
  try {
    await app.signal.request('call.cancel', { call_id: app.call.call_id });
    goIdle();
  } catch (err) {
    // Answered in the meantime: `call.answered` takes us live; otherwise just go back.
    if (err.code !== 'invalid_state' && err.code !== 'conflict') goIdle();
  } finally {
    btn.disabled = false;
  }
}

// ---- live --------------------------------------------------------------------

function startLocalMedia() {
  if (!app.localPromise) {
    const gen = app.mediaGen;
    app.localPromise = (async () => {
      const { stream, warning } = await getLocalMedia(
        { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 15, max: 20 } },
        { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      );
      if (gen !== app.mediaGen) {
        // The call was cancelled or ended while the camera was opening.
        stopStream(stream);
        return null;
      }
      const warn = byId('media-warning');
      if (warning) showError(warn, null, warning);
      else hideError(warn);
      app.localStream = stream;
      const video = byId('local-camera');
      video.srcObject = stream;
      if (stream) video.play().catch(() => {});
      return stream;
    })();
  }
  return app.localPromise;
}

function stopLocalMedia() {
  app.mediaGen += 1;
  app.localPromise = null;
  stopStream(app.localStream);
  app.localStream = null;
  byId('local-camera').srcObject = null;
  hideError(byId('media-warning'));
}

/**
 * An officer's console rings for our call: connect the media to the server now, so
 * that the answer shows both sides at once instead of starting the connection then.
 * The server passes nothing on (and records nothing) until the call is answered.
 */
async function connectWhileRinging(callId) {
  // An officer free at once: this can come before the reply to call.start does.
  app.ringingCall = callId;
  if (!app.call || app.call.call_id !== callId || state() !== 'queued') return;
  if (app.media.active && app.media.callId === callId) return;
  const stream = await startLocalMedia();
  if (state() !== 'queued' || !app.call || app.call.call_id !== callId) return;
  if (app.media.active && app.media.callId === callId) return;
  app.media.start(callId, tracksByRole(stream));
}

async function enterLive(call) {
  if (state() === 'live' && app.call && app.call.call_id === call.call_id) {
    // Answered again after a transfer: same session, a new officer.
    app.call = call;
    byId('agent-name').textContent = call.agent ? call.agent.name : '';
    byId('transfer-notice').hidden = true;
    return;
  }
  clearTimeout(app.backTimer);
  byId('requeue-notice').hidden = true;
  app.call = call;
  byId('call-service').textContent = call.service ? call.service.name : '';
  byId('agent-name').textContent = call.agent ? call.agent.name : '';
  capture.reset();
  materials.clear();
  app.chat.start(call.call_id, call.case_id);
  setState('live');
  api.get(`/cases/${encodeURIComponent(call.case_id)}`)
    .then((c) => materials.addAll(c && c.materials))
    .catch(() => { /* pushes still arrive; nothing to show the citizen */ });
  const stream = await startLocalMedia();
  if (state() !== 'live' || !app.call || app.call.call_id !== call.call_id) return;
  if (app.media.active && app.media.callId === call.call_id) return; // connected while it rang
  app.media.start(call.call_id, tracksByRole(stream));
}

/** A code scanned outside a call: a booking slip fills the booking-code field. */
function onScannedCode(msg) {
  if (msg.purpose !== 'booking' || app.call) return;
  const input = byId('booking-code-input');
  input.value = String(msg.text || '').toUpperCase().slice(0, 12);
  setText(byId('booking-scanned'), 'kiosk.idle.bookingScanned');
  byId('booking-scanned').hidden = false;
  input.focus();
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

async function onEndCall() {
  if (!app.call) return;
  const callId = app.call.call_id;
  byId('end-call').disabled = true;
  try {
    await app.signal.request('call.end', { call_id: callId });
  } catch {
    // Socket down or call already over: end locally anyway.
  } finally {
    byId('end-call').disabled = false;
  }
  // `call.ended` normally follows; do not leave the citizen waiting if it does not.
  clearTimeout(app.endFallback);
  app.endFallback = setTimeout(() => onEnded({ call_id: callId, ended_by: 'kiosk' }), 4000);
}

function leaveCall() {
  // Still waiting (cancelled, or gone to a callback): media connected while an officer's
  // console rang is closed at the server too.
  if (app.media) app.media.stop({ leave: state() === 'queued' });
  stopLocalMedia();
  remote.clear();
  if (app.chat) app.chat.clear();
  materials.clear();
  capture.reset();
  remoteControl.reset();
  conn.set('media', false);
}

// ---- ended / rating ----------------------------------------------------------

/** The server carrying the call's media was lost: the call waits again for the next
 * officer, same case, its materials kept. The media connects again when one answers. */
function onRequeued(msg) {
  if (!app.call || msg.call_id !== app.call.call_id) return;
  if (app.media) app.media.stop({ leave: false });
  remote.clear();
  remoteControl.reset();
  conn.set('media', false);
  app.ringingCall = null;
  app.call = { ...app.call, status: 'queued', agent: null };
  byId('agent-name').textContent = '';
  byId('transfer-notice').hidden = true;
  showPosition(null, undefined);
  byId('requeue-notice').hidden = false;
  if (state() !== 'queued') setState('queued');
}

function onEnded(msg) {
  if (!app.call || msg.call_id !== app.call.call_id) return;
  clearTimeout(app.endFallback);
  byId('requeue-notice').hidden = true;
  const wasQueued = state() === 'queued';
  leaveCall();
  if (wasQueued) {
    // Never answered: no one to rate.
    app.call = null;
    goIdle();
    showError(byId('call-error'), null, 'kiosk.endedUnanswered');
    return;
  }
  if (state() === 'ended' || state() === 'rated') return;
  setText(byId('ended-reason'), `kiosk.ended.${msg.ended_by || 'system'}`);
  rating.reset();
  setState('ended');
  app.backTimer = setTimeout(goIdle, ENDED_BACK_MS);
  byId('ended-title').focus();
}

function onRated() {
  clearTimeout(app.backTimer);
  setState('rated');
  app.backTimer = setTimeout(goIdle, RATED_BACK_MS);
  byId('new-call').focus();
}

// ---- wiring ------------------------------------------------------------------

function init() {
  initI18n();
  initElderly();
  rating = new RatingForm(api, { getCallId: () => (app.call ? app.call.call_id : null), onRated });
  byId('login-form').addEventListener('submit', onLogin);
  search = new CatalogSearchBox(api, { onSelect: selectService, fallback: filterCatalog });
  byId('catalog-retry').addEventListener('click', loadCatalog);
  byId('call-button').addEventListener('click', onCall);
  byId('cancel-call').addEventListener('click', onCancel);
  byId('callback-accept').addEventListener('click', onCallback);
  byId('self-book').addEventListener('click', openSelfBooking);
  byId('self-booking-confirm').addEventListener('click', confirmSelfBooking);
  byId('booking-done').addEventListener('click', hideBooking);
  byId('callback-dismiss').addEventListener('click', () => { byId('callback-offer').hidden = true; });
  byId('capture-button').addEventListener('click', onCapture);
  byId('end-call').addEventListener('click', onEndCall);
  byId('new-call').addEventListener('click', goIdle);
  byId('logout').addEventListener('click', () => {
    if (window.confirm(t('kiosk.logoutConfirm'))) logout();
  });
  onLangChange(() => filterCatalog());
  if (api.session) {
    setState('idle');
    startSession();
  } else {
    setState('login');
    byId('login-code').focus();
  }
}

init();
