// County/city agent console: ready/away, ringing calls, live video with the kiosk,
// case panel (materials, remote capture, surveyor link), chat, screen share, expert
// invitations, and a banner while a supervisor monitors.
// body[data-state]: login | idle | ringing | live;  body[data-call-role]: agent | expert

import { Api } from '/common/api.js';
import { SignalClient } from '/common/signal.js';
import { CallMedia } from '/common/rtc.js';
import { initI18n } from '/common/i18n.js';
import {
  byId, h, setState, setText, t, ConnectionIndicator, RingTone, getLocalMedia, stopStream, tracksByRole,
  showError, hideError, errorKey, startTicker, submitStaffLogin, kindKey, kioskText, sinceText,
} from '/common/ui.js';
import { Chat } from '/common/chat.js';
import { Tiles } from '/common/tiles.js';
import { RemoteControlPanel } from '/agent/remotecontrol.js';
import { InspectionPanel } from '/agent/inspection.js';
import { SnapshotRequests } from '/agent/snapshots.js';
import { CasePanel } from '/agent/casepanel.js';
import { ScreenShare } from '/agent/screenshare.js';
import { InviteForm, InvitationCard } from '/agent/conference.js';
import { TransferForm } from '/agent/transfer.js';
import { BookingBox, BookingLookup } from '/agent/appointments.js';
import { MonitorBanner } from '/agent/monitorbanner.js';

// An expert's call is not in `welcome.active_call` (that names only the call an agent
// took), so the page remembers it to join again after a reload.
const EXPERT_KEY = 'vw.agent.expertCall';

const api = new Api({ key: 'vw.agent.session' });
const conn = new ConnectionIndicator();
const ring = new RingTone();
// An evidence still of one video into the case; it arrives via `case.material`. While
// that participant's picture is away the request waits (#snapshot-pending).
const snapshots = new SnapshotRequests(() => app);
const tiles = new Tiles(undefined, undefined,
  { onSnapshot: (info) => snapshots.request(info.participant, info.role) });

const app = {
  signal: null,
  media: null,
  chat: null,
  call: null,
  callRole: null, // 'agent' (took the call) | 'expert' (invited)
  connecting: null, // the first signal.connect()
  agentState: 'offline',
  localStream: null,
  mediaGen: 0,
  warm: null, // the camera and microphone opening while a call rings (a getLocalMedia promise)
  ringingMedia: null, // the call whose media is connecting while it rings (connectWhileRinging)
};

const casePanel = new CasePanel(api, () => app);
const screenShare = new ScreenShare(() => app.media);
const remoteControl = new RemoteControlPanel(() => app);
const inspection = new InspectionPanel(api, () => app,
  { onSnapshot: (participant) => snapshots.request(participant, 'camera') });
const invite = new InviteForm(() => app);
const booking = new BookingBox(api, () => app);
new BookingLookup(api); // eslint-disable-line no-new
const transfer = new TransferForm(api, () => app, (reply) => {
  leaveLive();
  setText(byId('ringing-note'), 'agent.transfer.done', { to: reply.to || '' });
});
const banner = new MonitorBanner();
const invitation = new InvitationCard({ onAccept: joinAsExpert, onChange: () => updateRinging() });

const state = () => document.body.dataset.state;

// ---- login -------------------------------------------------------------------

async function onLogin(ev) {
  ev.preventDefault();
  ring.unlock(); // a click: the only moment the browser lets audio start later
  await submitStaffLogin(api, 'agent', 'agent.login.notAgent', startSession);
}

async function logout(reasonKey = null) {
  if (app.signal && app.signal.connected && !reasonKey) {
    await app.signal.request('agent.state', { state: 'offline' }).catch(() => {});
  }
  leaveLive();
  clearRinging();
  invitation.hide();
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
  app.chat = new Chat(signal, { kind: 'agent', name: '' }, api);
  wireSignal(signal);
  wireMedia(app.media);
  setState('idle');
  app.connecting = signal.connect();
  let welcome;
  try {
    welcome = await app.connecting;
  } catch {
    return logout('err.sessionExpired');
  }
  const name = welcome.principal ? welcome.principal.name : (api.session || {}).name || '';
  app.chat.self.name = name;
  byId('agent-name').textContent = name;
  if (welcome.active_call) enterLive(welcome.active_call);
  else resumeExpert();
}

