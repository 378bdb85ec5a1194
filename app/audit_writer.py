"""The audit trail's writer: one thread and one connection of its own per
API process, so that no request waits for an audit row or shares its pool
with one.

Requests hand their rows over (``put``) once their answers are made; the
thread writes what has gathered in ``GATHER_S`` in one statement and one
commit.  Only a batch's first row wakes the thread: a ``queue.Queue`` woke
it for every row, and each wake-up took the GIL from a request (``py-spy
--gil`` of the API at one client with workers draining: 5% of its time in
``Condition.notify`` under ``put``).  Measured
before this existed: a row written by the request's thread from the request
pool made, with ``DB_POOL_MAX=1``, a storm of 32 submits wait for the pool
twice (its 503s took up to 2.8 s instead of 0.3 s:
``tests/e2e/test_load_http.py``).

What is not yet written when the process dies (SIGKILL) is lost, a few
milliseconds' worth.  A graceful stop writes it (``atexit``).  A database
that does not answer is tried again for ``PATIENCE_S``; after that, the rows
go to the log, each as one JSON line, loud (``AUDIT ROWS NOT WRITTEN``), so
that they are never lost silently.  ``flush`` waits until everything handed
over is written: ``GET /api/tunix/audit`` calls it first, so an admin reads
every row this process has been given.
"""

import atexit
import collections
import json
import logging
import threading
import time

from tasks import db, registry, retrying

logger = logging.getLogger(__name__)

#: Rows one statement writes at most.
BATCH = 500
#: Rows waiting at most; past it a row goes to the log instead (memory stays bounded).
MAX_WAITING = 50_000
#: Seconds a batch is tried again while the database does not answer.
PATIENCE_S = 30.0
#: Seconds the thread gathers rows after the first before it writes them:
#: one commit for every request of that window, not one a request (each a
#: WAL flush the next submit's commit waits behind; at one client, the
#: fifth writing transaction of every dry run).
GATHER_S = 0.05


class AuditWriter:
    def __init__(self, database_url):
        self.database_url = database_url
        self._rows = collections.deque()
        #: Guards the rows and ``_unwritten``; the thread waits on it for a
        #: batch's first row, ``flush`` for everything to be written.
        self._cond = threading.Condition()
        #: Rows handed over and not yet written or given up.
        self._unwritten = 0
        self._thread = None
        self._lock = threading.Lock()
        self._conn = None

    def put(self, row):
        with self._cond:
            if len(self._rows) >= MAX_WAITING:
                full = True
            else:
                full = False
                self._rows.append(row)
                self._unwritten += 1
                if len(self._rows) == 1:
                    self._cond.notify_all()  # the first of a batch; the thread is waiting or will look
        if full:
            _lost([row], "the writer's queue is full")
            return
        self._start()

    def flush(self, timeout=10.0):
        """Wait until every row handed over is written (or given up); whether it was."""
        with self._cond:
            return self._cond.wait_for(lambda: self._unwritten == 0, timeout)

    def _start(self):
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()
                    atexit.register(self.flush, 5.0)

    def _run(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._rows)
            time.sleep(GATHER_S)
            with self._cond:
                batch = [self._rows.popleft() for _ in range(min(BATCH, len(self._rows)))]
            try:
                retrying.patiently(lambda: self._write(batch), PATIENCE_S, db.UNAVAILABLE,
                                   what="an audit write")
            except Exception as exc:  # noqa: BLE001 - nothing above this thread to raise to
                _lost(batch, str(exc))
            finally:
                with self._cond:
                    self._unwritten -= len(batch)
                    self._cond.notify_all()

    def _write(self, batch):
        try:
            if self._conn is None or self._conn.closed:
                self._conn = db.connect(self.database_url, application_name="tunix-rt-audit")
                self._conn.autocommit = True
            registry.record_audit(self._conn, *batch)
        except db.DISCONNECTS as exc:
            if self._conn is not None:
                self._conn.close()
            raise db.DatabaseUnavailable(f"database unavailable: {exc}") from exc


def _lost(rows, why):
    for row in rows:
        logger.error("AUDIT ROWS NOT WRITTEN (%s): %s", why,
                     json.dumps({k: (str(v) if k == "token_id" and v is not None else v) for k, v in row.items()},
                                default=str))
