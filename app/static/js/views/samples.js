// The run page's "Samples" panel: what the run's checkpoints generate.
// A small form asks for one (prompt, step, tokens, temperature); the list
// shows the run's samples, newest first, prompt -> text, refreshed while
// any is pending or running.  Generation happens on a worker, never here.

import { request, ApiError } from "../api.js";
import { h, timeEl } from "../dom.js";

const POLL_MS = 1500;
const runPath = (runId) => `runs/${encodeURIComponent(runId)}/samples`;

export function samplesPanel(runId, { toast }) {
  let destroyed = false;
  let timer = null;
  let steps = [];

  const prompt = h("textarea#sample-prompt", { rows: 2, maxLength: 4000, required: true, placeholder: "A prompt, as the training saw them",
    dataset: { testid: "sample-prompt" } });
  const step = h("select#sample-step", { dataset: { testid: "sample-step" } }, h("option", { value: "" }, "latest"));
  const tokens = h("input#sample-tokens", { type: "number", min: 1, max: 512, value: 64 });
  const temperature = h("input#sample-temperature", { type: "number", min: 0, max: 2, step: 0.1, value: 0 });
  const submit = h("button.btn.btn-primary.btn-sm", { type: "submit", dataset: { testid: "sample-submit" } }, "Sample");
  const note = h("p.muted.small", { dataset: { testid: "sample-note" } });
  const form = h("form.sample-form", { onsubmit: ask },
    h("label", { for: "sample-prompt" }, "Prompt"), prompt,
    h("div.sample-params", null,
      h("label", { for: "sample-step" }, "Step ", step),
      h("label", { for: "sample-tokens" }, "Tokens ", tokens),
      h("label", { for: "sample-temperature", title: "0 is greedy" }, "Temperature ", temperature),
      submit),
    note);
  const list = h("div", { dataset: { testid: "samples" } }, h("p.muted", null, "Loading…"));
  const el = h("section.panel", { id: "samples", "aria-labelledby": "samples-title" },
    h("div.panel-head", null, h("h2", { id: "samples-title" }, "Samples")), form, list);

  /** The recorded steps (from the run page's checkpoint listing): the form offers them. */
  function setSteps(recorded) {
    steps = recorded.slice().sort((a, b) => b - a);
    const chosen = step.value;
    step.replaceChildren(h("option", { value: "" }, "latest"), ...steps.map((s) => h("option", { value: String(s) }, String(s))));
    step.value = steps.includes(Number(chosen)) ? chosen : "";
    submit.disabled = !steps.length;
    note.textContent = steps.length ? "" : "A sample needs a recorded checkpoint; this run has none yet.";
  }

  async function ask(event) {
    event.preventDefault();
    const body = { prompts: [prompt.value], max_new_tokens: Number(tokens.value), temperature: Number(temperature.value) };
    if (step.value !== "") body.step = Number(step.value);
    submit.disabled = true;
    try {
      await request("POST", runPath(runId), { body });
      toast("Sample asked for: a worker generates it", { kind: "success" });
      await refresh();
    } catch (exc) {
      const fields = exc instanceof ApiError && exc.fields.length ? `: ${exc.fields.map((f) => `${f.field} ${f.message}`).join("; ")}` : "";
      toast(`Sample refused: ${exc.message}${fields}`, { kind: "error" });
    } finally {
      submit.disabled = !steps.length;
    }
  }

  function row(sample) {
    const p = sample.params;
    const head = h("div.sample-head.muted.small", null,
      `step ${sample.step} · ${p.max_new_tokens} tokens · temperature ${p.temperature} · seed ${p.seed} · `,
      h("span", { dataset: { testid: "sample-status" } }, sample.status), " · ", timeEl(sample.created_at, { compact: true }));
    // A sample's statuses, not a run's: spelled as tasks/sample_spec.py spells them.
    const outputs = sample.status === "completed"  // not a run status
      ? sample.outputs.map((o) => h("div.sample-output", null, h("div.sample-prompt", null, o.prompt), h("pre.sample-text", null, o.text)))
      : sample.status === "failed"  // not a run status
        ? [h("p.error-text", null, (sample.error && sample.error.message) || "failed")]  // not a run status
        : p.prompts.map((text) => h("div.sample-output", null, h("div.sample-prompt", null, text), h("p.muted", null, "waiting for a worker…")));
    return h("article.sample", { dataset: { sampleId: sample.sample_id } }, head, ...outputs);
  }

  async function refresh() {
    clearTimeout(timer);
    const { data } = await request("GET", runPath(runId));
    if (destroyed) return;
    const samples = data.data;
    list.replaceChildren(...(samples.length ? samples.map(row) : [h("p.muted", null, "None yet.")]));
    if (samples.some((s) => s.status === "pending" || s.status === "running")) {  // not a run status: a sample's
      timer = setTimeout(() => refresh().catch(() => {}), POLL_MS);
    }
  }

  setSteps([]);
  return { el, refresh, setSteps, destroy() { destroyed = true; clearTimeout(timer); } };
}
