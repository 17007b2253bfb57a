// The case panel's lifecycle part: status with the moves the agent may make (reason,
// confirm, override when materials are missing), SLA badges, situation questions and
// the material checklist (ticks, what is missing, tag a received material as an entry).
// Everything comes from GET /cases/{id}/flow; the server decides, this only shows.

import { byId, h, setText, t, showError, hideError, setStatus } from '/common/ui.js';
import { has } from '/common/i18n.js';

const REFRESH_MS = 60000;
const MATERIAL_DEBOUNCE_MS = 300;
// Kinds that are never a citizen's paper: offered for tagging last, recordings not at all.
const UNTAGGABLE = new Set(['recording', 'original']);

function milestoneName(key) {
  return has(`caseflow.milestone.${key}`) ? t(`caseflow.milestone.${key}`) : key;
}

/** 754 s → "13 分钟"; an hour or more → "1 小时 5 分". */
function durationText(seconds) {
  const total = Math.max(1, Math.round(Math.abs(seconds) / 60));
  if (total < 60) return t('caseflow.sla.minutes', { n: total });
  return t('caseflow.sla.hours', { h: Math.floor(total / 60), m: total % 60 });
}

export class CaseFlowPanel {
  /** @param {() => {call: object|null}} getContext */
  constructor(api, getContext) {
    this.api = api;
    this.getContext = getContext;
    this.caseId = null;
    this.flow = null;
    this.pending = null; // the status a confirmation is open for
    this.materials = new Map(); // id -> material, for the tag choices
    this.refreshTimer = null;
    this.debounce = null;
    this.loading = 0;
    byId('case-transition-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.onConfirm(); });
    byId('case-transition-cancel').addEventListener('click', () => this.closeConfirm(true));
    byId('questions-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.onSaveAnswers(); });
  }

  show(call) {
    this.clear();
    this.caseId = call.case_id;
    this.refresh();
    this.refreshTimer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  clear() {
    clearInterval(this.refreshTimer);
    clearTimeout(this.debounce);
    this.caseId = null;
    this.flow = null;
    this.materials.clear();
    this.closeConfirm(false);
    hideError(byId('case-flow-error'));
    setStatus(byId('questions-status'), null);
    for (const id of ['case-transitions', 'case-sla', 'questions', 'checklist']) byId(id).replaceChildren();
    byId('case-status').textContent = '';
    byId('case-status').dataset.status = '';
    byId('checklist-box').dataset.complete = '';
    for (const id of ['case-outcome', 'case-paused', 'case-instant']) byId(id).hidden = true;
    byId('checklist-summary').textContent = '';
  }

  /** A material of the case arrived (`case.material`): it may tick an entry. */
  materialAdded(m) {
    if (!m || !m.id || this.caseId === null || m.case_id !== this.caseId) return;
    this.materials.set(m.id, m);
    clearTimeout(this.debounce);
    // A capture sends a page, its original and the PDF within a second: refresh once.
    this.debounce = setTimeout(() => this.refresh(), MATERIAL_DEBOUNCE_MS);
  }

  /** Anything else that may tick an entry (an ID-card read). */
  changed() {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.refresh(), MATERIAL_DEBOUNCE_MS);
  }

  async refresh() {
    const caseId = this.caseId;
    if (caseId === null) return;
    this.loading += 1;
    try {
      const flow = await this.api.get(`/cases/${encodeURIComponent(caseId)}/flow`);
      if (caseId === this.caseId) this.render(flow);
    } catch (err) {
      console.warn('case flow could not be loaded:', err.code);
    } finally {
      this.loading -= 1;
    }
  }

  render(flow) {
    const firstLoad = !this.flow;
    this.flow = flow;
    this.renderStatus(flow);
    this.renderSla(flow.sla);
    // Keep what the agent is choosing while a refresh comes in.
    if (firstLoad || !byId('questions-form').contains(document.activeElement)) this.renderQuestions(flow);
    this.renderChecklist(flow);
  }

  renderStatus(flow) {
    const badge = byId('case-status');
    badge.dataset.status = flow.status;
    setText(badge, `caseflow.status.${flow.status}`);
    const outcome = byId('case-outcome');
    outcome.hidden = !flow.outcome_note;
    if (flow.outcome_note) setText(outcome, 'caseflow.outcome', { note: flow.outcome_note });
    byId('case-paused').hidden = !flow.paused;
    byId('case-instant').hidden = !flow.instant_approval;
    const box = byId('case-transitions');
    box.replaceChildren();
    if (!flow.allowed.length) {
      box.append(h('p', { class: 'hint', i18n: ['caseflow.noTransitions'] }));
    }
    for (const to of flow.allowed) {
      const btn = h('button', {
        type: 'button',
        class: to === 'completed' ? 'primary' : (to === 'rejected' ? 'danger' : 'secondary'),
        dataset: { to }, 'aria-expanded': 'false', 'aria-controls': 'case-transition-confirm',
        i18n: [`caseflow.to.${to}`],
      });
      btn.addEventListener('click', () => this.openConfirm(to, btn));
      box.append(btn);
    }
    if (this.pending && !flow.allowed.includes(this.pending)) this.closeConfirm(false);
  }

  renderSla(sla) {
    const box = byId('case-sla');
    box.replaceChildren();
    if (!sla) return;
    box.dataset.state = sla.state || '';
    let shown = 0;
    for (const m of sla.milestones) {
      let key = null;
      if (m.paused) key = 'caseflow.sla.paused';
      else if (m.state === 'near_breach') key = 'caseflow.sla.near';
      else if (m.state === 'breached') key = 'caseflow.sla.breached';
      if (!key) continue;
      shown += 1;
      const state = m.paused ? 'paused' : m.state;
      box.append(h('span', {
        class: `sla-badge sla-${state}`, dataset: { milestone: m.key, state },
        title: new Date(m.deadline).toLocaleString(),
        i18n: [key, { name: milestoneName(m.key), time: durationText(m.remaining_s) }],
      }));
    }
    if (!shown) box.append(h('span', { class: 'sla-badge sla-ok', dataset: { state: 'ok' }, i18n: ['caseflow.sla.ok'] }));
  }

  renderQuestions(flow) {
    const box = byId('questions');
    box.replaceChildren();
    byId('questions-save').hidden = !flow.questions.length;
    if (!flow.questions.length) {
      box.append(h('p', { class: 'hint', i18n: ['caseflow.questions.none'] }));
      return;
    }
    const editable = flow.allowed.length > 0;
    for (const q of flow.questions) {
      // Catalog text (情形问答) is data, shown as the catalog has it.
      const fs = h('fieldset', { class: 'question', dataset: { question: q.key } }, h('legend', {}, q.text));
      for (const option of q.options) {
        const input = h('input', {
          type: 'radio', name: `q-${q.key}`, value: option, disabled: !editable,
          checked: flow.answers[q.key] === option,
        });
        fs.append(h('label', { class: 'option' }, input, ' ', option));
      }
      box.append(fs);
    }
    byId('questions-save').disabled = !editable;
  }

  renderChecklist(flow) {
    const list = byId('checklist');
    const { checklist } = flow;
    // A refresh (a material arriving) must not take the keyboard focus away.
    const focused = list.contains(document.activeElement) ? document.activeElement.id : '';
    // ... nor a material the agent has picked but not tagged yet.
    const picked = new Map([...list.querySelectorAll('select.tag-select')].map((el) => [el.id, el.value]));
    list.replaceChildren();
    const required = checklist.entries.filter((e) => e.required);
    const have = required.filter((e) => e.satisfied).length;
    const summary = byId('checklist-summary');
    if (checklist.unanswered.length) setText(summary, 'caseflow.checklist.unanswered');
    else if (checklist.complete) setText(summary, 'caseflow.checklist.complete');
    else setText(summary, 'caseflow.checklist.summary', { required: required.length, have, missing: checklist.missing.length });
    byId('checklist-box').dataset.complete = String(checklist.complete);
    const canTag = flow.allowed.length > 0;
    for (const entry of checklist.entries) {
      const state = entry.satisfied ? 'ok' : (entry.required ? 'missing' : 'conditional');
      const li = h('li', { class: `check check-${state}`, dataset: { key: entry.key, state } },
        h('span', { class: 'check-mark', 'aria-hidden': 'true' }, state === 'ok' ? '✓' : (state === 'missing' ? '✗' : '○')),
        h('span', { class: 'visually-hidden', i18n: [`caseflow.checklist.${state}`] }), ' ',
        h('span', { class: 'check-name' }, entry.name));
      if (entry.satisfied) {
        const by = entry.satisfied_by[0];
        li.append(h('span', { class: 'check-by', i18n: [`caseflow.checklist.by.${by.how}`, { label: by.label }] }));
      } else if (!entry.required && entry.required_when) {
        li.append(h('span', { class: 'check-by' }, ` (${Object.values(entry.required_when).join('，')})`));
      }
      if (state === 'missing' && canTag) li.append(this.tagControl(entry));
      list.append(li);
    }
    for (const [id, value] of picked) {
      const el = byId(id);
      if (el && value && [...el.options].some((o) => o.value === value)) el.value = value;
    }
    if (focused && byId(focused)) byId(focused).focus();
  }

  /** A select of the case's received materials and a button to tag one as `entry`. */
  tagControl(entry) {
    const id = `tag-${entry.key}`;
    const select = h('select', { id, class: 'tag-select' },
      h('option', { value: '', i18n: ['caseflow.tag.choose'] }));
    const choices = [...this.materials.values()].filter((m) => !UNTAGGABLE.has(m.kind || 'file'));
    // One choice per document: its newest PDF, else the page.
    const byDoc = new Map();
    for (const m of choices) {
      const k = m.document ? `doc:${m.document}` : `id:${m.id}`;
      const prev = byDoc.get(k);
      if (!prev || m.kind === 'document' || (prev.kind !== 'document' && m.id < prev.id)) byDoc.set(k, m);
    }
    for (const m of byDoc.values()) select.append(h('option', { value: String(m.id) }, m.filename || String(m.id)));
    const button = h('button', { type: 'button', id: `tag-button-${entry.key}`, class: 'secondary tag-button', i18n: ['caseflow.tag.button'] });
    button.addEventListener('click', () => this.onTag(entry.key, select, button));
    return h('span', { class: 'tag-control' },
      h('label', { for: id, class: 'visually-hidden', i18n: ['caseflow.tag.label', { name: entry.name }] }),
      select, button);
  }

  async onTag(key, select, button) {
    if (!select.value) { select.focus(); return; }
    button.disabled = true;
    hideError(byId('case-flow-error'));
    try {
      this.render(await this.api.post(`/materials/${encodeURIComponent(select.value)}/tag`, { material_type: key }));
      setStatus(byId('questions-status'), 'caseflow.tag.done', null, 'ok');
    } catch (err) {
      showError(byId('case-flow-error'), err);
      button.disabled = false;
    }
  }

  async onSaveAnswers() {
    if (!this.flow) return;
    const answers = {};
    for (const q of this.flow.questions) {
      const picked = byId('questions').querySelector(`input[name="q-${CSS.escape(q.key)}"]:checked`);
      if (picked) answers[q.key] = picked.value;
    }
    const btn = byId('questions-save');
    btn.disabled = true;
    hideError(byId('case-flow-error'));
    try {
      const flow = await this.api.request('PUT', `/cases/${encodeURIComponent(this.caseId)}/answers`, { body: { answers } });
      this.flow = null; // re-render the form from the server's answers
      this.render(flow);
      setStatus(byId('questions-status'), 'caseflow.questions.saved', null, 'ok');
    } catch (err) {
      showError(byId('case-flow-error'), err);
    } finally {
      btn.disabled = false;
    }
  }

  openConfirm(to, btn) {
    this.pending = to;
    for (const b of byId('case-transitions').querySelectorAll('button')) b.setAttribute('aria-expanded', String(b === btn));
    const box = byId('case-transition-confirm');
    box.hidden = false;
    box.dataset.to = to;
    byId('case-reason').value = '';
    const incomplete = this.flow && !this.flow.checklist.complete;
    byId('case-override-row').hidden = !(to === 'completed' && incomplete);
    byId('case-override').checked = false;
    setText(byId('case-transition-submit'), 'caseflow.confirm', { action: t(`caseflow.to.${to}`) });
    hideError(byId('case-flow-error'));
    byId('case-reason').focus();
  }

  closeConfirm(refocus) {
    const to = this.pending;
    this.pending = null;
    byId('case-transition-confirm').hidden = true;
    for (const b of byId('case-transitions').querySelectorAll('button')) b.setAttribute('aria-expanded', 'false');
    if (refocus && to) {
      const btn = byId('case-transitions').querySelector(`button[data-to="${to}"]`);
      if (btn) btn.focus();
    }
  }

  async onConfirm() {
    const to = this.pending;
    if (!to || this.caseId === null) return;
    const reason = byId('case-reason').value.trim();
    const override = to === 'completed' && byId('case-override').checked;
    const errEl = byId('case-flow-error');
    if (!reason && (override || to === 'returned' || to === 'rejected')) {
      showError(errEl, null, 'caseflow.reasonNeeded');
      byId('case-reason').focus();
      return;
    }
    const submit = byId('case-transition-submit');
    submit.disabled = true;
    hideError(errEl);
    try {
      const body = { to, override };
      if (reason) body.reason = reason;
      const flow = await this.api.post(`/cases/${encodeURIComponent(this.caseId)}/transitions`, body);
      this.closeConfirm(false);
      this.render(flow);
      setStatus(byId('questions-status'), 'caseflow.done', { status: t(`caseflow.status.${flow.status}`) }, 'ok');
      byId('case-status').focus();
    } catch (err) {
      if (err.code === 'materials_missing') {
        await this.refresh();
        const names = this.flow ? this.flow.checklist.entries
          .filter((e) => this.flow.checklist.missing.includes(e.key)).map((e) => e.name) : [];
        if (this.flow) names.push(...this.flow.questions.filter((q) => this.flow.checklist.unanswered.includes(q.key)).map((q) => q.text));
        showError(errEl, null, 'caseflow.missingRefused');
        setText(errEl, 'caseflow.missingRefused', { names: names.join('、') });
        byId('case-override-row').hidden = false;
        byId('case-override').focus();
      } else {
        showError(errEl, err);
      }
    } finally {
      submit.disabled = false;
    }
  }
}
