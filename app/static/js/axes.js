// The frame every chart of the console draws in (a run's loss, chart.js; a
// sweep's curves and scatter, curves.js): the room its labels take, the maps
// from values to pixels, and the axes: a grid line and a label at round
// values of y, labels at round values of x, the x axis, and the axes' names.

import { s } from "./dom.js";

/** Room around the plot: the y labels on the left, the x labels below. */
export const PAD = { top: 14, right: 18, bottom: 30, left: 52 };

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = norm >= 5 ? 10 : norm >= 2 ? 5 : norm >= 1 ? 2 : 1;
  return step * mag;
}

function ticks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const step = niceStep(hi - lo, count);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function tickLabel(v) {
  const abs = Math.abs(v);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return v.toExponential(1);
  return String(Number(v.toPrecision(6)));
}

/** Value to pixel, in a `width` × `height` chart showing [x0, x1] by [y0, y1] (each span non-zero). */
export function scales(width, height, [x0, x1], [y0, y1]) {
  const w = width - PAD.left - PAD.right;
  const hgt = height - PAD.top - PAD.bottom;
  return {
    X: (v) => PAD.left + ((v - x0) / (x1 - x0)) * w,
    Y: (v) => PAD.top + (1 - (v - y0) / (y1 - y0)) * hgt,
  };
}

/** The axes of that chart, a <g> to append; `xName`, `yName`: the axes' names, if shown. */
export function axes(width, height, xs, ys, { xName = null, yName = null } = {}) {
  const { X, Y } = scales(width, height, xs, ys);
  const [left, right, top, bottom] = [PAD.left, width - PAD.right, PAD.top, height - PAD.bottom];
  const g = s("g", { class: "chart-grid" });
  for (const t of ticks(ys[0], ys[1], 4)) {
    g.append(s("line", { x1: left, x2: right, y1: Y(t), y2: Y(t) }),
      s("text", { x: left - 8, y: Y(t), "text-anchor": "end", "dominant-baseline": "middle", class: "chart-label" }, tickLabel(t)));
  }
  // The x axis's name ends where the axis does: the labels it would cover are left out (11px text: about 6.5px a character).
  const free = xName ? right - xName.length * 6.5 - 8 : Infinity;
  for (const t of ticks(xs[0], xs[1], Math.max(2, Math.floor((right - left) / 90)))) {
    const label = tickLabel(t);
    if (X(t) + label.length * 3.5 <= free) {
      g.append(s("text", { x: X(t), y: bottom + 18, "text-anchor": "middle", class: "chart-label" }, label));
    }
  }
  g.append(s("line", { class: "chart-axis", x1: left, x2: right, y1: bottom, y2: bottom }));
  if (xName) g.append(s("text", { x: right, y: bottom + 18, "text-anchor": "end", "font-weight": 600, class: "chart-label" }, xName));
  if (yName) g.append(s("text", { x: left, y: top + 10, "font-weight": 600, class: "chart-label" }, yName));
  return g;
}
