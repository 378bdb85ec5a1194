// "/sweeps" (every sweep, newest first), "/sweeps/<id>" (progress, the best
// trial, every trial's curve overlaid, a parameter-vs-loss scatter, a trial
// table sortable by any column, and a selection to compare) and "/compare"
// (?runs=a,b,…: the runs' configurations side by side, differences marked,
// and their curves).  Curves come from one request, downsampled by the API
// (each bucket's extremes kept), on plot.js's charts: the sweep's own metric
// first, any other on the chart's menu.

import { api, request } from "../api.js";
import { isActive } from "../config.js";
import { h, icon, fmtNumber, shortId, timeEl } from "../dom.js";
import { Plot, Scatter } from "../plot.js";
import { Poller } from "../poller.js";
import { badge } from "../status.js";
import { SweepInsights } from "./parcoords.js";

const POINTS = 200;
/** What a chart of many runs offers before its first answer, which names the methods' own metrics the runs recorded. */
const TRAINING_METRICS = ["loss", "eval_loss", "learning_rate", "grad_norm"];

function metricMenu(first, names = TRAINING_METRICS) {
  return [first, ...names.filter((m) => m !== first)].map((m) => ({ value: m, label: m.replace(/_/g, " ") }));
}

/** The series answer's curves, for a Plot: ``label(id)`` names each; ``last`` is drawn over the rest. */
function curvesOf(data, label, last = null) {
  const curves = data.map((c) => ({ id: c.run_id, label: label(c.run_id), steps: c.steps, values: c.values, elapsed: c.elapsed }));
  return [...curves.filter((c) => c.id !== last), ...curves.filter((c) => c.id === last)];
}

function rangeParams({ from, to, points }) {
  return { points, ...(from === null ? {} : { from_step: from }), ...(to === null ? {} : { to_step: to }) };
}

function countsText(counts) {
  return Object.entries(counts).sort().map(([status, n]) => `${n} ${status}`).join(", ");
}

function countsBar(counts, total) {
  return h("div.sweep-bar", { role: "img", "aria-label": countsText(counts), dataset: { testid: "sweep-bar" } },
    ...Object.entries(counts).sort().map(([status, n]) =>
      h("span.sweep-bar-part", { dataset: { status }, style: { flex: String(n / Math.max(total, 1)) }, title: `${n} ${status}` })));
}

function errorPanel(err) {
  return h("section.panel.empty-state", null, h("h1", null, "Could not load"), h("p.muted", null, String(err.message || err)));
}

export function renderSweeps(root) {
  document.title = "Sweeps · Tunix RT";
  const body = h("tbody");
  root.append(
    h("div.page-head", null, h("h1", null, "Sweeps"),
      h("p.page-sub", null, "Search spaces submitted with ", h("code", null, "POST /api/tunix/sweeps"),
        " or ", h("code", null, "tunix sweep submit"), ", newest first."),
      h("div.actions", null, h("a.btn.btn-primary", { href: "/sweeps/new", dataset: { nav: "", testid: "new-sweep" } }, "New sweep"))),
    h("section.panel", null, h("table.runs-table", { dataset: { testid: "sweeps-table" } },
      h("thead", null, h("tr", null, ...["Sweep", "Status", "Trials", "Progress", "Created"].map((t) => h("th", { scope: "col" }, t)))),
      body)));
  request("GET", "sweeps", { params: { limit: 100 } }).then(({ data }) => {
    if (!data.data.length) body.append(h("tr", null, h("td.muted", { colspan: 5 }, "No sweep yet.")));
    for (const sw of data.data) {
      body.append(h("tr", { dataset: { testid: "sweep-row" } },
        h("td", null, h("a", { href: `/sweeps/${sw.sweep_id}`, dataset: { nav: "" } }, sw.name), " ",
          h("span.muted.mono", null, shortId(sw.sweep_id))),
        h("td", null, sw.status), h("td.num", null, String(sw.trials)),
        h("td", null, countsBar(sw.counts, sw.trials)), h("td", null, timeEl(sw.created_at))));
    }
  }).catch((err) => root.replaceChildren(errorPanel(err)));
  return { destroy() {} };
}

function paramNames(trials) {
  const names = new Set();
  for (const t of trials) for (const k of Object.keys(t.params)) names.add(k);
  return [...names].sort();
}

