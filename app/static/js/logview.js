// The live log of a run: SSE from /api/tunix/runs/<id>/logs, resumed from
// the last line seen after a break, auto-scroll that pauses when you scroll
// up (or press Pause) and picks up again at the bottom.

import { streamEvents } from "./api.js";
import { reportLost, reportOk } from "./connection.js";
import { h, icon } from "./dom.js";

/** Lines kept on the page; older ones are dropped from view (the run directory has them all). */
const MAX_LINES = 5000;

export class LogView {
  constructor(runId, { onProgress, onStatus } = {}) {
    this.runId = runId;
    this.onProgress = onProgress;
    this.onStatus = onStatus;
    this.lastSeq = 0;
    this.count = 0;
    this.dropped = 0;
    this.follow = true;
    this.pendingLines = [];
    this.unseen = 0;
    this.failures = 0;
    this.ended = false;
    this.name = `log-${runId}`;

    this.state = h("span.live-state", { dataset: { state: "connecting" } }, "connecting…");
    this.counter = h("span.muted.log-count", { dataset: { testid: "log-count" } }, "0 lines");
    this.followButton = h("button.btn.btn-sm", { type: "button", dataset: { testid: "log-follow" }, onclick: () => this.setFollow(!this.follow) });
    this.wrapButton = h("button.btn.btn-sm.btn-ghost", { type: "button", "aria-pressed": "true", onclick: () => this.toggleWrap() }, "Wrap lines");
    this.body = h("div.log-body.wrap", { role: "log", tabindex: "0", "aria-label": "Run log", dataset: { testid: "log-lines" } });
    this.placeholder = h("p.log-empty.muted", null, "Waiting for output…");
    this.body.append(this.placeholder);
    this.jump = h("button.btn.btn-sm.jump-latest", { type: "button", hidden: true, onclick: () => this.setFollow(true) }, icon("arrowDown"), h("span", null, "Latest"));
    this.el = h("div.logview", null,
      h("div.log-toolbar", null, this.state, this.counter, h("div.log-actions", null, this.wrapButton, this.followButton)),
      h("div.log-frame", null, this.body, this.jump));
    this.renderFollow();
    this.body.addEventListener("scroll", () => this.onScroll(), { passive: true });
    const input = () => { this.inputAt = performance.now(); };
    for (const type of ["pointerdown", "touchstart", "touchmove", "keydown", "wheel"]) {
      this.body.addEventListener(type, input, { passive: true });
    }
    // Intent to read back pauses following at once, even while lines pour in.
    this.body.addEventListener("wheel", (e) => {
      if (e.deltaY < 0 && this.follow) this.setFollow(false);
    }, { passive: true });
    this.body.addEventListener("keydown", (e) => {
      if (e.key === "End") this.setFollow(true);
      else if (["PageUp", "ArrowUp", "Home"].includes(e.key) && this.follow) this.setFollow(false);
    });
    this.onVisible = () => {
      if (!document.hidden && !this.ended && !this.controller) this.start();
    };
    document.addEventListener("visibilitychange", this.onVisible);
  }

  // ------------------------------------------------------------ stream

  start() {
    if (this.controller || this.destroyed) return;
    clearTimeout(this.retryTimer);
    this.ended = false;
    const controller = new AbortController();
    this.controller = controller;
    this.setState("connecting", "connecting…");
    streamEvents(`/api/tunix/runs/${encodeURIComponent(this.runId)}/logs`, {
      since: this.lastSeq,
      signal: controller.signal,
      onOpen: () => {
        this.failures = 0;
        reportOk(this.name);
        this.setState("live", "live");
      },
      onEvent: (ev) => this.onEvent(ev),
    }).then(() => {
      if (this.controller !== controller) return;
      this.controller = null;
      if (this.ended) {
        this.setState("ended", "ended");
      } else {
        // Closed without a final status (a proxy, a restart): pick up where we were.
        this.retryTimer = setTimeout(() => this.start(), 1000);
      }
      this.finishPlaceholder();
    }).catch((exc) => {
      if (this.controller !== controller) return;
      this.controller = null;
      if (controller.signal.aborted || this.destroyed) return;
      if (exc && exc.status === 404) {
        this.setState("ended", "not found");
        return;
      }
      this.failures += 1;
      const delay = Math.min(30000, 1000 * 2 ** this.failures) * (0.85 + Math.random() * 0.3);
      this.setState("retrying", "reconnecting…");
      // A 503 "too many streams" is the server's choice, not a lost connection.
      if (!exc || exc.status === 0 || exc.status === undefined || (exc.status >= 500 && exc.status !== 503)) {
        reportLost(this.name, Date.now() + delay, () => { clearTimeout(this.retryTimer); this.start(); });
      }
      if (!document.hidden) this.retryTimer = setTimeout(() => this.start(), delay);
    });
  }

