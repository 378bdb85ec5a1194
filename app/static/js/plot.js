// The console's one chart component, on uPlot (vendored under
// /static/vendor/uplot, loaded by the shell before the modules): a run's
// curves, a sweep's trials overlaid, a comparison.  Each chart picks its
// metric, log or linear y, step or wall-time x and an EMA smoothing; a drag
// zooms and fetches that step range again at full resolution (the API's
// from_step/to_step), a double-click or "Reset zoom" goes back.  Curves
// come downsampled by the API with each bucket's extremes, so spikes stay.
// The keyboard reads points (arrows, Page keys, Home/End; Up/Down change
// curve) into a live region; the chart's label summarises every curve.
// A scatter of trials (a parameter against the sweep's metric) is here too.

import { h, fmtNumber } from "./dom.js";

/** Distinct colours for a few curves side by side (a comparison). */
const PALETTE = ["#4338ca", "#d97706", "#059669", "#db2777", "#0891b2", "#65a30d", "#7c3aed", "#dc2626", "#475569", "#ca8a04"];
/** Curves beyond this many get no legend and no raw curve under the smoothed one. */
const FEW = 8;
const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", Arial, sans-serif';
const LABEL_FONT = `600 ${FONT}`;
/** Tick increments: whole steps, and durations that read well (s, min, h). */
const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2.5e3, 5e3, 1e4, 2e4, 2.5e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 1e8, 1e9];
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

let counter = 0;

/** ``colour`` (#rgb or #rrggbb; else as it is) at ``alpha``: uPlot's focus resets a series' own alpha. */
function faint(colour, alpha) {
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(colour);
  if (!hex) return colour;
  const d = hex[1].length === 3 ? [...hex[1]].map((c) => c + c) : hex[1].match(/../g);
  return `rgba(${d.map((x) => parseInt(x, 16)).join(", ")}, ${alpha})`;
}

