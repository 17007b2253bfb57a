// The kiosk's rating form after a call: five star buttons (arrow keys move), an
// optional comment, POST /calls/{id}/rating.

import { byId, setText, setAttr, showError, hideError } from '/common/ui.js';

export class RatingForm {
  /**
   * @param {import('/common/api.js').Api} api
   * @param {{getCallId: () => (number|null), onRated: () => void}} hooks
   */
  constructor(api, { getCallId, onRated }) {
    this.api = api;
    this.getCallId = getCallId;
    this.onRated = onRated;
    this.stars = 0;
    for (const btn of this._buttons()) {
      setAttr(btn, 'aria-label', 'rating.star', { n: Number(btn.dataset.stars) });
      btn.addEventListener('click', () => this.setStars(Number(btn.dataset.stars)));
      btn.addEventListener('keydown', (ev) => this._onKey(ev));
    }
    byId('rating-submit').addEventListener('click', () => this.submit());
  }

  reset() {
    this.setStars(0);
    byId('rating-comment').value = '';
    hideError(byId('rating-error'));
  }

  setStars(n) {
    this.stars = n;
    for (const btn of this._buttons()) {
      const v = Number(btn.dataset.stars);
      btn.setAttribute('aria-pressed', String(v === n));
      btn.classList.toggle('filled', v <= n);
    }
    byId('rating-submit').disabled = n === 0;
    const chosen = byId('rating-chosen');
    if (n) setText(chosen, 'rating.chosen', { n });
    else chosen.textContent = '';
  }

  async submit() {
    const callId = this.getCallId();
    if (!this.stars || !callId) return;
    const btn = byId('rating-submit');
    btn.disabled = true;
    hideError(byId('rating-error'));
    const body = { stars: this.stars };
    const comment = byId('rating-comment').value.trim();
    if (comment) body.comment = comment;
    try {
      await this.api.post(`/calls/${encodeURIComponent(callId)}/rating`, body);
      this.onRated();
    } catch (err) {
      if (err.code === 'conflict') return this.onRated(); // already rated
      showError(byId('rating-error'), err, err.code === 'network' ? 'err.network' : 'rating.failed');
      btn.disabled = false;
    }
  }

  _buttons() {
    return document.querySelectorAll('#rating button[data-stars]');
  }

  _onKey(ev) {
    const n = Number(ev.currentTarget.dataset.stars);
    let next = null;
    if (ev.key === 'ArrowRight' || ev.key === 'ArrowUp') next = Math.min(5, n + 1);
    if (ev.key === 'ArrowLeft' || ev.key === 'ArrowDown') next = Math.max(1, n - 1);
    if (next === null) return;
    ev.preventDefault();
    this.setStars(next);
    document.querySelector(`#rating button[data-stars="${next}"]`).focus();
  }
}