export function renderSweep(root, { sweepId, toast, navigate }) {
  document.title = "Sweep · Tunix RT";
  const state = { sort: "loss", desc: false, selected: new Set(), detail: null, scatterParam: null, metric: null };
  // Every trial's curve of the chosen metric (the sweep's own first), the best trial by the sweep's metric in colour.
  const chart = new Plot({
    testid: "overlay-chart", title: "Trials' curves", points: POINTS, muted: true, onPick: (id) => navigate(`/runs/${id}`),
    load: async (metric, range) => {
      const { data } = await request("GET", `sweeps/${encodeURIComponent(sweepId)}/series`,
        { params: { metric, ...rangeParams(range) } });
      chart.setMetrics(metricMenu(state.metric || metric, data.metrics));
      return curvesOf(data.data, shortId, chart.best);
    },
    emptyText: "No steps recorded yet.",
  });
  const chartNote = h("p.muted", { dataset: { testid: "overlay-note" } });
  const head = h("div.page-head");
  const summary = h("div.stat-tiles", { dataset: { testid: "sweep-summary" } });
  const scatterPlot = new Scatter();
  const scatterBox = h("div", { dataset: { testid: "scatter-box" } }, scatterPlot.el);
  const scatterPick = h("select", { "aria-label": "Parameter", onchange: (e) => { state.scatterParam = e.target.value; drawScatter(); } });
  const table = h("table.runs-table", { dataset: { testid: "trials-table" } });
  const compare = h("button.btn.btn-sm", { type: "button", disabled: true, dataset: { testid: "compare" },
    onclick: () => navigate(`/compare?runs=${[...state.selected].join(",")}`) }, "Compare selected");
  root.append(head, summary,
    h("section.panel", null, h("div.panel-head", null, h("h2", null, "Curves"), chartNote), chart.el),
    h("section.panel", null, h("div.panel-head", null, h("h2", null, "Parameter against the metric"),
      h("div.panel-tools", null, scatterPick)), scatterBox),
    h("section.panel", null, h("div.panel-head", null, h("h2", null, "Trials"), h("div.panel-tools", null, compare)), table));
  // Parallel coordinates and parameter importance (views/parcoords.js), above the trials.
  const insights = new SweepInsights({ sweepId, onPick: (id) => navigate(`/runs/${id}`) });
  table.parentElement.before(insights.el);

  function value(t, key) {
    if (key in t.params) return t.params[key];
    return t[key];
  }

  function drawTable() {
    const { detail } = state;
    const params = paramNames(detail.runs);
    const columns = ["status", ...params, "step", "loss", "eval_loss"];
    const rows = [...detail.runs].sort((a, b) => {
      const va = value(a, state.sort);
      const vb = value(b, state.sort);
      if (va === vb) return 0;
      if (va === null || va === undefined) return 1;
      if (vb === null || vb === undefined) return -1;
      return (va < vb ? -1 : 1) * (state.desc ? -1 : 1);
    });
    const header = columns.map((c) => h("th", { scope: "col", "aria-sort": state.sort === c ? (state.desc ? "descending" : "ascending") : "none" },
      h("button.th-sort", { type: "button", dataset: { testid: `sort-${c}` },
        onclick: () => { state.desc = state.sort === c ? !state.desc : false; state.sort = c; drawTable(); } }, c)));
    table.replaceChildren(
      h("thead", null, h("tr", null, h("th", { scope: "col" }, h("span.visually-hidden", null, "Select")), ...header, h("th", { scope: "col" }, "Run"))),
      h("tbody", null, ...rows.map((t) => h("tr", {
        dataset: { testid: "trial-row", run: t.run_id, best: String(detail.best && detail.best.run_id === t.run_id) },
        onmouseenter: () => chart.highlight(t.run_id), onmouseleave: () => chart.highlight(null) },
        h("td", null, h("input", { type: "checkbox", "aria-label": `Select ${shortId(t.run_id)}`, checked: state.selected.has(t.run_id),
          onchange: (e) => { if (e.target.checked) state.selected.add(t.run_id); else state.selected.delete(t.run_id); compare.disabled = state.selected.size < 2; } })),
        h("td", null, badge(t.status), t.stop_reason ? h("span.tag", { title: "stopped by the sweep's rule" }, "stopped early") : null),
        ...params.map((p) => h("td.num.mono", null, String(t.params[p] ?? "—"))),
        h("td.num", null, t.step === null ? "—" : String(t.step)),
        h("td.num", { dataset: { testid: "trial-loss" } }, t.loss === null ? "—" : fmtNumber(t.loss)),
        h("td.num", { dataset: { testid: "trial-eval-loss" } }, t.eval_loss === null ? "—" : fmtNumber(t.eval_loss)),
        h("td", null, h("a.mono", { href: `/runs/${t.run_id}`, dataset: { nav: "" } }, shortId(t.run_id)))))));
  }

  function drawScatter() {
    const { detail } = state;
    // The sweep's metric where a trial has it, else its training loss.
    const y = (t) => t[detail.metric] ?? t.loss;
    const points = detail.runs.filter((t) => y(t) !== null && y(t) !== undefined)
      .map((t) => ({ id: t.run_id, x: t.params[state.scatterParam], y: y(t), label: shortId(t.run_id) }));
    scatterPlot.setData(points, { xLabel: state.scatterParam || "", yLabel: detail.metric.replace(/_/g, " "),
      best: detail.best && detail.best.run_id });
  }

  function drawHead(detail) {
    document.title = `${detail.name} · Sweeps · Tunix RT`;
    const active = detail.status === "active";
    head.replaceChildren(
      h("h1", null, detail.name),
      h("p.page-sub", null, h("span.mono", null, detail.sweep_id), " · ", detail.status, " · ", countsText(detail.counts)),
      countsBar(detail.counts, detail.trials),
      h("div.actions", null,
        h("button.btn.btn-sm", { type: "button", disabled: !active, onclick: () => act("cancel") }, icon("stop"), "Cancel sweep"),
        h("button.btn.btn-sm", { type: "button", onclick: () => act("resume") }, "Resume sweep")));
    const best = detail.best;
    summary.replaceChildren(
      tile("Trials", detail.trials, "sweep-trials"),
      tile(`Best ${detail.metric}`, best ? fmtNumber(best[detail.metric]) : "—", "sweep-best"),
      tile("Best trial", best ? JSON.stringify(best.params) : "—", "sweep-best-params"),
      tile("Stopped early", detail.early_stopped, "sweep-early-stopped"),
      tile("Steps saved", detail.steps_saved, "sweep-steps-saved"));
  }

  function tile(label, v, testid) {
    return h("div.stat", null, h("span.stat-label", null, label), h("span.stat-value", { dataset: { testid } }, String(v)));
  }

  async function act(move) {
    try {
      await request("POST", `sweeps/${encodeURIComponent(sweepId)}/${move}`);
      toast(move === "cancel" ? "Sweep cancelled" : "Sweep resumed", { kind: "success" });
      load();
    } catch (err) {
      toast(String(err.message || err), { kind: "error" });
    }
  }

  async function load() {
    try {
      const { data: detail } = await request("GET", `sweeps/${encodeURIComponent(sweepId)}`);
      if (!state.detail) chart.setMetrics(metricMenu(detail.metric), detail.metric); // the sweep's, until another is chosen
      state.metric = detail.metric;
      chart.setBest(detail.best && detail.best.run_id);
      chartNote.textContent = `Every trial muted, the best by ${detail.metric.replace(/_/g, " ")} in colour; `
        + "point at one to name it, click to open it.";
      await chart.reload();
      state.detail = detail;
      const params = paramNames(detail.runs);
      if (!state.scatterParam || !params.includes(state.scatterParam)) state.scatterParam = params[0] || null;
      scatterPick.replaceChildren(...params.map((p) => h("option", { value: p, selected: p === state.scatterParam }, p)));
      drawHead(detail);
      drawScatter();
      drawTable();
      insights.update(detail);
    } catch (err) {
      root.replaceChildren(errorPanel(err));
      poller.stop();
    }
  }

  const poller = new Poller({ name: "sweep-poll", tick: load, intervalMs: 5000,
    wanted: () => Boolean(state.detail) && state.detail.runs.some((t) => isActive(t.status)) });
  load().then(() => poller.poke());
  return { destroy() { poller.stop(); insights.destroy(); chart.destroy(); scatterPlot.destroy(); } };
}