function cssVar(el, name, fallback) {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

/** A duration in seconds, short: 45s, 2m 30s, 1h 05m. */
export function fmtElapsed(sec) {
  if (sec === null || sec === undefined) return "—";
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s` : `${s / 60}m`;
  const m = Math.round(s / 60);
  return m % 60 ? `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m` : `${m / 60}h`;
}

/** Debiased exponential moving average of the non-null values (TensorBoard's smoothing); nulls stay. */
export function ema(values, weight) {
  if (!weight) return values;
  let last = 0;
  let n = 0;
  return values.map((v) => {
    if (v === null || v === undefined) return null;
    last = last * weight + (1 - weight) * v;
    n += 1;
    return last / (1 - weight ** n);
  });
}

/** uPlot's aligned data from curves on their own x values: the union of x, a column per curve (null where absent). */
function join(curves, key, logY) {
  const xs = [...new Set(curves.flatMap((c) => c[key]))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const columns = curves.map((c) => {
    const col = new Array(xs.length).fill(null);
    c[key].forEach((x, i) => {
      const v = c.values[i];
      col[at.get(x)] = logY && !(v > 0) ? null : v;
    });
    return col;
  });
  return [xs, ...columns];
}

function axisSize(u, values, axisIdx, cycleNum) {
  const axis = u.axes[axisIdx];
  if (cycleNum > 1) return axis._size; // settled: uPlot asks again while it converges
  const longest = (values || []).reduce((n, v) => Math.max(n, String(v).length), 0);
  return Math.ceil(longest * 6.6) + 22;
}

/**
 * A chart of curves.
 *   load(metric, {from, to, points}) -> Promise<[{id, label, steps, values, elapsed, sparse?}]>
 *   metrics: [{value, label}] the chart's metric menu; metric: the first shown.
 *   muted: every curve muted but ``best`` (a curve id), in colour (a sweep); else each curve its own colour.
 *   onPick(id): a click on a curve (the one nearest the pointer).
 *   xTotal(): in step mode, unzoomed, the x axis reaches at least this step (a run's planned steps).
 */
export class Plot {
  constructor({ testid, title, load, metrics = [], metric = null, points = 1000, height = 260, muted = false, best = null,
                onPick = null, xTotal = null, emptyText = "Nothing recorded yet." }) {
    this.id = `plot-${(counter += 1)}`;
    this.title = title;
    this.loader = load;
    this.points = points;
    this.height = height;
    this.muted = muted;
    this.best = best;
    this.onPick = onPick;
    this.xTotal = xTotal;
    this.emptyText = emptyText;
    this.state = { metric: metric || (metrics[0] && metrics[0].value) || "loss", logY: false, x: "step", smooth: 0 };
    this.zoom = null; // {x0, x1, from, to}
    this.curves = [];
    this.data = null;
    this.u = null;
    this.hover = null; // a curve id raised from outside (a table row)
    this.kb = null; // {idx, series}: where the keyboard cursor is
    this.seq = 0;

    this.metricSelect = h("select.select-sm", { "aria-label": `${title}: metric`, dataset: { testid: "plot-metric" },
      onchange: (e) => { this.state.metric = e.target.value; this.zoom = null; this.reload(); } });
    this.setMetrics(metrics);
    const logId = `${this.id}-log`;
    this.logBox = h(`input#${logId}`, { type: "checkbox", dataset: { testid: "plot-log" },
      onchange: (e) => { this.state.logY = e.target.checked; this.render(); } });
    this.xSelect = h("select.select-sm", { "aria-label": `${title}: x axis`, dataset: { testid: "plot-x" },
      onchange: (e) => { this.state.x = e.target.value; if (this.zoom) { this.zoom = null; this.reload(); } else this.render(); } },
      h("option", { value: "step" }, "Step"), h("option", { value: "time" }, "Wall time"));
    const smoothId = `${this.id}-smooth`;
    this.smoothOut = h("output.plot-smooth-value", { for: smoothId }, "off");
    this.smoothRange = h(`input#${smoothId}.plot-smooth`, { type: "range", min: "0", max: "0.99", step: "0.01", value: "0",
      dataset: { testid: "plot-smooth" },
      oninput: (e) => { this.state.smooth = Number(e.target.value); this.smoothOut.textContent = this.state.smooth ? this.state.smooth.toFixed(2) : "off"; this.render(); } });
    this.resetButton = h("button.btn.btn-ghost.btn-sm", { type: "button", hidden: true, dataset: { testid: "plot-reset" },
      onclick: () => this.resetZoom() }, "Reset zoom");
    this.tools = h("div.plot-tools", null, this.metricSelect,
      h("label.inline-check", { for: logId }, this.logBox, "Log y"), this.xSelect,
      h("label.inline-check.plot-smooth-label", { for: smoothId }, "Smoothing", this.smoothRange, this.smoothOut),
      this.resetButton);
    this.legend = h("ul.plot-legend", { "aria-hidden": "true" });
    this.readout = h("p.plot-readout", { "aria-hidden": "true" });
    this.live = h("p.visually-hidden", { "aria-live": "polite", dataset: { testid: "plot-live" } });
    const hintId = `${this.id}-hint`;
    this.canvas = h("div.plot-canvas", { tabindex: "0", role: "img", "aria-describedby": hintId,
      onkeydown: (e) => this.onKey(e), onblur: () => { this.kb = null; } });
    this.canvas.addEventListener("dblclick", () => this.resetZoom());
    // A click on a curve picks it; the end of a drag (a zoom) does not.
    this.canvas.addEventListener("mousedown", (e) => { this.downAt = e.clientX; });
    this.canvas.addEventListener("click", (e) => {
      if (!this.onPick || this.focused === null || this.focused === undefined || !this.curves[this.focused]) return;
      if (this.downAt !== undefined && Math.abs(e.clientX - this.downAt) > 3) return;
      this.onPick(this.curves[this.focused].id);
    });
    this.empty = h("div.chart-empty", { hidden: true });
    this.hint = h(`p#${hintId}.plot-hint`, null, "Drag across to zoom (the range is fetched at full resolution), double-click to reset; "
      + "on the focused chart, arrow keys read points and Up/Down change curve.");
    this.el = h("div.plot", { dataset: { testid } }, this.tools, this.legend,
      h("div.plot-stage", null, this.canvas, this.empty), this.readout, this.hint, this.live);
    this.el.plot = this; // for the browser tests: scales and curves
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(this.el);
    this.setEmpty(emptyText);
  }

  destroy() {
    this.destroyed = true;
    this.resize.disconnect();
    if (this.u) this.u.destroy();
    this.u = null;
  }

  /** The metric menu: [{value, label}], ``chosen`` (else the one shown, if there, else the first) selected; hidden with one entry or none. */
  setMetrics(metrics, chosen = null) {
    const names = metrics.map((m) => m.value);
    if (chosen !== null) this.state.metric = chosen;
    if (names.length && !names.includes(this.state.metric)) this.state.metric = names[0];
    if (JSON.stringify(names) !== JSON.stringify([...this.metricSelect.options].map((o) => o.value))) {
      this.metricSelect.replaceChildren(...metrics.map((m) => h("option", { value: m.value }, m.label || m.value)));
    }
    this.metricSelect.value = this.state.metric;
    this.metricSelect.hidden = metrics.length < 2;
  }

  setBest(id) {
    this.best = id;
    this.el.dataset.best = id || "";
  }

  setEmpty(text) {
    this.emptyText = text;
    this.empty.textContent = text;
    if (!this.curves.some((c) => c.steps.length)) {
      this.empty.hidden = false;
      this.canvas.hidden = true;
    }
  }

  get metric() {
    return this.state.metric;
  }

  /** Fetch the curves again (the zoomed range, if any) and draw them. */
  async reload() {
    const seq = (this.seq += 1);
    const range = this.zoom ? { from: this.zoom.from, to: this.zoom.to } : { from: null, to: null };
    this.el.dataset.loading = "true";
    try {
      const curves = await this.loader(this.state.metric, { ...range, points: this.points });
      if (seq !== this.seq || this.destroyed) return;
      this.curves = curves;
      Object.assign(this.el.dataset, { metric: this.state.metric, fromStep: range.from ?? "", toStep: range.to ?? "",
        curves: String(curves.filter((c) => c.steps.length).length),
        points: String(curves.length ? curves[0].steps.length : 0) });
      this.render();
    } finally {
      if (seq === this.seq) this.el.dataset.loading = "false";
    }
  }

  /** A curve raised (a table row pointed at), or none. */
  highlight(id) {
    this.hover = id;
    this.el.dataset.highlight = id || "";
    if (!this.u) return;
    const i = this.curves.findIndex((c) => c.id === id);
    this.u.setSeries(i < 0 ? null : i + 1, { focus: true });
    const c = this.curves[i];
    const n = c ? c.steps.length - 1 : -1;
    // Named, with its latest value: what a table row pointed at raises.
    this.readout.textContent = n < 0 ? "" : `${c.label}: ${this.metricLabel()} ${fmtNumber(c.values[n], 5)} at step ${c.steps[n].toLocaleString("en-US")}`;
  }

  /** The colour curve ``id`` is drawn in. */
  strokeOf(id) {
    const i = this.curves.findIndex((c) => c.id === id);
    return i < 0 ? null : this.colour(i);
  }

  colour(i) {
    const c = this.curves[i];
    if (this.muted) return c.id === this.best ? this.colours.accent : this.colours.muted;
    if (this.curves.length === 1 || c.primary) return this.colours.accent;
    return c.colour || PALETTE[i % PALETTE.length];
  }

  /** Draw the curves held, as the chart's settings say (a new uPlot: its scales depend on them). */
  render() {
    if (this.u) { this.u.destroy(); this.u = null; }
    this.colours = { accent: cssVar(this.el, "--chart-line", "#4338ca"), muted: cssVar(this.el, "--curve-muted", "rgba(120,130,145,0.45)"),
                     text: cssVar(this.el, "--muted", "#5a6270"), grid: cssVar(this.el, "--border", "#e2e5ea") };
    const shown = this.curves.filter((c) => c.steps.length);
    this.empty.hidden = shown.length > 0;
    this.empty.textContent = this.emptyText;
    this.canvas.hidden = !shown.length;
    this.resetButton.hidden = !this.zoom;
    this.el.dataset.logY = String(this.state.logY);
    this.el.dataset.x = this.state.x;
    this.el.dataset.smooth = String(this.state.smooth);
    this.renderLegend();
    if (!shown.length) {
      this.canvas.setAttribute("aria-label", `${this.title}: ${this.emptyText}`);
      this.data = null;
      return;
    }
    if (!window.uPlot) throw new Error("uPlot did not load (/static/vendor/uplot/uPlot.iife.min.js)");
    const key = this.state.x === "time" ? "elapsed" : "steps";
    const raw = join(this.curves, key, this.state.logY);
    const smooth = this.state.smooth;
    const data = [raw[0], ...raw.slice(1).map((col) => ema(col, smooth))];
    const series = [{ label: this.state.x === "time" ? "time" : "step" }];
    // Smoothed: a few curves keep their raw values faintly underneath.
    const under = smooth && this.curves.length <= FEW ? this.curves.map((_, i) => i) : [];
    this.curves.forEach((c, i) => series.push({
      label: c.label, stroke: () => this.colour(i), width: !this.muted ? 2 : c.id === this.best ? 2.4 : 1.2,
      spanGaps: true, points: { show: Boolean(c.sparse), size: 6, fill: this.colour(i) },
    }));
    for (const i of under) {
      data.push(raw[i + 1]);
      series.push({ label: `${this.curves[i].label} (raw)`, stroke: () => faint(this.colour(i), 0.3), width: 1, spanGaps: true,
                    points: { show: false } });
    }
    this.data = data;
    const time = this.state.x === "time";
    const axis = { stroke: this.colours.text, font: FONT, labelFont: LABEL_FONT, labelSize: 18, gap: 4,
                   grid: { stroke: this.colours.grid, width: 1 }, ticks: { stroke: this.colours.grid, width: 1, size: 4 } };
    const opts = {
      width: this.width(), height: this.height, legend: { show: false }, padding: [10, 28, 0, 0],
      cursor: { drag: { x: true, y: false, setScale: false }, focus: { prox: 24 }, points: { size: 7 } },
      focus: { alpha: 0.35 },
      scales: {
        x: { time: false, range: (u, min, max) => this.xRange(min, max) },
        y: this.state.logY ? { distr: 3, log: 10 } : { distr: 1, range: (u, min, max) => this.yRange(min, max) },
      },
      axes: [
        { ...axis, label: time ? "wall time" : "step", incrs: time ? TIME_INCRS : STEP_INCRS, space: 70, size: 34,
          values: time ? (u, splits) => splits.map(fmtElapsed) : (u, splits) => splits.map((v) => v.toLocaleString("en-US")) },
        { ...axis, label: this.metricLabel(), size: axisSize, space: 36,
          values: (u, splits) => splits.map((v) => (v === null ? "" : fmtNumber(v, 6))) },
      ],
      series,
      hooks: {
        setSelect: [(u) => this.onSelect(u)],
        setCursor: [(u) => this.showReadout(u.cursor.idx, this.focused)],
        setSeries: [(u, i) => { this.focused = i === null || i > this.curves.length ? null : i - 1; }],
      },
    };
    this.u = new window.uPlot(opts, data, this.canvas);
    this.canvas.setAttribute("aria-label", this.summary());
    if (this.hover) this.highlight(this.hover);
  }

  metricLabel() {
    return this.state.metric.replace(/_/g, " ");
  }

  renderLegend() {
    const few = this.curves.length > 1 && this.curves.length <= FEW && !this.muted;
    this.legend.hidden = !few;
    this.legend.replaceChildren(...(few ? this.curves.map((c, i) => h("li", null,
      h("span.plot-swatch", { style: { background: this.colour(i) } }), c.label)) : []));
  }

  width() {
    return Math.max(280, Math.floor(this.el.clientWidth || 600));
  }

  fit() {
    if (this.u && Math.abs(this.u.width - this.width()) > 2) this.u.setSize({ width: this.width(), height: this.height });
  }

  xRange(min, max) {
    if (this.zoom) return [this.zoom.x0, this.zoom.x1];
    const total = this.state.x === "step" && this.xTotal ? this.xTotal() : null;
    if (total && total > max) max = total;
    if (min === max) return [min - 1, max + 1];
    return [min, max];
  }

  yRange(min, max) {
    if (min === null || max === null) return [0, 1];
    if (max - min < 1e-12) return [min - 0.5, max + 0.5];
    const pad = (max - min) * 0.06;
    // A positive curve near zero, relative to its span, is drawn from zero.
    const lo = min >= 0 && min < (max - min) * 0.35 ? 0 : min - pad;
    return [lo, max + pad];
  }

  onSelect(u) {
    const { left, width } = u.select;
    if (width < 4) return;
    const x0 = u.posToVal(left, "x");
    const x1 = u.posToVal(left + width, "x");
    u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    this.zoomTo(x0, x1);
  }

  /** Show x0..x1 (step or wall time) and fetch its steps at full resolution. */
  zoomTo(x0, x1) {
    let from;
    let to;
    if (this.state.x === "step") {
      from = Math.max(0, Math.floor(x0));
      to = Math.ceil(x1);
    } else {
      // Wall time to steps: the steps the curves held there, a step either side.
      const steps = this.curves.flatMap((c) => c.steps.filter((_, i) => c.elapsed[i] >= x0 && c.elapsed[i] <= x1));
      const all = this.curves.flatMap((c) => c.steps);
      from = steps.length ? Math.min(...steps) : Math.min(...all);
      to = steps.length ? Math.max(...steps) : Math.max(...all);
      const before = all.filter((s) => s < from);
      const after = all.filter((s) => s > to);
      if (before.length) from = Math.max(...before);
      if (after.length) to = Math.min(...after);
    }
    if (to <= from) to = from + 1;
    this.zoom = { x0, x1, from, to };
    return this.reload();
  }

  resetZoom() {
    if (!this.zoom) return Promise.resolve();
    this.zoom = null;
    return this.reload();
  }

  /** The text of point ``idx`` (an index into the joined x values): the focused curve's, or every curve's when few. */
  pointText(idx, only) {
    if (!this.data || idx === null || idx === undefined || idx < 0) return "";
    const x = this.data[0][idx];
    const head = this.state.x === "time" ? `wall time ${fmtElapsed(x)}` : `step ${x.toLocaleString("en-US")}`;
    const which = only !== null && only !== undefined ? [only] : this.curves.length <= 4 ? this.curves.map((_, i) => i) : [];
    const parts = which.filter((i) => this.data[i + 1][idx] !== null)
      .map((i) => `${this.curves[i].label} ${fmtNumber(this.data[i + 1][idx], 5)}`);
    return [head, ...parts].join(", ");
  }

  showReadout(idx, only) {
    this.readout.textContent = this.pointText(idx, only);
  }

  summary() {
    const parts = this.curves.filter((c) => c.steps.length).slice(0, 4).map((c) => {
      let low = 0;
      c.values.forEach((v, i) => { if (v < c.values[low]) low = i; });
      const n = c.values.length - 1;
      return `${c.label}: ${c.values.length} points, from ${fmtNumber(c.values[0])} at step ${c.steps[0]} to `
        + `${fmtNumber(c.values[n])} at step ${c.steps[n]}, lowest ${fmtNumber(c.values[low])} at step ${c.steps[low]}`;
    });
    const more = this.curves.length > 4 ? `; ${this.curves.length} curves in all` : "";
    const best = this.best ? `; the best, ${this.curves.find((c) => c.id === this.best)?.label || "—"}, in colour` : "";
    return `${this.title}, ${this.metricLabel()}${this.state.logY ? " (log scale)" : ""}. ${parts.join("; ")}${more}${best}.`;
  }

  /** Arrows, Page keys, Home, End: along the curve; Up, Down: another curve; Escape: away. */
  onKey(event) {
    if (!this.u || !this.data) return;
    const n = this.curves.length;
    const xs = this.data[0];
    if (!this.kb) {
      const start = Math.max(0, this.curves.findIndex((c) => c.id === this.best));
      this.kb = { series: start, idx: null };
    }
    const col = () => this.data[this.kb.series + 1];
    const valid = (i) => i >= 0 && i < xs.length && col()[i] !== null;
    const seek = (from, dir) => { let i = from; while (i >= 0 && i < xs.length && !valid(i)) i += dir; return valid(i) ? i : null; };
    const last = seek(xs.length - 1, -1);
    let idx = this.kb.idx === null ? last : this.kb.idx;
    const moves = { ArrowRight: 1, ArrowLeft: -1, PageUp: 10, PageDown: -10 };
    if (event.key in moves) {
      const dir = Math.sign(moves[event.key]);
      let steps = Math.abs(moves[event.key]);
      let i = idx;
      while (steps > 0) { const next = seek(i + dir, dir); if (next === null) break; i = next; steps -= 1; }
      idx = i;
    } else if (event.key === "Home") idx = seek(0, 1);
    else if (event.key === "End") idx = last;
    else if (event.key === "ArrowUp" || event.key === "ArrowDown") {
      this.kb.series = (this.kb.series + (event.key === "ArrowUp" ? 1 : n - 1)) % n;
      idx = seek(idx ?? 0, -1) ?? seek(idx ?? 0, 1);
    } else if (event.key === "Escape") { this.kb = null; this.u.setCursor({ left: -10, top: -10 }); return; } else return;
    event.preventDefault();
    if (idx === null) return;
    this.kb.idx = idx;
    const y = col()[idx];
    this.u.setCursor({ left: this.u.valToPos(xs[idx], "x"), top: this.u.valToPos(y, "y") });
    if (n > 1) this.u.setSeries(this.kb.series + 1, { focus: true });
    const text = this.pointText(idx, this.kb.series);
    this.readout.textContent = text;
    this.live.textContent = text;
  }
}

