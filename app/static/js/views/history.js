// The run history: newest first, status chips with counts, filters kept in
// the URL, pages from the API's `total`, and live rows for active runs
// (status endpoint, every 2.5 s, only while something is active).
//
// Finding runs (#21): a name search (`q`), tags (each Enter adds one, all
// must match), "mine" (`owner=me`, offered to a signed-in user only), and a
// CSV of whatever the filters show.  Every filter lives in the page's query
// string (`/?q=lr&tag=a&tag=b&owner=me`), so a view can be shared and a reload
// keeps it; a change rewrites it with replaceState and loads again.

import { api, appendParams, downloadWithToken } from "../api.js";
import { STATUS, STATUSES, MODES, WAITING, isActive, isFinal } from "../config.js";
import { reportLost, reportOk } from "../connection.js";
import { h, icon, fmtNumber, fmtDuration, shortId, timeEl } from "../dom.js";
import { Poller } from "../poller.js";
import { badge, updateBadge, progressBar, renderProgress, statusLabel } from "../status.js";

const PAGE_SIZES = [10, 20, 50, 100];
// The one-valued filters, as the API names them; `tag` (repeatable) is `state.tags`.
const FILTERS = ["status", "dataset_key", "model_id", "mode", "q", "owner", "sweep_id"];
// A tag as the API takes it (tasks/run_spec.py TAG_PATTERN, MAX_TAGS).
const TAG_RE = /^[A-Za-z0-9_.:=-]{1,64}$/;
const MAX_TAGS = 20;
// The search waits this long after the last key: one load per pause, not per letter.
const SEARCH_DEBOUNCE_MS = 300;
const NO_FILTERS = Object.freeze({ ...Object.fromEntries(FILTERS.map((f) => [f, ""])), tags: [] });

function readState() {
  const q = new URLSearchParams(location.search);
  const int = (name, dflt, lo, hi) => {
    const v = Number.parseInt(q.get(name), 10);
    return Number.isFinite(v) && v >= lo && v <= hi ? v : dflt;
  };
  const state = { limit: int("limit", 20, 1, 100), offset: int("offset", 0, 0, 1e9) };
  for (const f of FILTERS) state[f] = q.get(f) || "";
  if (state.status && !STATUSES.includes(state.status)) state.status = "";
  state.tags = [...new Set(q.getAll("tag").filter((t) => TAG_RE.test(t)))].slice(0, MAX_TAGS);
  return state;
}

