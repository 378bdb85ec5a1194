"""Keep ``tunix_runs`` true around every message.

* before processing: claim the run (pending -> running).  A run that is not
  pending any more (a duplicate delivery, a run already finished) is skipped:
  the message is acked and the run is left as it is.
* after processing: completed with the actor's result, or failed with the
  exception's type and message.
* after a nack (dramatiq gave the message up): failed, whether it ran or not.
"""

import logging
import traceback

from dramatiq.middleware import Middleware, SkipMessage

from tasks import db, lifecycle, registry
from tasks.errors import InvalidTransition, RunNotFound, RunStopped

from ..context import clear_current_run, set_current_run

logger = logging.getLogger(__name__)

#: Traceback lines kept in a failed run's ``error`` for unexpected exceptions.
TRACEBACK_LINES = 30


def describe(exception):
    """A failed run's ``error``: type, message and whatever the error carries."""
    error = {"type": type(exception).__name__, "message": str(exception) or repr(exception)}
    error.update(getattr(exception, "details", None) or {})
    if not getattr(exception, "details", None):
        lines = traceback.format_exception(type(exception), exception, exception.__traceback__)
        error["traceback"] = "".join(lines).splitlines()[-TRACEBACK_LINES:]
    return error


class RunRegistry(Middleware):
    def __init__(self, pool, worker_id):
        self.pool = pool
        self.worker_id = worker_id

    def _run_id(self, message):
        return message.args[0] if message.args else None

    def before_process_message(self, broker, message):
        run_id = self._run_id(message)
        try:
            with db.connection(self.pool) as conn:
                run = registry.claim(conn, run_id, self.worker_id)
        except (InvalidTransition, RunNotFound) as exc:
            logger.info("skipping message %s: %s", message.message_id, exc)
            raise SkipMessage(str(exc)) from None
        message.tunix_run = run
        set_current_run(run)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        clear_current_run()
        if getattr(message, "tunix_run", None) is None:
            return
        run_id = self._run_id(message)
        if exception is None:
            target, fields = lifecycle.RunStatus.COMPLETED, {"result": result, "exit_code": _exit_code(result)}
        else:
            # A stopped run names its own final status (cancelled, timeout).
            target = lifecycle.RunStatus(exception.status if isinstance(exception, RunStopped) else "failed")
            fields = {"error": describe(exception), "exit_code": getattr(exception, "exit_code", None)}
        message.tunix_run = self._finish(run_id, target, fields)

    def after_nack(self, broker, message):
        # dramatiq gave the message up.  Whatever the run was doing, it will
        # not go on: it must not stay pending or running.
        run_id = self._run_id(message)
        if run_id is None:
            return
        error = {"type": "MessageRejected", "message": "the broker gave the run's message up"}
        self._finish(run_id, lifecycle.RunStatus.FAILED, {"error": error}, quiet=True)

    def _finish(self, run_id, target, fields, quiet=False):
        try:
            with db.connection(self.pool) as conn:
                return registry.transition(conn, run_id, target, operation="finish", **fields)
        except InvalidTransition as exc:
            if not quiet:
                logger.warning("run %s not finished as %s: %s", run_id, target, exc)
        except Exception:
            # NOTE: dramatiq's emit_after logs and swallows hook errors; a run
            # left running must be loud in the worker log.
            logger.exception("FAILED TO RECORD run %s as %s", run_id, target)
        return None


def _exit_code(result):
    return result.get("exit_code") if isinstance(result, dict) else None
