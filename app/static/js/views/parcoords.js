// A sweep's parameters against its metric: parallel coordinates over its
// finished trials (plain SVG), and each parameter's importance for the metric
// as the API measures it (GET /api/tunix/sweeps/{id}/importance), with the
// API's one-line explanation.
//
// One axis per swept parameter, then the metric's.  A parameter drawn from
// log_uniform (the sweep's stored spec says so), or a grid of positive
// numbers spanning two decades or more, gets a log axis; one with any value
// that is not a number (a choice of words, booleans) a categorical axis, its
// values evenly spaced.  One line per finished trial with the metric,
// coloured by it (the better, the darker), the best trial thicker.  Drag
// along an axis to keep only the lines that cross it there (one range per
// axis, every range at once); click a range's band to clear it.

import { request } from "../api.js";
import { isFinal } from "../config.js";
import { h, s, fmtNumber, shortId } from "../dom.js";

const HEIGHT = 340;
const MARGIN = { top: 46, right: 56, bottom: 22, left: 56 };
const BRUSH_OVERHANG = 8;
/** Better to worse, the better the more salient: plasma's on a light page (dark to light), viridis' on a dark one
 *  (light to dark). */
const RAMPS = { light: ["#0d0887", "#6a00a8", "#b12a90", "#e16462", "#f89540"],
  dark: ["#fde725", "#7ad151", "#22a884", "#2a788e", "#414487"] };

function palette() {
  const dark = typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches;
  return RAMPS[dark ? "dark" : "light"];
}

// ---------------------------------------------------------------- scales

/** About `count` round numbers covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Powers of ten within [lo, hi] (with 2 and 5 times them when fewer than three). */
export function logTicks(lo, hi) {
  const out = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e += 1) {
    for (const m of [1, 2, 5]) {
      const v = Number((m * 10 ** e).toPrecision(12));
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push({ v, major: m === 1 });
    }
  }
  const majors = out.filter((t) => t.major);
  return (majors.length >= 3 ? majors : out).map((t) => t.v);
}

const key = (v) => (typeof v === "string" ? v : JSON.stringify(v));

/**
 * An axis for `values`: {name, title, kind: "log" | "linear" | "categorical", pos(v) in [0, 1] (0 at the bottom),
 * ticks: [{v, label, at}]}.  `log` says the sweep draws it from log_uniform; `order` is a choice's or a grid's
 * values, in the order the sweep lists them (a categorical axis keeps it).
 */
export function makeAxis(name, values, { log = false, order = [], title = name } = {}) {
  const numeric = values.length > 0 && values.every((v) => typeof v === "number" && Number.isFinite(v));
  if (!numeric) {
    const cats = [];
    // Every value the sweep lists (one no trial drew yet still has its place), then any other.
    for (const v of [...order, ...values]) if (!cats.includes(key(v))) cats.push(key(v));
    const at = (k) => (cats.length === 1 ? 0.5 : cats.indexOf(k) / (cats.length - 1));
    return { name, title, kind: "categorical", pos: (v) => at(key(v)),
      ticks: cats.map((k) => ({ v: k, label: k, at: at(k) })) };
  }
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const positive = lo > 0;
  const kind = positive && (log || hi / lo >= 100) ? "log" : "linear";
  if (kind === "log") {
    if (hi === lo) { lo /= 2; hi *= 2; }
    const [a, b] = [Math.log10(lo), Math.log10(hi)];
    const pos = (v) => (Math.log10(v) - a) / (b - a);
    return { name, title, kind, pos, ticks: logTicks(lo, hi).map((v) => ({ v, label: fmtNumber(v), at: pos(v) })) };
  }
  if (hi === lo) { const pad = Math.abs(lo) / 10 || 1; lo -= pad; hi += pad; }
  const pos = (v) => (v - lo) / (hi - lo);
  return { name, title, kind, pos, ticks: niceTicks(lo, hi).map((v) => ({ v, label: fmtNumber(v), at: pos(v) })) };
}

function mix(a, b, t) {
  const pa = [1, 3, 5].map((i) => parseInt(a.slice(i, i + 2), 16));
  const pb = [1, 3, 5].map((i) => parseInt(b.slice(i, i + 2), 16));
  return `#${pa.map((x, i) => Math.round(x + (pb[i] - x) * t).toString(16).padStart(2, "0")).join("")}`;
}