function writeState(state) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(state)) {
    if (k === "tags") continue;
    const dflt = k === "limit" ? 20 : k === "offset" ? 0 : "";
    if (v === dflt || v === "" || v === null) q.delete(k);
    else q.set(k, String(v));
  }
  q.delete("tag");
  for (const t of state.tags) q.append("tag", t);
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
    this.me = null; // GET /api/tunix/me: a user's name offers "mine"
    this.poller = new Poller({ name: "history-poll", tick: () => this.pollActive(), wanted: () => this.activeIds().length > 0 });
    this.onVisible = () => { if (!document.hidden && this.stale) this.load(); };
    document.addEventListener("visibilitychange", this.onVisible);
    this.el = this.build();
    this.loadMe();
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
    this.search = h("input#filter-q", { type: "search", name: "q", maxLength: 200, autocomplete: "off", spellcheck: "false",
      placeholder: "part of a name", dataset: { testid: "filter-q" } });
    this.search.value = this.state.q;
    this.search.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.setFilters({ q: this.search.value.trim() }), SEARCH_DEBOUNCE_MS);
    });
    this.search.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      clearTimeout(this.searchTimer);
      this.setFilters({ q: this.search.value.trim() });
    });
    this.tagInput = h("input#filter-tag", { type: "text", name: "tag", maxLength: 64, autocomplete: "off", spellcheck: "false",
      placeholder: "a tag, then Enter", "aria-describedby": "filter-tag-error", dataset: { testid: "filter-tag" } });
    this.tagInput.addEventListener("keydown", (event) => this.onTagKey(event));
    this.tagError = h("span#filter-tag-error.field-error", { hidden: true, "aria-live": "polite" });
    this.mineButton = h("button.chip.chip-mine", { type: "button", hidden: true, "aria-pressed": "false", dataset: { testid: "filter-mine" },
      title: "Only the runs you submitted", onclick: () => this.setFilters({ owner: this.state.owner === "me" ? "" : "me" }) }, "Mine");
    this.activeChips = h("ul.filter-chips", { "aria-label": "Active filters", dataset: { testid: "active-filters" } });
    this.csvLink = h("a.btn.btn-ghost.btn-sm", { download: "runs.csv", dataset: { testid: "csv-link" },
      title: "These runs (every page, up to 10,000) as CSV", onclick: (e) => this.downloadCsv(e) }, icon("download"), "Download CSV");
    this.filterBar = h("div.filters", null,
      h("div.filter.filter-wide", null, h("label", { for: "filter-q" }, "Search names"), this.search),
      h("div.filter", null, h("label", { for: "filter-tag" }, "Tags"), this.tagInput, this.tagError),
      this.filterSelect("dataset_key", "Dataset", this.datasets.map((d) => d.key)),
      this.filterSelect("model_id", "Model", this.models.map((m) => m.model_id)),
      this.filterSelect("mode", "Mode", MODES),
      this.mineButton,
      this.clearButton = h("button.btn.btn-ghost.btn-sm", { type: "button", onclick: () => this.setFilters(NO_FILTERS) }, "Clear filters"),
      this.csvLink);
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
      this.chips, this.filterBar, this.activeChips, h("div.table-wrap", null, this.table), this.pager);
  }

  /** Enter adds the typed tag (checked as the API would: a bad one is said, not sent); Backspace in an empty field takes the last one off. */
  onTagKey(event) {
    if (event.isComposing) return;
    const value = this.tagInput.value.trim();
    if (event.key === "Enter") {
      event.preventDefault();
      if (!value) return;
      let problem = "";
      if (!TAG_RE.test(value)) problem = "A tag is 1 to 64 of A–Z a–z 0–9 _ . : = -";
      else if (!this.state.tags.includes(value) && this.state.tags.length >= MAX_TAGS) problem = `At most ${MAX_TAGS} tags`;
      this.tagError.textContent = problem;
      this.tagError.hidden = !problem;
      this.tagInput.setAttribute("aria-invalid", problem ? "true" : "false");
      if (problem) return;
      this.tagInput.value = "";
      if (!this.state.tags.includes(value)) this.setFilters({ tags: [...this.state.tags, value] });
    } else if (event.key === "Backspace" && !this.tagInput.value && this.state.tags.length) {
      this.setFilters({ tags: this.state.tags.slice(0, -1) });
    }
  }

  /** The filters not shown by a control of their own, each a chip with a remove button: tags, another owner, a sweep. */
  renderActiveChips() {
    const chip = (kind, text, label, patch) => {
      const remove = h("button.filter-chip-remove", { type: "button", "aria-label": `Remove the filter ${label}`, title: "Remove",
        onclick: () => this.removeChip(remove, patch) }, "×");
      return h("li.filter-chip", { dataset: { kind, value: text } }, h("span.filter-chip-kind", null, kind), h("span.filter-chip-text", null, text), remove);
    };
    const items = this.state.tags.map((t) => chip("tag", t, `tag ${t}`, { tags: this.state.tags.filter((x) => x !== t) }));
    if (this.state.owner && this.state.owner !== "me") items.push(chip("owner", this.state.owner, `owner ${this.state.owner}`, { owner: "" }));
    if (this.state.sweep_id) items.push(chip("sweep", shortId(this.state.sweep_id), `sweep ${this.state.sweep_id}`, { sweep_id: "" }));
    // Drawn again on every load: only when they changed, so a focused remove button keeps the focus.
    const key = JSON.stringify(items.map((li) => [li.dataset.kind, li.dataset.value]));
    if (key === this.activeKey) return;
    this.activeKey = key;
    this.activeChips.replaceChildren(...items);
    this.activeChips.hidden = !items.length;
  }

  /** A chip's removal: the focus goes to the next chip's button, else the previous one's, else the tag field. */
  removeChip(button, patch) {
    const buttons = [...this.activeChips.querySelectorAll(".filter-chip-remove")];
    const at = buttons.indexOf(button);
    this.setFilters(patch);
    const left = [...this.activeChips.querySelectorAll(".filter-chip-remove")];
    (left[Math.min(at, left.length - 1)] || this.tagInput).focus();
  }

  /** The CSV of the runs these filters match, every page (the API's runs.csv takes the same filters). */
  csvHref() {
    return appendParams(new URL("/api/tunix/runs.csv", location.origin), this.filters()).href;
  }

  async downloadCsv(event) {
    try {
      await downloadWithToken(event, this.csvLink.href, "runs.csv");
    } catch (exc) {
      this.renderMessage(`Could not download the CSV: ${exc.message}`, true);
    }
  }

  /** Whether a user is signed in (then "mine" is offered); asked once per page. */
  async loadMe() {
    try {
      this.me = await api.me();
    } catch {
      this.me = null;
    }
    if (this.destroyed) return;
    this.renderChips();
  }

  hasFilters() {
    return FILTERS.some((f) => this.state[f]) || this.state.tags.length > 0;
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
    if (document.activeElement !== this.search) this.search.value = this.state.q;
    if ("tags" in patch) {
      this.tagError.hidden = true;
      this.tagInput.removeAttribute("aria-invalid");
    }
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
    if (this.state.tags.length) out.tag = this.state.tags;
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
      // The answer's `counts` are by status under the same filters; with a
      // status chosen the chips still count every status: a second (one-row)
      // answer without it.
      const [page, every] = await Promise.all([
        api.runs(this.filters({ limit: this.state.limit, offset: this.state.offset })),
        this.state.status ? api.runs(this.filters({ status: undefined, limit: 1 })) : null,
      ]);
      if (seq !== this.seq || this.destroyed) return;
      this.stale = false;
      this.failures = 0;
      reportOk("history");
      const counts = (every || page).counts || {};
      this.counts = Object.fromEntries(STATUSES.map((st) => [st, counts[st] || 0]));
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
        const why = exc.fields && exc.fields.length ? `: ${exc.fields.map((f) => `${f.field} ${f.message}`).join("; ")}` : "";
        this.renderMessage(`Could not load the runs: ${exc.message}${why}`, true);
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
    const { q, owner, tags } = this.state;
    const matches = ["status", "dataset_key", "model_id", "mode", "sweep_id"].every((f) => !this.state[f] || String(run[f]) === this.state[f])
      && (!q || (run.name || "").toLowerCase().includes(q.toLowerCase()))
      && tags.every((t) => (run.tags || []).includes(t))
      && (!owner || run.owner === (owner === "me" ? this.me && this.me.name : owner));
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
      const filtered = this.hasFilters();
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
    if (!this.clearButton) return;
    this.clearButton.hidden = !this.hasFilters();
    // "Mine" for a signed-in user; shown pressed too when the URL asks for it (the API says why if it cannot).
    this.mineButton.hidden = !(this.me && this.me.name) && this.state.owner !== "me";
    this.mineButton.setAttribute("aria-pressed", this.state.owner === "me" ? "true" : "false");
    this.csvLink.href = this.csvHref();
    this.renderActiveChips();
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
          h("a.run-link", { href, "aria-label": this.linkLabel(run), title: run.name ? shortId(run.run_id) : null },
            run.name ? h("span.run-name", null, run.name) : h("code", null, shortId(run.run_id))),
          h(`span.tag${run.dry_run ? ".tag-dry" : ".tag-train"}`, null, run.dry_run ? "dry run" : "training"),
          (run.tags || []).map((t) => h("button.run-tag", { type: "button", title: `Only runs tagged ${t}`,
            "aria-label": `Filter by tag ${t}`, onclick: () => { if (!this.state.tags.includes(t)) this.setFilters({ tags: [...this.state.tags, t] }); } }, t))),
        h("div.run-sub", null, h("span", null, run.model_id), h("span.sep", { "aria-hidden": "true" }, "·"), h("span", null, run.dataset_key),
          h("span.sep", { "aria-hidden": "true" }, "·"), h("span", null, run.mode))),
      row.progressCell,
      h("td.cell-queued", { dataset: { label: "Queued" } }, timeEl(run.queued_at, { compact: true })),
      row.durationCell);
    this.fillOutcome(row);
    return row;
  }

  linkLabel(run) {
    return `Run ${run.name ? `${run.name} (${shortId(run.run_id)})` : shortId(run.run_id)}, ${statusLabel(run.status)}`;
  }

  updateRow(row) {
    const cellBadge = row.statusCell.querySelector(".badge");
    updateBadge(cellBadge, row.run.status);
    const link = row.tr.querySelector("a.run-link");
    link.setAttribute("aria-label", this.linkLabel(row.run));
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
