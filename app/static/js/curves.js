// Many runs' curves on one chart, legible at hundreds: every curve muted, the
// best in colour, the one under the pointer (or chosen in a table) raised
// with its name in a tooltip; and a parameter-vs-loss scatter.  Plain SVG,
// one path per run (a 200-trial sweep of 200 points is 40,000 vertices).

import { axes, scales } from "./axes.js";
import { h, s, fmtNumber } from "./dom.js";

const W = 720;

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!Number.isFinite(lo)) return [0, 1];
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

/** curves: [{id, label, steps, loss}]; best: the id drawn in colour. */
export class OverlayChart {
  constructor({ height = 280, onPick = null } = {}) {
    this.height = height;
    this.onPick = onPick;
    this.paths = new Map();
    this.svg = s("svg", { class: "curves-svg", viewBox: `0 0 ${W} ${height}`, role: "img" });
    this.tip = h("div.chart-tip", { hidden: true });
    this.el = h("div.curves", { dataset: { testid: "overlay-chart" } }, this.svg, this.tip);
  }

  setData(curves, { best = null } = {}) {
    this.svg.replaceChildren();
    this.paths.clear();
    const drawn = curves.filter((c) => c.steps.length);
    const [x0, x1] = extent(drawn.flatMap((c) => c.steps));
    const [y0, y1] = extent(drawn.flatMap((c) => c.loss));
    const { X: x, Y: y } = scales(W, this.height, [x0, x1], [y0, y1]);
    this.svg.append(axes(W, this.height, [x0, x1], [y0, y1], { xName: "step", yName: "loss" }));
    this.svg.setAttribute("aria-label", `Loss curves of ${drawn.length} runs`);
    // The best last, so it is drawn over the muted rest.
    const order = [...drawn.filter((c) => c.id !== best), ...drawn.filter((c) => c.id === best)];
    for (const c of order) {
      const d = c.steps.map((st, i) => `${i ? "L" : "M"}${x(st).toFixed(1)},${y(c.loss[i]).toFixed(1)}`).join("");
      const path = s("path", { d, class: `curve${c.id === best ? " curve-best" : ""}`,
                               "data-testid": "curve", "data-run": c.id });
      path.addEventListener("pointerenter", () => this.highlight(c.id));
      path.addEventListener("pointerleave", () => this.highlight(null));
      if (this.onPick) path.addEventListener("click", () => this.onPick(c.id));
      this.svg.append(path);
      this.paths.set(c.id, { path, curve: c });
    }
    if (!drawn.length) {
      this.svg.append(s("text", { x: W / 2, y: this.height / 2, "text-anchor": "middle", class: "axis-label" },
        "No steps recorded yet"));
    }
  }

  /** Raise one run's curve (null: none), and name it. */
  highlight(id) {
    for (const [key, { path }] of this.paths) path.classList.toggle("curve-hover", key === id);
    const hit = id && this.paths.get(id);
    if (!hit) {
      this.tip.hidden = true;
      return;
    }
    hit.path.parentNode.append(hit.path); // on top
    const { curve } = hit;
    this.tip.hidden = false;
    this.tip.textContent = `${curve.label} · loss ${fmtNumber(curve.loss[curve.loss.length - 1])} at step ` +
      `${curve.steps[curve.steps.length - 1]}`;
  }
}

/** points: [{id, x, y, label}] — one dot per trial. */
export function scatter(points, { xLabel, yLabel = "loss", best = null, height = 240 } = {}) {
  const svg = s("svg", { class: "curves-svg", viewBox: `0 0 ${W} ${height}`, role: "img",
                         "aria-label": `${yLabel} against ${xLabel}`, "data-testid": "scatter" });
  const numeric = points.filter((p) => typeof p.x === "number" && typeof p.y === "number");
  const logX = numeric.length > 1 && numeric.every((p) => p.x > 0) &&
    Math.max(...numeric.map((p) => p.x)) / Math.min(...numeric.map((p) => p.x)) >= 100;
  const fx = (v) => (logX ? Math.log10(v) : v);
  const [x0, x1] = extent(numeric.map((p) => fx(p.x)));
  const [y0, y1] = extent(numeric.map((p) => p.y));
  const { X: x, Y: y } = scales(W, height, [x0, x1], [y0, y1]);
  svg.append(axes(W, height, [x0, x1], [y0, y1], { xName: logX ? `log10 ${xLabel}` : xLabel, yName: yLabel }));
  for (const p of numeric) {
    svg.append(s("circle", { cx: x(fx(p.x)), cy: y(p.y), r: p.id === best ? 6 : 4,
                             class: `dot${p.id === best ? " dot-best" : ""}`, "data-testid": "scatter-dot" },
      s("title", null, `${p.label}: ${xLabel} ${p.x}, ${yLabel} ${fmtNumber(p.y)}`)));
  }
  return svg;
}