/**
 * Trials as dots: ``points`` [{id, x, y, label}], x a parameter, y the sweep's
 * metric; ``best`` in colour.  x on a log scale when it spans 100 times or more.
 */
export class Scatter {
  constructor({ testid = "scatter", height = 240 } = {}) {
    this.height = height;
    this.u = null;
    this.canvas = h("div.plot-canvas", { tabindex: "0", role: "img" });
    this.empty = h("div.chart-empty", { hidden: true }, "No trial has a value yet.");
    this.el = h("div.plot.plot-scatter", { dataset: { testid } }, h("div.plot-stage", null, this.canvas, this.empty));
    this.el.plot = this;
    this.resize = new ResizeObserver(() => {
      const w = Math.max(280, Math.floor(this.el.clientWidth || 600));
      if (this.u && Math.abs(this.u.width - w) > 2) this.u.setSize({ width: w, height: this.height });
    });
    this.resize.observe(this.el);
  }

  destroy() {
    this.resize.disconnect();
    if (this.u) this.u.destroy();
  }

  setData(points, { xLabel, yLabel, best = null }) {
    if (this.u) { this.u.destroy(); this.u = null; }
    const numeric = points.filter((p) => typeof p.x === "number" && typeof p.y === "number").sort((a, b) => a.x - b.x);
    this.el.dataset.dots = String(numeric.length);
    this.el.dataset.best = best || "";
    this.empty.hidden = numeric.length > 0;
    this.canvas.hidden = !numeric.length;
    if (!numeric.length) return;
    const xs = numeric.map((p) => p.x);
    const logX = xs.length > 1 && xs[0] > 0 && xs[xs.length - 1] / xs[0] >= 100;
    this.el.dataset.logX = String(logX);
    const accent = cssVar(this.el, "--chart-line", "#4338ca");
    const muted = cssVar(this.el, "--border-strong", "#c9ced6");
    const text = cssVar(this.el, "--muted", "#5a6270");
    const grid = cssVar(this.el, "--border", "#e2e5ea");
    const axis = { stroke: text, font: FONT, labelFont: LABEL_FONT, labelSize: 18, gap: 4,
                   grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1, size: 4 } };
    const dots = (fill, size) => ({ paths: () => null, points: { show: true, size, fill, stroke: fill } });
    const data = [xs, numeric.map((p) => (p.id === best ? null : p.y)), numeric.map((p) => (p.id === best ? p.y : null))];
    const opts = {
      width: Math.max(280, Math.floor(this.el.clientWidth || 600)), height: this.height, legend: { show: false },
      padding: [10, 28, 0, 0], cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false, ...(logX ? { distr: 3, log: 10 } : {}), range: (u, min, max) => pad(min, max, logX) },
                y: { range: (u, min, max) => pad(min, max, false) } },
      axes: [{ ...axis, label: xLabel, space: 60, size: 34,
               // A whole-numbered parameter (a batch size) gets whole ticks; a log one, decades.
               ...(!logX && xs.every(Number.isInteger) ? { incrs: STEP_INCRS } : {}), values: (u, splits) => splits.map((v) => (v === null ? "" : fmtNumber(v, 6))) },
             { ...axis, label: yLabel, size: axisSize, values: (u, splits) => splits.map((v) => (v === null ? "" : fmtNumber(v, 6))) }],
      series: [{}, { label: "trials", ...dots(muted, 8) }, { label: "best", ...dots(accent, 11) }],
    };
    this.u = new window.uPlot(opts, data, this.canvas);
    this.canvas.setAttribute("aria-label", `${yLabel} against ${xLabel}${logX ? " (log scale)" : ""}: `
      + numeric.map((p) => `${p.label} ${fmtNumber(p.x, 6)}, ${fmtNumber(p.y)}${p.id === best ? " (best)" : ""}`).join("; "));
  }
}

function pad(min, max, log) {
  if (min === null || max === null) return [0, 1];
  if (log) return [min / 1.5, max * 1.5];
  const span = max - min || Math.abs(max) || 1;
  return [min - span * 0.08, max + span * 0.08];
}
