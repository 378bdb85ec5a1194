// Status badges and progress bars: readable without colour (icon + words).

import { h, fmtNumber } from "./dom.js";
import { MEANING } from "./config.js";

// A status's words are its name; what it means is the lifecycle's (MEANING);
// its colours and icon are its style's (console.css, "statuses"), keyed by
// the data-status every badge and bar carries.

export function statusLabel(status) {
  return String(status).replace(/_/g, " ");
}

export function badge(status, { large = false } = {}) {
  return h(`span.badge${large ? ".badge-lg" : ""}`,
    { dataset: { status, testid: "status-badge" }, title: MEANING[status] || status },
    h("span.badge-icon.status-icon", { "aria-hidden": "true" }), h("span.badge-text", null, statusLabel(status)));
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
