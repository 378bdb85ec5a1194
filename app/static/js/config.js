// What the server put in the page: the submit schema and the status sets.

const el = document.getElementById("bootstrap");
const boot = el ? JSON.parse(el.textContent) : {};

export const schema = boot.schema || { properties: {}, required: [] };
// The statuses, their names, sets and meanings are tasks/lifecycle.py's: no module spells
// one (tests/unit/test_status_names.py); each says STATUS.FAILED or asks a set.
export const STATUSES = boot.statuses || [];
export const STATUS = Object.freeze({ ...(boot.names || {}) });
export const MEANING = boot.meaning || {};
export const FINAL = new Set(boot.final || []);
export const ACTIVE = new Set(boot.active || STATUSES.filter((st) => !FINAL.has(st)));
// Waiting for a worker: it has its message.
export const WAITING = new Set(boot.waiting || []);
// A user's cancel moves a run in one of these (an active run outside it is already stopping).
export const CANCELLABLE = new Set(boot.cancellable || []);
export const RESUMABLE = new Set(boot.resumable || []);
export const MODES = boot.modes || ["sync", "async"];
export const limits = boot.limits || {};
export const syncTimeoutS = boot.sync_timeout_s;

export const isActive = (status) => ACTIVE.has(status);
export const isFinal = (status) => FINAL.has(status);