/** The colour of `t` in [0, 1], 0 the better end. */
export function ramp(t) {
  const ramp = palette();
  const x = Math.min(1, Math.max(0, t)) * (ramp.length - 1);
  const i = Math.min(ramp.length - 2, Math.floor(x));
  return mix(ramp[i], ramp[i + 1], x - i);
}

// ---------------------------------------------------------------- the chart

/** The sweep's own idea of each parameter: log_uniform (log axis) and the order of its listed values. */
function specHints(spec) {
  const hints = {};
  for (const [name, values] of Object.entries((spec && spec.grid) || {})) hints[name] = { order: values };
  for (const [name, dist] of Object.entries((spec && spec.random && spec.random.space) || {})) {
    hints[name] = { log: "log_uniform" in dist, order: dist.choice || [] };
  }
  return hints;
}

export class ParCoords {
  constructor({ onPick } = {}) {
    this.onPick = onPick;
    this.brushes = new Map(); // axis name -> [lo, hi] in [0, 1]
    this.note = h("p.hint.pc-note", { dataset: { testid: "pc-note" } });
    this.clear = h("button.btn.btn-sm", { type: "button", hidden: true, dataset: { testid: "pc-clear" },
      onclick: () => { this.brushes.clear(); this.draw(); } }, "Clear selection");
    this.box = h("div.pc-box", { dataset: { testid: "parcoords" } });
    this.el = h("div.pc", null, this.box, h("div.pc-foot", null, this.note, this.clear));
    this.data = null;
    this.width = 0;
    if (typeof ResizeObserver === "function") {
      this.resize = new ResizeObserver(() => {
        if (this.data && Math.abs(this.box.clientWidth - this.width) > 24) this.draw();
      });
      this.resize.observe(this.box);
    }
    // The colours follow the page's light or dark scheme.
    this.scheme = typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null;
    this.redraw = () => { if (this.data) this.draw(); };
    if (this.scheme) this.scheme.addEventListener("change", this.redraw);
  }

  destroy() {
    if (this.resize) this.resize.disconnect();
    if (this.scheme) this.scheme.removeEventListener("change", this.redraw);
  }

  /** `detail`: GET /sweeps/{id}'s answer. */
  setData(detail) {
    const metric = detail.metric;
    const value = (t) => t[metric];
    const trials = detail.runs.filter((t) => isFinal(t.status) && typeof value(t) === "number" && Number.isFinite(value(t)));
    const names = [...new Set(detail.runs.flatMap((t) => Object.keys(t.params)))].sort();
    const hints = specHints(detail.spec);
    const axes = names.map((n) => makeAxis(n, trials.map((t) => t.params[n]), hints[n] || {}));
    const better = detail.mode === "max" ? "higher" : "lower";
    const metricAxis = makeAxis(metric, trials.map(value), { title: metric });
    metricAxis.isMetric = true;
    metricAxis.subtitle = `${better} is better`;
    const values = trials.map(value);
    const [lo, hi] = [Math.min(...values), Math.max(...values)];
    // 0: the best end of the colour ramp.
    const shade = (v) => (hi === lo ? 0 : detail.mode === "max" ? (hi - v) / (hi - lo) : (v - lo) / (hi - lo));
    this.data = { metric, trials, axes: [...axes, metricAxis], value, shade, best: detail.best && detail.best.run_id,
      total: detail.runs.length, better };
    for (const name of [...this.brushes.keys()]) if (!this.data.axes.some((a) => a.name === name)) this.brushes.delete(name);
    this.draw();
  }

  selected(t) {
    const { axes, value } = this.data;
    for (const [name, [a, b]] of this.brushes) {
      const axis = axes.find((x) => x.name === name);
      const p = axis.pos(axis.isMetric ? value(t) : t.params[name]);
      if (!(p >= a - 1e-9 && p <= b + 1e-9)) return false;
    }
    return true;
  }

