"""Keep ``tunix_runs`` true around every message.

* before processing: claim the run (pending -> running).  A run that is not
  pending any more (a duplicate delivery, a run already finished) is skipped:
  the message is acked and the run is left as it is.  A run that has had its
  attempts ends failed instead (``AttemptsExhausted``).
* after processing: completed with the actor's result, or failed with the
  exception's type and message.
* after a nack (dramatiq gave the message up): failed, whether it ran or not.

``message.tunix_run`` holds the claimed run, then the row its end wrote:
the admission triggers (``workers/middleware/admission.py``) read it.
"""

import logging
import threading
import traceback

from dramatiq.middleware import Middleware, Shutdown, SkipMessage

from tasks import actors, db, lifecycle, registry, retrying
from tasks.sample_spec import SAMPLES_QUEUE
from tasks.errors import (
    AttemptsExhausted,
    DatabaseUnavailable,
    InvalidTransition,
    Overloaded,
    RunLost,
    RunNotFound,
    RunStopped,
)
from tasks.metrics import RUNS_RETRIED

from ..context import clear_current_run, set_current_run, take_result

logger = logging.getLogger(__name__)

#: Traceback lines kept in a failed run's ``error`` for unexpected exceptions.
TRACEBACK_LINES = 30

#: How long a final status waits for the database to come back, or to take
#: writes again (a failover: Patroni's defaults promote a standby within
#: 30-60 s).  Given up, the run stays ``running`` and the reaper executes it
#: again: a whole training lost to an outage of a minute would be a poor
#: trade for a worker thread held a few minutes.
FINAL_WRITE_PATIENCE_S = 600

#: How long a claim waits for the database.  The thread has nothing else to
#: do, and a claim given up costs the run a heartbeat timeout or an attempt.
CLAIM_PATIENCE_S = 30


def describe(exception):
    """A failed run's ``error``: type, message and whatever the error carries."""
    error = {"type": type(exception).__name__, "message": str(exception) or repr(exception)}
    if getattr(exception, "code", None):
        error["code"] = exception.code  # tasks/errors.py: disk_full, training_failed, timeout, ...
    error.update(getattr(exception, "details", None) or {})
    if not getattr(exception, "details", None):
        lines = traceback.format_exception(type(exception), exception, exception.__traceback__)
        error["traceback"] = "".join(lines).splitlines()[-TRACEBACK_LINES:]
    return error


