// The run history: newest first, status chips with counts, filters kept in
// the URL, pages from the API's `total`, and live rows for active runs
// (status endpoint, every 2.5 s, only while something is active).

import { api } from "../api.js";
import { STATUS, STATUSES, MODES, WAITING, isActive, isFinal } from "../config.js";
import { reportLost, reportOk } from "../connection.js";
import { h, icon, fmtNumber, fmtDuration, shortId, timeEl } from "../dom.js";
import { Poller } from "../poller.js";
import { badge, updateBadge, progressBar, renderProgress, statusLabel } from "../status.js";

const PAGE_SIZES = [10, 20, 50, 100];
const FILTERS = ["status", "dataset_key", "model_id", "mode"];

function readState() {
  const q = new URLSearchParams(location.search);
  const int = (name, dflt, lo, hi) => {
    const v = Number.parseInt(q.get(name), 10);
    return Number.isFinite(v) && v >= lo && v <= hi ? v : dflt;
  };
  const state = { limit: int("limit", 20, 1, 100), offset: int("offset", 0, 0, 1e9) };
  for (const f of FILTERS) state[f] = q.get(f) || "";
  if (state.status && !STATUSES.includes(state.status)) state.status = "";
  return state;
}

function writeState(state) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(state)) {
    const dflt = k === "limit" ? 20 : k === "offset" ? 0 : "";
    if (v === dflt || v === "" || v === null) q.delete(k);
    else q.set(k, String(v));
  }
  const search = q.toString();
  history.replaceState(history.state, "", `${location.pathname}${search ? `?${search}` : ""}`);
}

export class RunHistory {
  constructor({ datasets, models }) {
    this.datasets = datasets;
    this.models = models;
    this.state = readState();
    this.rows = new Map(); // run_id -> {tr, run}
    this.counts = null;
    this.total = null;
    this.failures = 0;
    this.seq = 0;
    this.highlight = new Set();
    this.poller = new Poller({ name: "history-poll", tick: () => this.pollActive(), wanted: () => this.activeIds().length > 0 });
    this.onVisible = () => { if (!document.hidden && this.stale) this.load(); };
    document.addEventListener("visibilitychange", this.onVisible);
    this.el = this.build();
  }

  destroy() {
    this.destroyed = true;
    this.poller.stop();
    clearTimeout(this.retryTimer);
    clearTimeout(this.reloadTimer);
    reportOk("history");
    document.removeEventListener("visibilitychange", this.onVisible);
  }

  // ------------------------------------------------------------ building

  build() {
    this.chips = h("div.chips", { role: "group", "aria-label": "Filter by status" });
    this.filterBar = h("div.filters", null,
      this.filterSelect("dataset_key", "Dataset", this.datasets.map((d) => d.key)),
      this.filterSelect("model_id", "Model", this.models.map((m) => m.model_id)),
      this.filterSelect("mode", "Mode", MODES),
      this.clearButton = h("button.btn.btn-ghost.btn-sm", { type: "button", onclick: () => this.setFilters({ status: "", dataset_key: "", model_id: "", mode: "" }) }, "Clear filters"));
    this.tbody = h("tbody");
    this.table = h("table.runs-table", { dataset: { testid: "history-table" } },
      h("caption.visually-hidden", null, "Runs, newest first"),
      h("thead", null, h("tr", null,
        h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Run"),
        h("th", { scope: "col" }, "Progress / outcome"), h("th", { scope: "col" }, "Queued"), h("th.num", { scope: "col" }, "Duration"))),
      this.tbody);
    this.pager = h("nav.pager", { "aria-label": "Pages of runs", dataset: { testid: "pager" } });
    this.updated = h("span.muted.updated", { "aria-live": "off" });
    this.refreshButton = h("button.btn.btn-ghost.btn-sm", { type: "button", onclick: () => this.load(), "aria-label": "Refresh the history" }, icon("refresh"), h("span.hide-sm", null, "Refresh"));
    this.renderChips();
    this.renderSkeleton();
    return h("section.panel.history-panel", { "aria-labelledby": "history-title" },
      h("div.panel-head", null, h("h2#history-title", null, "Runs"), h("div.panel-tools", null, this.updated, this.refreshButton)),
      this.chips, this.filterBar, h("div.table-wrap", null, this.table), this.pager);
  }

  filterSelect(name, label, values) {
    const id = `filter-${name}`;
    const select = h("select", { id, name, dataset: { filter: name } },
      h("option", { value: "" }, `All`), values.map((v) => h("option", { value: v }, v)));
    select.value = this.state[name];
    select.addEventListener("change", () => this.setFilters({ [name]: select.value }));
    return h("div.filter", null, h("label", { for: id }, label), select);
  }

