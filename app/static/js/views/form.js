// The submit form: built from the API's own schema (fields, defaults, limits),
// the catalog's datasets and models, and the API's 422 answers shown next to
// the field they name.

import { api, ApiError } from "../api.js";
import { schema, limits, syncTimeoutS } from "../config.js";
import { h, icon, fmtNumber, fmtCompact, fmtDuration, shortId } from "../dom.js";
import { badge } from "../status.js";

/** How each known field is presented; a field the schema adds later still
 *  appears (under "More options") with its schema title. */
const FIELDS = {
  learning_rate: { label: "Learning rate", group: "main", inputmode: "decimal" },
  num_epochs: { label: "Epochs", group: "main" },
  batch_size: { label: "Batch size", group: "main" },
  max_seq_length: { label: "Max seq length", group: "main", note: "clamped to the model's max" },
  max_steps: { label: "Max steps", group: "main", emptyText: "all epochs" },
  seed: { label: "Seed", group: "more", emptyText: "random, stored with the run" },
  device: { label: "Device", group: "more" },
  time_limit_s: { label: "Time limit", unit: "s", group: "more" },
  checkpoint_every_steps: { label: "Checkpoint every", unit: "steps", group: "more" },
  priority: { label: "Priority", group: "more", note: "higher is admitted first" },
  method: { label: "Method", group: "main", note: "sft: prompt/completion pairs; dpo: preference pairs; grpo: prompts with answers" },
  "lora.rank": { label: "LoRA rank", group: "main", emptyText: "none: every parameter trains", nested: true },
  "lora.alpha": { label: "LoRA alpha", group: "more", inputmode: "decimal", nested: true, note: "with a LoRA rank" },
  "dpo.beta": { label: "DPO beta", group: "more", inputmode: "decimal", nested: true, note: "method dpo" },
  "dpo.loss": { label: "DPO loss", group: "more", nested: true, note: "method dpo" },
  "grpo.num_generations": { label: "GRPO generations", group: "more", nested: true, note: "method grpo: answers per prompt" },
  "grpo.max_new_tokens": { label: "GRPO max new tokens", group: "more", nested: true, note: "method grpo" },
  "grpo.temperature": { label: "GRPO temperature", group: "more", inputmode: "decimal", nested: true, note: "method grpo" },
  "grpo.beta": { label: "GRPO KL beta", group: "more", inputmode: "decimal", nested: true, note: "method grpo" },
};
// lora is an object: its fields are offered one by one ("lora.rank"), and an
// empty rank leaves "lora" out (full fine-tuning).
// dpo and grpo likewise; their fields are sent only with their method.
const SPECIAL = new Set(["dataset_key", "model_id", "dry_run", "lora", "dpo", "grpo"]);

const NUMBER_RE = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** {type, nullable, min, max, exclusiveMin, exclusiveMax, enum, default, title} of one property. */
function describe(name, prop) {
  let base = prop;
  let nullable = false;
  if (Array.isArray(prop.anyOf)) {
    nullable = prop.anyOf.some((p) => p.type === "null");
    base = prop.anyOf.find((p) => p.type !== "null") || {};
  }
  const d = {
    name,
    type: base.type || (base.enum ? "string" : "string"),
    nullable,
    min: base.minimum,
    max: base.maximum,
    exclusiveMin: base.exclusiveMinimum,
    exclusiveMax: base.exclusiveMaximum,
    enum: base.enum || prop.enum,
    default: prop.default,
    title: prop.title || name,
  };
  if (name === "time_limit_s" && d.max === undefined && limits.run_time_limit_s) d.max = limits.run_time_limit_s;
  return d;
}

/** ["lora.rank", prop] pairs of the object field ``name`` (its model in the schema's $defs). */
function nestedProps(name) {
  const prop = (schema.properties || {})[name] || {};
  const ref = (prop.anyOf || [prop]).map((p) => p.$ref).find(Boolean);
  const model = ref ? ((schema.$defs || {})[ref.split("/").pop()] || {}) : {};
  return Object.entries(model.properties || {})
    .filter(([n]) => FIELDS[`${name}.${n}`])
    .map(([n, p]) => [`${name}.${n}`, { ...p, default: n === "rank" ? null : p.default }]);
}

