"""Wait for runs to change status without polling.

One thread per API process LISTENs on ``tunix_run_status`` (a trigger on
``tunix_runs`` notifies every status change) and ``tunix_run_activity`` (a
worker stored log lines or progress) and wakes the requests waiting on that
run.  So a sync submit or a log stream costs no connection while it waits,
and any number of them share one.
"""

import logging
import select
import threading

from flask import current_app

from tasks import db

logger = logging.getLogger(__name__)

CHANNELS = ("tunix_run_status", "tunix_run_activity")

#: Seconds between reconnect attempts when the database is gone.
RECONNECT_S = 1.0


class Watch:
    def __init__(self, waiter, run_id):
        self._waiter = waiter
        self.run_id = str(run_id)
        self.event = threading.Event()

    def wait(self, timeout):
        """True when the run changed status (or notifications may have been
        missed and the caller should look again); False on timeout."""
        fired = self.event.wait(timeout)
        self.event.clear()
        return fired

    def __enter__(self):
        self._waiter._add(self)
        return self

    def __exit__(self, *exc):
        self._waiter._remove(self)


class StatusWaiter:
    def __init__(self, url):
        self.url = url
        self._lock = threading.Lock()
        self._watches = {}
        self._thread = None
        self._stop = threading.Event()

    def watch(self, run_id):
        self._ensure_started()
        return Watch(self, run_id)

    def _add(self, watch):
        with self._lock:
            self._watches.setdefault(watch.run_id, set()).add(watch)

    def _remove(self, watch):
        with self._lock:
            watches = self._watches.get(watch.run_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[watch.run_id]

    def _fire(self, run_id=None):
        with self._lock:
            if run_id is None:
                targets = [w for ws in self._watches.values() for w in ws]
            else:
                targets = list(self._watches.get(run_id, ()))
        for watch in targets:
            watch.event.set()

    def _ensure_started(self):
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen_forever, name="status-waiter", daemon=True)
                self._thread.start()

    def stop(self):
        self._stop.set()

    def _listen_forever(self):
        while not self._stop.is_set():
            conn = None
            try:
                conn = db.connect(self.url, application_name="tunix-rt-waiter")
                conn.autocommit = True
                with conn.cursor() as cur:
                    for channel in CHANNELS:
                        cur.execute(f"LISTEN {channel}")
                # Whatever happened while we were not listening is unknown:
                # every waiter looks at the registry again.
                self._fire()
                while not self._stop.is_set():
                    if select.select([conn], [], [], 1.0)[0]:
                        conn.poll()
                        while conn.notifies:
                            run_id = conn.notifies.pop(0).payload.split(" ", 1)[0]
                            self._fire(run_id)
            except db.DISCONNECTS as exc:
                logger.warning("status listener lost the database (%s); reconnecting", exc)
                self._fire()
                self._stop.wait(RECONNECT_S)
            finally:
                if conn is not None:
                    conn.close()


def get_waiter():
    """The app's waiter, started on first use (not in ``create_app``, which
    must stay free of I/O and threads: gunicorn forks after it)."""
    ext = current_app.extensions
    if "tunix_waiter" not in ext:
        ext["tunix_waiter"] = StatusWaiter(current_app.config["SETTINGS"].database_url)
    return ext["tunix_waiter"]
