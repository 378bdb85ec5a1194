// "/runs/<id>": one run, live.  Status polled every 2.5 s while it is active,
// loss curve and checkpoints refreshed as steps complete, log over SSE.

import { api, ApiError, getToken } from "../api.js";
import { CANCELLABLE, isActive, isFinal, RESUMABLE, STATUS, WAITING } from "../config.js";
import { Plot } from "../plot.js";
import { h, icon, fmtNumber, fmtBytes, fmtDuration, fmtAbsolute, shortId, timeEl, copyText } from "../dom.js";
import { LogView } from "../logview.js";
import { Poller } from "../poller.js";
import { badge, updateBadge, progressBar, renderProgress, statusLabel } from "../status.js";
import { samplesPanel } from "./samples.js";
import { artifactsPanel, logSearch } from "./run_artifacts.js";

const CONFIG_LABELS = {
  dataset_key: "Dataset", model_id: "Model", method: "Method", dry_run: "Dry run", learning_rate: "Learning rate",
  num_epochs: "Epochs", batch_size: "Batch size", max_seq_length: "Max sequence length", max_steps: "Max steps",
  seed: "Seed", device: "Device", time_limit_s: "Time limit (s)", checkpoint_every_steps: "Checkpoint every (steps)",
  priority: "Priority", lora: "LoRA", dpo: "DPO", grpo: "GRPO", sample_held_out: "Held-out samples",
};
/** A field no label names (a newer server's): its name, spaced. */
const configLabel = (k) => CONFIG_LABELS[k] || k.replace(/_/g, " ");
const CONFIG_ORDER = Object.keys(CONFIG_LABELS);

function panel(title, { id, tools, cls = "" } = {}, ...body) {
  const headingId = id ? `${id}-title` : undefined;
  return h(`section.panel${cls}`, { id, "aria-labelledby": headingId },
    h("div.panel-head", null, h("h2", { id: headingId }, title), tools ? h("div.panel-tools", null, tools) : null),
    ...body);
}

function dl(pairs) {
  return h("dl.facts", null, pairs.filter(Boolean).map(([k, v, attrs]) => h("div.fact", attrs || null, h("dt", null, k), h("dd", null, v))));
}

