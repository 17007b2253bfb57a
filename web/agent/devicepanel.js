// The case panel's kiosk readings: ID-card reads (masked; the full number only by an
// audited reveal) and codes scanned at the kiosk, pushed live while the call runs.

import { byId, h, t, setText, showError } from '/common/ui.js';

export class DevicePanel {
  constructor(api) {
    this.api = api;
    this.reads = byId('idreads');
    this.codes = byId('codes');
    this.readIds = new Set();
    this.codeIds = new Set();
  }

  clear() {
    this.reads.replaceChildren();
    this.codes.replaceChildren();
    this.readIds.clear();
    this.codeIds.clear();
    this.updateEmpty();
  }

  /** Everything the case already has (from GET /cases/{id}). */
  load(caseBody) {
    for (const r of (caseBody && caseBody.id_reads) || []) this.addRead(r);
    for (const c of (caseBody && caseBody.codes) || []) this.addCode(c);
  }

  updateEmpty() {
    byId('idreads-empty').hidden = this.reads.children.length > 0;
    byId('codes-empty').hidden = this.codes.children.length > 0;
  }

  addRead(r) {
    if (!r || this.readIds.has(r.id)) return;
    this.readIds.add(r.id);
    const number = h('dd', { class: 'id-number' }, r.number_masked);
    const name = h('dd', {}, r.name);
    const address = h('dd', {}, r.address);
    // Shown as the server sends it: the year only (1958-**-**) until revealed.
    const birth = h('dd', {}, r.birth_date);
    const status = h('p', { class: 'note', role: 'status' });
    const reveal = h('button', { type: 'button', class: 'secondary', i18n: ['agent.idcard.reveal'] });
    reveal.addEventListener('click', () => this.reveal(r, { number, name, address, birth, status, reveal }));
    const validTo = r.valid_to === 'long_term' ? t('agent.idcard.longTerm') : r.valid_to;
    const li = h('li', { class: 'idread', dataset: { readId: r.id } },
      h('p', { class: 'idread-type', i18n: [`agent.idcard.type.${r.card_type}`] }),
      h('dl', { class: 'case-facts' },
        h('dt', { i18n: ['agent.idcard.name'] }), name,
        h('dt', { i18n: ['agent.idcard.number'] }), number,
        h('dt', { i18n: ['agent.idcard.birth'] }), birth,
        h('dt', { i18n: ['agent.idcard.address'] }), address,
        h('dt', { i18n: ['agent.idcard.valid'] }), h('dd', {}, `${r.valid_from} – ${validTo}`)),
      r.number_valid ? null : h('p', { class: 'warning', role: 'alert', i18n: ['agent.idcard.numberBad'] }),
      reveal, status);
    this.reads.append(li);
    this.updateEmpty();
  }

  async reveal(r, els) {
    els.reveal.disabled = true;
    try {
      const full = await this.api.post(`/id-reads/${encodeURIComponent(r.id)}/reveal`,
        { reason: '核验身份' });
      els.number.textContent = full.number;
      els.name.textContent = full.name;
      els.address.textContent = full.address;
      if (full.birth_date) els.birth.textContent = full.birth_date;
      setText(els.status, 'agent.idcard.revealed');
      els.reveal.hidden = true;
    } catch (err) {
      els.reveal.disabled = false;
      showError(els.status, err);
    }
  }

  addCode(c) {
    if (!c || this.codeIds.has(c.id)) return;
    this.codeIds.add(c.id);
    const sourceKey = c.source === 'doccam' ? 'source.doccam' : 'source.scanner';
    this.codes.append(h('li', { class: `code code-${c.purpose}`, dataset: { codeId: c.id } },
      h('span', { class: 'code-purpose', i18n: [`agent.codes.purpose.${c.purpose}`] }), ' ',
      // Shown as text, never as a live link: a scanned URL is untrusted input.
      h('span', { class: 'code-text' }, c.text), ' ',
      h('span', { class: 'material-meta', i18n: [sourceKey] })));
    this.updateEmpty();
  }
}
