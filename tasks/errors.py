"""Every error the platform raises on purpose, in one tree.

The API maps them to status codes in one handler (``app/errors.py``); the
worker middleware records them on the run.
"""

from .lifecycle import RunStatus


class TunixError(Exception):
    """Base class for all Tunix RT errors."""

    #: Machine-readable code, also the ``error.code`` of an API response.
    code = "tunix_error"


class RunNotFound(TunixError):
    """Raised when a run id names no run."""

    code = "run_not_found"

    def __init__(self, run_id):
        super().__init__(f"run {run_id} not found")
        self.run_id = run_id


class SweepNotFound(TunixError):
    """Raised when a sweep id names no sweep."""

    code = "sweep_not_found"

    def __init__(self, sweep_id):
        super().__init__(f"sweep {sweep_id} not found")
        self.sweep_id = sweep_id


class InvalidTransition(TunixError):
    """Raised when a run is not in a status it may leave for ``target``."""

    code = "invalid_transition"

    def __init__(self, run_id, current, target):
        super().__init__(f"run {run_id} is {current}; it cannot become {target}")
        self.run_id = run_id
        self.current = current
        self.target = target


class AttemptsExhausted(InvalidTransition):
    """Raised when a pending run is claimed after it has had its ``max_attempts``."""

    code = "attempts_exhausted"

    def __init__(self, run_id, attempts, max_attempts):
        TunixError.__init__(self, f"run {run_id} has had {attempts} of {max_attempts} attempt(s)")
        self.run_id, self.current, self.target = run_id, RunStatus.PENDING.value, RunStatus.RUNNING.value
        self.attempts, self.max_attempts = attempts, max_attempts


class DatabaseUnavailable(TunixError):
    """Raised when PostgreSQL cannot be reached."""

    code = "database_unavailable"


class Overloaded(TunixError):
    """Raised when no database connection of the process' pool became free
    within ``DB_POOL_WAIT_S``: more requests at once than the pool serves.
    The API answers 503 with ``Retry-After``; nothing was written."""

    code = "overloaded"


class StoreUnavailable(TunixError):
    """Raised when the artifact store (``ARTIFACTS_URL``) cannot be reached or
    answers with an error; the API answers 503, a worker tries again for
    ``STORE_PATIENCE_S`` and then fails the attempt with it."""

    code = "artifact_store_unavailable"


class StoreForbidden(TunixError):
    """Raised when the artifact store refuses this process' credentials or
    access (S3 403: ``AccessDenied``, ``InvalidAccessKeyId``,
    ``SignatureDoesNotMatch``, ``ExpiredToken``, none given; a local folder's
    ``EACCES``).  Never an outage: waiting does not mend a key, so it is not
    retried; a worker fails the attempt with it at once (a training never
    ends ``completed`` without its checkpoints), the API answers 502.
    ``url`` is what was refused, ``reason`` the store's answer (``"403
    AccessDenied"``)."""

    code = "artifact_store_forbidden"

    def __init__(self, message, *, url=None, reason=None):
        super().__init__(message)
        self.url, self.reason = url, reason
        #: Kept in a failed run's ``error`` beside its type and message.
        self.details = {"store_url": url, "store_answer": reason}


class ObjectMissing(TunixError):
    """Raised when an object is not in the artifact store."""

    code = "artifact_missing"


class RunFailed(TunixError):
    """Raised inside a worker when a run cannot complete.

    ``details`` are stored beside the type and message in the run's ``error``;
    ``exit_code`` is the training subprocess' exit status, when there was one.
    """

    code = "run_failed"

    def __init__(self, message, *, exit_code=None, **details):
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details


class UnknownDataset(RunFailed):
    """Raised when a run names a dataset this installation does not have."""

    code = "unknown_dataset"


class InvalidDataset(RunFailed):
    """Raised when a dataset file is malformed; the message names the line."""

    code = "invalid_dataset"


class UnknownModel(RunFailed):
    """Raised when a run names a model this installation does not have."""

    code = "unknown_model"


class TrainingFailed(RunFailed):
    """Raised when the training subprocess exits non-zero."""

    code = "training_failed"


class DiskFull(RunFailed):
    """Raised when a worker's disk has no space left for a run's files
    (ENOSPC: the training's log, its checkpoint, the upload's snapshot); the
    message names the folder and its free space, ``details`` carry
    ``folder``, ``free_bytes`` and ``code``."""

    code = "disk_full"


class RunStopped(RunFailed):
    """Raised inside a worker when a run was stopped on purpose; ``status``
    is the final status it ends in, and the code of one that ends otherwise
    than failed is that status."""

    status = RunStatus.FAILED.value


class RunCancelled(RunStopped):
    """Raised when a user cancelled the run while it was executing."""

    status = RunStatus.CANCELLED.value
    code = status


class RunTimedOut(RunStopped):
    """Raised when the run went past its ``time_limit_s``."""

    status = RunStatus.TIMEOUT.value
    code = status


class RunLost(RunStopped):
    """Raised when a worker finds its attempt was recovered by the reaper and
    given to another worker: it stops and records nothing."""

    code = "lost"
    status = None
