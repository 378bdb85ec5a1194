"""Wait for runs to change without a NOTIFY and without a loop per request.

One thread per API process looks, every ``WAITER_TICK_S`` (20 ms), at the
runs that its sync submits and log streams wait on, in one indexed query
(``watch_runs``: status, last change, progress, last log line), and wakes the
requests whose run changed.  So a sync submit or a log stream holds no pooled
connection while it waits, any number of them share one query, and nothing
is queried while nobody waits.  They do hold a thread: together they may hold
all of ``API_THREADS`` but a reserve (``reserved_threads``); past that a sync
submit is answered 202 at once and a log stream 503, never a hang for the
requests behind them.

Why not LISTEN/NOTIFY, as before: PostgreSQL takes one database-wide lock at
the commit of every transaction that issued a NOTIFY, so a trigger notifying
each status change (insert, claim, finish) and each log batch serialised the
fleet's commits (pgbench here, a 1-row INSERT at 16 clients: 6,918 tps, with
a NOTIFY 1,424; under 16 concurrent submits nearly every session waited on
``Lock:object`` at COMMIT).  A run now costs one NOTIFY, its enqueue, which
wakes a consumer; a waiter learns of the end at most a tick later.
"""

import logging
import threading
import time

from tasks import db, registry

from .extensions import once

logger = logging.getLogger(__name__)

#: Seconds between reconnect attempts when the database is gone.
RECONNECT_S = 1.0
#: Seconds a new watch is looked at 4 times a tick.
FAST_FOR_S = 0.5

#: A watch's state before its first look: any state differs from it.
UNSEEN = object()
#: The state of a run the registry does not have (not committed yet).
MISSING = ("missing",)


#: Threads of the API kept for requests that do not wait (a quarter of
#: ``API_THREADS``, at most 32): sync submits and log streams together never
#: hold them, so a status, a list or an async submit always finds a thread.
def reserved_threads(api_threads):
    return min(32, max(1, api_threads // 4))


class Watch:
    def __init__(self, waiter, run_id, release):
        self._waiter = waiter
        self._release = release
        self.run_id = str(run_id)
        self.event = threading.Event()
        self.since = time.monotonic()
        #: What the waiter saw last: ``(status, updated_at, progress, last_seq)``.
        self.seen = UNSEEN

    @property
    def status(self):
        """The run's status at the waiter's last look (None before it)."""
        return self.seen[0] if isinstance(self.seen, tuple) else None

    def wait(self, timeout):
        """True when the run changed (or the waiter lost track and the caller
        should look again); False on timeout."""
        fired = self.event.wait(timeout)
        self.event.clear()
        return fired

    def __enter__(self):
        self._waiter._add(self)
        return self

    def __exit__(self, *exc):
        self._waiter._remove(self)
        release, self._release = self._release, None
        if release is not None:
            release()


class StatusWaiter:
    def __init__(self, url, tick_s, max_waiting):
        self.url = url
        self.tick_s = tick_s
        #: Requests that may wait at once (see ``reserved_threads``).
        self._waiting = threading.BoundedSemaphore(max_waiting)
        self._lock = threading.Lock()
        self._watches = set()
        #: Set when a watch is added, so an idle thread looks at once.
        self._wake = threading.Event()
        self._thread = None
        self._stop = threading.Event()

    def watch(self, run_id):
        """A ``Watch`` on the run, holding one of the waiting slots until it
        is exited; None when every slot is taken (the caller answers without
        waiting)."""
        if not self._waiting.acquire(blocking=False):
            return None
        self._ensure_started()
        return Watch(self, run_id, self._waiting.release)

    def _add(self, watch):
        with self._lock:
            self._watches.add(watch)
        self._wake.set()

    def _remove(self, watch):
        with self._lock:
            self._watches.discard(watch)

    def _ensure_started(self):
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._poll_forever, name="status-waiter", daemon=True)
                self._thread.start()

    def stop(self):
        self._stop.set()
        self._wake.set()

    def _look(self, conn):
        """One tick: wake the watches whose run changed since their last look.
        Returns the seconds until the next tick, None when nothing waits."""
        with self._lock:
            watches = list(self._watches)
        if not watches:
            return None
        states = registry.watch_runs(conn, {w.run_id for w in watches})
        for watch in watches:
            state = states.get(watch.run_id, MISSING)
            if state != watch.seen:
                watch.seen = state
                watch.event.set()
        # A sync dry run ends within milliseconds of its submit: look 4 times
        # as often while a watch is young (measured: round trip p50 21 ms at
        # a 20 ms tick; idle pickup is 2-3 ms).
        youngest = max(w.since for w in watches)
        return self.tick_s / 4 if time.monotonic() - youngest < FAST_FOR_S else self.tick_s

    def _lost_track(self):
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            watch.seen = UNSEEN
            watch.event.set()

    def _poll_forever(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = db.connect(self.url, application_name="tunix-rt-waiter")
                    conn.autocommit = True
                tick = self._look(conn)
            except Exception as exc:  # noqa: BLE001 - the thread must live on
                logger.warning("status waiter lost the database (%s); reconnecting", exc)
                if conn is not None:
                    conn.close()
                conn = None
                # What happened meanwhile is unknown: every waiter looks again.
                self._lost_track()
                self._stop.wait(RECONNECT_S)
                continue
            if tick is not None:
                self._stop.wait(tick)
            else:
                self._wake.wait(1.0)
                self._wake.clear()
        if conn is not None:
            conn.close()


def _make_waiter(settings):
    max_waiting = settings.api_threads - reserved_threads(settings.api_threads)
    return StatusWaiter(settings.database_url, settings.waiter_tick_s, max(1, max_waiting))


def get_waiter():
    """The app's waiter, started on first use (not in ``create_app``, which
    must stay free of I/O and threads: gunicorn forks after it)."""
    return once("tunix_waiter", _make_waiter)