function fmtLimit(v) {
  return typeof v === "number" ? fmtNumber(v, 6) : String(v);
}

function limitText(d) {
  const lo = d.exclusiveMin !== undefined ? [fmtLimit(d.exclusiveMin), "<"] : d.min !== undefined ? [fmtLimit(d.min), "≤"] : null;
  const hi = d.exclusiveMax !== undefined ? ["<", fmtLimit(d.exclusiveMax)] : d.max !== undefined ? ["≤", fmtLimit(d.max)] : null;
  if (d.type === "integer" && d.min !== undefined && d.max !== undefined) return `${fmtLimit(d.min)}–${fmtLimit(d.max)}`;
  if (lo && hi) return `${lo.join(" ")} x ${hi.join(" ")}`;
  if (lo) return `${lo[1] === "<" ? ">" : "≥"} ${lo[0]}`;
  if (hi) return `x ${hi.join(" ")}`;
  return "";
}

function defaultText(d, info) {
  if (d.name === "time_limit_s" && (d.default === null || d.default === undefined) && limits.default_time_limit_s) {
    return fmtDuration(limits.default_time_limit_s);
  }
  if (d.default === null || d.default === undefined) return info.emptyText || "none";
  if (typeof d.default === "number") return fmtNumber(d.default, 6);
  return String(d.default);
}

function placeholderFor(d) {
  if (d.default === null || d.default === undefined) {
    if (d.name === "time_limit_s" && limits.default_time_limit_s) return String(limits.default_time_limit_s);
    return "";
  }
  return typeof d.default === "number" ? fmtNumber(d.default, 8).replace(/,/g, "") : String(d.default);
}

/**
 * An API error (``ApiError``) shown on a form: ``place(field, message)`` marks
 * the control a field names and answers its input (null: no control names
 * it); the rest go in ``box`` above the form, under ``title``.  Focus goes to
 * the first marked input, else to the box.  The run form and the sweep form
 * both show their 422s this way.
 */
export function showApiErrors(error, box, title, place) {
  const loose = [];
  let first = null;
  for (const { field, message } of error.fields) {
    const input = place(field, message);
    if (input) first = first || input;
    else loose.push(`${field}: ${message}`);
  }
  if (loose.length || !error.fields.length) {
    box.hidden = false;
    box.replaceChildren(icon("alert"), h("div", null,
      h("strong", null, error.fields.length ? title : error.message),
      loose.length ? h("ul", null, loose.map((l) => h("li", null, l))) : null,
      !error.fields.length && error.code ? h("span.muted", null, ` (${error.status || "network"} ${error.code})`) : null));
  }
  if (first) first.focus();
  else {
    box.tabIndex = -1;
    box.focus();
  }
}

/**
 * Prefill `form` (a run or sweep form: `prefill(config, runId)`) from the run
 * named by the page's `?from=`, while `alive()`; a run that is not there, or
 * another failure, is a toast.
 */
export async function prefillFromRun(form, toast, alive) {
  const from = new URLSearchParams(location.search).get("from");
  if (!from) return;
  try {
    const run = await api.run(from);
    if (alive()) form.prefill(run.config, run.run_id);
  } catch (exc) {
    if (alive()) toast(exc instanceof ApiError && exc.status === 404 ? "That run does not exist." : `Could not prefill: ${exc.message}`, { kind: "error" });
  }
}

export class SubmitForm {
  constructor({ datasets, models, onSubmitted, onSyncStarted, toast }) {
    this.datasets = datasets;
    this.models = models;
    this.onSubmitted = onSubmitted;
    this.onSyncStarted = onSyncStarted;
    this.toast = toast;
    this.controls = new Map(); // field name -> {input, error, wrap}
    this.el = this.build();
  }