  draw() {
    const d = this.data;
    this.width = this.box.clientWidth || 900;
    const W = Math.max(480, this.width);
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    const n = d.axes.length;
    const x = (i) => (n === 1 ? W / 2 : MARGIN.left + (i * (W - MARGIN.left - MARGIN.right)) / (n - 1));
    const y = (p) => MARGIN.top + (1 - p) * plotH;
    const shown = d.trials.filter((t) => this.selected(t));
    this.note.textContent = d.trials.length
      ? `${d.trials.length} finished trial${d.trials.length === 1 ? "" : "s"} with ${d.metric} of ${d.total}` +
        (this.brushes.size ? `; ${shown.length} in the selection` : "; drag along an axis to select")
      : `No finished trial has ${d.metric} yet.`;
    this.clear.hidden = !this.brushes.size;
    const svg = s("svg", { class: "pc-svg", viewBox: `0 0 ${W} ${HEIGHT}`, width: W, height: HEIGHT, role: "img",
      "aria-label": `Parallel coordinates: ${d.axes.slice(0, -1).map((a) => a.name).join(", ")} and ${d.metric}, one line per finished trial` });
    if (!d.trials.length) {
      this.box.replaceChildren(svg);
      return;
    }
    // Lines first, axes over them.  The best trial last, on top.
    const order = [...d.trials].sort((a, b) => (a.run_id === d.best) - (b.run_id === d.best) || d.shade(d.value(b)) - d.shade(d.value(a)));
    const lines = s("g", { class: "pc-lines" });
    for (const t of order) {
      const pts = d.axes.map((a, i) => `${x(i).toFixed(1)},${y(a.pos(a.isMetric ? d.value(t) : t.params[a.name])).toFixed(1)}`);
      const best = t.run_id === d.best;
      const on = this.selected(t);
      const path = s("path", { d: `M${pts.join("L")}`, stroke: ramp(d.shade(d.value(t))),
        class: `pc-line${best ? " pc-best" : ""}${on ? "" : " pc-dim"}`,
        "data-testid": "pc-line", "data-run": t.run_id, "data-selected": String(on) },
        s("title", null, `${shortId(t.run_id)} · ${Object.entries(t.params).map(([k, v]) => `${k} ${typeof v === "number" ? fmtNumber(v) : key(v)}`).join(" · ")} · ${d.metric} ${fmtNumber(d.value(t))}`));
      if (this.onPick) path.addEventListener("click", () => this.onPick(t.run_id));
      lines.append(path);
    }
    svg.append(lines);
    d.axes.forEach((a, i) => svg.append(this.axis(a, x(i), y, plotH, i === n - 1)));
    svg.append(this.legend(W, d));
    this.box.replaceChildren(svg);
  }

  axis(a, ax, y, plotH, last) {
    const g = s("g", { class: `pc-axis${a.isMetric ? " pc-axis-metric" : ""}`, "data-testid": "pc-axis", "data-param": a.name, "data-kind": a.kind });
    g.append(s("line", { x1: ax, x2: ax, y1: y(0), y2: y(1), class: "pc-axis-line" }));
    const side = last ? 1 : -1; // labels left of the axis, the last one's right
    for (const t of a.ticks) {
      const ty = y(t.at);
      g.append(s("line", { x1: ax, x2: ax + 4 * side, y1: ty, y2: ty, class: "pc-tick" }),
        s("text", { x: ax + 7 * side, y: ty, dy: "0.32em", "text-anchor": last ? "start" : "end", class: "pc-tick-label", "data-testid": "pc-tick" },
          t.label.length > 14 ? `${t.label.slice(0, 13)}…` : t.label));
    }
    g.append(s("text", { x: ax, y: 16, "text-anchor": "middle", class: "pc-axis-title" }, a.title),
      s("text", { x: ax, y: 31, "text-anchor": "middle", class: "pc-axis-sub" }, a.subtitle || (a.kind === "log" ? "log" : a.kind === "categorical" ? "values" : "")));
    const brush = this.brushes.get(a.name);
    if (brush) {
      const band = s("rect", { x: ax - 7, width: 14, y: y(brush[1]), height: Math.max(2, y(brush[0]) - y(brush[1])), class: "pc-brush",
        "data-testid": "pc-brush" }, s("title", null, "Click to clear"));
      band.addEventListener("click", () => { this.brushes.delete(a.name); this.draw(); });
      g.append(band);
    }
    // The band dragged along: a wider, invisible strip, a little past both ends (a drag from there reaches the end).
    const area = s("rect", { x: ax - 12, width: 24, y: y(1) - BRUSH_OVERHANG, height: plotH + 2 * BRUSH_OVERHANG,
      class: "pc-brush-area", "data-testid": "pc-brush-area" });
    area.addEventListener("pointerdown", (e) => this.startBrush(e, a.name, y));
    g.insertBefore(area, g.firstChild);
    return g;
  }

