// "Connection lost, retrying": one banner in the top bar fed by every poller
// and log stream of the page.

import { h, icon } from "./dom.js";

const sources = new Map(); // name -> {retryAt, retry}
let timer = null;

function banner() {
  return document.getElementById("conn");
}

function render() {
  const el = banner();
  if (!el) return;
  if (sources.size === 0) {
    el.hidden = true;
    el.replaceChildren();
    el.removeAttribute("data-state");
    clearInterval(timer);
    timer = null;
    return;
  }
  const retryAt = Math.min(...[...sources.values()].map((v) => v.retryAt || Date.now()));
  const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
  el.hidden = false;
  el.dataset.state = "lost";
  el.replaceChildren(
    icon("wifiOff"),
    h("span.conn-text", null, "Connection lost, retrying", seconds > 0 ? ` in ${seconds} s` : "…"),
    h("button.btn.btn-sm.btn-ghost", { type: "button", onclick: retryNow }, "Retry now"),
  );
  if (!timer) timer = setInterval(render, 1000);
}

function retryNow() {
  for (const { retry } of sources.values()) if (retry) retry();
}

/** A source failed; it will retry at `retryAt` (ms epoch) or when `retry()` is called. */
export function reportLost(name, retryAt, retry) {
  sources.set(name, { retryAt, retry });
  render();
}

/** A source got through: if nothing else is failing, the banner goes. */
export function reportOk(name) {
  if (sources.delete(name)) render();
}

export function isLost() {
  return sources.size > 0;
}