  // ------------------------------------------------------------ building

  build() {
    const props = schema.properties || {};
    // Known fields in their usual order, then whatever the schema adds.
    const order = Object.keys(FIELDS);
    const rank = (n) => (order.includes(n) ? order.indexOf(n) : order.length);
    const described = Object.entries(props).filter(([n]) => !SPECIAL.has(n))
      .concat(nestedProps("lora"), nestedProps("dpo"), nestedProps("grpo"))
      .sort(([a], [b]) => rank(a) - rank(b)).map(([n, p]) => describe(n, p));
    const main = described.filter((d) => (FIELDS[d.name] || {}).group === "main");
    const more = described.filter((d) => (FIELDS[d.name] || {}).group !== "main");

    this.formError = h("div.form-error", { role: "alert", hidden: true, dataset: { testid: "form-error" } });
    this.result = h("div.submit-result", { "aria-live": "polite", dataset: { testid: "submit-result" } });
    this.submitButton = h("button.btn.btn-primary.btn-block", { type: "submit", dataset: { testid: "submit" } });
    this.stopWaiting = h("button.btn.btn-ghost.btn-block", { type: "button", hidden: true, onclick: () => this.abortSync() },
      "Stop waiting (the run goes on)");
    this.moreDetails = h("details.more", null,
      h("summary", null, "More options", h("span.muted.summary-hint", null, ` ${more.map((d) => (FIELDS[d.name] || {}).label || d.title).join(", ").toLowerCase()}`)),
      h("div.field-grid", null, more.map((d) => this.field(d))));

    this.fieldset = h("fieldset.form-body", null,
      h("legend.visually-hidden", null, "Run configuration"),
      this.selectField("dataset_key", "Dataset", this.datasets.map((d) => ({
        value: d.key, text: d.methods && d.methods.length === 1 && d.methods[0] !== "sft" ? `${d.key} · for ${d.methods[0]}` : d.key,
      }))),
      this.selectField("model_id", "Model", this.models.map((m) => ({
        value: m.model_id,
        text: `${m.model_id} · ${fmtCompact(m.param_count)} params${m.requires_weights ? " · needs weights" : ""}`,
      }))),
      h("div.toggles", null,
        this.toggle("dry_run", "Dry run", "Validate and resolve the configuration; train nothing.",
          "Train for real: a JAX subprocess on a worker.", this.schemaDefault("dry_run", true)),
        this.toggle("async", "Run async", "Return at once; the run appears in the history as pending.",
          `Wait here for the result${syncTimeoutS ? ` (up to ${fmtDuration(syncTimeoutS)})` : ""}.`, true)),
      h("h3.form-section", null, "Hyperparameters"),
      h("div.field-grid", null, main.map((d) => this.field(d))),
      this.moreDetails);

    const form = h("form.submit-form", { novalidate: true, "aria-labelledby": "submit-title", dataset: { testid: "submit-form" } },
      this.formError, this.fieldset, h("div.form-actions", null, this.submitButton, this.stopWaiting), this.result);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    form.addEventListener("input", (e) => this.clearError(e.target.name));
    form.addEventListener("change", (e) => {
      this.clearError(e.target.name);
      if (e.target.name === "model_id") this.renderModelHint();
      if (e.target.name === "dataset_key") this.renderDatasetHint();
      if (e.target.name === "dry_run" || e.target.name === "async") this.renderButton();
    });

    const defaultModel = this.models.find((m) => !m.requires_weights) || this.models[0];
    if (defaultModel) this.controls.get("model_id").input.value = defaultModel.model_id;
    this.renderModelHint();
    this.renderDatasetHint();
    this.renderButton();

    return h("section.panel.submit-panel", { "aria-labelledby": "submit-title" },
      h("div.panel-head", null, h("h2#submit-title", null, "New run")),
      form);
  }