  startBrush(event, name, y) {
    event.preventDefault();
    // The SVG is drawn again as the band grows: ask the current one where the pointer is.
    const toP = (ev) => {
      const rect = this.box.querySelector("svg").getBoundingClientRect();
      const local = ((ev.clientY - rect.top) * HEIGHT) / (rect.height || HEIGHT);
      return Math.min(1, Math.max(0, (y(0) - local) / (y(0) - y(1))));
    };
    const from = toP(event);
    const move = (ev) => {
      const to = toP(ev);
      if (Math.abs(to - from) > 0.01) this.brushes.set(name, [Math.min(from, to), Math.max(from, to)]);
      this.draw();
    };
    const up = (ev) => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      const to = toP(ev);
      if (Math.abs(to - from) <= 0.01) this.brushes.delete(name);
      else this.brushes.set(name, [Math.min(from, to), Math.max(from, to)]);
      this.draw();
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }

  legend(W, d) {
    const id = `pc-ramp-${Math.random().toString(36).slice(2, 8)}`;
    const g = s("g", { class: "pc-legend" });
    const grad = s("linearGradient", { id, x1: 0, x2: 1, y1: 0, y2: 0 },
      palette().map((c, i, all) => s("stop", { offset: `${(i / (all.length - 1)) * 100}%`, "stop-color": c })));
    const values = d.trials.map(d.value);
    const best = d.better === "lower" ? Math.min(...values) : Math.max(...values);
    const worst = d.better === "lower" ? Math.max(...values) : Math.min(...values);
    const x0 = W - MARGIN.right - 160;
    g.append(s("defs", null, grad),
      s("text", { x: x0 - 6, y: HEIGHT - 6, "text-anchor": "end", class: "pc-tick-label" }, `${d.metric} ${fmtNumber(best)}`),
      s("rect", { x: x0, y: HEIGHT - 14, width: 160, height: 8, rx: 2, fill: `url(#${id})` }),
      s("text", { x: x0 + 166, y: HEIGHT - 6, class: "pc-tick-label" }, fmtNumber(worst)));
    return g;
  }
}

// ---------------------------------------------------------------- importance

function importanceRow(p) {
  const strength = p.strength;
  const fill = h("span.imp-fill");
  if (strength !== null) fill.style.width = `${Math.round(strength * 100)}%`;
  const stat = strength === null ? "not measurable"
    : `${p.kind === "numeric" ? `ρ ${p.correlation > 0 ? "+" : ""}${fmtNumber(p.correlation, 2)}` : `η ${fmtNumber(strength, 2)}`}` +
      (p.p_value === null ? "" : ` · p ${p.p_value < 0.001 ? "< 0.001" : fmtNumber(p.p_value, 3)}`);
  return h("li.imp-row", { dataset: { testid: "importance-row", param: p.param } },
    h("span.imp-name.mono", { title: p.param }, p.param),
    h("span.imp-bar", { role: "img", "aria-label": strength === null ? `${p.param}: not measurable` : `${p.param}: strength ${fmtNumber(strength, 2)} of 1` }, fill),
    h("span.imp-stat", { dataset: { testid: "importance-stat" } }, stat),
    h("span.imp-share.muted", { title: "share of the sum of strengths" }, p.importance === null ? "—" : `${Math.round(p.importance * 100)}%`));
}

/**
 * The sweep page's panels: parallel coordinates and importance.  `el` goes in
 * the page; `update(detail)` after each load (the importance is fetched
 * again only when the set of finished trials changed).
 */
export class SweepInsights {
  constructor({ sweepId, onPick }) {
    this.sweepId = sweepId;
    this.chart = new ParCoords({ onPick });
    this.explain = h("p.hint.imp-explain", { dataset: { testid: "importance-explanation" } });
    this.list = h("ol.imp-list", { dataset: { testid: "importance" } });
    this.seen = null;
    this.el = h("div.sweep-insights", null,
      h("section.panel.pc-panel", null,
        h("div.panel-head", null, h("h2", null, "Parameters and metric"),
          h("p.muted", null, "One line per finished trial, coloured by the metric; click one to open it.")),
        this.chart.el),
      h("section.panel.imp-panel", null,
        h("div.panel-head", null, h("h2", null, "Parameter importance")), this.explain, this.list));
  }

  update(detail) {
    this.chart.setData(detail);
    const done = detail.runs.filter((t) => isFinal(t.status)).map((t) => `${t.run_id}:${t.status}`).join(",");
    if (done === this.seen) return;
    this.seen = done;
    request("GET", `sweeps/${encodeURIComponent(this.sweepId)}/importance`).then(({ data }) => {
      this.explain.textContent = data.explanation;
      this.list.replaceChildren(...data.params.map(importanceRow));
    }).catch((err) => {
      this.seen = null;
      this.explain.textContent = `Importance could not be loaded: ${err.message || err}`;
    });
  }

  destroy() {
    this.chart.destroy();
  }
}
