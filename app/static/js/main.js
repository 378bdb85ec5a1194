// Entry point: the router (/, /runs/<id>, /fleet, /sweeps, /sweeps/new, /sweeps/<id>, /compare), the token dialog, toasts
// and the clocks that keep relative times and running durations fresh.

import { api, ApiError, getToken, onApiEvent, setToken } from "./api.js";
import { h, icon, tickTimes, fmtDuration } from "./dom.js";
import { renderFleet } from "./views/fleet.js";
import { renderHome } from "./views/home.js";
import { renderRun } from "./views/run.js";
import { renderCompare, renderSweep, renderSweeps } from "./views/sweeps.js";
import { renderSweepForm } from "./views/sweep_form.js";

const main = document.getElementById("main");

const ROUTES = [
  [/^\/$/, () => renderHome],
  [/^\/fleet\/?$/, () => renderFleet],
  [/^\/sweeps\/?$/, () => renderSweeps],
  [/^\/sweeps\/new\/?$/, () => renderSweepForm],
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
// The console asks for a token once, when the API first answers 401 (a
// modal <dialog>: the browser traps the focus in it and Escape closes it),
// keeps it in localStorage, and says in the top bar whom it acts as
// (GET /api/tunix/me).  "Sign out" forgets it.  A 403 is the views' to show:
// they put the API's message in their toast or form error.

const tokenButton = document.getElementById("token-button");
const tokenDialog = document.getElementById("token-dialog");
const tokenInput = document.getElementById("token-input");
const tokenWhy = document.getElementById("token-why");
const whoami = document.getElementById("whoami");
const signoutButton = document.getElementById("signout-button");

// Whether the dialog was opened for a 401 since the token last changed:
// asked once, not on every poll.
let asked = false;
// Whether a read was refused (401): the view is drawn again once a token is
// saved (not otherwise: a form being filled in stays as it is).
let readRefused = false;
let whoRequest = 0;

function renderTokenButton() {
  const set = Boolean(getToken());
  tokenButton.classList.toggle("token-set", set);
  tokenButton.setAttribute("aria-label", set ? "API token (set)" : "API token (not set)");
  tokenButton.querySelector(".token-label").textContent = set ? "Token set" : "Token";
}

/** The top bar's "who": the user and role, "API token", "open installation" or "not signed in". */
async function renderWho() {
  const mine = ++whoRequest;
  let text;
  let state;
  let signedIn = false;
  try {
    const me = await api.me();
    if (me.name) [text, state, signedIn] = [`${me.name} (${me.role})`, "user", true];
    else if (me.via === "API_TOKEN") [text, state, signedIn] = ["API token", "user", true];
    else if (me.auth === "open") [text, state] = ["open installation", "open"];
    else [text, state] = ["not signed in", "out"]; // API_TOKEN without API_TOKEN_READS: reads are open
  } catch (exc) {
    if (!(exc instanceof ApiError) || exc.status !== 401) {
      if (mine === whoRequest) whoami.hidden = true;
      return;
    }
    [text, state] = ["not signed in", "out"];
  }
  if (mine !== whoRequest) return; // a newer answer (the token changed meanwhile) wins
  whoami.textContent = text;
  whoami.dataset.state = state;
  whoami.title = state === "user" ? `Signed in as ${text}` : "";
  whoami.hidden = false;
  // Signed in: the name and "Sign out" say it all; otherwise the token button offers to sign in.
  tokenButton.hidden = signedIn;
  signoutButton.hidden = !getToken();
}

function openTokenDialog(why = "") {
  if (tokenDialog.open) return;
  // Escape closes the dialog without touching returnValue: clear the last one.
  tokenDialog.returnValue = "";
  tokenWhy.textContent = why;
  tokenWhy.hidden = !why;
  tokenInput.value = getToken();
  if (typeof tokenDialog.showModal === "function") tokenDialog.showModal();
  tokenInput.focus();
}

function focusTopbar() {
  (tokenButton.hidden ? signoutButton : tokenButton).focus();
}

/** After the token changed: who we are now, then the view drawn again if it was refused. */
async function tokenChanged({ redraw, ask }) {
  asked = !ask;
  readRefused = false;
  if (redraw) render();
  await renderWho();
  focusTopbar();
}

function signOut() {
  setToken("");
  toast("Signed out: the token is forgotten in this browser", { kind: "success" });
  // Signed out on purpose: the page says "not signed in" and offers the
  // token button rather than asking again straight away.
  tokenChanged({ redraw: true, ask: false });
}

// Enter in the field saves: the form's implicit submission would press its
// first button, "Forget".
tokenInput.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.isComposing) return;
  event.preventDefault();
  tokenDialog.close("save");
});
tokenButton.addEventListener("click", () => openTokenDialog());
signoutButton.addEventListener("click", signOut);
tokenDialog.addEventListener("close", () => {
  const value = tokenInput.value.trim();
  tokenInput.value = "";
  if (tokenDialog.returnValue === "save" && value) {
    setToken(value);
    toast("Token saved in this browser", { kind: "success" });
    tokenChanged({ redraw: readRefused, ask: true });
  } else if (getToken() && (tokenDialog.returnValue === "clear" || tokenDialog.returnValue === "save")) {
    signOut();
  } else {
    focusTopbar();
  }
});

onApiEvent((event) => {
  if (event.type === "token") renderTokenButton();
  if (event.type === "unauthorized" && !event.stale) {
    if (event.method === "GET") readRefused = true;
    if (asked || tokenDialog.open) return;
    asked = true;
    const message = event.error && event.error.message;
    openTokenDialog(getToken() ? `The API refused the saved token: ${message}` : `This installation needs a token: ${message}`);
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
renderWho();
render();
