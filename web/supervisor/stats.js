// The "今日数据 / Today" panel: today's figures, the queue and waits over the day, and
// satisfaction by week. Fetched over REST when a dashboard push arrives (at most once
// every few seconds) and every 30 s, since figures also change while nothing is pushed.

import { t, setText, lang } from '/common/i18n.js';
import { byId, h, pad2 } from '/common/ui.js';
import { timeChart, barChart } from '/supervisor/charts.js';

const PUSH_GAP_MS = 3000;
const POLL_MS = 30000;
const WEEKS = 8;
const HOUR = 3600 * 1000;

export function num(value, digits = 0) {
  return new Intl.NumberFormat(lang(), { maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(value);
}

export function seconds(value) {
  if (value === null || value === undefined) return t('stats.fig.none');
  const total = Math.round(value);
  if (total < 60) return t('stats.unit.seconds', { n: total });
  return t('stats.unit.minutes', { m: Math.floor(total / 60), s: pad2(total % 60) });
}

export function pct(value) {
  return value === null || value === undefined ? t('stats.fig.none') : t('stats.unit.pct', { n: num(value, 1) });
}

export function csatText(avg, top, count) {
  if (avg === null || avg === undefined) return t('stats.fig.none');
  return t('stats.csatValue', { avg: num(avg, 2), pct: num(top, 0), n: count });
}

/** Empty a status line for good (a language switch would bring its last text back). */
export function clearStatus(el) {
  el.textContent = '';
  delete el.dataset.i18n;
  delete el.dataset.i18nArgs;
}

/** "09:00" in the office's timezone, whatever the browser's is. */
function clock(ms, tz) {
  return new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
    .format(new Date(ms));
}

export class TodayPanel {
  constructor(api) {
    this.api = api;
    this.data = null;
    this.timer = null;
    this.pending = null;
    this.last = 0;
    this.busy = false;
    this.again = false;
    this.gen = 0;
  }

  start() {
    this.stop();
    setText(byId('today-status'), 'stats.loading');
    this.timer = setInterval(() => this.refresh(), POLL_MS);
    this.refresh();
  }

  stop() {
    this.gen += 1;
    clearInterval(this.timer);
    clearTimeout(this.pending);
    this.timer = null;
    this.pending = null;
    this.data = null;
  }

  /** A dashboard push arrived: refresh soon, but not for every push of a busy hour. */
  pushed() {
    if (this.timer === null || this.pending !== null) return;
    const wait = this.last + PUSH_GAP_MS - Date.now();
    if (wait <= 0) {
      this.refresh();
      return;
    }
    this.pending = setTimeout(() => {
      this.pending = null;
      this.refresh();
    }, wait);
  }

  async refresh() {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.last = Date.now();
    const gen = this.gen;
    try {
      const [today, queue, csat] = await Promise.all([
        this.api.get('/stats/today'),
        this.api.get('/stats/queue-over-day'),
        this.api.get(`/stats/csat-weeks?weeks=${WEEKS}`),
      ]);
      if (gen !== this.gen) return;
      this.data = { today, queue, csat };
      clearStatus(byId('today-status'));
      this.render();
    } catch (err) {
      if (gen === this.gen) setText(byId('today-status'), 'stats.failed', { message: err.message || err.code });
    } finally {
      this.busy = false;
      if (this.again && gen === this.gen) {
        this.again = false;
        this.refresh();
      }
    }
  }

  render() {
    if (!this.data) return;
    const { today, queue, csat } = this.data;
    setText(byId('today-date'), 'stats.today.date', { date: today.date });
    this.renderFigures(today);
    this.renderQueue(queue);
    this.renderCsat(csat.weeks || []);
  }

  renderFigures(f) {
    const item = (key, labelKey, text, raw, args = null, note = null) => h('div', {
      class: 'figure', dataset: { figure: key, value: raw === null || raw === undefined ? '' : String(raw) },
    }, h('dt', { i18n: [labelKey, args] }), h('dd', {}, text, note ? h('small', {}, note) : null));
    byId('today-figures').replaceChildren(
      item('offered', 'stats.fig.offered', num(f.offered), f.offered),
      item('answered', 'stats.fig.answered', num(f.answered), f.answered, null,
        t('stats.handledNote', { n: f.handled })),
      item('abandoned', 'stats.fig.abandoned', num(f.abandoned), f.abandoned),
      item('waiting', 'stats.fig.waiting', num(f.waiting), f.waiting),
      item('service-level', 'stats.fig.serviceLevel', pct(f.service_level_pct), f.service_level_pct,
        { s: f.service_level_s }),
      item('asa', 'stats.fig.asa', seconds(f.asa_s), f.asa_s),
      item('aht', 'stats.fig.aht', seconds(f.aht_s), f.aht_s),
      item('csat', 'stats.fig.csat', csatText(f.csat_avg, f.csat_top_pct, f.ratings), f.csat_avg),
      item('travel-km', 'stats.fig.travelKm', t('stats.unit.km', { n: num(f.travel_km, 1) }), f.travel_km),
      item('travel-hours', 'stats.fig.travelHours', t('stats.unit.hours', { n: num(f.travel_hours, 1) }),
        f.travel_hours),
    );
  }

  renderQueue(series) {
    const tz = series.timezone;
    const t0 = Date.parse(series.start);
    const t1 = Date.parse(series.end);
    const step = series.bucket_minutes * 60000;
    const buckets = (series.buckets || []).map((b) => ({ ...b, at: Date.parse(b.start) }));
    const ticks = [];
    for (let at = t0; at <= t1; at += 3 * HOUR) {
      ticks.push({ at, label: at === t1 ? '24:00' : clock(at, tz) });
    }
    const answered = buckets.reduce((n, b) => n + b.answered, 0);
    const top = buckets.reduce((best, b) => (b.peak > (best ? best.peak : 0) ? b : best), null);
    const now = buckets.length ? buckets[buckets.length - 1].waiting : 0;
    const queueLabel = t('stats.chart.queueLabel', {
      peak: top ? top.peak : 0, at: top ? clock(top.at, tz) : '—', now, answered,
    });
    const queueSvg = timeChart({
      label: queueLabel, unit: t('stats.chart.people'), t0, t1, ticks, integer: true,
      series: [{ cls: 'peak', kind: 'step', step, points: buckets.map((b) => [b.at, b.peak]) }],
    });
    Object.assign(queueSvg.dataset, { answered: String(answered), peak: String(top ? top.peak : 0), waiting: String(now) });
    byId('queue-chart').replaceChildren(queueSvg);

    const withWaits = buckets.filter((b) => b.wait_median_s !== null);
    const slowest = withWaits.reduce((best, b) => (!best || b.wait_median_s > best.wait_median_s ? b : best), null);
    const waitsLabel = slowest
      ? t('stats.chart.waitsLabel', { buckets: withWaits.length, max: Math.round(slowest.wait_median_s), at: clock(slowest.at, tz) })
      : t('stats.chart.waitsEmpty');
    const mid = (b) => b.at + step / 2;
    const waitsSvg = timeChart({
      label: waitsLabel, unit: t('stats.chart.seconds'), t0, t1, ticks, integer: true, minMax: 10,
      series: [
        { cls: 'p90', kind: 'points', points: buckets.map((b) => [mid(b), b.wait_p90_s]) },
        { cls: 'median', kind: 'points', points: buckets.map((b) => [mid(b), b.wait_median_s]) },
      ],
    });
    waitsSvg.dataset.answered = String(answered);
    byId('waits-chart').replaceChildren(waitsSvg);

    // The same numbers for screen readers and keyboard users, busy periods only.
    const fmt = (v) => (v === null ? '' : num(v, 0));
    const rows = buckets.filter((b) => b.peak > 0 || b.answered > 0).map((b) => h('tr', {},
      h('th', { scope: 'row' }, `${clock(b.at, tz)}–${clock(b.at + step, tz)}`),
      h('td', {}, String(b.peak)), h('td', {}, String(b.waiting)), h('td', {}, String(b.answered)),
      h('td', {}, fmt(b.wait_median_s)), h('td', {}, fmt(b.wait_p90_s))));
    byId('queue-table').tBodies[0].replaceChildren(...rows);
  }

  renderCsat(weeks) {
    const label = (w) => w.week_start.slice(5);
    const parts = weeks.map((w) => (w.csat_avg === null
      ? t('stats.chart.csatWeekNone', { week: w.week_start })
      : t('stats.chart.csatWeek', { week: w.week_start, avg: num(w.csat_avg, 2), count: w.ratings })));
    const svg = barChart({
      label: t('stats.chart.csatLabel', { n: weeks.length, weeks: parts.join('；') }),
      unit: t('stats.chart.stars'), max: 5, step: 1,
      bars: weeks.map((w) => ({
        label: label(w), value: w.csat_avg, text: w.csat_avg === null ? '–' : num(w.csat_avg, 1),
      })),
    });
    svg.dataset.ratings = String(weeks.reduce((n, w) => n + w.ratings, 0));
    byId('csat-chart').replaceChildren(svg);
    setText(byId('csat-title'), 'stats.chart.csat', { n: weeks.length });
    const rows = weeks.map((w) => h('tr', {},
      h('th', { scope: 'row' }, w.week_start), h('td', {}, String(w.ratings)),
      h('td', {}, w.csat_avg === null ? '' : num(w.csat_avg, 2)),
      h('td', {}, w.csat_top_pct === null ? '' : pct(w.csat_top_pct))));
    byId('csat-table').tBodies[0].replaceChildren(...rows);
  }
}
