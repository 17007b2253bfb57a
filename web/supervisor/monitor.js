// The supervisor's monitor panel (#monitor): listen to a live call silently, whisper
// to its agents, or barge in (session.monitor), with every video of the call as tiles.

import { CallMedia } from '/common/rtc.js';
import { Tiles } from '/common/tiles.js';
import { byId, setText, kioskText } from '/common/ui.js';

export const MODES = ['listen', 'whisper', 'barge'];

export class MonitorPanel {
  /**
   * @param {{conn: import('/common/ui.js').ConnectionIndicator,
   *          onChange: (callId: number|null, mode: string|null) => void}} opts
   *   onChange: the monitored call or its mode changed (the session rows show it).
   */
  constructor({ conn, onChange }) {
    this.conn = conn;
    this.onChange = onChange;
    this.el = byId('monitor');
    this.status = byId('monitor-status');
    this.note = byId('monitor-note');
    this.micWarning = byId('monitor-mic');
    this.tiles = new Tiles(byId('monitor-tiles'), byId('monitor-empty'));
    this.signal = null;
    this.media = null;
    this.session = null;
    this.mode = null;
    this.mic = null;
    this.gen = 0;
    byId('monitor-stop').addEventListener('click', () => this.stop('supervisor.monitor.stopped'));
    for (const btn of this.el.querySelectorAll('button[data-monitor-mode]')) {
      btn.addEventListener('click', () => this.switchMode(btn.dataset.monitorMode));
    }
  }

  get callId() {
    return this.session ? this.session.call_id : null;
  }

  /** A new socket (login): media goes through it from now on. */
  attach(signal) {
    this.stop(null);
    this.signal = signal;
    this.media = new CallMedia(signal);
    this.media.on('track', (track, info) => this.tiles.add(track, info));
    this.media.on('trackremoved', (track) => this.tiles.removeTrack(track));
    this.media.on('status', (s) => {
      this.conn.set('media', s === 'reconnecting');
      if (s === 'connecting' || s === 'connected' || s === 'reconnecting') {
        setText(this.status, `supervisor.monitor.${s}`);
      }
    });
    this.media.on('joinfailed', (err) => this._fail(err));
  }

  /** A row button: open the panel for `session`, or switch mode if it is already open. */
  async choose(session, mode) {
    if (this.callId === session.call_id) return this.switchMode(mode);
    if (this.callId !== null) this.stop(null);
    return this.open(session, mode);
  }

  async open(session, mode) {
    this.gen += 1;
    const gen = this.gen;
    this.session = session;
    this.mode = null;
    this.note.textContent = '';
    byId('monitor-call').textContent = [session.case_number, session.service && session.service.name,
      kioskText(session.kiosk)].filter(Boolean).join(' · ');
    this._showMode(mode, false);
    this.el.hidden = false;
    this.tiles.clear();
    setText(this.status, 'supervisor.monitor.mic');
    const mic = await openMic();
    if (gen !== this.gen) {
      if (mic) mic.stop();
      return;
    }
    this.mic = mic;
    this.micWarning.hidden = mic !== null;
    setText(this.status, 'supervisor.monitor.connecting');
    try {
      // Before rtc.join: the server decides from the mode who hears our mic.
      const reply = await this.signal.request('session.monitor', { call_id: session.call_id, mode });
      if (gen !== this.gen) return;
      this._showMode(reply.mode || mode, true);
    } catch (err) {
      if (gen === this.gen) this._fail(err);
      return;
    }
    this.el.scrollIntoView({ block: 'nearest' });
    await this.media.start(session.call_id, mic ? { mic } : {});
  }

  async switchMode(mode) {
    if (!this.session || !MODES.includes(mode) || mode === this.mode) return;
    const callId = this.session.call_id;
    try {
      const reply = await this.signal.request('session.monitor', { call_id: callId, mode });
      if (this.callId === callId) this._showMode(reply.mode || mode, true);
    } catch (err) {
      if (this.callId === callId) setText(this.status, 'supervisor.monitor.switchFailed', { message: err.message || err.code });
    }
  }

  /** Leave the call's media (`rtc.leave`) and close the panel; `noteKey` says why. */
  stop(noteKey) {
    this.gen += 1;
    const was = this.session;
    if (this.media) this.media.stop({ leave: true });
    if (this.mic) this.mic.stop();
    this.mic = null;
    this.session = null;
    this.mode = null;
    this.tiles.clear();
    this.el.hidden = true;
    this.micWarning.hidden = true;
    this.status.textContent = '';
    this.conn.set('media', false);
    if (noteKey) setText(this.note, noteKey);
    if (was) {
      this.onChange(null, null);
      // Keep keyboard users where they were: back to the row they came from.
      if (this.el.contains(document.activeElement) || document.activeElement === document.body) {
        const row = document.querySelector(`#sessions tr[data-call-id="${CSS.escape(String(was.call_id))}"] button`);
        if (row) row.focus();
      }
    }
  }

  /** `call.ended` push, or the dashboard no longer lists the call. */
  callEnded(callId) {
    if (this.callId !== null && String(callId) === String(this.callId)) this.stop('supervisor.monitor.ended');
  }

  /** The socket is back: tell the server the mode again, then rejoin the media. */
  async reconnected() {
    if (!this.session || !this.mode) return;
    const callId = this.session.call_id;
    try {
      await this.signal.request('session.monitor', { call_id: callId, mode: this.mode });
      if (this.callId === callId) this.media.rejoin();
    } catch (err) {
      if (this.callId === callId) this._fail(err);
    }
  }

  _showMode(mode, confirmed) {
    if (confirmed) this.mode = mode;
    const el = byId('monitor-mode');
    el.dataset.mode = confirmed ? mode : '';
    setText(byId('monitor-mode-name'), `supervisor.monitor.${mode}`);
    setText(byId('monitor-hint'), `supervisor.monitor.hint.${mode}`);
    for (const btn of this.el.querySelectorAll('button[data-monitor-mode]')) {
      btn.setAttribute('aria-pressed', String(confirmed && btn.dataset.monitorMode === mode));
    }
    // Only whisper and barge send our voice; in listen the mic stays shut here too.
    if (this.mic) this.mic.enabled = confirmed && mode !== 'listen';
    if (confirmed) this.onChange(this.callId, mode);
  }

  _fail(err) {
    const over = err && (err.code === 'invalid_state' || err.code === 'not_found');
    this.stop(null);
    if (over) setText(this.note, 'supervisor.monitor.ended');
    else setText(this.note, 'supervisor.monitor.failed', { message: (err && (err.message || err.code)) || '' });
  }
}

/** The microphone only; `null` when refused or missing (listening still works). */
async function openMic() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return null;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }, video: false,
    });
    const track = stream.getAudioTracks()[0] || null;
    if (track) track.enabled = false; // until the server confirms a speaking mode
    return track;
  } catch {
    return null;
  }
}
