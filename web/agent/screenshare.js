// The agent's screen share: #screen-share toggles getDisplayMedia and publishes the
// picture as the `screen` role of the call (rtc.publish / rtc.unpublish).

import { byId, setText, showError, hideError, errorKey } from '/common/ui.js';

export class ScreenShare {
  /** @param {() => import('/common/rtc.js').CallMedia | null} getMedia */
  constructor(getMedia) {
    this.getMedia = getMedia;
    this.button = byId('screen-share');
    this.preview = byId('local-screen');
    this.previewBox = byId('local-screen-box');
    this.error = byId('screen-share-error');
    this.track = null;
    this.busy = false;
    this.button.addEventListener('click', () => this.toggle());
    this._render();
  }

  get sharing() {
    return this.track !== null;
  }

  async toggle() {
    if (this.busy) return;
    if (this.sharing) await this.stop();
    else await this.start();
  }

  async start() {
    const media = this.getMedia();
    if (!media || !media.active) return;
    hideError(this.error);
    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
      showError(this.error, null, 'agent.screen.unsupported');
      return;
    }
    this.busy = true;
    this.button.disabled = true;
    let track = null;
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 10 }, audio: false });
      track = stream.getVideoTracks()[0] || null;
      if (!track) throw new DOMException('no video track', 'NotFoundError');
      // Text on a screen should stay sharp rather than smooth.
      if ('contentHint' in track) track.contentHint = 'detail';
      // The browser's own "stop sharing" bar ends the track.
      track.addEventListener('ended', () => { if (this.track === track) this.stop(); });
      if (!media.active) throw new DOMException('call over', 'AbortError');
      this.track = track;
      this._render();
      await media.publishTrack('screen', track);
    } catch (err) {
      if (track) track.stop();
      if (this.track === track) this.track = null;
      // NotAllowedError: the agent closed the picker; nothing to explain.
      if (err && err.name !== 'NotAllowedError' && err.name !== 'AbortError') {
        showError(this.error, err, err.name === 'SignalError' ? errorKey(err) : 'agent.screen.failed');
      }
    } finally {
      this.busy = false;
      this.button.disabled = false;
      this._render();
    }
  }

  async stop() {
    const track = this.track;
    if (!track) return;
    this.track = null;
    track.stop();
    this._render();
    const media = this.getMedia();
    if (!media) return;
    try {
      await media.unpublishTrack('screen');
    } catch (err) {
      console.warn('rtc.unpublish refused:', err.code);
    }
  }

  /** Leaving the call: stop capturing; the server forgets the slot with the call. */
  reset() {
    if (this.track) this.track.stop();
    this.track = null;
    this.busy = false;
    this.button.disabled = false;
    hideError(this.error);
    this._render();
  }

  _render() {
    const on = this.sharing;
    this.button.setAttribute('aria-pressed', String(on));
    setText(this.button, on ? 'agent.screen.stop' : 'agent.screen.share');
    this.previewBox.hidden = !on;
    const src = on ? new MediaStream([this.track]) : null;
    if (!on || !this.preview.srcObject || this.preview.srcObject.getVideoTracks()[0] !== this.track) {
      this.preview.srcObject = src;
      if (src) this.preview.play().catch(() => {});
    }
  }
}
