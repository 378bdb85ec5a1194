// The console's only way to the server: the public JSON API.

const TOKEN_KEY = "tunix-rt.api-token";
const BASE = "/api/tunix";

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* private mode: the token lives for this page only */ }
  listeners.forEach((fn) => fn({ type: "token" }));
}

const listeners = new Set();
/** Subscribe to API-wide events ({type: "token"} | {type: "unauthorized", error, method, stale}). */
export function onApiEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** An answer other than 2xx: the API's {"error": {code, message, fields}}. */
export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || (status ? `http_${status}` : "network_error");
    this.fields = Array.isArray(err.fields) ? err.fields : [];
    this.body = body;
  }

  /** True when the server could not be reached or answered 5xx: worth retrying. */
  get transient() {
    return this.status === 0 || this.status >= 500;
  }
}

function headers(extra) {
  const out = { Accept: "application/json", ...extra };
  const token = getToken();
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

/** Query parameters onto `url`: empty ones left out, an array repeated (`tag=a&tag=b`). */
export function appendParams(url, params) {
  for (const [k, v] of Object.entries(params || {})) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (one !== undefined && one !== null && one !== "") url.searchParams.append(k, one);
    }
  }
  return url;
}

export async function request(method, path, { body, params, signal, timeoutMs } = {}) {
  const sentToken = getToken();
  const url = new URL(path.startsWith("/") ? path : `${BASE}/${path}`, location.origin);
  appendParams(url, params);
  const controller = new AbortController();
  const abort = () => controller.abort(signal && signal.reason);
  if (signal) {
    if (signal.aborted) abort();
    else signal.addEventListener("abort", abort, { once: true });
  }
  const timer = timeoutMs ? setTimeout(() => controller.abort(new DOMException("the request timed out", "TimeoutError")), timeoutMs) : null;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}),
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: controller.signal,
      cache: "no-store",
    });
  } catch (exc) {
    if (signal && signal.aborted) throw exc;
    throw new ApiError(0, { error: { code: "network_error", message: "the API could not be reached" } });
  } finally {
    if (timer) clearTimeout(timer);
    if (signal) signal.removeEventListener("abort", abort);
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401) {
      // stale: the token changed while the request was out; its 401 says nothing about the new one.
      const stale = sentToken !== getToken();
      listeners.forEach((fn) => fn({ type: "unauthorized", error, method, stale }));
    }
    throw error;
  }
  return { status: response.status, data, headers: response.headers };
}

export const api = {
  /** Who the token acts as, and the installation's mode (users, token, open). */
  me: (opts) => request("GET", "me", opts).then((r) => r.data),
  datasets: (opts) => request("GET", "datasets", opts).then((r) => r.data.data),
  models: (opts) => request("GET", "models", opts).then((r) => r.data.data),
  runs: (params, opts) => request("GET", "runs", { ...opts, params }).then((r) => r.data),
  run: (id, opts) => request("GET", `runs/${encodeURIComponent(id)}`, opts).then((r) => r.data),
  /** Change a run's name, tags or notes (those sent): its owner's or an admin's (403 otherwise). */
  updateRun: (id, body) => request("PATCH", `runs/${encodeURIComponent(id)}`, { body }).then((r) => r.data),
  status: (id, opts) => request("GET", `runs/${encodeURIComponent(id)}/status`, opts).then((r) => r.data),
  metrics: (id, opts) => request("GET", `runs/${encodeURIComponent(id)}/metrics`, opts).then((r) => r.data.data),
  /** Runs' curves of one metric, downsampled to ``points`` (each bucket's extremes kept), within [from, to] when
   * given: the whole answer (``metrics`` names what a chart of them can draw), or ``series`` its curves alone. */
  seriesAnswer: (ids, { metric = "loss", points = 200, from = null, to = null } = {}) => request("POST", "runs/series",
    { body: { run_ids: ids, metric, points, ...(from === null ? {} : { from_step: from }), ...(to === null ? {} : { to_step: to }) } })
    .then((r) => r.data),
  series: (ids, opts) => api.seriesAnswer(ids, opts).then((answer) => answer.data),
  checkpoints: (id, opts) => request("GET", `runs/${encodeURIComponent(id)}/checkpoints`, opts).then((r) => r.data.data),
  fleet: (opts) => request("GET", "workers", opts).then((r) => r.data),
  submit: (body, mode, opts) => request("POST", "run", { ...opts, body, params: { mode } }),
  cancel: (id) => request("POST", `runs/${encodeURIComponent(id)}/cancel`),
  resume: (id) => request("POST", `runs/${encodeURIComponent(id)}/resume`),
};

/**
 * A link to a file of the API (a CSV) that works with a guarded API too: with
 * a token set, a plain link would be refused (no Authorization header), so the
 * click fetches it with the header and saves the answer as `filename`.
 */
export async function downloadWithToken(event, href, filename) {
  const token = getToken();
  if (!token) return; // the link as it is
  event.preventDefault();
  const response = await fetch(href, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, body);
  }
  const url = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * Server-Sent Events over fetch (EventSource cannot send the Authorization
 * header an API with API_TOKEN_READS needs).  Calls onEvent({event, data, id})
 * per event; resolves when the server closes the stream; rejects on an HTTP
 * error or a broken connection.  Abort through `signal`.
 */
export async function streamEvents(path, { since, signal, onEvent, onOpen }) {
  const url = new URL(path, location.origin);
  if (since) url.searchParams.set("since", String(since));
  const hdrs = headers({ Accept: "text/event-stream" });
  const response = await fetch(url, { headers: hdrs, signal, cache: "no-store" });
  if (!response.ok || !response.body) {
    let body = null;
    try { body = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, body);
  }
  if (onOpen) onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer[nl] === "\r" && buffer[nl + 1] === "\n" ? 2 : 1));
      if (line === "") {
        if (event.data.length) {
          const raw = event.data.join("\n");
          let data = raw;
          try { data = JSON.parse(raw); } catch { /* plain text */ }
          onEvent({ event: event.event, data, id: event.id });
        }
        event = { event: "message", data: [], id: null };
      } else if (line[0] !== ":") {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val[0] === " ") val = val.slice(1);
        if (field === "event") event.event = val;
        else if (field === "data") event.data.push(val);
        else if (field === "id") event.id = val;
      }
    }
  }
}