  setFilters(patch) {
    Object.assign(this.state, patch, { offset: 0 });
    for (const sel of this.filterBar.querySelectorAll("select[data-filter]")) sel.value = this.state[sel.dataset.filter];
    writeState(this.state);
    this.renderChips();
    this.load();
  }

  setPage(offset, limit = this.state.limit) {
    this.state.offset = Math.max(0, offset);
    this.state.limit = limit;
    writeState(this.state);
    this.load({ focusTable: true });
  }

  // ------------------------------------------------------------ loading

  filters(extra = {}) {
    const out = {};
    for (const f of FILTERS) if (this.state[f]) out[f] = this.state[f];
    return { ...out, ...extra };
  }

  /** Fetch the page and the per-status counts; retry with back-off while the API is unreachable. */
  async load({ focusTable = false } = {}) {
    clearTimeout(this.retryTimer);
    if (this.destroyed) return;
    if (document.hidden) { this.stale = true; return; }
    const seq = ++this.seq;
    this.refreshButton.disabled = true;
    try {
      const base = this.filters({ status: undefined });
      const [page, ...counts] = await Promise.all([
        api.runs(this.filters({ limit: this.state.limit, offset: this.state.offset })),
        ...STATUSES.map((st) => api.runs({ ...base, status: st, limit: 1 }).then((r) => r.pagination.total)),
      ]);
      if (seq !== this.seq || this.destroyed) return;
      this.stale = false;
      this.failures = 0;
      reportOk("history");
      this.counts = Object.fromEntries(STATUSES.map((st, i) => [st, counts[i]]));
      // A page past the end (runs went away, a filter narrowed it): go to the last page.
      if (page.data.length === 0 && page.pagination.total > 0 && this.state.offset > 0) {
        this.state.offset = Math.floor((page.pagination.total - 1) / this.state.limit) * this.state.limit;
        writeState(this.state);
        this.load({ focusTable });
        return;
      }
      this.render(page);
      if (focusTable) this.table.querySelector("a.run-link")?.focus();
    } catch (exc) {
      if (seq !== this.seq || this.destroyed) return;
      if (exc && exc.transient) {
        this.failures += 1;
        const delay = Math.min(30000, 2500 * 2 ** this.failures) * (0.85 + Math.random() * 0.3);
        reportLost("history", Date.now() + delay, () => this.load());
        this.retryTimer = setTimeout(() => this.load(), delay);
        this.stale = true;
      } else {
        this.renderMessage(`Could not load the runs: ${exc.message}`, true);
      }
    } finally {
      if (seq === this.seq) this.refreshButton.disabled = false;
    }
  }

