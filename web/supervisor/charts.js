// Hand-drawn inline SVG charts (no chart library): a time chart with step areas and
// point lines, and a bar chart. Each chart is role="img" with an aria-label that states
// the numbers; the caller also fills a visually hidden table with the data.

const NS = 'http://www.w3.org/2000/svg';
const W = 520;
const H = 210;
const M = { l: 44, r: 14, t: 24, b: 30 };

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A round upper bound for the y axis and its tick step. */
export function niceScale(max, { integer = false, minMax = 1 } = {}) {
  const top = Math.max(max, minMax);
  const raw = top / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((v) => v >= raw) || 10 * mag;
  if (integer) step = Math.max(1, Math.ceil(step));
  return { max: Math.ceil(top / step) * step, step };
}

function frame(label, extraClass) {
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, class: `chart ${extraClass}`,
    preserveAspectRatio: 'xMidYMid meet', focusable: 'false',
  });
  svg.append(s('title', {}, label));
  return svg;
}

function yAxis(svg, scale, unit) {
  const y = (v) => M.t + (H - M.t - M.b) * (1 - v / scale.max);
  const digits = scale.step >= 1 ? 0 : Math.ceil(-Math.log10(scale.step));
  for (let i = 0; i * scale.step <= scale.max + 1e-9; i += 1) {
    const v = i * scale.step;
    svg.append(s('line', { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v), class: v === 0 ? 'axis' : 'grid' }));
    svg.append(s('text', { x: M.l - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, v.toFixed(digits)));
  }
  // The unit above the axis, clear of the top tick's label.
  svg.append(s('text', { x: M.l, y: 12, class: 'unit' }, unit));
  return y;
}

/**
 * A chart over time.
 * @param {{label: string, unit: string, t0: number, t1: number,
 *          ticks: {at: number, label: string}[], integer?: boolean, minMax?: number,
 *          series: {cls: string, kind: 'step'|'points', step?: number,
 *                   points: [number, number|null][]}[]}} spec  times in ms.
 */
export function timeChart(spec) {
  const svg = frame(spec.label, 'time-chart');
  const values = spec.series.flatMap((ser) => ser.points.map((p) => p[1]).filter((v) => v !== null));
  const scale = niceScale(Math.max(0, ...values), { integer: spec.integer, minMax: spec.minMax || 1 });
  const x = (t) => M.l + (W - M.l - M.r) * ((t - spec.t0) / (spec.t1 - spec.t0));
  const y = yAxis(svg, scale, spec.unit);
  for (const tick of spec.ticks) {
    svg.append(s('line', { x1: x(tick.at), x2: x(tick.at), y1: H - M.b, y2: H - M.b + 4, class: 'axis' }));
    const anchor = tick.at >= spec.t1 ? 'end' : 'middle';
    svg.append(s('text', { x: x(tick.at), y: H - M.b + 17, class: 'tick', 'text-anchor': anchor }, tick.label));
  }
  for (const ser of spec.series) {
    if (ser.kind === 'step') {
      // A bar per bucket, drawn as one closed outline: the value holds for the bucket.
      let d = '';
      let open = false;
      for (const [t, v] of ser.points) {
        const end = Math.min(t + ser.step, spec.t1);
        if (v === null) {
          if (open) d += ` L${x(t).toFixed(1)},${y(0).toFixed(1)}`;
          open = false;
          continue;
        }
        d += open ? ` L${x(t).toFixed(1)},${y(v).toFixed(1)}`
          : ` M${x(t).toFixed(1)},${y(0).toFixed(1)} L${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        d += ` L${x(end).toFixed(1)},${y(v).toFixed(1)}`;
        open = true;
      }
      if (open) {
        const last = ser.points[ser.points.length - 1];
        d += ` L${x(Math.min(last[0] + ser.step, spec.t1)).toFixed(1)},${y(0).toFixed(1)} Z`;
      }
      if (d) svg.append(s('path', { d: d.trim(), class: `series ${ser.cls}` }));
    } else {
      let d = '';
      let prev = false;
      for (const [t, v] of ser.points) {
        if (v === null) {
          prev = false;
          continue;
        }
        d += `${prev ? ' L' : ' M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        prev = true;
        svg.append(s('circle', { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 3, class: `dot ${ser.cls}` }));
      }
      if (d) svg.append(s('path', { d: d.trim(), class: `series line ${ser.cls}` }));
    }
  }
  return svg;
}

/**
 * Bars over categories.
 * @param {{label: string, unit: string, max: number, step: number,
 *          bars: {label: string, value: number|null, text: string}[]}} spec
 */
export function barChart(spec) {
  const svg = frame(spec.label, 'bar-chart');
  const y = yAxis(svg, { max: spec.max, step: spec.step }, spec.unit);
  const n = Math.max(spec.bars.length, 1);
  const slot = (W - M.l - M.r) / n;
  spec.bars.forEach((bar, i) => {
    const cx = M.l + slot * (i + 0.5);
    const bw = Math.min(44, slot * 0.6);
    if (bar.value !== null) {
      svg.append(s('rect', {
        x: (cx - bw / 2).toFixed(1), y: y(bar.value).toFixed(1), width: bw.toFixed(1),
        height: (y(0) - y(bar.value)).toFixed(1), class: 'bar',
      }));
    }
    svg.append(s('text', { x: cx, y: (bar.value === null ? y(0) : y(bar.value)) - 4, class: 'value', 'text-anchor': 'middle' }, bar.text));
    svg.append(s('text', { x: cx, y: H - M.b + 17, class: 'tick', 'text-anchor': 'middle' }, bar.label));
  });
  return svg;
}
