// Transfer on the agent console (中台分派): hand the live call to a colleague by
// username or to a department queue, with a note the next agent reads before answering.

import { byId, h, setStatus } from '/common/ui.js';

const CATEGORY_KEYS = ['social_security', 'medical_insurance', 'market', 'civil_affairs', 'land'];

/** `#transfer-form` → `call.transfer`; `onDone(reply)` once the call has been handed on. */
export class TransferForm {
  constructor(api, getContext, onDone) {
    this.getContext = getContext;
    this.onDone = onDone;
    this.box = byId('transfer-box');
    this.status = byId('transfer-status');
    this.queue = byId('transfer-queue');
    byId('transfer-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.send(); });
    for (const radio of document.querySelectorAll('input[name="transfer-kind"]')) {
      radio.addEventListener('change', () => this._kind());
    }
    api.get('/catalog').then((items) => this._queues(items || [])).catch(() => this._queues([]));
    this._kind();
  }

  _queues(items) {
    const cats = [...new Set([...items.map((i) => i.category), ...CATEGORY_KEYS])];
    this.queue.replaceChildren(...cats.map((c) => h('option', { value: c, i18n: [`category.${c}`] })));
  }

  _kind() {
    const toAgent = byId('transfer-kind-agent').checked;
    byId('transfer-agent-row').hidden = !toAgent;
    byId('transfer-queue-row').hidden = toAgent;
  }

  show(visible) {
    this.box.hidden = !visible;
  }

  reset() {
    byId('transfer-agent').value = '';
    byId('transfer-note').value = '';
    this._status(null);
  }

  async send() {
    const { signal, call } = this.getContext();
    if (!signal || !call) return;
    const note = byId('transfer-note').value.trim();
    const toAgent = byId('transfer-kind-agent').checked;
    const body = { call_id: call.call_id, note };
    if (toAgent) body.to_agent = byId('transfer-agent').value.trim();
    else body.to_queue = this.queue.value;
    if (toAgent && !body.to_agent) return this._fail('agent.transfer.needAgent', byId('transfer-agent'));
    if (!note) return this._fail('agent.transfer.needNote', byId('transfer-note'));
    const btn = byId('transfer-button');
    btn.disabled = true;
    this._status('agent.transfer.sending');
    try {
      const reply = await signal.request('call.transfer', body);
      this.reset();
      this.onDone(reply);
    } catch (err) {
      this._status('agent.transfer.failed', { message: err.message || err.code || '' }, 'error');
    } finally {
      btn.disabled = false;
    }
  }

  _fail(key, input) {
    this._status(key, null, 'error');
    input.focus();
  }

  _status(key, args = null, outcome = '') {
    setStatus(this.status, key, args, outcome);
  }
}
