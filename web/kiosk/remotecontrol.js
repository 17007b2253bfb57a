// The kiosk's side of remote control (远程操控协办): the citizen is asked first, sees a
// banner while it runs, and can stop it at any time (or with the Pause key).

import { byId, setText } from '/common/ui.js';

export class RemoteControlPrompt {
  /** @param {() => {signal: object, call: object|null}} getContext */
  constructor(getContext) {
    this.getContext = getContext;
    byId('remote-consent-allow').addEventListener('click', () => this.answer(true));
    byId('remote-consent-deny').addEventListener('click', () => this.answer(false));
    byId('remote-banner-stop').addEventListener('click', () => this.stop());
  }

  /** A remote.state push for this call. */
  update(msg) {
    const asking = msg.state === 'awaiting_consent';
    const active = msg.state === 'active';
    const dialog = byId('remote-consent');
    dialog.hidden = !asking;
    if (asking) {
      setText(byId('remote-consent-text'), 'kiosk.remote.ask', { name: msg.agent_name || '' });
      byId('remote-consent-allow').focus();
    }
    byId('remote-banner').hidden = !active;
    document.body.classList.toggle('remote-active', active);
    const note = byId('remote-note');
    if (msg.state === 'stopped' && msg.reason && msg.reason !== 'not_enabled') {
      setText(note, `kiosk.remote.stopped.${msg.reason}`);
      note.hidden = false;
      setTimeout(() => { note.hidden = true; }, 8000);
    }
  }

  reset() {
    byId('remote-consent').hidden = true;
    byId('remote-banner').hidden = true;
    byId('remote-note').hidden = true;
    document.body.classList.remove('remote-active');
  }

  async answer(granted) {
    const { signal, call } = this.getContext();
    if (!call) return;
    byId('remote-consent').hidden = true;
    try {
      await signal.request('remote.consent', { call_id: call.call_id, granted });
    } catch (err) {
      console.warn('consent not delivered:', err.code);
    }
  }

  async stop() {
    const { signal, call } = this.getContext();
    if (!call) return;
    try {
      await signal.request('remote.stop', { call_id: call.call_id });
    } catch (err) {
      console.warn('stop not delivered:', err.code);
    }
  }
}
