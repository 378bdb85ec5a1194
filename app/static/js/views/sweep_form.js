// "/sweeps/new": launch a sweep from a form.  The base run is the run submit
// form's own fields (SubmitForm, views/form.js); the search space is rows of
// a parameter swept by a grid (values) or a random search (choice, uniform or
// log_uniform over [low, high]); then the ranking metric, early stopping and
// max concurrent.  It POSTs /api/tunix/sweeps and puts each of the API's 422
// messages next to the field it names (the checks are the API's, none here).
// The parameters, metrics and early-stopping defaults come from the API's
// document (SweepSpec in /openapi.json); "?from=<run_id>" prefills the base.

import { api, ApiError, request } from "../api.js";
import { h, icon, fmtNumber, shortId } from "../dom.js";
import { SubmitForm, prefillFromRun, showApiErrors } from "./form.js";

const NUMBER_RE = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** How a row sweeps its parameter: the request's section and, for a random one, its distribution. */
const KINDS = [
  { value: "grid", text: "grid", section: "grid" },
  { value: "choice", text: "random: choice", section: "random" },
  { value: "uniform", text: "random: uniform", section: "random" },
  { value: "log_uniform", text: "random: log-uniform", section: "random" },
];
const LISTS = new Set(["grid", "choice"]);

/** Used when the document cannot be read: the request still goes, and the API judges it. */
const FALLBACK = {
  params: ["learning_rate", "batch_size", "num_epochs", "max_steps", "max_seq_length", "seed", "method", "lora.rank",
    "lora.alpha", "dpo.beta", "grpo.temperature", "grpo.beta"],
  metrics: ["eval_loss", "loss"],
  stopping: { min_steps: 10, min_trials: 3, reduction_factor: 3 },
  maxTrials: 500,
};

