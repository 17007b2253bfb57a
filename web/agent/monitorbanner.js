// `#monitor-banner`: tells the agent (never the citizen) that a supervisor is listening,
// whispering or has barged in; fed by `monitor.state` and `participant.left`.

import { byId, setText } from '/common/ui.js';

const MODES = new Set(['listen', 'whisper', 'barge']);

export class MonitorBanner {
  constructor(el = byId('monitor-banner')) {
    this.el = el;
    this.text = el.querySelector('.monitor-text');
    this.supervisors = new Map(); // name -> mode, in arrival order
  }

  /** A `monitor.state` push for the call on screen. */
  update(msg) {
    const name = msg.supervisor || '';
    this.supervisors.delete(name);
    if (MODES.has(msg.mode)) this.supervisors.set(name, msg.mode);
    this._render();
  }

  /** A participant left: a supervisor who stops monitoring takes the banner away. */
  left(participant) {
    if (!participant || participant.kind !== 'supervisor') return;
    this.supervisors.delete(participant.name || '');
    this._render();
  }

  clear() {
    this.supervisors.clear();
    this._render();
  }

  _render() {
    const last = [...this.supervisors].pop();
    this.el.hidden = !last;
    if (!last) {
      this.el.dataset.mode = '';
      this.text.textContent = '';
      return;
    }
    const [name, mode] = last;
    this.el.dataset.mode = mode;
    const others = this.supervisors.size - 1;
    setText(this.text, others > 0 ? `agent.monitor.${mode}More` : `agent.monitor.${mode}`, { name, n: others });
  }
}
