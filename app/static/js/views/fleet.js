// "/fleet": every host and worker process with its heartbeat age (alive or
// lost), the runs each holds, and per queue its depth and oldest pending run.
// Polls GET /api/tunix/workers every 2 s while the tab is visible; between
// polls the ages keep counting, so a silent worker turns "lost" on time.

import { api } from "../api.js";
import { STATUS } from "../config.js";
import { h, icon, fmtDuration, shortId, timeEl } from "../dom.js";
import { Poller } from "../poller.js";
import { badge, progressBar, statusLabel } from "../status.js";

const POLL_MS = 2000;

function stateBadge(state) {
  const lost = state === "lost";
  return h(`span.badge.badge-${lost ? "lost" : "alive"}`,
    { dataset: { testid: "worker-state", state }, title: lost ? "No heartbeat for HEARTBEAT_TIMEOUT_S" : "Heartbeating" },
    icon(lost ? "alert" : "check", "icon badge-icon"), h("span.badge-text", null, lost ? "lost" : "alive"));
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return seconds < 1 ? "just now" : `${fmtDuration(seconds)} ago`;
}

function stat(label, value, testid) {
  return h("div.stat", null, h("span.stat-label", null, label),
    h("span.stat-value", { dataset: { testid } }, String(value)));
}

export function renderFleet(root) {
  document.title = "Fleet · Tunix RT";
  const summary = h("div.stat-tiles.fleet-summary", { dataset: { testid: "fleet-summary" } });
  const queues = h("section.panel", { "aria-labelledby": "queues-title" },
    h("div.panel-head", null, h("h2#queues-title", null, "Queues")),
    h("p.muted", null, "Loading…"));
  const hosts = h("div.fleet-hosts", { dataset: { testid: "fleet-hosts" } },
    h("section.panel.loading-panel", { "aria-busy": "true" }, h("span.spinner"), " Loading the fleet…"));
  const updated = h("span.updated.muted", { "aria-live": "off" });
  root.append(
    h("div.page-head", null,
      h("h1", null, "Fleet"),
      h("p.page-sub", null, "Every worker process, what it holds and what waits for one. ",
        "A process is ", h("strong", null, "lost"), " when its last heartbeat is older than ",
        h("span", { dataset: { testid: "heartbeat-timeout" } }, "…"), "."),
      updated),
    summary, queues, hosts);

  let timeout = null;
  let fetchedAt = 0; // performance.now() of the last answer
  let ages = []; // [{el, row, badgeCell, base}] heartbeat ages to keep fresh
  let destroyed = false;

  function renderQueues(list) {
    const rows = list.map((q) => h("tr", { dataset: { testid: "queue-row", queue: q.queue, kind: q.kind } },
      h("td", null, h("code", null, q.queue), " ", h("span.tag" + (q.kind === "train" ? ".tag-train" : ""), null, q.kind)),
      h("td.num", { dataset: { testid: "queue-depth" } }, String(q.depth)),
      h("td.num", { dataset: { testid: "queue-deferred" }, title: "waiting for admission (priority, fair share)" }, String(q.deferred)),
      h("td.num", { dataset: { testid: "queue-in-flight" } }, String(q.in_flight)),
      h("td.num", null, String(q.running)),
      h("td.num", { dataset: { testid: "queue-oldest" } },
        q.oldest_pending_age_s === null ? h("span.muted", null, "—") : fmtDuration(q.oldest_pending_age_s))));
    queues.replaceChildren(queues.firstChild, h("div.table-scroll", null, h("table.mini-table", null,
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Queue"), h("th.num", { scope: "col" }, "Depth"),
        h("th.num", { scope: "col" }, "Deferred"), h("th.num", { scope: "col" }, "In flight"), h("th.num", { scope: "col" }, "Running"),
        h("th.num", { scope: "col" }, "Oldest pending"))),
      h("tbody", null, rows))));
  }

  function runCell(runs) {
    if (!runs.length) return h("span.muted", null, "idle");
    return h("ul.held-runs", null, runs.map((run) => h("li.held-run", { dataset: { testid: "held-run", runId: run.run_id } },
      h("div.run-main", null, badge(run.status),
        h("a.run-link.mono", { href: `/runs/${run.run_id}`, dataset: { nav: "" }, title: run.run_id }, shortId(run.run_id)),
        h("span.run-sub", null, run.model_id, " · ", run.dataset_key, run.dry_run ? " · dry run" : " · training",
          run.attempts > 1 ? ` · attempt ${run.attempts}` : "")),
      run.dry_run ? null : progressBar({ step: run.step, total_steps: run.total_steps, loss: run.loss },
        { compact: true, status: run.status }))));
  }

  function renderHosts(list) {
    ages = [];
    if (!list.length) {
      hosts.replaceChildren(h("section.panel.empty-state", null, h("h2", null, "No worker process"),
        h("p.muted", null, "Start one with ", h("code", null, "python -m workers"), ": it appears here at its first heartbeat.")));
      return;
    }
    hosts.replaceChildren(...list.map((host) => {
      const rows = host.workers.map((w) => {
        const age = h("span.nowrap", { dataset: { testid: "heartbeat-age" } }, fmtAge(w.heartbeat_age_s));
        const stateCell = h("td.cell-state", null, stateBadge(w.state));
        const tr = h("tr.worker-row", { dataset: { testid: "worker-row", workerId: w.worker_id, state: w.state } },
          stateCell,
          h("td", null, h("span.mono", null, w.pid === null ? w.worker_id : `pid ${w.pid}`),
            w.started_at ? h("div.run-sub", null, "since ", timeEl(w.started_at, { compact: true })) : null),
          h("td", null, age),
          h("td.cell-held", null, runCell(w.runs)));
        if (w.heartbeat_age_s !== null) ages.push({ el: age, row: tr, cell: stateCell, base: w.heartbeat_age_s, state: w.state });
        return tr;
      });
      return h("section.panel.host-panel", { dataset: { testid: "host", hostname: host.hostname } },
        h("div.panel-head", null,
          h("h2", null, icon("play"), h("span.mono", null, host.hostname)),
          h("span.muted", { dataset: { testid: "host-counts" } },
            `${host.alive} alive`, host.lost ? ` · ${host.lost} lost` : "")),
        h("div.table-wrap", null, h("table.runs-table.fleet-table", null,
          h("thead", null, h("tr", null, h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Process"),
            h("th", { scope: "col" }, "Heartbeat"), h("th", { scope: "col" }, "Holds"))),
          h("tbody", null, rows))));
    }));
  }

  // Ages count on between polls; a worker whose age passes the timeout is
  // shown lost at once (the next poll confirms it).
  function tick() {
    if (!fetchedAt) return;
    const elapsed = (performance.now() - fetchedAt) / 1000;
    for (const item of ages) {
      const age = item.base + elapsed;
      item.el.textContent = fmtAge(age);
      if (item.state === "alive" && timeout !== null && age >= timeout) {
        item.state = "lost";
        item.row.dataset.state = "lost";
        item.cell.replaceChildren(stateBadge("lost"));
      }
    }
  }
  const clock = setInterval(tick, 250);

  async function poll() {
    const data = await api.fleet();
    if (destroyed) return;
    fetchedAt = performance.now();
    timeout = data.heartbeat_timeout_s;
    root.querySelector('[data-testid="heartbeat-timeout"]').textContent = `${timeout} s (HEARTBEAT_TIMEOUT_S)`;
    const t = data.totals;
    summary.replaceChildren(stat("hosts", t.hosts, "total-hosts"), stat("alive", t.alive, "total-alive"),
      stat("lost", t.lost, "total-lost"), stat("runs held", t.runs_held, "total-held"),
      stat("queued", t.depth, "total-depth"), stat(statusLabel(STATUS.DEFERRED), t.deferred, "total-deferred"),
      stat("in flight", t.in_flight, "total-in-flight"));
    renderQueues(data.queues);
    renderHosts(data.hosts);
    updated.replaceChildren("Updated ", timeEl(data.generated_at));
  }

  const poller = new Poller({ name: "fleet-poll", intervalMs: POLL_MS, tick: poll, wanted: () => !destroyed });
  poller.poke();

  return {
    destroy() {
      destroyed = true;
      clearInterval(clock);
      poller.stop();
    },
  };
}
