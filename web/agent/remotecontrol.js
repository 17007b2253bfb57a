// The agent's side of the kiosk screen and remote control: ask to see the kiosk's
// desktop, ask the citizen for control, then drive the kiosk window from the screen tile
// (pointer as fractions of the picture, keys by KeyboardEvent.code; the kiosk decides
// what it accepts).

import { byId, setText } from '/common/ui.js';

const MOVE_EVERY_MS = 33; // ~30 pointer moves a second; the kiosk allows 60

export class RemoteControlPanel {
  /** @param {() => {signal: object, call: object|null}} getContext */
  constructor(getContext) {
    this.getContext = getContext;
    this.state = 'idle';
    this.screenOn = false;
    this.lastMove = 0;
    this.video = null;
    this.handlers = null;
    byId('kiosk-screen-button').addEventListener('click', () => this.toggleScreen());
    byId('remote-request-button').addEventListener('click', () => this.request());
    byId('remote-stop-button').addEventListener('click', () => this.stop());
  }

  reset() {
    this.detach();
    this.state = 'idle';
    this.screenOn = false;
    byId('kiosk-screen-button').setAttribute('aria-pressed', 'false');
    byId('remote-stop-button').hidden = true;
    byId('remote-status').textContent = '';
  }

  async toggleScreen() {
    const { signal, call } = this.getContext();
    if (!call) return;
    this.screenOn = !this.screenOn;
    byId('kiosk-screen-button').setAttribute('aria-pressed', String(this.screenOn));
    try {
      await signal.request('device.screen', { call_id: call.call_id, on: this.screenOn });
    } catch (err) {
      this.screenOn = false;
      byId('kiosk-screen-button').setAttribute('aria-pressed', 'false');
      setText(byId('remote-status'), 'agent.remote.noDevices');
    }
  }

  async request() {
    const { signal, call } = this.getContext();
    if (!call) return;
    if (!this.screenOn) await this.toggleScreen();
    setText(byId('remote-status'), 'agent.remote.asking');
    try {
      await signal.request('remote.request', { call_id: call.call_id });
    } catch (err) {
      setText(byId('remote-status'), 'agent.remote.noDevices');
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

  /** A remote.state push for this call. */
  update(msg) {
    this.state = msg.state;
    const key = msg.state === 'stopped' ? `agent.remote.stopped.${msg.reason || 'agent'}`
      : `agent.remote.${msg.state}`;
    setText(byId('remote-status'), key);
    byId('remote-stop-button').hidden = !(msg.state === 'active' || msg.state === 'awaiting_consent');
    if (msg.state === 'active') this.attach();
    else this.detach();
  }

  /** Drive the kiosk from its screen tile while control is active. */
  attach() {
    const video = document.querySelector('video[data-role="screen"][data-participant-kind="devices"]');
    if (!video || this.video === video) return;
    this.detach();
    this.video = video;
    video.tabIndex = 0;
    video.classList.add('remote-target');
    video.setAttribute('aria-label', video.closest('figure')?.textContent || '');
    const send = (event) => {
      const { signal, call } = this.getContext();
      if (call && this.state === 'active') signal.send('remote.input', { call_id: call.call_id, event });
    };
    const at = (ev) => {
      // The picture is letterboxed inside the element: map to the picture itself.
      const r = video.getBoundingClientRect();
      const vw = video.videoWidth || r.width;
      const vh = video.videoHeight || r.height;
      const scale = Math.min(r.width / vw, r.height / vh);
      const left = r.left + (r.width - vw * scale) / 2;
      const top = r.top + (r.height - vh * scale) / 2;
      return { x: (ev.clientX - left) / (vw * scale), y: (ev.clientY - top) / (vh * scale) };
    };
    const button = (ev) => ['left', 'middle', 'right'][ev.button] || 'left';
    this.handlers = {
      pointermove: (ev) => {
        const now = performance.now();
        if (now - this.lastMove < MOVE_EVERY_MS) return;
        this.lastMove = now;
        send({ type: 'pointermove', ...at(ev) });
      },
      pointerdown: (ev) => { ev.preventDefault(); video.focus(); send({ type: 'pointerdown', ...at(ev), button: button(ev) }); },
      pointerup: (ev) => { ev.preventDefault(); send({ type: 'pointerup', ...at(ev), button: button(ev) }); },
      wheel: (ev) => {
        ev.preventDefault();
        send({ type: 'wheel', ...at(ev), dx: Math.sign(ev.deltaX), dy: Math.sign(ev.deltaY) });
      },
      contextmenu: (ev) => ev.preventDefault(),
      keydown: (ev) => { ev.preventDefault(); send({ type: 'keydown', code: ev.code }); },
      keyup: (ev) => { ev.preventDefault(); send({ type: 'keyup', code: ev.code }); },
    };
    for (const [name, fn] of Object.entries(this.handlers)) video.addEventListener(name, fn);
  }

  detach() {
    if (this.video && this.handlers) {
      for (const [name, fn] of Object.entries(this.handlers)) this.video.removeEventListener(name, fn);
      this.video.classList.remove('remote-target');
    }
    this.video = null;
    this.handlers = null;
  }
}
