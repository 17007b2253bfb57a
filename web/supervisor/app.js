// Supervisor dashboard: queue, live sessions and agents, re-rendered on every
// `dashboard.snapshot` the server pushes (no polling); each live session can be
// monitored (listen / whisper / barge) in the #monitor panel. Today's figures and
// charts (stats.js) refresh after pushes and every 30 s; reports.js exports.
// body[data-state]: login | dashboard

import { Api } from '/common/api.js';
import { SignalClient } from '/common/signal.js';
import { initI18n, onLangChange } from '/common/i18n.js';
import {
  byId, h, setState, setText, t, ConnectionIndicator, showError, errorKey, startTicker,
  formatClock, kindKey, kioskText, sinceText, submitStaffLogin,
} from '/common/ui.js';
import { MonitorPanel, MODES } from '/supervisor/monitor.js';
import { TodayPanel } from '/supervisor/stats.js';
import { ReportsPanel } from '/supervisor/reports.js';

const api = new Api({ key: 'vw.supervisor.session' });
const conn = new ConnectionIndicator();
const app = { signal: null, snapshot: null };
const monitor = new MonitorPanel({ conn, onChange: () => markMonitored() });
const today = new TodayPanel(api);
let reports = null;

// ---- login -------------------------------------------------------------------

async function onLogin(ev) {
  ev.preventDefault();
  await submitStaffLogin(api, 'supervisor', 'supervisor.login.notSupervisor', startSession);
}

function logout(reasonKey = null) {
  monitor.stop(null);
  today.stop();
  if (app.signal) app.signal.close();
  app.signal = null;
  app.snapshot = null;
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
  signal.on('reconnecting', () => conn.set('socket', true));
  signal.on('reconnected', () => {
    conn.set('socket', false);
    subscribe();
    monitor.reconnected();
  });
  signal.on('unauthenticated', () => logout('err.sessionExpired'));
  signal.on('dashboard.snapshot', (msg) => {
    render(msg);
    today.pushed();
  });
  signal.on('call.ended', (msg) => monitor.callEnded(msg.call_id));
  monitor.attach(signal);
  signal.on('error', (msg) => console.warn('signalling error:', msg.code));
  setState('dashboard');
  setText(byId('dashboard-status'), 'supervisor.loading');
  let welcome;
  try {
    welcome = await signal.connect();
  } catch {
    return logout('err.sessionExpired');
  }
  byId('supervisor-name').textContent = welcome.principal ? welcome.principal.name : '';
  subscribe();
  today.start();
}

async function subscribe() {
  try {
    // The reply is itself a snapshot; the 'dashboard.snapshot' handler renders it.
    await app.signal.request('dashboard.subscribe', {});
  } catch (err) {
    if (err.code === 'forbidden') return logout('supervisor.login.notSupervisor');
    setText(byId('dashboard-status'), errorKey(err));
  }
}

// ---- rendering ---------------------------------------------------------------

function render(snapshot) {
  app.snapshot = snapshot;
  byId('dashboard-status').textContent = '';
  setText(byId('updated-at'), 'supervisor.updatedAt', { time: formatClock(new Date().toISOString()) });
  renderQueue(snapshot.queue || []);
  renderSessions(snapshot.sessions || []);
  renderAgents(snapshot.agents || []);
  renderSla(snapshot.sla_flags || []);
  // A monitored call no longer live has ended (its call.ended may not reach us).
  const live = new Set((snapshot.sessions || []).map((s) => String(s.call_id)));
  if (monitor.callId !== null && !live.has(String(monitor.callId))) monitor.callEnded(monitor.callId);
}

/** Cases near or past an SLA deadline, most urgent first (pushed with each snapshot). */
function renderSla(flags) {
  const body = byId('sla-flags').querySelector('tbody');
  body.replaceChildren();
  for (const f of flags) {
    const late = f.remaining_s < 0;
    const mins = Math.round(Math.abs(f.remaining_s) / 60);
    body.append(h('tr', { dataset: { caseId: f.case_id, state: f.state }, class: `sla-${f.state}` },
      h('td', {}, f.number),
      h('td', {}, f.service ? f.service.name : ''),
      h('td', {}, f.township || ''),
      h('td', {}, h('span', { i18n: [`supervisor.sla.state.${f.state}`] })),
      h('td', {}, h('span', { i18n: [`supervisor.sla.ms.${f.milestone}`] })),
      h('td', {}, formatClock(f.deadline), ' ',
        h('span', { i18n: [late ? 'supervisor.sla.over' : 'supervisor.sla.left', { n: mins }] }))));
  }
  byId('sla-count').textContent = String(flags.length);
  byId('sla-empty').hidden = flags.length > 0;
}

