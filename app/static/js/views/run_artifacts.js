// The run page's files: search and download the whole log (the live view
// keeps its last 5,000 lines, the registry a run's first 10,000; the
// artifact store keeps every attempt's whole log once it ended), and the
// panel listing what the store holds for the run, each with its download.
// API: GET /api/tunix/runs/<id>/logs/full, /logs/search, /artifacts
// (app/run_artifacts.py).

import { downloadWithToken, request } from "../api.js";
import { h, icon, fmtBytes, timeEl } from "../dom.js";

const KIND_LABELS = { manifest: "Manifest", summary: "Summary", checkpoint: "Checkpoint", export: "Export", log: "Log", other: "File" };
const PAGE = 200;

function base(runId) {
  return `/api/tunix/runs/${encodeURIComponent(runId)}`;
}

function saveAs(event, href, filename, toast) {
  downloadWithToken(event, href, filename).catch((exc) => toast(`Download failed: ${exc.message}`, { kind: "error" }));
}

/**
 * "Search the whole log" and "Download" for the log panel: `tools` goes in
 * the panel's head, `el` (the search's answer) under the live log.
 */
export function logSearch(runId, { toast }) {
  const input = h("input#log-search-q", { type: "search", placeholder: "Search the whole log", maxLength: 200, autocomplete: "off", dataset: { testid: "log-search-input" } });
  const submit = h("button.btn.btn-sm", { type: "submit", dataset: { testid: "log-search" } }, "Search");
  const form = h("form.log-search-form", { role: "search", onsubmit: (e) => { e.preventDefault(); search(0); } },
    h("label.visually-hidden", { for: "log-search-q" }, "Search the whole log"), input, submit);
  const fullHref = `${base(runId)}/logs/full`;
  const download = h("a.btn.btn-sm.btn-ghost", {
    href: fullHref, download: `${runId}.log`, title: "The whole log, every attempt's, as a text file",
    dataset: { testid: "log-download" }, onclick: (e) => saveAs(e, fullHref, `${runId}.log`, toast),
  }, icon("download"), "Download");
  const summary = h("p.muted.log-search-summary", { role: "status", dataset: { testid: "log-search-summary" } });
  const results = h("div.log-body.wrap.log-search-results", { role: "list", "aria-label": "Lines of the whole log holding the text", tabindex: "0", dataset: { testid: "log-search-results" } });
  const more = h("button.btn.btn-sm.btn-ghost", { type: "button", hidden: true, dataset: { testid: "log-search-more" }, onclick: () => search(nextAfter, true) }, "More matches");
  const close = h("button.btn.btn-sm.btn-ghost", { type: "button", onclick: () => { el.hidden = true; input.value = ""; } }, "Close");
  const el = h("div.log-search", { hidden: true }, h("div.log-toolbar", null, summary, h("div.log-actions", null, more, close)), results);
  let nextAfter = 0;
  let found = 0;
  let q = "";

  async function search(after, append = false) {
    if (!append) {
      q = input.value.trim();
      if (!q) return;
      found = 0;
      results.replaceChildren();
    }
    el.hidden = false;
    submit.disabled = true;
    more.hidden = true;
    summary.textContent = "Searching…";
    try {
      const { data } = await request("GET", `runs/${encodeURIComponent(runId)}/logs/search`, { params: { q, limit: PAGE, after } });
      found += data.data.length;
      results.append(...data.data.map((m) => h("div.log-line", { role: "listitem", dataset: { line: String(m.line) } },
        h("span.log-seq", { title: m.attempt ? `attempt ${m.attempt}` : null }, String(m.line)),
        h("span.log-text", null, m.text))));
      if (!found) results.append(h("p.log-empty", null, "No line holds it."));
      nextAfter = data.next_after || 0;
      more.hidden = !data.more;
      const where = data.source === "store" ? "the whole log (kept in the artifact store)" : "the log so far";
      summary.textContent = `${found.toLocaleString("en-US")}${data.more ? "+" : ""} line${found === 1 ? "" : "s"} holding “${q}” in ${where}`;
    } catch (exc) {
      summary.textContent = `Search failed: ${exc.message}`;
    } finally {
      submit.disabled = false;
    }
  }

  return { tools: h("div.log-file-tools", null, form, download), el };
}

/** The panel listing the run's objects in the artifact store; `refresh()` reads them again. */
export function artifactsPanel(runId, { toast }) {
  const bodyEl = h("div", { dataset: { testid: "artifacts" } }, h("p.muted", null, "Loading…"));
  const el = h("section.panel", { id: "artifacts", "aria-labelledby": "artifacts-title" },
    h("div.panel-head", null, h("h2", { id: "artifacts-title" }, "Artifacts")), bodyEl);

  function name(item) {
    if (item.kind === "checkpoint") return `step ${item.step}${item.attempt ? ` (attempt ${item.attempt})` : ""}`;
    if (item.kind === "log") return `attempt ${item.attempt}`;
    if (item.kind === "export") return item.step !== null && item.step !== undefined ? `step ${item.step}` : item.key.split("/").pop();
    if (item.kind === "manifest" || item.kind === "summary") return `${item.kind}.json`;
    return item.key.split("/").slice(2).join("/");
  }

  function fileName(item) {
    return `${runId}-${item.key.split("/").slice(2).join("-")}`;
  }

  async function refresh() {
    let items;
    try {
      const { data } = await request("GET", `runs/${encodeURIComponent(runId)}/artifacts`);
      items = data.data;
    } catch (exc) {
      bodyEl.replaceChildren(h("p.muted", null, exc.status === 503 || exc.status === 502 ? `The artifact store did not answer: ${exc.message}` : "Could not list the artifacts."));
      return;
    }
    if (!items.length) {
      bodyEl.replaceChildren(h("p.muted", null, "Nothing in the artifact store yet."));
      return;
    }
    const rows = items.map((item) => h("tr", { dataset: { kind: item.kind, key: item.key } },
      h("td", null, h("span.muted", null, KIND_LABELS[item.kind] || item.kind), " ", h("span", { title: item.key }, name(item))),
      h("td.num.nowrap", null, fmtBytes(item.size_bytes)),
      h("td.nowrap", null, item.modified_at ? timeEl(item.modified_at, { compact: true }) : ""),
      h("td", null, item.download
        ? h("a.btn.btn-sm.btn-ghost.icon-only", { href: item.download, download: fileName(item), "aria-label": `Download ${KIND_LABELS[item.kind] || "file"} ${name(item)}`, title: "Download",
          onclick: (e) => saveAs(e, item.download, fileName(item), toast) }, icon("download"))
        : h("span.muted", { title: "Nothing serves this object (not recorded, or deleted)" }, "–"))));
    bodyEl.replaceChildren(h("table.mini-table", null,
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Object"), h("th.num", { scope: "col" }, "Size"), h("th", { scope: "col" }, "Modified"), h("th", { scope: "col" }, h("span.visually-hidden", null, "Download")))),
      h("tbody", null, rows)));
  }

  return { el, refresh };
}
