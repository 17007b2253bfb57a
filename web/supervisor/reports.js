// The "报表 / Reports" panel: a date range, then CSV/XLSX downloads of calls, cases and
// the per-agent and per-township summaries, or the summaries as a table on the page.
// Downloads are fetched with the bearer token and saved from a Blob: a token must
// never travel in a URL (logs, history, Referer).

import { t, setText, lang } from '/common/i18n.js';
import { byId, h } from '/common/ui.js';
import { num, seconds, pct, csatText, clearStatus } from '/supervisor/stats.js';

const OFFICE_TZ = 'Asia/Shanghai';

/** Today's date in the office's timezone, YYYY-MM-DD. */
function officeToday() {
  return new Intl.DateTimeFormat('en-CA', { timeZone: OFFICE_TZ, year: 'numeric', month: '2-digit', day: '2-digit' })
    .format(new Date());
}

const SUMMARY_COLUMNS = {
  agents: [
    ['reports.col.name', (r) => r.name],
    ['reports.col.answered', (r) => num(r.answered)],
    ['reports.col.asa', (r) => seconds(r.asa_s)],
    ['reports.col.aht', (r) => seconds(r.aht_s)],
    ['reports.col.csat', (r) => csatText(r.csat_avg, r.csat_top_pct, r.ratings)],
    ['reports.col.travelKm', (r) => t('stats.unit.km', { n: num(r.travel_km, 1) })],
  ],
  townships: [
    ['reports.col.name', (r) => r.name],
    ['reports.col.offered', (r) => num(r.offered)],
    ['reports.col.answered', (r) => num(r.answered)],
    ['reports.col.abandoned', (r) => num(r.abandoned)],
    ['reports.col.sl', (r) => pct(r.service_level_pct)],
    ['reports.col.asa', (r) => seconds(r.asa_s)],
    ['reports.col.aht', (r) => seconds(r.aht_s)],
    ['reports.col.csat', (r) => csatText(r.csat_avg, r.csat_top_pct, r.ratings)],
    ['reports.col.travelKm', (r) => t('stats.unit.km', { n: num(r.travel_km, 1) })],
    ['reports.col.travelHours', (r) => t('stats.unit.hours', { n: num(r.travel_hours, 1) })],
  ],
};

export class ReportsPanel {
  constructor(api) {
    this.api = api;
    this.summary = null;
    this.status = byId('report-status');
    const today = officeToday();
    byId('report-from').value = today;
    byId('report-to').value = today;
    for (const btn of document.querySelectorAll('#reports button[data-report]')) {
      btn.addEventListener('click', () => this.run(btn));
    }
    byId('report-form').addEventListener('submit', (ev) => ev.preventDefault());
    this.relabel();
  }

  /** Buttons read "CSV" on screen; their accessible names say what they download. */
  relabel() {
    for (const btn of document.querySelectorAll('#reports button[data-report]')) {
      const what = t(`reports.${btn.dataset.report}`);
      const name = btn.dataset.format === 'table' ? t('reports.show', { what })
        : t('reports.download', { what, fmt: btn.dataset.format.toUpperCase() });
      btn.setAttribute('aria-label', name);
    }
    // Its words were in the other language; the table's caption says the same.
    clearStatus(this.status);
    this.renderSummary();
  }

  range() {
    return { from: byId('report-from').value, to: byId('report-to').value };
  }

  async run(btn) {
    const { report, format } = btn.dataset;
    const { from, to } = this.range();
    const what = t(`reports.${report}`);
    const query = new URLSearchParams({ from, to, lang: lang() });
    btn.disabled = true;
    setText(this.status, 'reports.preparing', { what });
    try {
      if (format === 'table') {
        const body = await this.api.get(`/reports/${report}?${query}`);
        this.summary = { report, body };
        this.renderSummary();
        setText(this.status, 'reports.shown', { what, from: body.from, to: body.to, n: body.rows.length });
        return;
      }
      const detail = report === 'calls' || report === 'cases';
      if (!detail) query.set('format', format);
      const path = detail ? `/reports/${report}.${format}?${query}` : `/reports/${report}?${query}`;
      const blob = await this.api.blob(path);
      const file = `${report}_${from}_${to}.${format}`;
      const url = URL.createObjectURL(blob);
      const link = h('a', { href: url, download: file, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      // Some browsers read the blob after click() returns.
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      setText(this.status, 'reports.done', { what, file });
    } catch (err) {
      setText(this.status, 'reports.failed', { message: err.message || err.code });
    } finally {
      btn.disabled = false;
    }
  }

  renderSummary() {
    const box = byId('report-summary');
    if (!this.summary) {
      box.replaceChildren();
      return;
    }
    const { report, body } = this.summary;
    const columns = SUMMARY_COLUMNS[report];
    const caption = h('caption', {}, t('reports.shown', {
      what: t(`reports.${report}`), from: body.from, to: body.to, n: body.rows.length,
    }));
    const head = h('thead', {}, h('tr', {}, columns.map(([key]) => h('th', { scope: 'col', i18n: [key] }))));
    const rows = body.rows.map((r) => h('tr', { dataset: { name: r.name } },
      columns.map(([, cell], i) => (i === 0 ? h('th', { scope: 'row' }, cell(r)) : h('td', { class: 'num' }, cell(r))))));
    box.replaceChildren(h('div', { class: 'table-wrap' },
      h('table', { class: 'data-table', id: 'report-table', dataset: { report } }, caption, head, h('tbody', {}, rows))));
  }
}