  schemaDefault(name, fallback) {
    const p = (schema.properties || {})[name];
    return p && p.default !== undefined ? p.default : fallback;
  }

  register(name, input, error, wrap) {
    this.controls.set(name, { input, error, wrap });
  }

  errorEl(name) {
    return h("p.field-error", { id: `err-${name}`, hidden: true, dataset: { testid: `error-${name}` } });
  }

  selectField(name, label, options) {
    const id = `f-${name}`;
    const hint = h("p.hint", { id: `hint-${name}` });
    const error = this.errorEl(name);
    const input = h("select", { id, name, required: true, "aria-describedby": `hint-${name} err-${name}` },
      options.map((o) => h("option", { value: o.value }, o.text)));
    const wrap = h("div.field.field-wide", { dataset: { field: name } }, h("label", { for: id }, label, h("span.req", { "aria-hidden": "true" }, " *")), input, hint, error);
    this.register(name, input, error, wrap);
    if (name === "model_id") this.modelHint = hint;
    if (name === "dataset_key") this.datasetHint = hint;
    return wrap;
  }

  toggle(name, label, onText, offText, checked) {
    const id = `f-${name}`;
    const hint = h("p.hint", { id: `hint-${name}` });
    const input = h("input", { id, name, type: "checkbox", role: "switch", checked: Boolean(checked), "aria-describedby": `hint-${name}` });
    const sync = () => { hint.textContent = input.checked ? onText : offText; };
    input.addEventListener("change", sync);
    sync();
    const error = this.errorEl(name);
    const wrap = h("div.toggle", { dataset: { field: name } },
      h("label.switch", { for: id }, input, h("span.switch-track", { "aria-hidden": "true" }), h("span.switch-label", null, label)),
      hint, error);
    this.register(name, input, error, wrap);
    return wrap;
  }

  field(d) {
    const info = FIELDS[d.name] || { label: d.title };
    const id = `f-${d.name}`;
    const error = this.errorEl(d.name);
    const limit = limitText(d);
    const hintParts = [`default ${defaultText(d, info)}`];
    if (limit) hintParts.push(limit);
    if (info.note) hintParts.push(info.note);
    const hint = h("p.hint", { id: `hint-${d.name}` }, hintParts.join(" · "));
    let input;
    if (d.enum) {
      input = h("select", { id, name: d.name, "aria-describedby": `hint-${d.name} err-${d.name}` },
        d.enum.map((v) => h("option", { value: v, selected: v === d.default }, String(v))));
    } else if (d.type === "boolean") {
      input = h("input", { id, name: d.name, type: "checkbox", checked: Boolean(d.default), "aria-describedby": `hint-${d.name} err-${d.name}` });
    } else {
      const numeric = d.type === "number" || d.type === "integer";
      input = h("input", {
        id, name: d.name, type: "text", autocomplete: "off", spellcheck: "false",
        inputmode: numeric ? (d.type === "integer" ? "numeric" : info.inputmode || "decimal") : undefined,
        placeholder: placeholderFor(d),
        "aria-describedby": `hint-${d.name} err-${d.name}`,
      });
    }
    input.dataset.kind = d.type;
    const labelEl = h("label", { for: id }, info.label || d.title, info.unit ? h("span.unit", null, ` (${info.unit})`) : null);
    const wrap = h("div.field", { dataset: { field: d.name } }, labelEl, input, hint, error);
    if (d.name === "learning_rate") {
      this.lrSuggest = h("p.hint.suggest", { hidden: true });
      wrap.insertBefore(this.lrSuggest, error);
    }
    this.register(d.name, input, error, wrap);
    return wrap;
  }

