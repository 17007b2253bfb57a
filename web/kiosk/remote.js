// What the citizen sees and hears of the other side: the officer's camera, the
// officer's shared screen (large; the camera then shrinks to a corner), invited
// experts' cameras, and everyone's sound (hidden <audio>).

import { byId, h, attachTrack, captionKey } from '/common/ui.js';

const SHARERS = new Set(['agent', 'expert']);

export class RemoteView {
  constructor() {
    this.box = byId('remote-box');
    this.camera = byId('remote-agent-camera');
    this.screen = byId('remote-agent-screen');
    this.screenLabel = byId('remote-screen-label');
    this.experts = byId('remote-experts');
    this.audio = byId('remote-audio');
    this.screens = new Map(); // track id -> track; the latest one is shown
  }

  /** A `track` event of CallMedia. */
  add(track, info) {
    const p = info.participant || {};
    if (info.kind === 'audio' || track.kind === 'audio') {
      const el = h('audio', { autoplay: true, dataset: { trackId: track.id, role: info.role } });
      this.audio.append(el);
      attachTrack(el, track);
    } else if (info.role === 'screen' && SHARERS.has(p.kind)) {
      this.screens.set(track.id, track);
      this._showScreen();
    } else if (info.role === 'camera' && p.kind === 'agent') {
      this.camera.dataset.trackId = track.id;
      attachTrack(this.camera, track);
    } else if (info.role === 'camera' && p.kind === 'expert') {
      const video = h('video', { autoplay: true, playsInline: true, muted: true, dataset: { role: 'camera', participantKind: 'expert' } });
      const tile = h('figure', { class: 'expert-tile', dataset: { trackId: track.id } }, video,
        h('figcaption', {}, h('span', { i18n: [captionKey(info)] }), p.name ? ` · ${p.name}` : ''));
      this.experts.append(tile);
      attachTrack(video, track);
    }
  }

  /** A `trackremoved` event: the track ended or the offer no longer lists it. */
  remove(track) {
    for (const el of [...this.audio.querySelectorAll('audio')]) {
      if (el.dataset.trackId === track.id) { el.srcObject = null; el.remove(); }
    }
    if (this.camera.dataset.trackId === track.id) {
      this.camera.srcObject = null;
      delete this.camera.dataset.trackId;
    }
    if (this.screens.delete(track.id)) this._showScreen();
    for (const tile of [...this.experts.querySelectorAll('figure')]) {
      if (tile.dataset.trackId === track.id) {
        tile.querySelector('video').srcObject = null;
        tile.remove();
      }
    }
  }

  clear() {
    this.camera.srcObject = null;
    delete this.camera.dataset.trackId;
    this.screens.clear();
    this._showScreen();
    for (const v of this.experts.querySelectorAll('video')) v.srcObject = null;
    this.experts.replaceChildren();
    this.audio.replaceChildren();
  }

  _showScreen() {
    const track = [...this.screens.values()].pop() || null;
    const on = track !== null;
    if (!on) {
      this.screen.srcObject = null;
      delete this.screen.dataset.trackId;
    } else if (this.screen.dataset.trackId !== track.id) {
      this.screen.dataset.trackId = track.id;
      attachTrack(this.screen, track);
    }
    this.screen.hidden = !on;
    this.screenLabel.hidden = !on;
    this.box.classList.toggle('has-screen', on);
  }
}
