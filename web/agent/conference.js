// Expert conference on the agent console: the agent on a call invites another agent
// (#invite-form → call.invite); the invited agent sees #invitation and joins or declines.

import { byId, setText, setStatus, hideError, showError, kioskText } from '/common/ui.js';

/** `#invite-form`: username → `call.invite`; the outcome in `#invite-status`. */
export class InviteForm {
  /** @param {() => {signal: object, call: object|null}} getContext */
  constructor(getContext) {
    this.getContext = getContext;
    this.box = byId('invite-box');
    this.input = byId('invite-username');
    this.button = byId('invite-button');
    this.status = byId('invite-status');
    byId('invite-form').addEventListener('submit', (ev) => { ev.preventDefault(); this.send(); });
  }

  /** Only the agent who took the call invites; an expert does not see the form. */
  show(visible) {
    this.box.hidden = !visible;
  }

  reset() {
    this.input.value = '';
    this._status(null);
  }

  async send() {
    const { signal, call } = this.getContext();
    const username = this.input.value.trim();
    if (!signal || !call) return;
    if (!username) {
      this._status('agent.invite.needUsername', null, 'error');
      this.input.focus();
      return;
    }
    this.button.disabled = true;
    this._status('agent.invite.sending', { name: username });
    try {
      const reply = await signal.request('call.invite', { call_id: call.call_id, username });
      this._status('agent.invite.sent', { name: reply.agent || username }, 'ok');
      this.input.value = '';
    } catch (err) {
      // The server's message names what was wrong (unknown agent, not online, …).
      this._status('agent.invite.failed', { message: err.message || err.code || '' }, 'error');
      this.input.focus();
    } finally {
      this.button.disabled = false;
    }
  }

  _status(key, args = null, outcome = '') {
    setStatus(this.status, key, args, outcome);
  }
}

/** `#invitation`: a `call.invited` push, with #invitation-accept / #invitation-decline. */
export class InvitationCard {
  /**
   * @param {{onAccept: (call: object) => Promise<void>, onChange: () => void}} hooks
   *   onAccept joins the call (throws the server's error); onChange fires when the card
   *   appears or goes (the page rings while it is open).
   */
  constructor({ onAccept, onChange }) {
    this.onAccept = onAccept;
    this.onChange = onChange;
    this.el = byId('invitation');
    this.accept = byId('invitation-accept');
    this.decline = byId('invitation-decline');
    this.error = byId('invitation-error');
    this.busyNote = byId('invitation-busy');
    this.call = null;
    this.accept.addEventListener('click', () => this._accept());
    this.decline.addEventListener('click', () => this.hide());
    this.el.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') this.hide(); });
  }

  get open() {
    return this.call !== null;
  }

  /** @param {{call: object, from: string}} msg  @param {boolean} busy  already in a call */
  show(msg, busy) {
    const call = msg.call || {};
    this.call = call;
    setText(byId('invitation-from'), 'agent.invitation.from', { name: msg.from || '' });
    byId('invitation-service').textContent = call.service ? call.service.name : '';
    byId('invitation-kiosk').textContent = kioskText(call.kiosk);
    byId('invitation-case').textContent = call.case_number || '';
    hideError(this.error);
    this.el.hidden = false;
    this.setBusy(busy);
    // Do not pull focus away from someone typing in a call.
    if (!busy) this.accept.focus();
    this.onChange();
  }

  /** While in another call the invitation can only wait (or be declined). */
  setBusy(busy) {
    this.accept.disabled = busy;
    this.busyNote.hidden = !busy;
  }

  hide() {
    if (!this.call) return;
    this.call = null;
    this.el.hidden = true;
    hideError(this.error);
    this.onChange();
  }

  async _accept() {
    const call = this.call;
    if (!call) return;
    this.accept.disabled = true;
    hideError(this.error);
    try {
      await this.onAccept(call);
      if (this.call === call) this.hide();
    } catch (err) {
      if (this.call !== call) return;
      this.accept.disabled = false;
      const over = err.code === 'invalid_state' || err.code === 'not_found';
      showError(this.error, err, err.code === 'busy' ? 'agent.invitation.busy' : over ? 'agent.invitation.over' : null);
    }
  }
}
