// "/": the submit form next to the live run history.

import { api } from "../api.js";
import { h, shortId } from "../dom.js";
import { SubmitForm, prefillFromRun } from "./form.js";
import { RunHistory } from "./history.js";

export function renderHome(root, { toast }) {
  document.title = "Runs · Tunix RT";
  const grid = h("div.home-grid", null, h("section.panel.loading-panel", { "aria-busy": "true" }, h("span.spinner"), " Loading the catalog…"));
  root.append(
    h("div.page-head", null,
      h("div", null,
        h("h1", null, "Training runs"),
        h("p.page-sub", null, "Submit a Tunix post-training job and watch it go ",
          h("span.flow", null, "pending → running → completed"), "."))),
    grid);

  let history = null;
  let destroyed = false;

  (async function start() {
    let datasets, models;
    for (let attempt = 0; ; attempt += 1) {
      try {
        [datasets, models] = await Promise.all([api.datasets(), api.models()]);
        break;
      } catch (exc) {
        if (destroyed) return;
        grid.replaceChildren(h("section.panel.error-panel", { role: "alert" },
          h("p", null, "The catalog could not be loaded: ", exc.message, "."),
          h("p.muted", null, "Retrying…")));
        await new Promise((r) => setTimeout(r, Math.min(30000, 1000 * 2 ** attempt)));
        if (destroyed) return;
      }
    }
    if (destroyed) return;

    history = new RunHistory({ datasets, models });
    const form = new SubmitForm({
      datasets,
      models,
      toast,
      onSyncStarted: () => history.reloadSoon(400),
      onSubmitted: (run, mode) => {
        history.addSubmitted(run);
        if (mode === "async") {
          toast(`Run ${shortId(run.run_id)} queued`, { kind: "success", link: { href: `/runs/${run.run_id}`, text: "Open" } });
        }
      },
    });
    grid.replaceChildren(form.el, history.el);
    history.load();

    await prefillFromRun(form, toast, () => !destroyed);
  })();

  return {
    destroy() {
      destroyed = true;
      if (history) history.destroy();
    },
  };
}
