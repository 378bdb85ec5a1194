// A small SVG line chart for a run's loss: grows live, redraws at the width
// of its container, optional smoothing, hover and keyboard read-out.

import { PAD, axes, scales } from "./axes.js";
import { h, s, fmtNumber } from "./dom.js";

function ema(values, alpha) {
  let last = null;
  return values.map((v) => (last = last === null ? v : alpha * last + (1 - alpha) * v));
}

export class LossChart {
  /** points: [{step, loss, learning_rate, grad_norm, attempt}] */
  constructor({ height = 240, label = "Loss" } = {}) {
    this.height = height;
    this.label = label;
    this.points = [];
    this.totalSteps = null;
    this.smooth = false;
    this.cursor = null; // index into points
    this.svg = s("svg", { class: "chart-svg", role: "img", tabindex: "0" });
    this.tooltip = h("div.chart-tip", { hidden: true, "aria-hidden": "true" });
    this.readout = h("p.visually-hidden", { "aria-live": "polite" });
    this.empty = h("div.chart-empty", { hidden: true });
    this.el = h("div.chart", { dataset: { testid: "loss-chart" } }, this.svg, this.tooltip, this.empty, this.readout);
    this.svg.addEventListener("pointermove", (e) => this.onPointer(e));
    this.svg.addEventListener("pointerleave", () => this.setCursor(null));
    this.svg.addEventListener("keydown", (e) => this.onKey(e));
    this.svg.addEventListener("blur", () => this.setCursor(null));
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.el);
  }

  destroy() {
    this.resize.disconnect();
  }

  setData(points, { totalSteps = null } = {}) {
    // One point per step: a resumed attempt's value wins over the earlier one.
    const byStep = new Map();
    for (const p of points) {
      if (typeof p.loss !== "number" || !Number.isFinite(p.loss)) continue;
      const prev = byStep.get(p.step);
      if (!prev || (p.attempt || 0) >= (prev.attempt || 0)) byStep.set(p.step, p);
    }
    this.points = [...byStep.values()].sort((a, b) => a.step - b.step);
    this.totalSteps = totalSteps;
    this.el.dataset.points = String(this.points.length);
    this.draw();
  }

  setSmooth(on) {
    this.smooth = on;
    this.draw();
  }

  setEmpty(text) {
    this.emptyText = text;
    this.draw();
  }

  draw() {
    const width = Math.max(260, Math.floor(this.el.clientWidth || 600));
    const height = this.height;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.setAttribute("width", String(width));
    this.svg.setAttribute("height", String(height));
    this.svg.replaceChildren();
    const pts = this.points;
    this.empty.hidden = pts.length > 0;
    this.empty.textContent = this.emptyText || "No loss reported yet.";
    if (!pts.length) {
      this.svg.setAttribute("aria-label", `${this.label}: no data yet`);
      return;
    }
    const base = height - PAD.bottom;
    const x0 = 0;
    const x1 = Math.max(this.totalSteps || 0, pts[pts.length - 1].step, 1);
    let y0 = Math.min(...pts.map((p) => p.loss));
    let y1 = Math.max(...pts.map((p) => p.loss));
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const padY = (y1 - y0) * 0.06;
    // A loss near zero (relative to its range) is drawn from zero.
    y0 = y0 >= 0 && y0 < (y1 - y0) * 0.35 ? 0 : y0 - padY;
    y1 += padY;
    const { X, Y } = scales(width, height, [x0, x1], [y0, y1]);
    this.scale = { X, Y, x0, x1 };
    this.svg.append(axes(width, height, [x0, x1], [y0, y1]));

    // Where a resumed attempt took over.
    for (let i = 1; i < pts.length; i += 1) {
      if ((pts[i].attempt || 1) !== (pts[i - 1].attempt || 1)) {
        const x = X(pts[i].step);
        this.svg.append(s("line", { class: "chart-resume", x1: x, x2: x, y1: PAD.top, y2: base }),
          s("text", { class: "chart-label", x: x + 4, y: PAD.top + 10 }, `attempt ${pts[i].attempt}`));
      }
    }

    const raw = pts.map((p) => [X(p.step), Y(p.loss)]);
    const line = (coords) => coords.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join("");
    const main = this.smooth ? ema(pts.map((p) => p.loss), 0.8).map((v, i) => [raw[i][0], Y(v)]) : raw;
    const area = `${line(main)}L${main[main.length - 1][0].toFixed(1)},${base}L${main[0][0].toFixed(1)},${base}Z`;
    this.svg.append(s("path", { class: "chart-area", d: area }));
    if (this.smooth) this.svg.append(s("path", { class: "chart-line chart-line-raw", d: line(raw) }));
    this.svg.append(s("path", { class: "chart-line", d: line(main) }));
    const [lx, ly] = main[main.length - 1];
    this.svg.append(s("circle", { class: "chart-last", cx: lx, cy: ly, r: 3.5 }));

    this.cursorLayer = s("g", { class: "chart-cursor" });
    this.svg.append(this.cursorLayer);

    const first = pts[0];
    const last = pts[pts.length - 1];
    const min = pts.reduce((a, b) => (b.loss < a.loss ? b : a));
    this.svg.setAttribute("aria-label", `${this.label} curve: ${pts.length} points, from ${fmtNumber(first.loss)} at step ${first.step} `
      + `to ${fmtNumber(last.loss)} at step ${last.step}; lowest ${fmtNumber(min.loss)} at step ${min.step}. Use the arrow keys to read points.`);
    if (this.cursor !== null) this.setCursor(Math.min(this.cursor, pts.length - 1));
  }

  onPointer(event) {
    if (!this.points.length || !this.scale) return;
    const rect = this.svg.getBoundingClientRect();
    const vb = this.svg.viewBox.baseVal;
    const x = ((event.clientX - rect.left) / rect.width) * vb.width;
    const { x0, x1 } = this.scale;
    const step = x0 + ((x - PAD.left) / (vb.width - PAD.left - PAD.right)) * (x1 - x0);
    let lo = 0;
    let hi = this.points.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.points[mid].step < step) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && Math.abs(this.points[lo - 1].step - step) < Math.abs(this.points[lo].step - step)) lo -= 1;
    this.setCursor(lo);
  }

  onKey(event) {
    if (!this.points.length) return;
    const last = this.points.length - 1;
    const moves = { ArrowRight: 1, ArrowLeft: -1, PageUp: 10, PageDown: -10 };
    let i = this.cursor === null ? last : this.cursor;
    if (event.key in moves) i = Math.max(0, Math.min(last, i + moves[event.key]));
    else if (event.key === "Home") i = 0;
    else if (event.key === "End") i = last;
    else if (event.key === "Escape") { this.setCursor(null); return; } else return;
    event.preventDefault();
    this.setCursor(i, true);
  }

  setCursor(i, announce = false) {
    this.cursor = i;
    if (!this.cursorLayer) return;
    this.cursorLayer.replaceChildren();
    if (i === null || !this.points[i]) {
      this.tooltip.hidden = true;
      return;
    }
    const p = this.points[i];
    const { X, Y } = this.scale;
    const x = X(p.step);
    const y = Y(p.loss);
    const vb = this.svg.viewBox.baseVal;
    this.cursorLayer.append(s("line", { x1: x, x2: x, y1: PAD.top, y2: vb.height - PAD.bottom }), s("circle", { cx: x, cy: y, r: 4.5 }));
    const parts = [h("strong", null, `step ${p.step}`), h("span", null, `loss ${fmtNumber(p.loss, 5)}`)];
    if (typeof p.learning_rate === "number") parts.push(h("span", null, `lr ${fmtNumber(p.learning_rate, 6)}`));
    if (typeof p.grad_norm === "number") parts.push(h("span", null, `grad norm ${fmtNumber(p.grad_norm, 3)}`));
    this.tooltip.replaceChildren(...parts);
    this.tooltip.hidden = false;
    const rect = this.svg.getBoundingClientRect();
    const scale = rect.width / vb.width || 1;
    const left = x * scale;
    const tipW = this.tooltip.offsetWidth || 140;
    this.tooltip.style.left = `${Math.max(4, Math.min(rect.width - tipW - 4, left + 12))}px`;
    this.tooltip.style.top = `${Math.max(4, y * scale - 40)}px`;
    if (announce) this.readout.textContent = `step ${p.step}, loss ${fmtNumber(p.loss, 5)}`;
  }
}