/** One typed token: a number, true/false/null, else the text (quotes stripped). */
function token(raw) {
  const t = raw.trim();
  if (NUMBER_RE.test(t)) return Number(t);
  if (t === "true" || t === "false") return t === "true";
  if (t === "null") return null;
  return t.replace(/^(["'])(.*)\1$/, "$2");
}

/** "1e-4, 3e-4" -> [0.0001, 0.0003]; "[...]" is read as JSON; "" -> [] (the API says a list needs a value). */
export function parseList(text) {
  const t = text.trim();
  if (t.startsWith("[")) {
    try { return JSON.parse(t); } catch { return t; } // the API names what is wrong with it
  }
  return t === "" ? [] : t.split(",").filter((part) => part.trim() !== "").map(token);
}

function numberOrText(text) {
  const t = text.trim();
  if (t === "") return null;
  return NUMBER_RE.test(t) ? Number(t) : t;
}

/** What the document says a sweep may be: its parameters, metrics, stopping defaults, trial cap. */
async function sweepSchema() {
  try {
    const { data } = await request("GET", "/openapi.json");
    const schemas = data.components.schemas;
    const spec = schemas.SweepSpec.properties;
    const grid = (spec.grid.anyOf || []).find((s) => s.type === "object");
    const random = (spec.random.anyOf || []).find((s) => s.type === "object");
    const stop = (schemas.EarlyStopping || {}).properties || {};
    return {
      params: Object.keys(grid.properties),
      metrics: spec.metric.enum || FALLBACK.metrics,
      stopping: { min_steps: stop.min_steps?.default ?? 10, min_trials: stop.min_trials?.default ?? 3,
        reduction_factor: stop.reduction_factor?.default ?? 3 },
      maxTrials: random.properties.count.maximum || FALLBACK.maxTrials,
    };
  } catch {
    return FALLBACK;
  }
}

export class SweepForm {
  constructor({ datasets, models, schema, toast, onCreated }) {
    this.schema = schema;
    this.toast = toast;
    this.onCreated = onCreated;
    this.controls = new Map(); // request field ("name", "random.count") -> {input, error, wrap}
    this.rows = [];
    this.nextRow = 0;
    // The base run: the submit form's fields (its async switch means nothing here: every trial is async).
    this.base = new SubmitForm({ datasets, models, toast, onSubmitted() {} });
    this.base.controls.get("async").wrap.hidden = true;
    // A run's name would name every trial alike: the sweep has its own.
    if (this.base.controls.has("name")) this.base.controls.get("name").wrap.hidden = true;
    this.el = this.build();
  }

  // ------------------------------------------------------------ building

  build() {
    const base = this.base.fieldset;
    base.querySelector("legend").textContent = "Base run";
    this.formError = h("div.form-error", { role: "alert", hidden: true, dataset: { testid: "sweep-form-error" } });
    this.rowsEl = h("div.space-rows", { dataset: { testid: "space-rows" } });
    this.spaceError = h("p.field-error", { hidden: true, dataset: { testid: "error-space" } });
    this.trialCount = h("p.hint.space-count", { "aria-live": "polite", dataset: { testid: "trial-count" } });
    this.randomBox = h("div.field-grid", { dataset: { testid: "random-settings" } },
      this.textField("random.count", "Draws", { value: "4", hint: "random draws for each grid point", inputmode: "numeric" }),
      this.textField("random.seed", "Random seed", { hint: "of the draws; chosen when empty", inputmode: "numeric" }));
    this.submitButton = h("button.btn.btn-primary.btn-block", { type: "submit", dataset: { testid: "sweep-submit" } },
      icon("play"), "Launch sweep");

    const rules = this.selectField("early_stopping.rule", "Early stopping", [["", "none"], ["median", "median rule"], ["asha", "ASHA"]],
      { hint: "stop hopeless trials (they end cancelled, checkpoint saved)" });
    const { stopping } = this.schema;
    this.stopFields = {
      min_steps: this.textField("early_stopping.min_steps", "Min steps", { placeholder: String(stopping.min_steps), hint: "none stopped before this step", inputmode: "numeric" }),
      min_trials: this.textField("early_stopping.min_trials", "Min trials", { placeholder: String(stopping.min_trials), hint: "median: others that reached the step", inputmode: "numeric" }),
      reduction_factor: this.textField("early_stopping.reduction_factor", "Reduction factor", { placeholder: String(stopping.reduction_factor), hint: "asha: 1 in this many goes on", inputmode: "numeric" }),
    };

    const sweepSettings = h("fieldset.form-body.sweep-settings", null,
      h("legend.form-section", null, "Sweep"),
      h("div.field-grid", null,
        this.textField("name", "Name", { required: true, hint: "shown in the console", wide: true }),
        this.selectField("metric", "Ranked on", this.schema.metrics.map((m) => [m, m]),
          { hint: "eval_loss: on the held-out examples; loss: training" }),
        this.selectField("mode", "Better", [["", "the metric's own"], ["min", "lower"], ["max", "higher"]]),
        this.textField("max_concurrent", "Max concurrent", { hint: "trials queued or running at once; empty: as the workers take", inputmode: "numeric" }),
        rules, ...Object.values(this.stopFields)));

    const space = h("fieldset.form-body.sweep-space", null,
      h("legend.form-section", null, "Search space"),
      h("p.hint", null, "Values comma-separated (1e-4, 3e-4) or JSON ([\"a\", \"b\"]). A grid makes every combination; a random search draws for each of them."),
      this.rowsEl, this.spaceError,
      h("div.space-tools", null,
        h("button.btn.btn-sm", { type: "button", dataset: { testid: "add-param" }, onclick: () => { this.addRow(); this.rows.at(-1).param.focus(); } },
          "+ Add parameter"),
        this.trialCount),
      this.randomBox);

    const form = h("form.submit-form.sweep-form", { novalidate: true, "aria-label": "New sweep", dataset: { testid: "sweep-form" } },
      this.formError,
      h("div.sweep-form-grid", null,
        h("section.sweep-form-col", { "aria-label": "Base run" }, h("h2.sweep-form-sub", null, "Base run"),
          h("p.hint", null, "What every trial shares; the search space sets the rest."), base),
        h("section.sweep-form-col", { "aria-label": "Search space and sweep settings" }, space, sweepSettings,
          h("div.form-actions", null, this.submitButton))));
    form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    form.addEventListener("input", (e) => { this.clearFor(e.target); this.renderCount(); });
    form.addEventListener("change", (e) => {
      this.clearFor(e.target);
      // The submit form's own reactions, its form element being elsewhere.
      if (e.target.name === "model_id") this.base.renderModelHint();
      if (e.target.name === "dataset_key") this.base.renderDatasetHint();
      if (e.target === this.controls.get("early_stopping.rule").input) this.renderStopping();
      this.renderCount();
    });

    this.addRow({ param: "learning_rate", kind: "log_uniform", low: "1e-4", high: "1e-2" });
    this.renderStopping();
    this.renderCount();
    return h("section.panel.sweep-form-panel", { "aria-label": "New sweep" }, form);
  }

  field(name, label, input, { hint, required, wide } = {}) {
    const id = `s-${name.replace(/\./g, "-")}`;
    input.id = id;
    input.name = `sweep-${name}`; // apart from the base run's own names ("name", "priority" are run fields too)
    const error = h("p.field-error", { id: `${id}-err`, hidden: true, dataset: { testid: `sweep-error-${name}` } });
    const hintEl = hint ? h("p.hint", { id: `${id}-hint` }, hint) : null;
    input.setAttribute("aria-describedby", [hintEl ? `${id}-hint` : null, `${id}-err`].filter(Boolean).join(" "));
    const wrap = h(`div.field${wide ? ".field-wide" : ""}`, { dataset: { field: name } },
      h("label", { for: id }, label, required ? h("span.req", { "aria-hidden": "true" }, " *") : null), input, hintEl, error);
    this.controls.set(name, { input, error, wrap });
    return wrap;
  }

  textField(name, label, { value, placeholder, inputmode, ...rest } = {}) {
    const input = h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder, inputmode });
    if (value !== undefined) input.value = value;
    return this.field(name, label, input, rest);
  }

  selectField(name, label, options, rest) {
    return this.field(name, label, h("select", null, options.map(([value, text]) => h("option", { value }, text))), rest);
  }

  /** A row of the search space: parameter, how it is swept, its values or [low, high]. */
  addRow({ param = "", kind = "grid", values = "", low = "", high = "" } = {}) {
    const n = this.nextRow++;
    const row = { n };
    const names = this.schema.params.includes(param) || !param ? this.schema.params : [param, ...this.schema.params];
    row.param = h("select", { id: `space-${n}-param`, name: `space.${n}.param`, "aria-label": "Parameter" },
      h("option", { value: "" }, "parameter…"), names.map((p) => h("option", { value: p, selected: p === param }, p)));
    row.kind = h("select", { id: `space-${n}-kind`, name: `space.${n}.kind`, "aria-label": "Swept by" },
      KINDS.map((k) => h("option", { value: k.value, selected: k.value === kind }, k.text)));
    row.values = h("input", { type: "text", name: `space.${n}.values`, "aria-label": "Values", autocomplete: "off", spellcheck: "false",
      placeholder: "1e-4, 3e-4, 1e-3", dataset: { testid: "space-values" } });
    row.values.value = values;
    row.low = h("input", { type: "text", name: `space.${n}.low`, "aria-label": "Low", inputmode: "decimal", autocomplete: "off", placeholder: "low", dataset: { testid: "space-low" } });
    row.low.value = low;
    row.high = h("input", { type: "text", name: `space.${n}.high`, "aria-label": "High", inputmode: "decimal", autocomplete: "off", placeholder: "high", dataset: { testid: "space-high" } });
    row.high.value = high;
    row.error = h("p.field-error", { id: `space-${n}-err`, hidden: true, dataset: { testid: "space-error" } });
    for (const input of [row.param, row.kind, row.values, row.low, row.high]) input.setAttribute("aria-describedby", row.error.id);
    row.range = h("div.space-range", null, row.low, h("span.muted", { "aria-hidden": "true" }, "to"), row.high);
    const remove = h("button.btn.btn-sm.btn-ghost.icon-only", { type: "button", "aria-label": "Remove this parameter", title: "Remove",
      onclick: () => { this.rows = this.rows.filter((r) => r !== row); row.el.remove(); this.renderCount(); } }, "×");
    row.el = h("div.space-row", { dataset: { testid: "space-row", row: String(n) } },
      h("div.space-row-inputs", null, row.param, row.kind, row.values, row.range, remove), row.error);
    row.kind.addEventListener("change", () => this.renderRow(row));
    this.rows.push(row);
    this.rowsEl.append(row.el);
    this.renderRow(row);
    return row;
  }

  renderRow(row) {
    const list = LISTS.has(row.kind.value);
    row.values.hidden = !list;
    row.range.hidden = list;
    if (row.kind.value === "choice") row.values.placeholder = "2, 4, 8";
    else row.values.placeholder = "1e-4, 3e-4, 1e-3";
  }

  renderStopping() {
    const rule = this.controls.get("early_stopping.rule").input.value;
    this.stopFields.min_steps.hidden = !rule;
    this.stopFields.min_trials.hidden = rule !== "median";
    this.stopFields.reduction_factor.hidden = rule !== "asha";
  }

  /** "makes N trials": the grid's combinations times the draws (duplicates are made once). */
  renderCount() {
    const grid = this.rows.filter((r) => r.kind.value === "grid" && r.param.value);
    const random = this.rows.some((r) => r.kind.value !== "grid" && r.param.value);
    this.randomBox.hidden = !random;
    const points = grid.reduce((n, r) => n * (Array.isArray(parseList(r.values.value)) ? parseList(r.values.value).length : 1), 1);
    const draws = random ? Number(this.controls.get("random.count").input.value) || 0 : 1;
    const total = points * draws;
    const parts = [grid.length ? `${grid.length > 1 ? grid.map((r) => parseList(r.values.value).length || 0).join(" × ") : points} grid point${points === 1 ? "" : "s"}` : null,
      random ? `${draws} draw${draws === 1 ? "" : "s"} each` : null].filter(Boolean);
    this.trialCount.textContent = grid.length || random
      ? `makes ${fmtNumber(total)} trial${total === 1 ? "" : "s"} (${parts.join(", ")}; at most ${this.schema.maxTrials})` : "";
    this.trialCount.classList.toggle("warn-text", total > this.schema.maxTrials);
  }

  // ------------------------------------------------------------ values

  /** The request body: the base run, the space, the sweep's own settings (empty ones left out). */
  body() {
    const value = (name) => this.controls.get(name).input.value.trim();
    const base = this.base.body();
    delete base.name;
    const body = { name: value("name"), base };
    const grid = {};
    const space = {};
    for (const row of this.rows) {
      const param = row.param.value;
      if (!param) continue;
      const kind = row.kind.value;
      const values = LISTS.has(kind) ? parseList(row.values.value) : [numberOrText(row.low.value), numberOrText(row.high.value)];
      if (kind === "grid") grid[param] = values;
      else space[param] = { [kind]: values };
    }
    if (Object.keys(grid).length) body.grid = grid;
    if (Object.keys(space).length) {
      body.random = { count: numberOrText(value("random.count")) ?? 1, space };
      const seed = numberOrText(value("random.seed"));
      if (seed !== null) body.random.seed = seed;
    }
    body.metric = value("metric");
    if (value("mode")) body.mode = value("mode");
    const concurrent = numberOrText(value("max_concurrent"));
    if (concurrent !== null) body.max_concurrent = concurrent;
    const rule = value("early_stopping.rule");
    if (rule) {
      body.early_stopping = { rule };
      const keys = { median: ["min_steps", "min_trials"], asha: ["min_steps", "reduction_factor"] }[rule];
      for (const key of keys) {
        const v = numberOrText(value(`early_stopping.${key}`));
        if (v !== null) body.early_stopping[key] = v;
      }
    }
    return body;
  }

  /** Rows that sweep the same parameter twice the same way: the body could hold only one of them. */
  duplicates() {
    const seen = new Set();
    const out = [];
    for (const row of this.rows) {
      if (!row.param.value) continue;
      const key = `${row.kind.value === "grid" ? "grid" : "random"}:${row.param.value}`;
      if (seen.has(key)) out.push(row);
      seen.add(key);
    }
    return out;
  }

  prefill(config, runId) {
    this.base.prefill(config, runId);
    const name = this.controls.get("name").input;
    if (!name.value) name.value = `sweep from ${shortId(runId)}`;
  }

  // ------------------------------------------------------------ errors

  mark(ctl, message) {
    ctl.error.hidden = false;
    ctl.error.textContent = ctl.error.textContent ? `${ctl.error.textContent}; ${message}` : message;
    if (ctl.input) ctl.input.setAttribute("aria-invalid", "true");
    ctl.wrap.classList.add("has-error");
  }

  unmark(ctl) {
    ctl.error.hidden = true;
    ctl.error.textContent = "";
    if (ctl.input) ctl.input.removeAttribute("aria-invalid");
    ctl.wrap.classList.remove("has-error");
  }

  rowCtl(row) {
    const input = LISTS.has(row.kind.value) ? row.values : row.low;
    return { input, error: row.error, wrap: row.el };
  }

  clearFor(target) {
    const name = target.name || "";
    if (this.base.controls.has(name) && this.base.controls.get(name).input === target) this.base.clearError(name);
    for (const ctl of this.controls.values()) if (ctl.input === target) this.unmark(ctl);
    const row = this.rows.find((r) => r.el.contains(target));
    if (row) {
      this.unmark(this.rowCtl(row));
      for (const input of [row.param, row.kind, row.values, row.low, row.high]) input.removeAttribute("aria-invalid");
    }
  }

  clearErrors() {
    for (const name of this.base.controls.keys()) this.base.clearError(name);
    for (const ctl of this.controls.values()) this.unmark(ctl);
    for (const row of this.rows) this.clearFor(row.param);
    this.spaceError.hidden = true;
    this.spaceError.textContent = "";
    this.formError.hidden = true;
    this.formError.replaceChildren();
  }

  /** The control a 422 field names: the base run's, a row of the space, or the sweep's own. */
  target(field) {
    const parts = String(field || "").split(".");
    if (parts[0] === "base") {
      const rest = parts.slice(1);
      const ctl = this.base.controls.get(rest.slice(0, 2).join(".")) || this.base.controls.get(rest[0]);
      if (ctl && this.base.moreDetails.contains(ctl.wrap)) this.base.moreDetails.open = true;
      return ctl;
    }
    const section = parts[0] === "grid" ? "grid" : parts[0] === "random" && parts[1] === "space" ? "random" : null;
    if (section) {
      const named = parts.slice(section === "grid" ? 1 : 2).join(".");
      // The longest parameter the field starts with: "lora.rank" before "lora".
      const rows = this.rows.filter((r) => r.param.value && (named === r.param.value || named.startsWith(`${r.param.value}.`))
        && (section === "grid") === (r.kind.value === "grid"));
      rows.sort((a, b) => b.param.value.length - a.param.value.length);
      if (rows.length) return this.rowCtl(rows[0]);
      if (parts.length === 1) return { input: this.rows[0] ? this.rows[0].param : null, error: this.spaceError, wrap: this.spaceError };
    }
    for (let i = parts.length; i > 0; i -= 1) {
      const ctl = this.controls.get(parts.slice(0, i).join("."));
      if (ctl && !ctl.wrap.hidden) return ctl;
    }
    return null;
  }

  showErrors(error) {
    showApiErrors(error, this.formError, "The API rejected the sweep", (field, message) => {
      const ctl = this.target(field);
      if (!ctl) return null;
      this.mark(ctl, message);
      return ctl.input;
    });
  }


  // ------------------------------------------------------------ submit

  setBusy(busy) {
    this.submitButton.disabled = busy;
    this.submitButton.setAttribute("aria-busy", busy ? "true" : "false");
    this.submitButton.replaceChildren(...(busy ? [h("span.spinner", { "aria-hidden": "true" }), "Creating the trials…"] : [icon("play"), "Launch sweep"]));
  }

  async submit() {
    if (this.submitButton.disabled) return;
    this.clearErrors();
    const twice = this.duplicates();
    if (twice.length) {
      for (const row of twice) this.mark(this.rowCtl(row), "this parameter is already swept this way above");
      this.rowCtl(twice[0]).input.focus();
      return;
    }
    this.setBusy(true);
    let failure = null;
    try {
      const { data } = await request("POST", "sweeps", { body: this.body() });
      this.onCreated(data);
    } catch (exc) {
      failure = exc instanceof ApiError ? exc : new ApiError(0, { error: { message: String(exc) } });
    } finally {
      this.setBusy(false);
    }
    if (failure) this.showErrors(failure);
  }
}

export function renderSweepForm(root, { navigate, toast }) {
  document.title = "New sweep · Tunix RT";
  const holder = h("section.panel.loading-panel", { "aria-busy": "true" }, h("span.spinner"), " Loading the catalog…");
  root.append(
    h("div.page-head", null,
      h("h1", null, "New sweep"),
      h("p.page-sub", null, "A search space over a run: every trial is an ordinary async run. The same request as ",
        h("code", null, "POST /api/tunix/sweeps"), " and ", h("code", null, "tunix sweep submit"), ".")),
    holder);
  let destroyed = false;
  (async () => {
    let datasets, models, schema;
    try {
      [datasets, models, schema] = await Promise.all([api.datasets(), api.models(), sweepSchema()]);
    } catch (exc) {
      if (!destroyed) holder.replaceChildren(h("p", { role: "alert" }, "The catalog could not be loaded: ", exc.message, "."));
      return;
    }
    if (destroyed) return;
    const form = new SweepForm({ datasets, models, schema, toast, onCreated: (sweep) => {
      toast(`Sweep ${sweep.name}: ${sweep.trials} trial${sweep.trials === 1 ? "" : "s"} created`, { kind: "success" });
      navigate(`/sweeps/${sweep.sweep_id}`);
    } });
    holder.replaceWith(form.el);
    await prefillFromRun(form, toast, () => !destroyed);
  })();
  return { destroy() { destroyed = true; } };
}
