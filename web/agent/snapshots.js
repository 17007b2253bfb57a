// Evidence snapshots from the agent console, also while a participant's picture is away:
// the server then queues the request (`snapshot.queued`) and takes it from the first
// keyframe after that participant is back (`snapshot.taken`), or says why not
// (`snapshot.failed`). Each waiting request shows in #snapshot-pending until then.
// li[data-state]: pending | failed

import { byId, h, setText, errorKey, formatClock } from '/common/ui.js';

const FAILED_SHOWN_MS = 30000;

export class SnapshotRequests {
  /** @param {() => {call: object|null, signal: object|null}} getContext */
  constructor(getContext, el = byId('snapshot-pending'), noteEl = byId('ringing-note')) {
    this.getContext = getContext;
    this.el = el;
    this.noteEl = noteEl;
  }

  /** Ask for a still of `participant`'s `role` track ({id, name, kind}). */
  async request(participant, role) {
    const { call, signal } = this.getContext();
    if (!call || !signal || !participant) return;
    try {
      const reply = await signal.request('media.snapshot', {
        call_id: call.call_id, participant_id: participant.id, role,
      });
      if (reply.type === 'snapshot.queued') this._pending(reply, participant);
      else setText(this.noteEl, 'tile.snapshotDone');
    } catch (err) {
      setText(this.noteEl, errorKey(err));
    }
  }

  /** A queued request was taken (pushed `snapshot.taken` with its `request_id`). */
  onTaken(msg) {
    if (!msg.request_id) return; // a direct reply: handled by request()
    const li = this._item(msg.request_id);
    if (li) li.remove();
    this._updateHidden();
    setText(this.noteEl, 'tile.snapshotDoneLate', { time: formatClock(msg.requested_at) });
  }

  onFailed(msg) {
    const li = this._item(msg.request_id);
    if (!li) return;
    li.dataset.state = 'failed';
    setText(li, 'tile.snapshotFailed', { who: li.dataset.who, time: li.dataset.time });
    li.title = msg.message || '';
    setTimeout(() => { li.remove(); this._updateHidden(); }, FAILED_SHOWN_MS);
  }

  clear() {
    this.el.replaceChildren();
    this._updateHidden();
  }

  _pending(reply, participant) {
    const who = participant.name || participant.id;
    const time = formatClock(reply.requested_at);
    const li = h('li', { dataset: { requestId: reply.request_id, state: 'pending', who, time } });
    setText(li, 'tile.snapshotQueued', { who, time, wait: Math.round(reply.wait_s || 60) });
    this.el.append(li);
    this._updateHidden();
    setText(this.noteEl, 'tile.snapshotQueuedNote');
  }

  _item(requestId) {
    return [...this.el.children].find((li) => li.dataset.requestId === requestId) || null;
  }

  _updateHidden() {
    this.el.hidden = this.el.children.length === 0;
  }
}
