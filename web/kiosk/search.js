// The kiosk's service search box: what the citizen types ("我想开个小超市") goes to the
// server's colloquial search (GET /catalog/search) and the best items are listed as big
// buttons, best first. Down/up arrows move between the input and the results, Escape
// goes back to typing. If the search fails, the page's own list filter takes over.

import { byId, h, setText } from '/common/ui.js';

const DEBOUNCE_MS = 250;
const LIMIT = 8;

export class CatalogSearchBox {
  /**
   * @param {object} api
   * @param {{onSelect: (code: string) => void, fallback: () => void}} hooks
   */
  constructor(api, { onSelect, fallback }) {
    this.api = api;
    this.onSelect = onSelect;
    this.fallback = fallback;
    this.input = byId('service-search');
    this.list = byId('search-results');
    this.timer = null;
    this.seq = 0;
    this.active = false; // server results are on screen (the grid is hidden)
    this.selected = null;
    this.input.addEventListener('input', () => this.schedule());
    this.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowDown' && this.active) {
        const first = this.list.querySelector('button');
        if (first) { ev.preventDefault(); first.focus(); }
      } else if (ev.key === 'Enter') {
        ev.preventDefault();
        clearTimeout(this.timer);
        this.run();
      }
    });
    this.list.addEventListener('keydown', (ev) => this.onListKey(ev));
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(), DEBOUNCE_MS);
  }

  reset() {
    clearTimeout(this.timer);
    this.seq += 1;
    this.show(false);
    this.list.replaceChildren();
  }

  show(active) {
    this.active = active;
    this.list.hidden = !active;
    byId('services').hidden = active;
  }

  async run() {
    const q = this.input.value.trim();
    const seq = ++this.seq;
    if (!q) {
      this.reset();
      this.fallback();
      return;
    }
    const status = byId('catalog-status');
    setText(status, 'kiosk.search.searching');
    try {
      const answer = await this.api.get(`/catalog/search?q=${encodeURIComponent(q.slice(0, 100))}&limit=${LIMIT}`);
      if (seq !== this.seq) return; // a newer query is on its way
      this.render(answer.hits || []);
      this.show(true);
      if (answer.hits && answer.hits.length) setText(status, 'kiosk.search.found', { n: answer.hits.length });
      else setText(status, 'kiosk.search.none');
    } catch (err) {
      if (seq !== this.seq) return;
      // The page's substring filter over the list still works without the server.
      this.show(false);
      this.list.replaceChildren();
      this.fallback();
      if (err.code !== 'unauthenticated') setText(status, 'kiosk.search.failed');
    }
  }

  render(hits) {
    this.list.replaceChildren();
    for (const hit of hits) {
      const btn = h('button', {
        type: 'button', class: 'service', 'aria-pressed': String(hit.code === this.selected),
        dataset: { hitCode: hit.code },
      }, h('span', { class: 'hit-name' }, hit.name),
      h('span', { class: 'hit-dept' }, hit.department),
      hit.instant_approval ? h('span', { class: 'hit-instant', i18n: ['kiosk.search.instant'] }) : null);
      btn.addEventListener('click', () => this.onSelect(hit.code));
      this.list.append(h('li', {}, btn));
    }
  }

  /** Keep the results' pressed state in step with the page's selection. */
  markSelected(code) {
    this.selected = code;
    for (const btn of this.list.querySelectorAll('button[data-hit-code]')) {
      btn.setAttribute('aria-pressed', String(btn.dataset.hitCode === code));
    }
  }

  onListKey(ev) {
    const buttons = [...this.list.querySelectorAll('button')];
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    if (ev.key === 'ArrowDown' && at < buttons.length - 1) {
      ev.preventDefault();
      buttons[at + 1].focus();
    } else if (ev.key === 'ArrowUp') {
      ev.preventDefault();
      (at > 0 ? buttons[at - 1] : this.input).focus();
    } else if (ev.key === 'Escape') {
      ev.preventDefault();
      this.input.focus();
    }
  }
}