/** After a reload: join again the call this agent was helping in as an expert. */
async function resumeExpert() {
  let callId = null;
  try {
    callId = Number(sessionStorage.getItem(EXPERT_KEY)) || null;
  } catch {
    callId = null;
  }
  if (!callId || app.call) return;
  try {
    const reply = await app.signal.request('call.join', { call_id: callId });
    enterLive(reply.call, 'expert');
  } catch {
    forgetExpertCall(); // over meanwhile
  }
}

function forgetExpertCall() {
  try {
    sessionStorage.removeItem(EXPERT_KEY);
  } catch {
    // storage disabled: nothing was remembered
  }
}

function wireSignal(signal) {
  signal.on('reconnecting', () => conn.set('socket', true));
  // The other side's media link is down: say so here too until it is back.
  signal.on('participant.state', (msg) => conn.set(`peer:${msg.participant_id}`, msg.state === 'reconnecting'));
  signal.on('reconnected', (welcome) => {
    conn.set('socket', false);
    const active = welcome.active_call;
    if (active && app.call && active.call_id === app.call.call_id) app.media.rejoin();
    else if (active) enterLive(active);
    // An expert's call is never reported: join its media again; a call that ended
    // meanwhile refuses (joinfailed).
    else if (app.call && app.callRole === 'expert') app.media.rejoin();
    else if (app.call) leaveLive();
  });
  signal.on('unauthenticated', () => logout('err.sessionExpired'));
  signal.on('agent.state', (msg) => showAgentState(msg.state, msg));
  signal.on('call.ringing', (msg) => addRinging(msg.call, msg));
  signal.on('call.offer_withdrawn', (msg) => dropRinging(msg.call_id,
    msg.reason === 'missed' ? 'agent.ringing.missed' : 'agent.ringing.withdrawn'));
  signal.on('call.taken', (msg) => dropRinging(msg.call_id, 'agent.ringing.taken', { name: msg.agent_name || '' }));
  signal.on('call.cancelled', (msg) => dropRinging(msg.call_id, 'agent.ringing.cancelled'));
  signal.on('call.accepted', (msg) => enterLive(msg.call));
  signal.on('call.ended', (msg) => {
    if (!app.call || msg.call_id !== app.call.call_id) return;
    leaveLive();
    // The server carrying the call's media was lost: the citizen waits again.
    if (msg.ended_by === 'server') setText(byId('ringing-note'), 'agent.call.lostServer');
  });
  signal.on('participant.joined', (msg) => participantNote(msg, 'agent.participant.joined'));
  signal.on('participant.left', (msg) => {
    if (!isThisCall(msg) || !msg.participant) return;
    tiles.removeParticipant(msg.participant.id);
    banner.left(msg.participant);
    participantNote(msg, 'agent.participant.left');
  });
  signal.on('monitor.state', (msg) => { if (isThisCall(msg)) banner.update(msg); });
  signal.on('call.invited', (msg) => {
    if (!msg.call || (app.call && msg.call.call_id === app.call.call_id)) return;
    invitation.show(msg, app.call !== null);
  });
  signal.on('capture.progress', (msg) => { if (isThisCall(msg)) casePanel.progress(msg); });
  signal.on('case.idread', (msg) => {
    if (app.call && msg.case_id === app.call.case_id) casePanel.devices.addRead(msg.read);
  });
  signal.on('remote.state', (msg) => { if (isThisCall(msg)) remoteControl.update(msg); });
  signal.on('snapshot.taken', (msg) => { if (isThisCall(msg)) snapshots.onTaken(msg); });
  signal.on('snapshot.failed', (msg) => { if (isThisCall(msg)) snapshots.onFailed(msg); });
  signal.on('inspection.position', (msg) => { if (isThisCall(msg)) inspection.onPosition(msg.position); });
  signal.on('inspection.evidence', (msg) => { if (isThisCall(msg)) inspection.onEvidence(msg); });
  signal.on('inspection.updated', (msg) => {
    if (app.call && msg.case_id === app.call.case_id && inspection.current) inspection.show(msg.inspection);
  });
  signal.on('case.code', (msg) => {
    if (app.call && msg.case_id === app.call.case_id) casePanel.devices.addCode(msg.code);
  });
  signal.on('case.material', (msg) => {
    if (app.call && msg.case_id === app.call.case_id) casePanel.addMaterial(msg.material);
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
    // The controls show right after login, possibly before the socket's first welcome.
    if (!app.signal.welcome) await app.connecting;
    const body = { state: next };
    if (next === 'away') body.reason = byId('away-reason').value;
    const reply = await app.signal.request('agent.state', body);
    showAgentState(reply.state || next, body);
  } catch (err) {
    setText(byId('ringing-note'), errorKey(err));
  }
}

function showAgentState(s, msg = {}) {
  app.agentState = s;
  const el = byId('agent-state');
  el.dataset.state = s;
  el.dataset.reason = msg.reason || '';
  const known = ['ready', 'away', 'offline', 'busy', 'in_call', 'ringing', 'wrap_up'];
  if (s === 'away' && msg.reason === 'missed') setText(el, 'agentState.away_missed');
  else if (s === 'away' && msg.reason && ['break', 'meeting', 'lunch', 'training'].includes(msg.reason)) {
    setText(el, `agentState.reason.${msg.reason}`);
  } else if (known.includes(s)) setText(el, `agentState.${s}`);
  else { delete el.dataset.i18n; el.textContent = s; }
  showWrapUp(s === 'wrap_up' ? msg.wrap_up_s : null);
  byId('state-ready').setAttribute('aria-pressed', String(s === 'ready'));
  byId('state-away').setAttribute('aria-pressed', String(s === 'away'));
  // Calls ring only for ready agents; anything still listed would be stale.
  if (s === 'away' || s === 'offline') clearRinging();
}

/** Wrap-up: the server makes the agent ready when the time is up; "Ready" ends it early. */
function showWrapUp(seconds) {
  const note = byId('wrap-note');
  if (typeof seconds !== 'number') { note.hidden = true; delete note.dataset.until; return; }
  note.dataset.until = new Date(Date.now() + seconds * 1000).toISOString();
  note.hidden = false;
  tickCountdowns();
}

/** Every `[data-until]` element shows the seconds left (wrap-up, an offer's deadline). */
function tickCountdowns() {
  for (const el of document.querySelectorAll('[data-until]')) {
    const left = Math.max(0, Math.ceil((Date.parse(el.dataset.until) - Date.now()) / 1000));
    const target = el.id === 'wrap-note' ? byId('wrap-text') : el;
    setText(target, el.dataset.countdownKey || 'agent.wrapUp', { s: left });
  }
}

// ---- ringing -----------------------------------------------------------------

function addRinging(call, msg = {}) {
  if (!call || (app.call && app.call.call_id === call.call_id)) return;
  const list = byId('ringing');
  if (list.querySelector(`li[data-call-id="${CSS.escape(call.call_id)}"]`)) return;
  const kiosk = call.kiosk || {};
  const accept = h('button', { type: 'button', class: 'accept-call primary', i18n: ['agent.accept'] });
  accept.addEventListener('click', () => onAccept(call.call_id, accept));
  // An offer made to this agent alone (not ring-all) has a deadline and can be passed on.
  const offered = typeof msg.timeout_s === 'number';
  const decline = offered ? h('button', { type: 'button', class: 'decline-call secondary', i18n: ['agent.ringing.decline'] }) : null;
  if (decline) decline.addEventListener('click', () => onDecline(call.call_id, decline));
  const deadline = offered ? h('span', { class: 'ring-deadline', dataset: {
    until: new Date(Date.now() + msg.timeout_s * 1000).toISOString(), countdownKey: 'agent.ringing.expires' } }) : null;
  const li = h('li', { class: 'ringing-call', dataset: { callId: call.call_id } },
    h('div', { class: 'ring-info' },
      h('strong', { class: 'ring-service' }, call.service ? call.service.name : '',
        call.callback ? h('span', { class: 'badge callback-badge', i18n: ['agent.ringing.callback'] }) : null),
      call.transfer_note ? h('span', { class: 'ring-transfer' },
        h('span', { i18n: ['agent.ringing.transferFrom', { name: call.transfer_note.author_name }] }), ' ',
        h('q', { class: 'transfer-note-text' }, call.transfer_note.text)) : null,
      deadline,
      h('span', { class: 'ring-kiosk' }, kioskText(kiosk)),
      h('span', { class: 'ring-wait' }, h('span', { i18n: ['agent.ringing.waiting'] }), ' ',
        h('span', { dataset: { since: call.queued_at || new Date().toISOString() } }, sinceText(call.queued_at)))),
    accept, decline);
  list.append(li);
  tickCountdowns();
  updateRinging();
  // Offered to us alone: connect the media now, while it rings (see connectWhileRinging).
  if (msg.timeout_s) connectWhileRinging(call.call_id);
}

async function onDecline(callId, btn) {
  btn.disabled = true;
  try {
    await app.signal.request('call.decline', { call_id: callId });
    dropRinging(callId, 'agent.ringing.declined');
  } catch (err) {
    btn.disabled = false;
    if (err.code === 'conflict' || err.code === 'invalid_state' || err.code === 'not_found') dropRinging(callId, 'agent.ringing.gone');
    else setText(byId('ringing-note'), errorKey(err));
  }
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
  if ((n > 0 || invitation.open) && !app.call) ring.start();
  else ring.stop();
  if (n > 0 && !app.call) warmLocalMedia();
  else if (!app.call) coolLocalMedia();
  const rang = app.ringingMedia;
  if (rang != null && !app.call
      && !byId('ringing').querySelector(`li[data-call-id="${CSS.escape(rang)}"]`)) {
    // It stopped ringing unanswered (taken, withdrawn, declined, cancelled).
    app.ringingMedia = null;
    app.media.stop({ leave: true });
  }
  if (state() === 'idle' || state() === 'ringing') setState(n > 0 ? 'ringing' : 'idle');
}

// ---- own camera and microphone ---------------------------------------------------

function openLocalMedia() {
  return getLocalMedia(
    { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 15, max: 20 } },
    { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  );
}

/**
 * Open the camera and microphone while a call rings, so that answering does not wait for
 * them (a real camera takes a second or more to start); `coolLocalMedia` closes them
 * again when the ringing stops unanswered.
 */
function warmLocalMedia() {
  if (!app.warm) app.warm = openLocalMedia();
}

/**
 * The call is offered to this agent alone: connect its media while it rings, so that
 * answering shows the citizen at once instead of starting the connection then. The
 * server passes nothing either way (and records nothing) until the call is answered.
 */
async function connectWhileRinging(callId) {
  if (app.call || app.ringingMedia != null) return;
  app.ringingMedia = callId;
  warmLocalMedia();
  const { stream } = await app.warm;
  if (app.call || app.ringingMedia !== callId) return;
  app.media.start(callId, tracksByRole(stream));
}

function coolLocalMedia() {
  const warm = app.warm;
  app.warm = null;
  if (warm) warm.then(({ stream }) => stopStream(stream));
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
  media.on('track', (track, info) => {
    tiles.add(track, info);
    if (info.participant && info.participant.kind === 'surveyor') inspection.onSurveyor(info.participant);
  });
  media.on('trackremoved', (track) => tiles.removeTrack(track));
  media.on('joinfailed', (err) => {
    console.warn('media join refused:', err.code);
    if (app.callRole !== 'expert') return; // the agent's call ends with call.ended
    leaveLive();
    setText(byId('ringing-note'), 'agent.expert.over');
  });
  media.on('publishfailed', (role, err) => {
    if (role === 'screen') screenShare.reset();
    console.warn(`publishing ${role} refused:`, err.code);
  });
}

function participantNote(msg, key) {
  if (!isThisCall(msg) || !msg.participant) return;
  setText(byId('participants-note'), key, { name: msg.participant.name || '', kind: t(kindKey(msg.participant.kind)) });
}

/** Show `call` live: `role` 'agent' for a call we took, 'expert' when invited into it. */
async function enterLive(call, role = 'agent') {
  if (!call) return;
  if (app.call && app.call.call_id === call.call_id) return;
  app.call = call;
  app.callRole = role;
  document.body.dataset.callRole = role;
  if (role === 'expert') {
    try {
      sessionStorage.setItem(EXPERT_KEY, String(call.call_id));
    } catch {
      // not remembered: a reload then leaves the call
    }
  }
  // Whoever took the call ends it; an expert only leaves.
  byId('end-call').hidden = role === 'expert';
  byId('leave-call').hidden = role !== 'expert';
  invite.show(role === 'agent');
  invite.reset();
  transfer.show(role === 'agent');
  transfer.reset();
  byId('booking-box').hidden = role !== 'agent';
  booking.reset();
  banner.clear();
  screenShare.reset();
  if (invitation.call && invitation.call.call_id === call.call_id) invitation.hide();
  invitation.setBusy(true);
  clearRinging();
  ring.stop();
  byId('participants-note').textContent = '';
  casePanel.show(call);
  app.chat.start(call.call_id, call.case_id);
  tiles.updateEmpty();
  setState('live');

  const gen = app.mediaGen;
  const opening = app.warm || openLocalMedia();
  app.warm = null;
  const { stream, warning } = await opening;
  if (gen !== app.mediaGen || !app.call || app.call.call_id !== call.call_id) {
    stopStream(stream);
    return;
  }
  const warn = byId('media-warning');
  if (warning) showError(warn, null, warning);
  else hideError(warn);
  app.localStream = stream;
  byId('local-camera').srcObject = stream;
  const rang = app.ringingMedia;
  app.ringingMedia = null;
  // Connected while it rang: the answer let it through; nothing to start.
  if (rang === call.call_id && app.media.active && app.media.callId === call.call_id) return;
  app.media.start(call.call_id, tracksByRole(stream));
}

function leaveLive() {
  app.mediaGen += 1;
  if (app.media) app.media.stop();
  screenShare.reset();
  remoteControl.reset();
  inspection.reset();
  snapshots.clear();
  stopStream(app.localStream);
  app.localStream = null;
  byId('local-camera').srcObject = null;
  tiles.clear();
  if (app.chat) app.chat.clear();
  casePanel.clear();
  banner.clear();
  invite.reset();
  transfer.reset();
  booking.reset();
  conn.set('media', false);
  forgetExpertCall();
  app.callRole = null;
  delete document.body.dataset.callRole;
  byId('end-call').hidden = false;
  byId('leave-call').hidden = true;
  invitation.setBusy(false);
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

// ---- expert conference -------------------------------------------------------

/** #invitation-accept: `call.join`, then the call as for an accepted one. */
async function joinAsExpert(call) {
  ring.unlock();
  if (app.call) throw Object.assign(new Error('busy'), { code: 'busy' });
  const reply = await app.signal.request('call.join', { call_id: call.call_id });
  await enterLive(reply.call || call, 'expert');
}

/** #leave-call (experts): `rtc.leave`; the call goes on without us. */
function onLeaveCall() {
  if (!app.call || app.callRole !== 'expert') return;
  app.media.stop({ leave: true });
  leaveLive();
  setText(byId('ringing-note'), 'agent.expert.left');
}

// ---- wiring ------------------------------------------------------------------

function init() {
  initI18n();
  byId('login-form').addEventListener('submit', onLogin);
  byId('state-ready').addEventListener('click', () => requestState('ready'));
  byId('state-away').addEventListener('click', () => requestState('away'));
  byId('away-reason').addEventListener('change', () => { if (app.agentState === 'away') requestState('away'); });
  setInterval(tickCountdowns, 1000);
  byId('logout').addEventListener('click', () => logout());
  byId('end-call').addEventListener('click', onEndCall);
  byId('leave-call').addEventListener('click', onLeaveCall);
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
