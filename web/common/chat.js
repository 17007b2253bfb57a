// The in-call chat box: text, pictures and voice notes, both ways. A picture or voice
// note is uploaded first as a material of the call's case, then announced with
// `chat.send {material_id}`; the server keeps every message as a note of the case.

import { setText } from '/common/i18n.js';
import { byId, h, showError, hideError, formatClock, kindKey } from '/common/ui.js';

const VOICE_MAX_MS = 60000; // a voice note stops itself after a minute

/**
 * `#chat-log`, `#chat-form` with `#chat-input`, `#chat-send`, and optionally
 * `#chat-picture` (a hidden file input opened by `#chat-picture-button`), `#chat-voice`
 * (a record / stop toggle) and `#chat-status` (upload and recording progress).
 */
export class Chat {
  constructor(signal, self, api = null) {
    this.signal = signal;
    this.self = self; // {kind, name}
    this.api = api;
    this.callId = null;
    this.caseId = null;
    this.urls = [];
    this.recorder = null;
    this.log = byId('chat-log');
    this.input = byId('chat-input');
    this.sendBtn = byId('chat-send');
    this.error = byId('chat-error');
    this.status = byId('chat-status');
    this.picture = byId('chat-picture');
    this.voiceBtn = byId('chat-voice');
    const form = byId('chat-form');
    if (form) form.addEventListener('submit', (ev) => { ev.preventDefault(); this.send(); });
    const pick = byId('chat-picture-button');
    if (pick && this.picture) pick.addEventListener('click', () => this.picture.click());
    if (this.picture) {
      this.picture.addEventListener('change', () => {
        const file = this.picture.files && this.picture.files[0];
        this.picture.value = '';
        if (file) this.sendFile(file, file.type || 'image/jpeg', file.name || 'picture');
      });
    }
    if (this.voiceBtn) {
      if (!window.MediaRecorder) this.voiceBtn.hidden = true;
      this.voiceBtn.addEventListener('click', () => this.toggleVoice());
    }
  }

  start(callId, caseId = null) {
    this.callId = callId;
    this.caseId = caseId;
    this.clear();
  }

  clear() {
    this.stopVoice(false);
    for (const u of this.urls) URL.revokeObjectURL(u);
    this.urls = [];
    if (this.log) this.log.replaceChildren();
    this.setStatus(null);
    hideError(this.error);
  }

  setStatus(key, args = null) {
    if (!this.status) return;
    this.status.hidden = !key;
    if (key) setText(this.status, key, args);
    else this.status.textContent = '';
  }

  async send() {
    const text = this.input.value.trim();
    if (!text || !this.callId) return;
    this.sendBtn.disabled = true;
    hideError(this.error);
    try {
      await this.signal.request('chat.send', { call_id: this.callId, text: text.slice(0, 2000) });
      this.input.value = '';
    } catch (err) {
      showError(this.error, err, 'chat.failed');
    } finally {
      this.sendBtn.disabled = false;
      this.input.focus();
    }
  }

  /** Upload `blob` into the case, then send it (with any typed text) as a message. */
  async sendFile(blob, contentType, filename) {
    if (!this.callId || !this.caseId || !this.api) return;
    const kb = Math.max(1, Math.round(blob.size / 1024));
    const audio = contentType.startsWith('audio/');
    hideError(this.error);
    this.setStatus(audio ? 'chat.uploadingVoice' : 'chat.uploadingPicture', { kb });
    const query = new URLSearchParams({ call_id: String(this.callId), source: 'upload', filename });
    try {
      const material = await this.api.postBytes(
        `/cases/${encodeURIComponent(this.caseId)}/materials?${query}`, blob, contentType);
      const text = this.input.value.trim().slice(0, 2000);
      await this.signal.request('chat.send', {
        call_id: this.callId, material_id: material.id, ...(text ? { text } : {}),
      });
      this.input.value = '';
      this.setStatus(null);
    } catch (err) {
      this.setStatus(null);
      showError(this.error, err, 'chat.uploadFailed');
    }
  }

  async toggleVoice() {
    if (this.recorder) return this.stopVoice(true);
    if (!this.callId) return;
    hideError(this.error);
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      return showError(this.error, err, 'chat.noMicrophone');
    }
    const type = ['audio/webm', 'audio/ogg'].find((m) => MediaRecorder.isTypeSupported(m)) || '';
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
    const parts = [];
    recorder.ondataavailable = (ev) => { if (ev.data && ev.data.size) parts.push(ev.data); };
    recorder.onstop = () => {
      for (const track of stream.getTracks()) track.stop();
      if (!recorder.keep || !parts.length) return;
      const mime = (recorder.mimeType || type || 'audio/webm').split(';')[0];
      const ext = mime === 'audio/ogg' ? 'ogg' : 'webm';
      this.sendFile(new Blob(parts, { type: mime }), mime, `voice.${ext}`);
    };
    recorder.keep = true;
    this.recorder = recorder;
    this.voiceTimer = setTimeout(() => this.stopVoice(true), VOICE_MAX_MS);
    recorder.start();
    this.voiceBtn.classList.add('recording');
    this.voiceBtn.setAttribute('aria-pressed', 'true');
    setText(this.voiceBtn, 'chat.voiceStop');
    this.setStatus('chat.recording');
  }

  /** Stop recording; `keep` sends what was recorded, otherwise it is dropped. */
  stopVoice(keep) {
    const recorder = this.recorder;
    if (!recorder) return;
    this.recorder = null;
    clearTimeout(this.voiceTimer);
    recorder.keep = keep;
    if (recorder.state !== 'inactive') recorder.stop();
    this.voiceBtn.classList.remove('recording');
    this.voiceBtn.setAttribute('aria-pressed', 'false');
    setText(this.voiceBtn, 'chat.voice');
    if (!keep) this.setStatus(null);
  }

  /** A `chat.message` push (the server echoes our own messages too). */
  add(msg) {
    if (!this.log || (this.callId && msg.call_id && msg.call_id !== this.callId)) return;
    const from = msg.from || {};
    const mine = from.kind === this.self.kind && from.name === this.self.name;
    const who = mine ? h('span', { class: 'who', i18n: ['chat.me'] }) : h('span', { class: 'who' },
      from.name || '', ' ', h('span', { class: 'kind', i18n: [kindKey(from.kind)] }));
    const li = h('li', { class: mine ? 'chat-msg mine' : 'chat-msg' },
      who, h('time', { datetime: msg.at || '' }, formatClock(msg.at)));
    if (msg.text) li.append(h('p', {}, msg.text));
    if (msg.material) li.append(this.attachment(msg.material));
    this.log.append(li);
    this.log.scrollTop = this.log.scrollHeight;
  }

  /** A picture thumbnail or a voice-note player, its bytes fetched with the token. */
  attachment(m) {
    const audio = (m.content_type || '').startsWith('audio/');
    const el = audio
      ? h('audio', { controls: true, preload: 'metadata', class: 'chat-voice' })
      : h('img', { class: 'chat-picture', alt: m.filename || '' });
    el.dataset.materialId = String(m.id);
    if (audio) setText(el, 'chat.voiceNote');
    if (!this.api) return el;
    this.api.blob(m.url).then((blob) => {
      const url = URL.createObjectURL(blob);
      this.urls.push(url);
      el.src = url;
      if (!audio) el.addEventListener('click', () => window.open(url, '_blank', 'noopener'));
    }).catch(() => {
      el.replaceWith(h('span', { class: 'chat-missing', i18n: ['chat.attachmentMissing'] }));
    });
    return el;
  }
}