  /** Debounced reload: several runs finishing together cost one refresh. */
  reloadSoon(ms = 250) {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.load(), ms);
  }

  /** A run this page just submitted: show it at once (the API said it is pending), then poll it. */
  addSubmitted(run) {
    this.highlight.add(run.run_id);
    const matches = FILTERS.every((f) => !this.state[f] || String(run[f]) === this.state[f]);
    if (matches && this.state.offset === 0 && !this.rows.has(run.run_id)) {
      this.tbody.querySelector("tr.empty-row")?.remove();
      const row = this.row(run);
      this.tbody.prepend(row.tr);
      this.rows.set(run.run_id, row);
      while (this.tbody.rows.length > this.state.limit) {
        const last = this.tbody.rows[this.tbody.rows.length - 1];
        this.rows.delete(last.dataset.runId);
        last.remove();
      }
      if (this.counts && this.total !== null) {
        this.counts[run.status] = (this.counts[run.status] || 0) + 1;
        this.total += 1;
        this.renderChips();
        this.renderPager();
      }
    }
    this.poller.poke();
    this.reloadSoon(1500);
  }

  activeIds() {
    return [...this.rows.values()].filter((r) => isActive(r.run.status)).map((r) => r.run.run_id);
  }

  async pollActive() {
    const ids = this.activeIds();
    let changed = false;
    const answers = await Promise.all(ids.map((id) => api.status(id).catch((exc) => {
      if (exc.transient) throw exc;
      return null; // gone (404): the next reload drops it
    })));
    for (const st of answers) {
      if (!st) continue;
      const row = this.rows.get(st.run_id);
      if (!row) continue;
      const before = row.run.status;
      Object.assign(row.run, st);
      if (st.status !== before) {
        changed = true;
        this.updateRow(row);
      } else if (isActive(st.status)) {
        this.updateProgress(row);
      }
    }
    if (changed) this.reloadSoon();
  }

  // ------------------------------------------------------------ rendering

  renderSkeleton() {
    this.tbody.replaceChildren(...Array.from({ length: 3 }, () => h("tr.skeleton-row", { "aria-hidden": "true" },
      Array.from({ length: 5 }, () => h("td", null, h("span.skeleton"))))));
  }

  renderMessage(text, isError = false) {
    this.tbody.replaceChildren(h("tr.empty-row", null, h("td", { colSpan: 5 }, h(isError ? "p.error-text" : "p.muted", null, text))));
  }

  render(page) {
    this.total = page.pagination.total;
    const focused = document.activeElement && this.tbody.contains(document.activeElement)
      ? document.activeElement.closest("tr")?.dataset.runId : null;
    this.rows.clear();
    const rows = page.data.map((run) => {
      const row = this.row(run);
      this.rows.set(run.run_id, row);
      return row.tr;
    });
    if (rows.length) this.tbody.replaceChildren(...rows);
    else {
      const filtered = FILTERS.some((f) => this.state[f]);
      this.tbody.replaceChildren(h("tr.empty-row", null, h("td", { colSpan: 5 }, h("div.empty-state", null,
        h("p", null, filtered ? "No runs match these filters." : "No runs yet."),
        h("p.muted", null, filtered ? "Clear a filter to see more." : "Start one with the form: a dry run takes a few milliseconds.")))));
    }
    if (focused) this.rows.get(focused)?.tr.querySelector("a.run-link")?.focus();
    this.renderChips();
    this.renderPager();
    this.updated.replaceChildren("updated ", timeEl(new Date().toISOString()));
    this.poller.poke();
  }

  renderChips() {
    const counts = this.counts || {};
    const all = this.counts ? Object.values(counts).reduce((a, b) => a + b, 0) : null;
    const chip = (value, label, count) => {
      const pressed = this.state.status === value;
      return h(`button.chip${value ? `.chip-${value}` : ""}`, {
        type: "button", "aria-pressed": pressed ? "true" : "false", dataset: { status: value || "all" },
        onclick: () => this.setFilters({ status: pressed && value ? "" : value }),
      }, h("span", null, label), h("span.chip-count", null, count === null || count === undefined ? "·" : count.toLocaleString("en-US")));
    };
    this.chips.replaceChildren(chip("", "All", all), ...STATUSES.map((st) => chip(st, statusLabel(st), counts[st])));
    if (this.clearButton) this.clearButton.hidden = !FILTERS.some((f) => this.state[f]);
  }

  renderPager() {
    const { limit, offset } = this.state;
    const total = this.total || 0;
    const pages = Math.max(1, Math.ceil(total / limit));
    const pageNo = Math.floor(offset / limit) + 1;
    const shown = this.rows.size;
    const range = total === 0 ? "No runs" : `${(offset + 1).toLocaleString("en-US")}–${(offset + shown).toLocaleString("en-US")} of ${total.toLocaleString("en-US")}`;
    const sizeId = "page-size";
    const size = h("select", { id: sizeId }, PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === limit }, String(n))));
    size.addEventListener("change", () => this.setPage(0, Number(size.value)));
    this.pager.replaceChildren(
      h("span.pager-range", { dataset: { testid: "pager-range" } }, range),
      h("div.pager-buttons", null,
        h("button.btn.btn-sm", { type: "button", disabled: offset === 0, onclick: () => this.setPage(0), "aria-label": "First page" }, "«"),
        h("button.btn.btn-sm", { type: "button", disabled: offset === 0, onclick: () => this.setPage(offset - limit), dataset: { testid: "prev-page" } }, "‹ Prev"),
        h("span.pager-page", { "aria-current": "page" }, `Page ${pageNo} of ${pages}`),
        h("button.btn.btn-sm", { type: "button", disabled: offset + limit >= total, onclick: () => this.setPage(offset + limit), dataset: { testid: "next-page" } }, "Next ›"),
        h("button.btn.btn-sm", { type: "button", disabled: offset + limit >= total, onclick: () => this.setPage((pages - 1) * limit), "aria-label": "Last page" }, "»")),
      h("div.pager-size", null, h("label", { for: sizeId }, "Per page"), size));
  }

  row(run) {
    const href = `/runs/${run.run_id}`;
    const tr = h("tr.run-row", { dataset: { runId: run.run_id } });
    if (this.highlight.has(run.run_id)) tr.classList.add("is-new");
    tr.addEventListener("click", (e) => {
      if (e.target.closest("a, button, input, select") || window.getSelection()?.toString()) return;
      tr.querySelector("a.run-link").click();
    });
    const row = { tr, run: { ...run } };
    row.statusCell = h("td.cell-status", { dataset: { label: "Status" } }, badge(run.status));
    row.progressCell = h("td.cell-progress", { dataset: { label: "Progress" } });
    row.durationCell = h("td.cell-duration.num", { dataset: { label: "Duration" } });
    tr.append(
      row.statusCell,
      h("td.cell-run", { dataset: { label: "Run" } },
        h("div.run-main", null,
          h("a.run-link", { href, "aria-label": `Run ${shortId(run.run_id)}, ${statusLabel(run.status)}` }, h("code", null, shortId(run.run_id))),
          h(`span.tag${run.dry_run ? ".tag-dry" : ".tag-train"}`, null, run.dry_run ? "dry run" : "training")),
        h("div.run-sub", null, h("span", null, run.model_id), h("span.sep", { "aria-hidden": "true" }, "·"), h("span", null, run.dataset_key),
          h("span.sep", { "aria-hidden": "true" }, "·"), h("span", null, run.mode))),
      row.progressCell,
      h("td.cell-queued", { dataset: { label: "Queued" } }, timeEl(run.queued_at, { compact: true })),
      row.durationCell);
    this.fillOutcome(row);
    return row;
  }

  updateRow(row) {
    const cellBadge = row.statusCell.querySelector(".badge");
    updateBadge(cellBadge, row.run.status);
    const link = row.tr.querySelector("a.run-link");
    link.setAttribute("aria-label", `Run ${shortId(row.run.run_id)}, ${statusLabel(row.run.status)}`);
    this.fillOutcome(row);
  }

  updateProgress(row) {
    const bar = row.progressCell.querySelector(".progress");
    if (bar && row.run.progress) renderProgress(bar, row.run.progress, row.run.status);
    else this.fillOutcome(row);
  }

  fillOutcome(row) {
    const run = row.run;
    const cell = row.progressCell;
    const dur = row.durationCell;
    cell.replaceChildren();
    dur.replaceChildren();
    const result = run.result || {};
    if (WAITING.has(run.status)) {
      cell.append(h("span.muted", null, "waiting for a worker"));
      dur.append(h("span.muted", { dataset: { elapsedFrom: run.queued_at }, title: "Time in the queue" }, "—"));
    } else if (isActive(run.status)) {
      if (run.dry_run && !run.progress) cell.append(h("span.muted", null, "resolving…"));
      else cell.append(progressBar(run.progress, { compact: true, status: run.status }));
      if (run.started_at) dur.append(h("span", { dataset: { elapsedFrom: run.started_at } }, fmtDuration((Date.now() - Date.parse(run.started_at)) / 1000)));
    } else {
      if (run.status === STATUS.COMPLETED) {
        if (typeof result.final_loss === "number") {
          const steps = result.steps ?? result.total_steps;
          cell.append(h("span.outcome", null, "loss ", h("strong", null, fmtNumber(result.final_loss, 4)),
            typeof steps === "number" ? h("span.muted", null, ` · ${steps.toLocaleString("en-US")} steps`) : null));
        } else if (result.kind === "dry_run") {
          cell.append(h("span.outcome.muted", null, "configuration resolved"));
        } else {
          cell.append(h("span.muted", null, "—"));
        }
      } else if (run.status === STATUS.FAILED && run.error) {
        const text = `${run.error.type ? `${run.error.type}: ` : ""}${run.error.message || ""}`;
        cell.append(h("span.outcome.error-text.truncate", { title: text }, text));
      } else if (run.progress && typeof run.progress.step === "number") {
        const p = run.progress;
        const why = run.status === STATUS.TIMEOUT ? "time limit reached" : "stopped";
        cell.append(h("span.outcome.muted", { title: run.error ? run.error.message || "" : "" },
          `${why} at step ${p.step.toLocaleString("en-US")}${p.total_steps ? ` of ${p.total_steps.toLocaleString("en-US")}` : ""}`,
          typeof p.loss === "number" ? ` · loss ${fmtNumber(p.loss, 4)}` : ""));
      } else if (run.error) {
        cell.append(h("span.outcome.muted.truncate", { title: run.error.message || "" }, run.error.message || run.status));
      } else {
        cell.append(h("span.muted", null, "—"));
      }
      let seconds = run.duration_seconds;
      if ((seconds === null || seconds === undefined) && run.started_at && run.completed_at) {
        seconds = (Date.parse(run.completed_at) - Date.parse(run.started_at)) / 1000;
      }
      dur.append(seconds === null || seconds === undefined ? h("span.muted", null, "—") : fmtDuration(seconds));
    }
    if (isFinal(run.status)) row.tr.classList.remove("is-active");
    else row.tr.classList.add("is-active");
  }
}
