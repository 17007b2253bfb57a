// Remote media as tiles (agent console, supervisor monitor): one <figure> per participant video
// track (camera, document camera, screen share), hidden <audio> for their sound.

import { byId, h, attachTrack, captionKey } from '/common/ui.js';

export class Tiles {
  /** `onSnapshot(info)`, when given, adds an evidence-snapshot button to each video tile. */
  constructor(el = byId('tiles'), emptyEl = byId('tiles-empty'), { onSnapshot = null } = {}) {
    this.el = el;
    this.emptyEl = emptyEl;
    this.onSnapshot = onSnapshot;
  }

  /** A `track` event of CallMedia: `info` is its TrackInfo. */
  add(track, info) {
    const p = info.participant || {};
    const pid = p.id == null ? '' : String(p.id);
    // One participant sends one track per role: a newer one (after their rejoin) replaces it.
    for (const el of [...this.el.querySelectorAll('[data-participant-id]')]) {
      if (el.dataset.participantId === pid && el.dataset.tileRole === info.role && el.dataset.tileKind === track.kind) {
        this._remove(el);
      }
    }
    const attrs = { dataset: { role: info.role, participantKind: p.kind || '' } };
    if (track.kind === 'audio') {
      const audio = h('audio', { ...attrs, autoplay: true, hidden: true });
      Object.assign(audio.dataset, { trackId: track.id, participantId: pid, tileRole: info.role, tileKind: 'audio' });
      this.el.append(audio);
      attachTrack(audio, track);
      return;
    }
    const video = h('video', { ...attrs, autoplay: true, playsInline: true, muted: true });
    const caption = h('figcaption', {}, h('span', { i18n: [captionKey(info)] }), p.name ? ` · ${p.name}` : '');
    if (this.onSnapshot) {
      const shoot = h('button', { type: 'button', class: 'snapshot-button', i18n: ['tile.snapshot'] });
      shoot.addEventListener('click', async () => {
        shoot.disabled = true;
        try { await this.onSnapshot(info); } finally { shoot.disabled = false; }
      });
      caption.append(' ', shoot);
    }
    const tile = h('figure', {
      class: `tile role-${info.role}`,
      dataset: { trackId: track.id, participantId: pid, tileRole: info.role, tileKind: 'video' },
    }, video, caption);
    // A shared screen is what everyone looks at: first and full width.
    if (info.role === 'screen') this.el.prepend(tile);
    else this.el.append(tile);
    attachTrack(video, track);
    this.updateEmpty();
  }

  removeTrack(track) {
    for (const el of [...this.el.querySelectorAll('[data-track-id]')]) {
      if (el.dataset.trackId === track.id) this._remove(el);
    }
  }

  removeParticipant(id) {
    for (const el of [...this.el.querySelectorAll('[data-participant-id]')]) {
      if (el.dataset.participantId === String(id)) this._remove(el);
    }
  }

  clear() {
    for (const el of [...this.el.children]) this._remove(el);
  }

  updateEmpty() {
    this.emptyEl.hidden = this.el.querySelector('video') !== null;
  }

  _remove(el) {
    for (const m of el.matches('video, audio') ? [el] : el.querySelectorAll('video, audio')) m.srcObject = null;
    el.remove();
    this.updateEmpty();
  }
}
