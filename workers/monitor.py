"""What a running training reports, batched into the registry.

The training's output threads hand lines and step events to a ``RunMonitor``;
the runner calls ``flush`` about twice a second, which writes everything
gathered since in one transaction (metrics, eval losses, log lines, heartbeat with the
latest progress; no NOTIFY: the API's waiter looks on its own tick) and
returns the run's status, so a cancel is seen within a beat without a query
of its own.
"""

import contextlib
import logging
import threading

from tasks import db, registry, retrying
from tasks.early_stopping import Stopper
from tasks.lifecycle import RunStatus

from .training.events import ABSENT, Eval, Progress

logger = logging.getLogger(__name__)

#: Log lines stored per run, all attempts together; later lines are counted, not stored.
MAX_LOG_LINES = 10_000
#: Characters kept of one log line.
MAX_LINE_CHARS = 4_096
#: What ``flush`` returns when the run was recovered from this worker.
LOST = "lost"

#: Seconds between flushes.
FLUSH_INTERVAL_S = 0.5
#: How long the last flush waits for the database to come back: the end of
#: the log says why a run ended.
LAST_FLUSH_PATIENCE_S = 30


@contextlib.contextmanager
def beating(beat, every_s):
    """``beat()`` every ``every_s`` seconds from a thread of its own while the
    block runs: a run's heartbeat through work that is not the training's
    (a conversion, the uploads after it exited); a failed beat is logged."""
    if beat is None:
        yield
        return
    done = threading.Event()

    def loop():
        while not done.wait(every_s):
            try:
                beat()
            except Exception:  # noqa: BLE001 - a missed beat, never the work
                logger.exception("heartbeat failed")

    thread = threading.Thread(target=loop, name="run-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class RunMonitor:
    def __init__(self, pool, run):
        self.pool = pool
        self.run_id = run["id"]
        self.attempt = run["attempts"]
        self._lock = threading.Lock()
        self._metrics = []
        self._evals = []
        self._logs = []
        self.progress = None
        self.dropped = 0
        self._run = run
        #: A sweep trial's early stopping (tasks/early_stopping.py), or None.
        self.stopper = None
        # Patient: a database restart right after the claim must not fail a
        # training that has not started (found by the long chaos soak).
        self._seq = retrying.patiently(self._start, LAST_FLUSH_PATIENCE_S, db.UNAVAILABLE, what="a database call")

    def _start(self):
        with db.connection(self.pool) as conn:
            rule = registry.sweep_rule(conn, self._run["sweep_id"]) if self._run.get("sweep_id") else None
            if rule:
                self.stopper = Stopper(self._run, rule)
            return registry.last_log_seq(conn, self.run_id)

    def line(self, stream, text):
        with self._lock:
            if self._seq >= MAX_LOG_LINES:
                self.dropped += 1
                return
            self._seq += 1
            self._logs.append((self._seq, stream, text[:MAX_LINE_CHARS]))

    def event(self, event):
        """Gather one training event (``workers/training/events.py``): a
        progress is a metrics row and the heartbeat's progress, an eval an
        eval row; other kinds (an ``Unknown`` one included) are not recorded here."""
        if isinstance(event, Eval):
            with self._lock:
                self._evals.append((event.step, event.eval_loss, event.examples or 0, self.attempt))
        elif isinstance(event, Progress):
            grad_norm = None if event.grad_norm is ABSENT else event.grad_norm
            with self._lock:
                self._metrics.append((event.step, event.loss, event.learning_rate, grad_norm, self.attempt,
                                      event.metrics or None, event.samples or None))
                self.progress = {"step": event.step, "total_steps": event.total_steps, "loss": event.loss}

    def flush(self):
        """Write what was gathered; return the run's status, ``LOST`` when
        this attempt is not the run's any more, None when the database could
        not be reached."""
        try:
            return self._write()
        except Exception as exc:
            # The training goes on; what was not written is retried next beat.
            logger.warning("could not record progress of run %s: %s", self.run_id, exc)
            return None

    def _write(self):
        with self._lock:
            metrics, self._metrics = self._metrics, []
            evals, self._evals = self._evals, []
            logs, self._logs = self._logs, []
            progress = self.progress
        try:
            with db.connection(self.pool) as conn:
                if metrics or logs or evals:
                    registry.record_activity(conn, self.run_id, metrics=metrics, logs=logs, evals=evals)
                status = registry.heartbeat(conn, self.run_id, self.attempt, progress)
                if status == RunStatus.RUNNING and metrics and self.stopper is not None:
                    if self.stopper.check(conn, max(m[0] for m in metrics)):
                        return RunStatus.CANCEL_REQUESTED
                return LOST if status is None else status
        except BaseException:
            with self._lock:
                self._metrics[:0] = metrics
                self._evals[:0] = evals
                self._logs[:0] = logs
            raise

    def close(self):
        if self.dropped:
            with self._lock:
                # One line over the bound says how many were not kept.
                self._logs.append((self._seq + 1, "system", f"{self.dropped} log lines not stored "
                                                            f"(bound: {MAX_LOG_LINES} per run)"))
                self._seq += 1
        try:
            retrying.patiently(self._write, LAST_FLUSH_PATIENCE_S, db.UNAVAILABLE, what="a database call")
        except Exception:
            logger.exception("could not record the last progress of run %s", self.run_id)