class RunRegistry(Middleware):
    def __init__(self, pool, worker_id, max_attempts=None):
        self.pool = pool
        self.worker_id = worker_id
        #: ``MAX_ATTEMPTS``, given once (None: each move reads the settings).
        self.max_attempts = max_attempts
        #: Runs handed back while this process stops, queued once it has stopped.
        self._handed_back = []
        self._handed_back_lock = threading.Lock()
        #: Ids of the runs this process's threads execute now.
        self._executing = set()
        self._executing_lock = threading.Lock()

    def _run_id(self, message):
        return message.args[0] if message.args else None

    def before_process_message(self, broker, message):
        if message.queue_name == SAMPLES_QUEUE:
            return  # a sample request, not a run: its actor keeps tunix_samples (workers/sampling/worker.py)
        run_id = self._run_id(message)
        try:
            run = retrying.patiently(self._claimer(run_id), CLAIM_PATIENCE_S, db.UNAVAILABLE, what="a database call")
        except AttemptsExhausted as exc:
            # Only reachable through a race the reaper's own check lost: the
            # cap holds here, where the attempt would begin.
            logger.warning("failing run %s: %s", run_id, exc)
            self._finish(run_id, "exhaust", error={"type": "AttemptsExhausted", "message": str(exc)})
            raise SkipMessage(str(exc)) from None
        except (InvalidTransition, RunNotFound) as exc:
            logger.info("skipping message %s: %s", message.message_id, exc)
            raise SkipMessage(str(exc)) from None
        except (DatabaseUnavailable, Overloaded) as exc:
            # The run stays pending (the reaper republishes it once the
            # database is back), or, if the claim committed unseen, running
            # without a heartbeat (the reaper recovers it, one attempt used).
            logger.warning("cannot claim run %s, database unavailable: %s", run_id, exc)
            raise SkipMessage(str(exc)) from None
        with self._executing_lock:
            self._executing.add(str(run_id))
        message.tunix_run = run
        set_current_run(run)

    def _claimer(self, run_id):
        """The claim, for ``retrying.patiently``: a try after a lost connection
        first looks whether the try before committed (its answer never came),
        and adopts that claim rather than leave the run to the reaper and use
        up an attempt for an outage."""
        tries = []

        def claim():
            # One statement (the claim), or reads: each commits as it runs.
            with db.autocommit(self.pool) as conn:
                if tries:
                    run = registry.get_run(conn, run_id)
                    with self._executing_lock:
                        busy = str(run_id) in self._executing
                    if (run is not None and run["worker_id"] == self.worker_id and not busy
                            and run["status"] in (lifecycle.RunStatus.RUNNING, lifecycle.RunStatus.CANCEL_REQUESTED)):
                        logger.warning("run %s: adopting the claim whose commit was not confirmed", run_id)
                        return run
                tries.append(1)
                return registry.claim(conn, run_id, self.worker_id, max_attempts=self.max_attempts)

        return claim

    def after_process_message(self, broker, message, *, result=None, exception=None):
        clear_current_run()
        with self._executing_lock:
            self._executing.discard(str(self._run_id(message)))
        if result is None:
            result = take_result()
        run = getattr(message, "tunix_run", None)
        if run is None:
            return
        # Recorded here, whatever the outcome: the nack that follows a
        # failure must not record it a second time.
        message.tunix_recorded = True
        S = lifecycle.RunStatus
        fence = dict(attempt=run["attempts"])
        if exception is None:
            message.tunix_run = self._finish(run["id"], "finish", result=result, exit_code=_exit_code(result),
                                             settle=message, **fence)
        elif isinstance(exception, RunLost):
            # The reaper gave this attempt to another worker: not ours to record.
            message.tunix_run = None
        elif isinstance(exception, Shutdown):
            # This worker is stopping: hand the run back (the training saved a
            # checkpoint on SIGTERM) unless it was being cancelled anyway.
            message.tunix_run = self._hand_back(run, fence)
        else:
            # A stopped run names its own final status (cancelled, timeout).
            move = lifecycle.ENDINGS[S(exception.status)] if isinstance(exception, RunStopped) else "fail"
            message.tunix_run = self._finish(run["id"], move, error=describe(exception),
                                             exit_code=getattr(exception, "exit_code", None), settle=message,
                                             **fence)

    def _hand_back(self, run, fence):
        # Not the run's fault: the attempt goes back to its budget.
        requeued = self._finish(run["id"], "hand_back", **fence)
        if requeued is None:
            # Only a run being cancelled ends here.  One the reaper already
            # sent back to pending (its heartbeat stopped while this process
            # stopped its training: found by the soak, which saw such runs
            # end "cancelled" with nobody cancelling) is left as it is.
            return self._finish(run["id"], "cancel", quiet=True, **fence)
        RUNS_RETRIED.labels("hand_back").inc()
        # Queued in after_worker_shutdown, not in the hand-back's transaction:
        # the new message has the same id as the one in hand, so (measured)
        # the nack that follows this hook marked it 'rejected' (the run then
        # waited ORPHAN_AGE_S for the reaper), or this stopping process's own
        # consumer took it back and an idle thread of it ran the whole
        # training during the shutdown.  The one enqueue a run makes outside
        # its move's transaction; a process killed in between leaves the run
        # pending without a message, which the reaper queues again
        # (``republish_orphans``).
        with self._handed_back_lock:
            self._handed_back.append(run)
        return None

    def after_worker_shutdown(self, broker, worker):
        with self._handed_back_lock:
            runs, self._handed_back = self._handed_back, []
        if not runs:
            return
        # The consumers are closed, but their connections sit idle in their
        # pool still holding the messages' advisory locks: no other process
        # could take a message queued again.  Closing them releases the locks.
        getattr(broker, "consumer_pool", self.pool).discard_idle()
        try:
            with db.connection(self.pool) as conn:
                registry.enqueue_messages(conn, actors.outbox_rows([(run["id"], run["dry_run"]) for run in runs]))
        except Exception:
            logger.exception("%d run(s) handed back but not queued again; the reaper will", len(runs))

    def after_nack(self, broker, message):
        # dramatiq gave the message up.  Whatever the run was doing, it will
        # not go on: it must not stay pending or running.
        run_id = self._run_id(message)
        if run_id is None or getattr(message, "tunix_recorded", False) or message.queue_name == SAMPLES_QUEUE:
            return
        error = {"type": "MessageRejected", "message": "the broker gave the run's message up"}
        self._finish(run_id, "reject", error=error, quiet=True)

    def _finish(self, run_id, move, quiet=False, settle=None, **fields):
        """Make ``move``; with ``settle`` (the run's message), mark the
        message done in the same statement: one commit and one round trip
        per run, and the consumer's ack has nothing left to write
        (``tasks/broker.py``)."""
        def write():
            with db.autocommit(self.pool) as conn:
                row = registry.transition(conn, run_id, move, ack=settle, max_attempts=self.max_attempts, **fields)
            if settle is not None:
                settle.tunix_settled = True
            return row

        try:
            return retrying.patiently(write, FINAL_WRITE_PATIENCE_S, db.UNAVAILABLE, what="a database call")
        except InvalidTransition as exc:
            if not quiet:
                logger.warning("run %s: %s refused: %s", run_id, lifecycle.move(move).name, exc)
        except Exception:
            # NOTE: dramatiq's emit_after logs and swallows hook errors; a run
            # left running must be loud in the worker log.
            logger.exception("FAILED TO RECORD run %s: %s", run_id, lifecycle.move(move).name)
        return None


def _exit_code(result):
    return result.get("exit_code") if isinstance(result, dict) else None