export function renderCompare(root) {
  document.title = "Compare runs · Tunix RT";
  const ids = (new URLSearchParams(location.search).get("runs") || "").split(",").filter(Boolean);
  const chart = new Plot({
    testid: "overlay-chart", title: "Runs' curves", points: 1000, metrics: metricMenu("loss"),
    load: async (metric, range) => {
      const answer = await api.seriesAnswer(ids, { metric, ...range });
      chart.setMetrics(metricMenu("loss", answer.metrics));
      return curvesOf(answer.data, shortId);
    },
    emptyText: "No steps recorded yet.",
  });
  const table = h("table.runs-table.compare-table", { dataset: { testid: "compare-table" } });
  root.append(
    h("div.page-head", null, h("h1", null, "Compare runs"),
      h("p.page-sub", null, `${ids.length} runs; rows whose values differ are marked.`)),
    h("section.panel", null, h("h2", null, "Curves"), chart.el),
    h("section.panel", null, h("h2", null, "Configuration"), table));
  Promise.all([Promise.all(ids.map((id) => api.run(id))), chart.reload()]).then(([runs]) => {
    const keys = [...new Set(runs.flatMap((r) => Object.keys(r.config)))].sort();
    const rows = [["status", (r) => r.status], ["priority", (r) => r.priority], ...keys.map((k) => [k, (r) => r.config[k]])];
    table.replaceChildren(
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Field"),
        ...runs.map((r) => h("th", { scope: "col" }, h("a.mono", { href: `/runs/${r.run_id}`, dataset: { nav: "" } }, shortId(r.run_id)))))),
      h("tbody", null, ...rows.map(([name, get]) => {
        const values = runs.map((r) => JSON.stringify(get(r) ?? null));
        const differs = new Set(values).size > 1;
        return h(`tr${differs ? ".differs" : ""}`, { dataset: { testid: "compare-row", field: name, differs: String(differs) } },
          h("th", { scope: "row" }, name), ...values.map((v) => h("td.mono", null, v)));
      })));
  }).catch((err) => root.replaceChildren(errorPanel(err)));
  return { destroy() { chart.destroy(); } };
}
