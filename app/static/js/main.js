// Entry point: the router (/, /runs/<id>, /fleet, /sweeps, /sweeps/<id>, /compare), the token dialog, toasts
// and the clocks that keep relative times and running durations fresh.

import { getToken, onApiEvent, setToken } from "./api.js";
import { h, icon, tickTimes, fmtDuration } from "./dom.js";
import { renderFleet } from "./views/fleet.js";
import { renderHome } from "./views/home.js";
import { renderRun } from "./views/run.js";
import { renderCompare, renderSweep, renderSweeps } from "./views/sweeps.js";

const main = document.getElementById("main");

const ROUTES = [
  [/^\/$/, () => renderHome],
  [/^\/fleet\/?$/, () => renderFleet],
  [/^\/sweeps\/?$/, () => renderSweeps],
  [/^\/sweeps\/([^/]+)\/?$/, (m) => (root, ctx) => renderSweep(root, { ...ctx, sweepId: decodeURIComponent(m[1]) })],
  [/^\/compare\/?$/, () => renderCompare],
  [/^\/runs\/([^/]+)\/?$/, (m) => (root, ctx) => renderRun(root, { ...ctx, runId: decodeURIComponent(m[1]) })],
];

let current = null;

function match(pathname) {
  for (const [re, make] of ROUTES) {
    const m = pathname.match(re);
    if (m) return make(m);
  }
  return null;
}

function notFound(root) {
  root.append(h("section.panel.empty-state", null,
    h("h1", null, "Page not found"),
    h("p.muted", null, "Nothing lives at this address."),
    h("a.btn", { href: "/", dataset: { nav: "" } }, icon("arrowLeft"), "All runs")));
  return { destroy() {} };
}

function render({ focus = false } = {}) {
  if (current && current.destroy) current.destroy();
  main.replaceChildren();
  const view = match(location.pathname) || notFound;
  current = view(main, { navigate, toast }) || null;
  if (focus) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }
  markNav();
}

function markNav() {
  for (const a of document.querySelectorAll(".topnav a[data-nav]")) {
    const path = new URL(a.href).pathname;
    const here = path === "/" ? location.pathname === "/" || location.pathname.startsWith("/runs/")
      : location.pathname === path || location.pathname.startsWith(`${path}/`);
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

export function navigate(url, { replace = false } = {}) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin || !match(target.pathname)) {
    location.href = target.href;
    return;
  }
  if (replace) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
  render({ focus: true });
}

// Same-origin links to a console page change the view without reloading.
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname)) return;
  event.preventDefault();
  if (url.pathname === location.pathname && url.search === location.search) return;
  navigate(url);
});

window.addEventListener("popstate", () => render({ focus: true }));

// ---------------------------------------------------------------- toasts

const toasts = document.getElementById("toasts");

export function toast(message, { kind = "info", link, timeoutMs = 5000 } = {}) {
  const close = h("button.toast-close", { type: "button", "aria-label": "Dismiss" }, "×");
  const el = h(`div.toast.toast-${kind}`, { dataset: { testid: "toast" } },
    icon(kind === "error" ? "alert" : kind === "success" ? "check" : "clock"),
    h("span.toast-text", null, message),
    link ? h("a", { href: link.href, dataset: { nav: "" } }, link.text) : null,
    close);
  const remove = () => el.remove();
  close.addEventListener("click", remove);
  toasts.append(el);
  if (timeoutMs) setTimeout(remove, timeoutMs);
  return el;
}

// ---------------------------------------------------------------- token

const tokenButton = document.getElementById("token-button");
const tokenDialog = document.getElementById("token-dialog");
const tokenInput = document.getElementById("token-input");

function renderTokenButton() {
  const set = Boolean(getToken());
  tokenButton.classList.toggle("token-set", set);
  tokenButton.setAttribute("aria-label", set ? "API token (set)" : "API token (not set)");
  tokenButton.querySelector(".token-label").textContent = set ? "Token set" : "Token";
}

function openTokenDialog() {
  tokenInput.value = getToken();
  if (typeof tokenDialog.showModal === "function") tokenDialog.showModal();
  tokenInput.focus();
}

tokenButton.addEventListener("click", openTokenDialog);
tokenDialog.addEventListener("close", () => {
  if (tokenDialog.returnValue === "save") {
    setToken(tokenInput.value.trim());
    toast(tokenInput.value.trim() ? "Token saved in this browser" : "Token cleared", { kind: "success" });
  } else if (tokenDialog.returnValue === "clear") {
    setToken("");
    toast("Token forgotten", { kind: "success" });
  }
  tokenButton.focus();
});

onApiEvent((event) => {
  if (event.type === "token") renderTokenButton();
  if (event.type === "unauthorized") {
    toast(getToken() ? "The API rejected the token: check it." : "This API needs a token for changes.", { kind: "error" });
    openTokenDialog();
  }
});

// ---------------------------------------------------------------- clocks

setInterval(() => {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-elapsed-from]")) {
    const from = Date.parse(el.dataset.elapsedFrom);
    if (!Number.isNaN(from)) el.textContent = fmtDuration((now - from) / 1000);
  }
}, 1000);
setInterval(() => tickTimes(document), 10000);

renderTokenButton();
render();