export function renderRun(root, { runId, toast }) {
  document.title = `Run ${shortId(runId)} · Tunix RT`;
  let run = null;
  let destroyed = false;
  let lastStep = null;
  let metricsAt = 0;
  let metricsTimer = null;
  let checkpointsAt = 0;

  // ------------------------------------------------------------ skeleton

  const badgeSlot = h("span.badge-slot");
  const labelsSlot = h("div.run-labels", { hidden: true, dataset: { testid: "run-labels" } });
  const actions = h("div.run-actions");
  const subtitle = h("p.page-sub.run-sub-line");
  const progressSlot = h("div.run-progress", { hidden: true });
  const copyButton = h("button.btn.btn-ghost.btn-sm.icon-only", { type: "button", "aria-label": "Copy the run id", title: "Copy the full run id",
    onclick: async () => toast(await copyText(runId) ? "Run id copied" : "Could not copy", { kind: "success", timeoutMs: 2000 }) }, icon("copy"));
  const head = h("div.page-head.run-head", null,
    h("a.back-link", { href: "/" }, icon("arrowLeft"), "All runs"),
    h("div.run-title-row", null,
      h("h1", null, "Run ", h("code.run-id", { title: runId }, shortId(runId))), copyButton, badgeSlot,
      actions),
    labelsSlot,
    subtitle,
    progressSlot);

  // Name, tags and notes (#21): the name and tags under the title; the notes
  // in a panel, editable (PATCH) by the run's owner or an admin, as the API
  // allows; another's save answers 403 and the form says the API's message.
  let me = null;
  let notesBase = null; // the notes the field was last filled with: a field edited since is not overwritten
  const notesView = h("p.notes-text", { dataset: { testid: "notes-text" } });
  const notesField = h("textarea#run-notes", { rows: 4, maxLength: 10000, placeholder: "What this run is for, what it showed…", dataset: { testid: "notes-field" } });
  const notesError = h("p.form-error", { role: "alert", hidden: true, dataset: { testid: "notes-error" } });
  const notesSave = h("button.btn.btn-sm.btn-primary", { type: "submit", dataset: { testid: "notes-save" } }, "Save notes");
  const notesForm = h("form.notes-form", { hidden: true, onsubmit: saveNotes },
    h("label.visually-hidden", { for: "run-notes" }, "Notes"), notesField, h("div.notes-actions", null, notesSave), notesError);
  const notesPanel = panel("Notes", { id: "notes" }, notesView, notesForm);

  const errorSlot = h("div.error-slot");
  // The run's curves, read downsampled (each bucket's extremes kept) and, zoomed, at full resolution.
  const curve = async (metric, range, extra) => ({ id: metric, label: metric.replace(/_/g, " "), ...extra,
    ...(await api.series([runId], { metric, ...range }))[0] });
  const plannedSteps = () => (run && ((run.progress && run.progress.total_steps) || (run.result && run.result.total_steps)
    || (run.config && run.config.max_steps))) || null;
  // The training loss with the eval loss beside it (a few points: at checkpoints, at the end); or one other figure.
  const chart = new Plot({
    testid: "loss-chart", title: "Loss", height: 260, points: 1000, xTotal: plannedSteps,
    metrics: [{ value: "loss", label: "Loss and eval loss" }, { value: "learning_rate", label: "Learning rate" },
              { value: "grad_norm", label: "Grad norm" }],
    load: async (metric, range) => {
      if (metric !== "loss") return [await curve(metric, range)];
      const [train, evals] = await Promise.all([curve("loss", range, { label: "training loss", primary: true }),
        curve("eval_loss", range, { sparse: true })]);
      return evals.steps.length ? [train, evals] : [train];
    },
    emptyText: "No loss reported yet.",
  });
  const chartStats = h("div.chart-stats");
  const lossPanel = panel("Loss", { id: "loss" }, chartStats, chart.el);
  // A method's own figures per step (DPO's reward accuracy, GRPO's mean reward ...), one at a time.
  const methodChart = new Plot({ testid: "method-chart", title: "Method metrics", height: 220, points: 1000,
    load: async (metric, range) => [await curve(metric, range)], emptyText: "No method metric recorded yet." });
  let methodNames = [];
  const methodPanel = panel("Method metrics", { id: "method-metrics" }, methodChart.el);
  methodPanel.hidden = true;
  const completionsSlot = h("div.completions-slot");
  const log = new LogView(runId, {
    onProgress: (progress) => applyStatus({ ...run, progress }),
    onStatus: () => poller.poke(),
  });
  const logFiles = logSearch(runId, { toast });
  const logPanel = panel("Log", { id: "log", cls: ".log-panel", tools: logFiles.tools }, log.el, logFiles.el);
  const artifacts = artifactsPanel(runId, { toast });
  const resultSlot = h("div.result-slot");
  const timings = h("div");
  const configBody = h("div");
  const configPanel = panel("Configuration", {
    id: "config",
    tools: h("button.btn.btn-ghost.btn-sm", { type: "button", onclick: async () => {
      toast(await copyText(JSON.stringify(run ? run.config : {}, null, 2)) ? "Configuration copied as JSON" : "Could not copy", { kind: "success", timeoutMs: 2000 });
    } }, icon("copy"), "JSON"),
  }, configBody);
  const checkpointBody = h("div", { dataset: { testid: "checkpoints" } }, h("p.muted", null, "Loading…"));
  const samples = samplesPanel(runId, { toast });
  const layout = h("div.detail-grid", null,
    h("div.detail-main", null, errorSlot, lossPanel, methodPanel, completionsSlot, logPanel, resultSlot, samples.el),
    h("aside.detail-side", { "aria-label": "Run facts" }, notesPanel, panel("Timings", { id: "timings" }, timings), configPanel,
      panel("Checkpoints", { id: "checkpoints" }, checkpointBody), artifacts.el));
  const body = h("div.run-page", { dataset: { runId } }, head, layout);
  root.append(h("div.loading-panel.panel", { "aria-busy": "true" }, h("span.spinner"), " Loading the run…"));

  // ------------------------------------------------------------ rendering

  function renderActions() {
    const buttons = [];
    if (CANCELLABLE.has(run.status)) {
      buttons.push(h("button.btn.btn-danger", { type: "button", dataset: { testid: "cancel" }, onclick: cancel }, icon("stop"), "Cancel"));
    } else if (isActive(run.status)) {  // active, and a cancel has nothing to move: it is stopping
      buttons.push(h("button.btn.btn-danger", { type: "button", disabled: true, dataset: { testid: "cancel" } }, h("span.spinner"), "Cancelling…"));
    }
    if (RESUMABLE.has(run.status)) {
      buttons.push(h("button.btn.btn-primary", { type: "button", dataset: { testid: "resume" }, onclick: resume,
        title: run.dry_run ? "Queue it again" : "Queue it again; the training goes on from its latest checkpoint" }, icon("resume"), "Resume"));
    }
    buttons.push(h("a.btn", { href: `/?from=${encodeURIComponent(runId)}`, title: "A new run with this configuration" }, icon("rerun"), "Run again"));
    actions.replaceChildren(...buttons);
  }

  function renderHead() {
    const current = badgeSlot.firstChild;
    if (current) updateBadge(current, run.status);
    else badgeSlot.append(badge(run.status, { large: true }));
    document.title = `Run ${run.name || shortId(runId)} · ${statusLabel(run.status)} · Tunix RT`;
    const tags = run.tags || [];
    labelsSlot.hidden = !run.name && !tags.length;
    labelsSlot.replaceChildren(run.name ? h("strong.run-name", { dataset: { testid: "run-name" } }, run.name) : null,
      tags.length ? h("ul.run-tags", { "aria-label": "Tags", dataset: { testid: "run-tags" } }, tags.map((t) => h("li.tag", null, t))) : null);
    subtitle.replaceChildren(
      h("span", null, h("strong", null, run.model_id)), h("span.sep", { "aria-hidden": "true" }, "·"),
      h("span", null, run.dataset_key), h("span.sep", { "aria-hidden": "true" }, "·"),
      h(`span.tag${run.dry_run ? ".tag-dry" : ".tag-train"}`, null, run.dry_run ? "dry run" : "training"),
      h("span.sep", { "aria-hidden": "true" }, "·"), h("span", null, `${run.mode} submit`));
    renderActions();
    const showProgress = isActive(run.status) && (!run.dry_run || run.progress);
    progressSlot.hidden = !showProgress;
    if (showProgress) {
      const bar = progressSlot.querySelector(".progress");
      if (bar) renderProgress(bar, run.progress, run.status);
      else progressSlot.replaceChildren(progressBar(run.progress, { status: run.status }));
    }
  }

  function renderTimings() {
    const running = isActive(run.status) && run.started_at && !run.completed_at;
    const waiting = WAITING.has(run.status);
    let duration = run.duration_seconds;
    if ((duration === null || duration === undefined) && run.started_at && run.completed_at) {
      duration = (Date.parse(run.completed_at) - Date.parse(run.started_at)) / 1000;
    }
    const when = (iso) => iso ? h("span", null, timeEl(iso), h("span.muted.abs", null, fmtAbsolute(iso))) : h("span.muted", null, "—");
    timings.replaceChildren(dl([
      ["Queued", when(run.queued_at)],
      ["Started", when(run.started_at)],
      ["Finished", when(run.completed_at)],
      ["Queue wait", waiting
        ? h("span", { dataset: { elapsedFrom: run.queued_at } }, fmtDuration((Date.now() - Date.parse(run.queued_at)) / 1000))
        : run.queue_wait_seconds !== null && run.queue_wait_seconds !== undefined ? fmtDuration(run.queue_wait_seconds) : "—",
      { dataset: { testid: "queue-wait" } }],
      run.waiting_reason ? ["Waiting because", h("span", { dataset: { testid: "waiting-reason" } }, run.waiting_reason)] : null,
      run.owner ? ["Owner", h("code", null, run.owner)] : null,
      ["Duration", running
        ? h("span", { dataset: { elapsedFrom: run.started_at } }, fmtDuration((Date.now() - Date.parse(run.started_at)) / 1000))
        : fmtDuration(duration), { dataset: { testid: "duration" } }],
      ["Attempts", String(run.attempts ?? "—")],
      ["Worker", run.worker_id ? h("code", null, run.worker_id) : h("span.muted", null, "—")],
      run.exit_code !== null && run.exit_code !== undefined ? ["Exit code", h("code", null, String(run.exit_code))] : null,
      run.heartbeat_at && isActive(run.status) ? ["Heartbeat", timeEl(run.heartbeat_at)] : null,
    ]));
  }

  /** The notes: the text, or the field (owner, admin) unless it was edited since it was filled. */
  function renderNotes() {
    const notes = run.notes || "";
    const mayEdit = Boolean(me && (me.role === "admin" || (me.name && me.name === run.owner)));
    notesForm.hidden = !mayEdit;
    notesView.hidden = mayEdit;
    notesView.replaceChildren(notes || h("span.muted", null, "No notes."));
    if (mayEdit && (notesBase === null || notesField.value === notesBase)) {
      notesField.value = notes;
      notesBase = notes;
    }
  }

  async function saveNotes(event) {
    event.preventDefault();
    notesSave.disabled = true;
    notesError.hidden = true;
    try {
      const updated = await api.updateRun(runId, { notes: notesField.value });
      if (destroyed) return;
      run = { ...run, notes: updated.notes };
      notesBase = null;
      renderNotes();
      toast("Notes saved", { kind: "success", timeoutMs: 2000 });
    } catch (exc) {
      if (destroyed) return;
      notesError.replaceChildren(icon("alert"), h("span", null, exc.status === 403 ? exc.message : `Could not save the notes: ${exc.message}`));
      notesError.hidden = false;
    } finally {
      notesSave.disabled = false;
    }
  }

  function renderConfig() {
    // The priority is a column of the run, not part of what the training reads.
    const config = { ...(run.config || {}), priority: run.priority ?? 0 };
    const keys = [...CONFIG_ORDER.filter((k) => k in config), ...Object.keys(config).filter((k) => !CONFIG_ORDER.includes(k)).sort()];
    configBody.replaceChildren(dl(keys.map((k) => {
      const v = config[k];
      const text = v === null || v === undefined ? h("span.muted", null, "—") : typeof v === "number" ? String(v) : typeof v === "boolean" ? (v ? "yes" : "no") : String(v);
      return [configLabel(k), typeof text === "string" ? h("code", null, text) : text];
    })));
  }

  function renderError() {
    if (!run.error) {
      errorSlot.replaceChildren();
      return;
    }
    const e = run.error;
    const details = [];
    if (e.traceback) details.push(h("details", null, h("summary", null, "Traceback"), h("pre.code-block", null, e.traceback)));
    const tail = e.stderr_tail || (e.details && e.details.stderr_tail);
    if (Array.isArray(tail) && tail.length) details.push(h("details", null, h("summary", null, tail.length === 1 ? "stderr (last line)" : `stderr (last ${tail.length} lines)`), h("pre.code-block", null, tail.join("\n"))));
    const extra = Object.fromEntries(Object.entries(e).filter(([k]) => !["type", "message", "traceback", "stderr_tail", "stdout_tail"].includes(k)));
    if (Object.keys(extra).length) details.push(h("details", null, h("summary", null, "All details"), h("pre.code-block", null, JSON.stringify(extra, null, 2))));
    const failed = run.status === STATUS.FAILED;
    errorSlot.replaceChildren(h(`section.panel${failed ? ".panel-error" : ".panel-warn"}`, { role: failed ? "alert" : null, "aria-labelledby": "error-title", dataset: { testid: "error-panel" } },
      h("div.panel-head", null, h("h2#error-title", null, icon("alert"), failed ? "Error" : "Why it stopped")),
      h("p.error-type", null, h("code", null, e.type || "Error"), run.exit_code !== null && run.exit_code !== undefined ? h("span.muted", null, ` · exit code ${run.exit_code}`) : null),
      h("p.error-message", null, e.message || ""),
      details));
  }

  function renderResult() {
    if (!run.result) {
      resultSlot.replaceChildren();
      return;
    }
    const r = run.result;
    const facts = [];
    if (typeof r.final_loss === "number") facts.push(["Final loss", fmtNumber(r.final_loss, 5)]);
    if (typeof r.steps === "number") facts.push(["Steps", `${r.steps.toLocaleString("en-US")}${typeof r.total_steps === "number" ? ` of ${r.total_steps.toLocaleString("en-US")}` : ""}`]);
    if (typeof r.start_step === "number" && r.start_step > 0) facts.push(["Resumed at step", String(r.start_step)]);
    if (typeof r.param_count === "number") facts.push(["Parameters", r.param_count.toLocaleString("en-US")]);
    if (typeof r.trainable_params === "number" && r.trainable_params !== r.param_count) facts.push(["Trainable (LoRA)", r.trainable_params.toLocaleString("en-US")]);
    if (typeof r.effective_max_seq_length === "number") facts.push(["Seq length", String(r.effective_max_seq_length)]);
    if (typeof r.duration_s === "number") facts.push(["Training time", fmtDuration(r.duration_s)]);
    const tails = [];
    if (Array.isArray(r.stdout_tail) && r.stdout_tail.length) tails.push(h("details", null, h("summary", null, "stdout (tail)"), h("pre.code-block", null, r.stdout_tail.join("\n"))));
    if (Array.isArray(r.stderr_tail) && r.stderr_tail.length) tails.push(h("details", null, h("summary", null, "stderr (tail)"), h("pre.code-block", null, r.stderr_tail.join("\n"))));
    const tiles = facts.length ? h("div.stat-tiles", null, facts.map(([k, v]) => h("div.stat", null, h("span.stat-label", null, k), h("span.stat-value", null, v)))) : null;
    // (replaceChildren writes a null as the text "null": the reports a run lacks are left out)
    // The manifest's URI on a line of its own (a tile squeezed it into a column); the artifacts panel downloads it.
    const manifest = r.manifest ? h("p.result-manifest.muted", { dataset: { testid: "result-manifest" } }, "Manifest ",
      h("code.break", null, r.manifest)) : null;
    resultSlot.replaceChildren(...[panel("Result", { id: "result" }, tiles, manifest, tails,
      h("details", null, h("summary", null, "Raw JSON"), h("pre.code-block", null, JSON.stringify(r, null, 2)))),
      heldOutSamples(r.held_out_samples),
      beforeAfter("Held-out preference pairs", "held-out-preferences", r.held_out_preferences),
      beforeAfter("Held-out prompts, rewarded", "held-out-rewards", r.held_out_rewards)].filter(Boolean));
  }

  /** A method's held-out report ({base: {...}, trained: {...}, ...}): each figure, base model → trained. */
  function beforeAfter(title, id, report) {
    if (!report || !report.base || !report.trained) return null;
    const names = Object.keys(report.base).filter((k) => typeof report.base[k] === "number");
    const fmt = (v) => (typeof v === "number" ? fmtNumber(v, 4) : "–");
    const count = Object.entries(report).filter(([k, v]) => typeof v === "number").map(([k, v]) => `${v} ${k}`).join(", ");
    return panel(title, { id }, count ? h("p.muted", null, count) : null,
      h("div.table-wrap", null, h("table.runs-table", { dataset: { testid: id } },
        h("thead", null, h("tr", null, ["", "Base model", "Trained"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", null, names.map((k) => h("tr", null, h("th", { scope: "row" }, k.replace(/_/g, " ")),
          h("td", null, fmt(report.base[k])), h("td", null, fmt(report.trained[k]))))))));
  }

  /** The method metrics of ``points`` (a menu of their names, the chart) and GRPO's latest sampled completions. */
  function renderMethod(points) {
    const names = [...new Set(points.flatMap((p) => Object.keys(p.metrics || {})))].sort();
    methodPanel.hidden = !names.length;
    if (names.length) {
      if (names.join() !== methodNames.join()) methodChart.setMetrics(names.map((n) => ({ value: n, label: n.replace(/_/g, " ") })));
      methodNames = names;
      methodChart.reload().catch(() => {});
    }
    const sampled = points.filter((p) => Array.isArray(p.samples) && p.samples.length).slice(-2).reverse();
    completionsSlot.replaceChildren(sampled.length ? panel("Sampled completions", { id: "completions" },
      h("div.table-wrap", null, h("table.runs-table.held-out-table", { dataset: { testid: "completions" } },
        h("thead", null, h("tr", null, ["Step", "Prompt", "Completion", "Reward"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", null, sampled.flatMap((p) => p.samples.map((s) => h("tr", null, h("td", null, String(p.step)),
          h("td", null, h("pre.sample-text", null, s.prompt)), h("td", null, h("pre.sample-text", null, s.completion)),
          h("td", null, typeof s.reward === "number" ? fmtNumber(s.reward, 3) : "–")))))))) : "");
  }

  /** The held-out prompts answered by the base model and by the trained one, side by side, with the check's rates. */
  function heldOutSamples(report) {
    if (!report || !Array.isArray(report.samples) || !report.samples.length) return null;
    const pct = (v) => (typeof v === "number" ? `${Math.round(v * 100)}%` : "–");
    const rates = report.check && report.base && report.final
      ? h("p", { dataset: { testid: "held-out-rates" } }, `${report.check}: format rate `, h("strong", null, pct(report.base.format_rate)),
        " (base) → ", h("strong", null, pct(report.final.format_rate)), " (trained); correct ",
        `${pct(report.base.correct_rate)} → ${pct(report.final.correct_rate)}`, h("span.muted", null, ` · ${report.prompts} held-out prompts, greedy`))
      : h("p.muted", null, `${report.prompts} held-out prompts, greedy; this dataset has no check.`);
    const mark = (ok) => (ok === true ? " ✓" : ok === false ? " ✗" : "");
    const rows = report.samples.map((s) => h("tr", null,
      h("td", null, h("pre.sample-text", null, s.prompt)),
      h("td", null, h("pre.sample-text", null, s.base), mark(s.base_format)),
      h("td", null, h("pre.sample-text", null, s.final), mark(s.final_format)),
      h("td", null, h("pre.sample-text", null, s.reference))));
    return panel("Held-out samples", { id: "held-out-samples" }, rates,
      h("div.table-wrap", null, h("table.runs-table.held-out-table", { dataset: { testid: "held-out-samples" } },
        h("thead", null, h("tr", null, ["Prompt", "Base model", "Trained", "Reference"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", null, rows))));
  }

  function renderChartStats(points) {
    const valid = points.filter((p) => typeof p.loss === "number");
    if (!valid.length) {
      chartStats.replaceChildren();
      return;
    }
    const last = valid[valid.length - 1];
    const min = valid.reduce((a, b) => (b.loss < a.loss ? b : a));
    const stat = (label, value) => h("div.stat", null, h("span.stat-label", null, label), h("span.stat-value", null, value));
    chartStats.replaceChildren(
      stat("latest", fmtNumber(last.loss, 4)), stat("lowest", `${fmtNumber(min.loss, 4)} @ ${min.step}`),
      stat("first", fmtNumber(valid[0].loss, 4)), stat("points", valid.length.toLocaleString("en-US")));
  }

  function render() {
    renderHead();
    renderTimings();
    renderNotes();
    renderConfig();
    renderError();
    renderResult();
    if (run.dry_run) chart.setEmpty("A dry run trains nothing: no loss to plot.");
    else if (WAITING.has(run.status)) chart.setEmpty("Waiting for a worker…");
    else if (isFinal(run.status)) chart.setEmpty("This run recorded no loss.");
    else chart.setEmpty("No loss reported yet.");
  }

  // ------------------------------------------------------------ data

  async function loadMetrics() {
    metricsAt = Date.now();
    const [points] = await Promise.all([api.metrics(runId), chart.reload()]);
    if (destroyed) return;
    renderChartStats(points);
    renderMethod(points);
  }

  /** Metrics at most every 2 s while steps keep coming. */
  function metricsSoon() {
    if (metricsTimer) return;
    const wait = Math.max(0, 2000 - (Date.now() - metricsAt));
    metricsTimer = setTimeout(() => {
      metricsTimer = null;
      loadMetrics().catch(() => {});
    }, wait);
  }

  async function loadCheckpoints() {
    checkpointsAt = Date.now();
    const items = await api.checkpoints(runId);
    if (destroyed) return;
    samples.setSteps(items.map((c) => c.step));
    if (!items.length) {
      checkpointBody.replaceChildren(h("p.muted", null, run.dry_run ? "Dry runs save no checkpoints." : "None yet."));
      return;
    }
    const rows = items.slice().reverse().map((c) => h("tr", null,
      h("td.num", null, c.step.toLocaleString("en-US")),
      h("td.num.nowrap", null, fmtBytes(c.size_bytes)),
      h("td.nowrap", null, timeEl(c.created_at, { compact: true })),
      h("td", null, h("a.btn.btn-sm.btn-ghost", { href: c.download, download: "", onclick: (e) => downloadWithToken(e, c), "aria-label": `Download checkpoint at step ${c.step}` }, icon("download"), "tar"))));
    checkpointBody.replaceChildren(h("table.mini-table", null,
      h("thead", null, h("tr", null, h("th.num", { scope: "col" }, "Step"), h("th.num", { scope: "col" }, "Size"), h("th", { scope: "col" }, "Saved"), h("th", { scope: "col" }, h("span.visually-hidden", null, "Download")))),
      h("tbody", null, rows)));
  }

  /** With a token set (an API that guards reads), a plain link would be refused: fetch it with the header. */
  async function downloadWithToken(event, checkpoint) {
    const token = getToken();
    if (!token) return;
    event.preventDefault();
    try {
      const response = await fetch(checkpoint.download, { headers: { Authorization: `Bearer ${token}` } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: `${runId}-step-${checkpoint.step}.tar` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (exc) {
      toast(`Download failed: ${exc.message}`, { kind: "error" });
    }
  }

  /** A status answer (or an SSE progress event): update what it touches. */
  function applyStatus(next) {
    if (!run || destroyed) return;
    const changed = next.status !== run.status;
    run = { ...run, ...next };
    if (changed) {
      render();
      refreshAll();
      return;
    }
    renderHead();
    const step = run.progress && run.progress.step;
    if (step !== undefined && step !== lastStep) {
      lastStep = step;
      if (!run.dry_run) metricsSoon();
      if (Date.now() - checkpointsAt > 5000) loadCheckpoints().catch(() => {});
    }
  }

  /** After a status change: the whole run (error, result, timings), metrics and checkpoints. */
  async function refreshAll() {
    try {
      const full = await api.run(runId);
      if (destroyed) return;
      run = full;
      render();
      await Promise.all([run.dry_run ? Promise.resolve() : loadMetrics(), loadCheckpoints(), artifacts.refresh()]);
    } catch (exc) {
      if (exc.transient) poller.poke();
    }
    if (isActive(run.status)) log.restart();
  }

  const poller = new Poller({
    name: `run-${runId}`,
    wanted: () => Boolean(run) && isActive(run.status),
    tick: async () => {
      const st = await api.status(runId);
      applyStatus(st);
    },
  });

  async function cancel(event) {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const { status, data } = await api.cancel(runId);
      toast(status === 200 ? "Run cancelled before it started" : "Cancel requested: the worker saves a checkpoint and stops", { kind: "success" });
      applyStatus(data);
      poller.poke();
    } catch (exc) {
      toast(exc.status === 409 ? `Too late: the run is already ${statusLabel(exc.body?.error?.status || "finished")}.` : `Cancel failed: ${exc.message}`, { kind: "error" });
      refreshAll();
    }
  }

  async function resume(event) {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const { data } = await api.resume(runId);
      toast("Run queued again", { kind: "success" });
      applyStatus(data);
      log.restart();
      poller.poke();
    } catch (exc) {
      toast(exc.status === 409 ? "This run cannot be resumed now." : `Resume failed: ${exc.message}`, { kind: "error" });
      refreshAll();
    }
  }

  // ------------------------------------------------------------ start

  (async function start() {
    for (let attempt = 0; ; attempt += 1) {
      try {
        run = await api.run(runId);
        break;
      } catch (exc) {
        if (destroyed) return;
        if (exc instanceof ApiError && exc.status === 404) {
          document.title = "Run not found · Tunix RT";
          root.replaceChildren(h("section.panel.empty-state", { dataset: { testid: "not-found" } },
            h("h1", null, "Run not found"),
            h("p.muted", null, "No run has the id ", h("code", null, runId), "."),
            h("a.btn", { href: "/" }, icon("arrowLeft"), "All runs")));
          return;
        }
        root.replaceChildren(h("section.panel.error-panel", { role: "alert" }, h("p", null, `The run could not be loaded: ${exc.message}. Retrying…`)));
        await new Promise((r) => setTimeout(r, Math.min(30000, 1000 * 2 ** attempt)));
        if (destroyed) return;
      }
    }
    if (destroyed) return;
    root.replaceChildren(body);
    lastStep = run.progress && run.progress.step;
    render();
    api.me().then((who) => {
      me = who;
      if (!destroyed) renderNotes();
    }, () => {});
    log.start();
    poller.poke();
    await Promise.all([
      run.dry_run ? Promise.resolve() : loadMetrics().catch(() => {}),
      loadCheckpoints().catch(() => checkpointBody.replaceChildren(h("p.muted", null, "Could not list the checkpoints."))),
      samples.refresh().catch(() => {}),
      artifacts.refresh(),
    ]);
  })();

  return {
    destroy() {
      destroyed = true;
      samples.destroy();
      poller.stop();
      log.destroy();
      chart.destroy();
      methodChart.destroy();
      clearTimeout(metricsTimer);
    },
  };
}
