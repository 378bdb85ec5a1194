// A polling loop that is polite: a fixed pace while there is something to
// watch, exponential back-off (with jitter) while the API cannot be reached,
// silence while the tab is hidden or nothing is active.

import { reportLost, reportOk } from "./connection.js";

let counter = 0;

export class Poller {
  /**
   * @param {() => Promise<void>} tick  one round of requests; throws ApiError when the API is unreachable
   * @param {() => boolean} wanted      whether to keep polling after a round
   * @param {number} intervalMs         pace while healthy (2–4 s)
   */
  constructor({ tick, wanted, intervalMs = 2500, maxDelayMs = 30000, name }) {
    this.tick = tick;
    this.wanted = wanted;
    this.intervalMs = intervalMs;
    this.maxDelayMs = maxDelayMs;
    this.name = name || `poller-${++counter}`;
    this.failures = 0;
    this.timer = null;
    this.inFlight = null;
    this.stopped = false;
    this.onVisibility = () => {
      if (document.hidden) this.pause();
      else this.poke();
    };
    document.addEventListener("visibilitychange", this.onVisibility);
  }

  get running() {
    return this.timer !== null || this.inFlight !== null;
  }

  /** Poll now (if anything is wanted) and keep going. */
  poke() {
    if (this.stopped || document.hidden) return;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    if (!this.wanted()) {
      reportOk(this.name);
      return;
    }
    this.inFlight = this.round().finally(() => {
      this.inFlight = null;
      if (this.again) {
        this.again = false;
        this.poke();
      }
    });
  }

  async round() {
    let delay = this.intervalMs;
    try {
      await this.tick();
      this.failures = 0;
      reportOk(this.name);
    } catch (exc) {
      if (!exc || !exc.transient) {
        // Not a connection problem (a 404, a bug): keep the normal pace.
        console.warn("poll failed", exc);
      } else {
        this.failures += 1;
        const backoff = Math.min(this.maxDelayMs, this.intervalMs * 2 ** this.failures);
        delay = backoff * (0.85 + Math.random() * 0.3);
        reportLost(this.name, Date.now() + delay, () => this.poke());
      }
    }
    if (this.stopped || document.hidden) return;
    if (this.failures === 0 && !this.wanted()) return; // idle: nothing active
    this.timer = setTimeout(() => {
      this.timer = null;
      this.poke();
    }, delay);
  }

  pause() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  stop() {
    this.stopped = true;
    this.pause();
    reportOk(this.name);
    document.removeEventListener("visibilitychange", this.onVisibility);
  }
}
