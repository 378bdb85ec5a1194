"""Time runs as they finish (``tunix_runs_total`` is counted by the
registry's transition, whoever makes the move).

Runs after ``RunRegistry`` has recorded the final status (``after_*`` hooks
run in reverse order of the middleware list) and reads it from the message.
"""

from dramatiq.middleware import Middleware

from tasks.metrics import QUEUE_WAIT, RUNS_DURATION


class RunMetrics(Middleware):
    def after_process_message(self, broker, message, *, result=None, exception=None):
        run = getattr(message, "tunix_run", None)
        if run is None:
            return
        if run["started_at"] is not None:
            QUEUE_WAIT.observe((run["started_at"] - run["created_at"]).total_seconds())
        if run["duration_seconds"] is not None:
            RUNS_DURATION.labels(run["status"], run["mode"]).observe(run["duration_seconds"])
