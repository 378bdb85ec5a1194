// Tiny DOM helpers: build elements without innerHTML (so API text is never
// parsed as markup) and a few formatters shared by the views.

const SVG_NS = "http://www.w3.org/2000/svg";

/** h("a.btn#id", {href, onclick, dataset:{x}}, child, [children], "text") */
export function h(spec, attrs, ...children) {
  const [tag, ...rest] = spec.split(/(?=[.#])/);
  const el = document.createElement(tag || "div");
  for (const part of rest) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element with attributes. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function applyAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// ---------------------------------------------------------------- icons
// A status's icon is its style's (console.css, "statuses"), not one of these.

const ICONS = {
  clock: [["circle", { cx: 12, cy: 12, r: 9 }], ["path", { d: "M12 7v5l3 2" }]],
  play: [["circle", { cx: 12, cy: 12, r: 9 }], ["path", { d: "M10 8.5v7l5.5-3.5z", fill: "currentColor" }]],
  check: [["circle", { cx: 12, cy: 12, r: 9 }], ["path", { d: "M8 12.5l2.8 2.8L16.5 9.5" }]],
  stop: [["circle", { cx: 12, cy: 12, r: 9 }], ["rect", { x: 9, y: 9, width: 6, height: 6, rx: 1, fill: "currentColor" }]],
  refresh: [["path", { d: "M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7" }]],
  copy: [["rect", { x: 9, y: 9, width: 11, height: 11, rx: 2 }], ["path", { d: "M5 15V5a1 1 0 0 1 1-1h10" }]],
  download: [["path", { d: "M12 4v11M7 10l5 5 5-5M5 20h14" }]],
  arrowLeft: [["path", { d: "M19 12H5M11 6l-6 6 6 6" }]],
  arrowDown: [["path", { d: "M12 5v14M6 13l6 6 6-6" }]],
  resume: [["path", { d: "M4 12a8 8 0 1 0 2.3-5.7M4 4v5h5" }], ["path", { d: "M10.5 9.5v5l4-2.5z", fill: "currentColor" }]],
  rerun: [["path", { d: "M4 4h10l6 6v10H4z" }], ["path", { d: "M14 4v6h6" }]],
  alert: [["path", { d: "M12 3l10 18H2z" }], ["path", { d: "M12 10v5M12 18v.01" }]],
  wifiOff: [["path", { d: "M2 8.5a15 15 0 0 1 20 0M5 12a10 10 0 0 1 14 0M8.5 15.5a5 5 0 0 1 7 0M12 19v.01M3 3l18 18" }]],
};

export function icon(name, cls = "icon") {
  const parts = ICONS[name] || ICONS.clock;
  return s("svg", { class: cls, viewBox: "0 0 24 24", "aria-hidden": "true", focusable: "false" },
    parts.map(([tag, attrs]) => s(tag, attrs)));
}

// ---------------------------------------------------------------- formatting

export function shortId(id) {
  return String(id || "").slice(0, 8);
}

export function fmtNumber(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return parseFloat(value.toPrecision(3)).toExponential().replace("e+", "e");
  return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtCompact(n) {
  if (typeof n !== "number") return "—";
  if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1) + "B";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1) + "k";
  return String(n);
}

export function fmtBytes(n) {
  if (typeof n !== "number") return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)} ${units[i]}`;
}

/** 0.0167 -> "17 ms", 9.05 -> "9.1 s", 125 -> "2 min 05 s", 7300 -> "2 h 01 min" */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 0) seconds = 0;
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  return `${m} min ${String(sec).padStart(2, "0")} s`;
}

const RELATIVE = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

export function fmtRelative(iso, now = Date.now(), compact = false) {
  if (!iso) return "—";
  const diff = (new Date(iso).getTime() - now) / 1000;
  const abs = Math.abs(diff);
  if (abs < 5) return "just now";
  if (compact) {
    const [n, unit] = abs < 60 ? [abs, "s"] : abs < 3600 ? [abs / 60, "m"] : abs < 86400 ? [abs / 3600, "h"] : [abs / 86400, "d"];
    return diff < 0 ? `${Math.round(n)}${unit} ago` : `in ${Math.round(n)}${unit}`;
  }
  if (abs < 60) return RELATIVE.format(Math.round(diff), "second");
  if (abs < 3600) return RELATIVE.format(Math.round(diff / 60), "minute");
  if (abs < 86400) return RELATIVE.format(Math.round(diff / 3600), "hour");
  return RELATIVE.format(Math.round(diff / 86400), "day");
}

const ABSOLUTE = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});

export function fmtAbsolute(iso) {
  return iso ? ABSOLUTE.format(new Date(iso)) : "—";
}

/** <time> showing a relative time, the exact one on hover; kept fresh by tickTimes(). */
export function timeEl(iso, { compact = false } = {}) {
  if (!iso) return h("span.muted", null, "—");
  return h("time", { datetime: iso, title: fmtAbsolute(iso), dataset: { relative: compact ? "compact" : "long" } },
    fmtRelative(iso, Date.now(), compact));
}

export function tickTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time[data-relative]")) {
    el.textContent = fmtRelative(el.getAttribute("datetime"), now, el.dataset.relative === "compact");
  }
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Clipboard API needs a secure context; fall back to a selection copy.
    const area = h("textarea", { style: { position: "fixed", opacity: "0" } });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand && document.execCommand("copy");
    area.remove();
    return Boolean(ok);
  }
}
