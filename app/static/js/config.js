// What the server put in the page: the submit schema and the status sets.

const el = document.getElementById("bootstrap");
const boot = el ? JSON.parse(el.textContent) : {};

export const schema = boot.schema || { properties: {}, required: [] };
// The statuses, their sets and meanings are tasks/lifecycle.py's: none is spelled here.
export const STATUSES = boot.statuses || [];
export const MEANING = boot.meaning || {};
export const FINAL = new Set(boot.final || []);
export const ACTIVE = new Set(boot.active || STATUSES.filter((st) => !FINAL.has(st)));
export const RESUMABLE = new Set(boot.resumable || []);
export const MODES = boot.modes || ["sync", "async"];
export const limits = boot.limits || {};
export const syncTimeoutS = boot.sync_timeout_s;

export const isActive = (status) => ACTIVE.has(status);
export const isFinal = (status) => FINAL.has(status);