  renderModelHint() {
    const model = this.models.find((m) => m.model_id === this.controls.get("model_id").input.value);
    if (!model) { this.modelHint.textContent = ""; return; }
    const facts = [`${(model.param_count || 0).toLocaleString("en-US")} parameters`, model.dtype,
      model.max_seq_length ? `max sequence ${model.max_seq_length}` : null].filter(Boolean).join(" · ");
    this.modelHint.replaceChildren(h("span", null, model.description || ""), h("br"), h("span.muted", null, facts),
      ...(model.requires_weights ? [h("span.warn-text", null, " · needs its weights on disk ($WEIGHTS_DIR)")] : []));
    if (this.lrSuggest) {
      const lr = model.suggested_learning_rate;
      if (typeof lr === "number") {
        const use = h("button.link-button", { type: "button", onclick: () => {
          const ctl = this.controls.get("learning_rate");
          ctl.input.value = String(lr);
          this.clearError("learning_rate");
          ctl.input.focus();
        } }, "use it");
        this.lrSuggest.replaceChildren(`Suggested for ${model.model_id}: ${fmtNumber(lr, 6)} `, use);
        this.lrSuggest.hidden = false;
      } else {
        this.lrSuggest.hidden = true;
      }
    }
  }

  renderDatasetHint() {
    const ds = this.datasets.find((d) => d.key === this.controls.get("dataset_key").input.value);
    this.datasetHint.textContent = ds ? `${ds.description || ""}${ds.kind ? ` (${ds.kind})` : ""}` : "";
  }

  get asyncMode() {
    return this.controls.get("async").input.checked;
  }

  renderButton(waitingSince) {
    const dry = this.controls.get("dry_run").input.checked;
    if (waitingSince) {
      this.submitButton.replaceChildren(h("span.spinner", { "aria-hidden": "true" }), h("span", null, "Waiting for the run… "),
        h("span.elapsed", { dataset: { elapsedFrom: new Date(waitingSince).toISOString() } }, "0 ms"));
      return;
    }
    const what = dry ? "dry run" : "training";
    this.submitButton.replaceChildren(icon("play"), h("span", null, this.asyncMode ? `Queue ${what}` : `Run ${what} and wait`));
  }

  // ------------------------------------------------------------ values

  /** The request body: empty inputs are left out (the API fills defaults). */
  body() {
    const body = {};
    for (const [name, { input }] of this.controls) {
      if (name === "async") continue;
      if (input.type === "checkbox") {
        body[name] = input.checked;
        continue;
      }
      const raw = input.value.trim();
      if (raw === "") continue;
      const kind = input.dataset.kind;
      const value = (kind === "number" || kind === "integer") && NUMBER_RE.test(raw) ? Number(raw) : raw; // the API says what is wrong
      const [outer, inner] = name.split(".");
      if (inner) body[outer] = { ...(body[outer] || {}), [inner]: value };
      else body[name] = value;
    }
    // LoRA's other fields mean nothing without a rank.
    if (body.lora && body.lora.rank === undefined) delete body.lora;
    // A method's settings mean nothing under another method.
    for (const name of ["dpo", "grpo"]) if (body[name] && body.method !== name) delete body[name];
    return body;
  }

  /** Fill the form from a run's stored config ("Run again"). */
  prefill(config, runId) {
    const flat = {};
    for (const [name, value] of Object.entries(config || {})) {
      if (value && typeof value === "object" && !Array.isArray(value)) {
        for (const [inner, v] of Object.entries(value)) flat[`${name}.${inner}`] = v;
      } else flat[name] = value;
    }
    for (const [name, value] of Object.entries(flat)) {
      const ctl = this.controls.get(name);
      if (!ctl || value === null || value === undefined) continue;
      if (ctl.input.type === "checkbox") ctl.input.checked = Boolean(value);
      else ctl.input.value = String(value);
      ctl.input.dispatchEvent(new Event("change", { bubbles: true }));
    }
    const moreNames = [...this.moreDetails.querySelectorAll("[name]")].map((i) => i.name);
    if (moreNames.some((n) => flat[n] !== undefined && flat[n] !== null)) this.moreDetails.open = true;
    this.renderButton();
    this.showResult(h("p.muted", null, "Prefilled from run ", h("a", { href: `/runs/${runId}` }, shortId(runId)),
      ". Change anything, then start it."));
  }