function renderQueue(queue) {
  const rows = [...queue]
    .sort((a, b) => String(a.queued_at).localeCompare(String(b.queued_at)))
    .map((c) => h('tr', { dataset: { callId: c.call_id } },
      h('td', {}, c.service ? c.service.name : ''),
      h('td', {}, kioskText(c.kiosk)),
      h('td', {}, h('time', { datetime: c.queued_at || '' }, formatClock(c.queued_at))),
      h('td', { class: 'num' }, h('span', { dataset: { since: c.queued_at || '' } }, sinceText(c.queued_at)))));
  byId('queue').tBodies[0].replaceChildren(...rows);
  byId('queue-count').textContent = String(rows.length);
  byId('queue-empty').hidden = rows.length > 0;
}

function participantsText(list) {
  return (list || []).map((p) => `${p.name || '?'}（${t(kindKey(p.kind))}）`).join(', ');
}

function monitorButtons(session) {
  const group = h('div', { class: 'monitor-buttons', role: 'group', 'aria-label': t('supervisor.monitor.modes') });
  for (const mode of MODES) {
    const btn = h('button', {
      type: 'button', class: `monitor-${mode} small`, 'aria-pressed': 'false', dataset: { mode },
      i18n: [`supervisor.monitor.${mode}`],
    });
    btn.addEventListener('click', () => monitor.choose(session, mode));
    group.append(btn);
  }
  return h('td', { class: 'monitor-actions' }, group);
}

function renderSessions(sessions) {
  // Every snapshot rebuilds the rows: keep keyboard focus on the same button.
  const focused = document.activeElement;
  const keep = focused && byId('sessions').contains(focused) && focused.dataset.mode
    ? { callId: focused.closest('tr').dataset.callId, mode: focused.dataset.mode } : null;
  const rows = sessions.map((s) => h('tr', { dataset: { callId: s.call_id } },
    h('td', {}, s.case_number || ''),
    h('td', {}, s.service ? s.service.name : ''),
    h('td', {}, kioskText(s.kiosk)),
    h('td', {}, s.agent ? s.agent.name : ''),
    h('td', { class: 'participants' }, participantsText(s.participants)),
    h('td', { class: 'num' }, h('span', { dataset: { since: s.answered_at || s.queued_at || '' } },
      sinceText(s.answered_at || s.queued_at))),
    monitorButtons(s)));
  byId('sessions').tBodies[0].replaceChildren(...rows);
  byId('sessions-count').textContent = String(rows.length);
  byId('sessions-empty').hidden = rows.length > 0;
  markMonitored();
  if (keep) {
    const row = rows.find((r) => r.dataset.callId === keep.callId);
    const btn = row && row.querySelector(`button[data-mode="${keep.mode}"]`);
    if (btn) btn.focus();
  }
}

/** aria-pressed on the row buttons: which call is monitored, in which mode. */
function markMonitored() {
  const callId = monitor.callId === null ? null : String(monitor.callId);
  for (const row of byId('sessions').tBodies[0].rows) {
    const on = row.dataset.callId === callId;
    row.classList.toggle('monitored', on);
    for (const btn of row.querySelectorAll('button[data-mode]')) {
      btn.setAttribute('aria-pressed', String(on && btn.dataset.mode === monitor.mode));
    }
  }
}

function renderAgents(agents) {
  const order = { ready: 0, ringing: 1, in_call: 1, busy: 1, wrap_up: 2, away: 3, offline: 4 };
  const items = [...agents]
    .sort((a, b) => (order[a.state] ?? 9) - (order[b.state] ?? 9) || String(a.name).localeCompare(String(b.name)))
    .map((a) => {
      const known = ['ready', 'away', 'offline', 'busy', 'in_call', 'ringing', 'wrap_up'].includes(a.state);
      const badge = h('span', { class: 'badge', dataset: { state: a.state || '', reason: a.reason || '' } });
      const reasons = ['break', 'meeting', 'lunch', 'training'];
      if (a.state === 'away' && a.reason === 'missed') setText(badge, 'agentState.away_missed');
      else if (a.state === 'away' && reasons.includes(a.reason)) setText(badge, `agentState.reason.${a.reason}`);
      else if (known) setText(badge, `agentState.${a.state}`);
      else badge.textContent = a.state || '';
      return h('li', { dataset: { agentId: a.id, state: a.state || '' } }, h('span', { class: 'agent-name' }, a.name || ''), ' ', badge);
    });
  byId('agents').replaceChildren(...items);
  byId('agents-count').textContent = String(items.length);
  const ready = agents.filter((a) => a.state === 'ready').length;
  setText(byId('agents-ready'), 'supervisor.agents.ready', { n: ready });
  byId('agents-empty').hidden = items.length > 0;
}

// ---- wiring ------------------------------------------------------------------

function init() {
  initI18n();
  byId('login-form').addEventListener('submit', onLogin);
  byId('logout').addEventListener('click', () => logout());
  reports = new ReportsPanel(api);
  onLangChange(() => {
    if (app.snapshot) render(app.snapshot);
    today.render();
    reports.relabel();
  });
  startTicker();
  if (api.session) {
    startSession();
  } else {
    setState('login');
    byId('login-username').focus();
  }
}

init();