  /** The run was resumed: a finished stream opens again from the last line seen. */
  restart() {
    if (this.controller) return;
    this.ended = false;
    this.start();
  }

  stop() {
    clearTimeout(this.retryTimer);
    if (this.controller) {
      const c = this.controller;
      this.controller = null;
      c.abort();
    }
    reportOk(this.name);
  }

  destroy() {
    this.destroyed = true;
    this.stop();
    document.removeEventListener("visibilitychange", this.onVisible);
  }

  onEvent({ event, data, id }) {
    if (event === "log") {
      const seq = Number(id || (data && data.seq) || 0);
      if (seq && seq <= this.lastSeq) return; // replayed after a reconnect
      if (seq) this.lastSeq = seq;
      this.queue(data);
    } else if (event === "progress") {
      if (this.onProgress) this.onProgress(data);
    } else if (event === "status") {
      this.ended = true;
      this.setState("ended", "ended");
      if (this.onStatus) this.onStatus(data);
    }
  }

  setState(state, text) {
    this.state.dataset.state = state;
    this.state.textContent = text;
    // Following only matters while lines can still arrive.
    this.followButton.hidden = state === "ended";
  }

  // ------------------------------------------------------------ lines

  queue(data) {
    this.pendingLines.push(data);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = null;
    const lines = this.pendingLines;
    this.pendingLines = [];
    if (!lines.length) return;
    this.placeholder.remove();
    const frag = document.createDocumentFragment();
    for (const line of lines) {
      const stream = (line && line.stream) || "stdout";
      frag.append(h(`div.log-line.log-${stream}`, { dataset: { seq: String(line.seq || "") } },
        h("span.log-seq", { "aria-hidden": "true" }, String(line.seq || "")),
        stream === "stderr" ? h("span.log-stream", null, "err") : null,
        h("span.log-text", null, line && line.line !== undefined ? line.line : String(line))));
    }
    this.body.append(frag);
    this.count += lines.length;
    const excess = this.body.childElementCount - MAX_LINES;
    for (let i = 0; i < excess; i += 1) this.body.firstElementChild.remove();
    if (excess > 0) this.dropped += excess;
    this.counter.textContent = `${this.count.toLocaleString("en-US")} line${this.count === 1 ? "" : "s"}${this.dropped ? ` (oldest ${this.dropped.toLocaleString("en-US")} hidden)` : ""}`;
    if (this.follow) this.scrollToEnd();
    else {
      this.unseen += lines.length;
      this.jump.hidden = false;
      this.jump.lastChild.textContent = `${this.unseen.toLocaleString("en-US")} new`;
    }
  }

  finishPlaceholder() {
    if (this.count === 0) this.placeholder.textContent = "No log lines. Dry runs and runs that never started write none.";
  }

  scrollToEnd() {
    this.body.scrollTo({ top: this.body.scrollHeight, behavior: "instant" });
    this.ownScrollTop = this.body.scrollTop;
    this.lastTop = this.ownScrollTop;
  }

  onScroll() {
    const top = this.body.scrollTop;
    const movedUp = top < (this.lastTop ?? top) - 1;
    const movedDown = top > (this.lastTop ?? top) + 1;
    this.lastTop = top;
    // Our own scroll to the end is not a reader's move; neither is the
    // browser's (layout, clamping): only a scroll soon after input counts.
    if (Math.abs(top - this.ownScrollTop) < 2) return;
    const byReader = performance.now() - (this.inputAt || -Infinity) < 1500;
    const atBottom = this.body.scrollHeight - top - this.body.clientHeight < 24;
    // Any move up pauses (a smooth scroll starts near the bottom: "at the
    // bottom" alone would undo it); coming back down to the end resumes.  A
    // scroll event that moved nowhere (the end of a smooth scroll settling,
    // a short log that barely scrolls and is always "at the bottom") does
    // not: it resumed following right after a PageUp, and the Follow click
    // that came next paused it again.
    if (movedUp && byReader && this.follow) this.setFollow(false);
    else if (movedDown && atBottom && !this.follow) this.setFollow(true);
  }

  setFollow(on) {
    this.follow = on;
    this.renderFollow();
    if (on) {
      // Asked for: what is left of an earlier scroll (a keyboard's smooth
      // scroll still running) must not pause it again as a reader's move.
      this.inputAt = -Infinity;
      this.unseen = 0;
      this.jump.hidden = true;
      this.scrollToEnd();
    }
  }

  renderFollow() {
    this.followButton.dataset.following = this.follow ? "true" : "false";
    this.followButton.replaceChildren(this.follow ? "Pause scrolling" : "Follow");
    this.followButton.title = this.follow ? "Stop scrolling to new lines" : "Scroll to new lines as they arrive";
  }

  toggleWrap() {
    const on = !this.body.classList.contains("wrap");
    this.body.classList.toggle("wrap", on);
    this.wrapButton.setAttribute("aria-pressed", on ? "true" : "false");
  }
}