  // ------------------------------------------------------------ errors

  clearError(name) {
    const ctl = this.controls.get(name);
    if (!ctl) return;
    ctl.error.hidden = true;
    ctl.error.textContent = "";
    ctl.input.removeAttribute("aria-invalid");
    ctl.wrap.classList.remove("has-error");
  }

  clearErrors() {
    for (const name of this.controls.keys()) this.clearError(name);
    this.formError.hidden = true;
    this.formError.replaceChildren();
  }

  showErrors(error) {
    showApiErrors(error, this.formError, "The API rejected the request", (field, message) => {
      const parts = String(field || "").split(".");
      const ctl = this.controls.get(parts.slice(0, 2).join(".")) || this.controls.get(parts[0]);
      if (!ctl) return null;
      ctl.error.hidden = false;
      ctl.error.textContent = ctl.error.textContent ? `${ctl.error.textContent}; ${message}` : message;
      ctl.input.setAttribute("aria-invalid", "true");
      ctl.wrap.classList.add("has-error");
      if (this.moreDetails.contains(ctl.wrap)) this.moreDetails.open = true;
      return ctl.input;
    });
  }

  showResult(...nodes) {
    this.result.replaceChildren(...nodes);
  }

  // ------------------------------------------------------------ submit

  setBusy(busy, since) {
    this.fieldset.disabled = busy;
    this.submitButton.disabled = busy;
    this.submitButton.setAttribute("aria-busy", busy ? "true" : "false");
    this.stopWaiting.hidden = !(busy && since);
    this.renderButton(busy ? since : null);
  }

  abortSync() {
    if (this.controller) this.controller.abort();
  }

  async submit() {
    if (this.submitButton.disabled) return;
    this.clearErrors();
    const body = this.body();
    const mode = this.asyncMode ? "async" : "sync";
    const since = mode === "sync" ? Date.now() : null;
    this.setBusy(true, since);
    this.controller = new AbortController();
    if (mode === "sync") {
      this.showResult();
      if (this.onSyncStarted) this.onSyncStarted();
    }
    let failure = null;
    try {
      const { status, data } = await api.submit(body, mode, { signal: this.controller.signal });
      this.onSubmitted(data, mode);
      if (mode === "sync") this.showRunResult(data, status);
      else this.showResult();
    } catch (exc) {
      if (exc && exc.name === "AbortError") {
        this.showResult(h("p.muted", null, "Stopped waiting. The run goes on: follow it in the history."));
      } else {
        failure = exc instanceof ApiError ? exc : new ApiError(0, { error: { message: String(exc) } });
      }
    } finally {
      this.controller = null;
      this.setBusy(false);
    }
    // After the form is enabled again, so the first bad field can take the focus.
    if (failure) this.showErrors(failure);
  }

  showRunResult(run, httpStatus) {
    const link = h("a.btn.btn-sm", { href: `/runs/${run.run_id}` }, "Open run");
    const facts = [];
    if (run.duration_seconds !== null && run.duration_seconds !== undefined) facts.push(`in ${fmtDuration(run.duration_seconds)}`);
    const result = run.result || {};
    if (typeof result.final_loss === "number") facts.push(`final loss ${fmtNumber(result.final_loss, 4)}`);
    if (result.kind === "dry_run" && result.param_count) facts.push(`${result.param_count.toLocaleString("en-US")} parameters resolved`);
    const err = run.error ? h("p.error-text", null, `${run.error.type || "Error"}: ${run.error.message || ""}`) : null;
    const still = httpStatus === 202 ? h("p.muted", null, "Still running after the API's wait limit; it goes on in the background.") : null;
    this.showResult(h("div.result-card", { dataset: { testid: "sync-result", runId: run.run_id } },
      h("div.result-line", null, badge(run.status), h("code", null, shortId(run.run_id)), h("span.muted", null, facts.join(" · ")), link),
      err, still));
  }
}
