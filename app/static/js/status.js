// Status badges and progress bars: readable without colour (icon + words).

import { h, icon, fmtNumber } from "./dom.js";
import { MEANING } from "./config.js";

// The console's style of each status; what it means comes from the lifecycle (MEANING).
const ICON = {
  deferred: "pause", pending: "clock", running: "play", cancel_requested: "stop", completed: "check", failed: "x",
  cancelled: "ban", timeout: "hourglass",
};

const LOOK = Object.fromEntries(Object.entries(ICON).map(([status, name]) => [
  status, { icon: name, label: status.replace(/_/g, " "), hint: MEANING[status] || status }]));

export function statusLabel(status) {
  return (LOOK[status] || { label: String(status).replace(/_/g, " ") }).label;
}

export function badge(status, { large = false } = {}) {
  const look = LOOK[status] || { icon: "clock", label: String(status).replace(/_/g, " "), hint: status };
  return h(`span.badge.badge-${status}${large ? ".badge-lg" : ""}`,
    { dataset: { status, testid: "status-badge" }, title: look.hint },
    icon(look.icon, "icon badge-icon"), h("span.badge-text", null, look.label));
}

/** Replace a badge in place (keeps its position and any listeners on the parent). */
export function updateBadge(el, status) {
  if (!el || el.dataset.status === status) return el;
  const fresh = badge(status, { large: el.classList.contains("badge-lg") });
  el.replaceWith(fresh);
  return fresh;
}

/** A progress bar for a run: step/total, percentage and the latest loss. */
export function progressBar(progress, { compact = false, status } = {}) {
  const wrap = h(`div.progress${compact ? ".progress-compact" : ""}`, { dataset: { testid: "progress" } });
  renderProgress(wrap, progress, status);
  return wrap;
}

export function renderProgress(wrap, progress, status) {
  const step = progress && typeof progress.step === "number" ? progress.step : null;
  const total = progress && typeof progress.total_steps === "number" ? progress.total_steps : null;
  const pct = step !== null && total ? Math.max(0, Math.min(100, (100 * step) / total)) : null;
  wrap.replaceChildren();
  const bar = h("div.progress-track", {
    role: "progressbar",
    "aria-label": "Training progress",
    "aria-valuemin": "0",
    "aria-valuemax": total !== null ? String(total) : undefined,
    "aria-valuenow": step !== null ? String(step) : undefined,
    "aria-valuetext": step !== null ? `step ${step}${total ? ` of ${total}` : ""}` : "starting",
  }, h("div.progress-fill" + (pct === null ? ".indeterminate" : ""), { style: { width: pct === null ? "" : `${pct}%` } }));
  if (status) wrap.dataset.status = status;
  const parts = [];
  if (step !== null) {
    parts.push(h("span.progress-steps", null, h("strong", null, step.toLocaleString("en-US")),
      total ? ` / ${total.toLocaleString("en-US")}` : "", " steps"));
    if (pct !== null) parts.push(h("span.progress-pct", null, `${Math.floor(pct)}%`));
  } else {
    parts.push(h("span.progress-steps.muted", null, "starting…"));
  }
  if (progress && typeof progress.loss === "number") {
    parts.push(h("span.progress-loss", null, "loss ", h("strong", { dataset: { testid: "progress-loss" } }, fmtNumber(progress.loss, 4))));
  }
  wrap.append(bar, h("div.progress-meta", null, parts));
}
