"""What the samples and the exports workers share: jobs run on one of a
run's checkpoints (``workers/sampling/worker.py``, ``workers/exporting/worker.py``).

Each claims its request (pending -> running, stamping this worker's
``host:pid``), fetches the run's checkpoint of the asked step from the
artifact store into a scratch folder (``$DATA_DIR/<noun>s/<id>/``, removed
afterwards), writes a job file, runs its program (``python -m <module> JOB``)
under the trainings' lifeline (``workers/runner.py``: if this worker dies,
the program dies with it) with a time limit, and records what it made, or
the error (completed | failed).  A duplicate delivery of a request no longer
pending is left alone.  Nothing here retries.  What differs (the job file's
contents, what is done with the program's output) stays in each worker.
"""

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time

from dramatiq.middleware import Interrupt

from tasks import artifacts, db, registry, retrying
from tasks.broker import get_pool
from tasks.errors import StoreUnavailable
from tasks.settings import get_settings

from .middleware.run_registry import FINAL_WRITE_PATIENCE_S, describe
from .runner import EVENT_PREFIX, PROJECT_ROOT, lifeline_argv, stop_process_group, training_env

logger = logging.getLogger(__name__)

#: Lines of the program's stderr kept in a failed job's error.
TAIL_LINES = 20


class JobFailed(Exception):
    """Raised when a job could not be done; ``details`` go into the error.
    Each worker subclasses it, so that the error's ``type`` names its kind."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


@dataclasses.dataclass(frozen=True)
class JobKind:
    """One kind of checkpoint job, as its messages and files name it."""

    #: "sample": the registry row's name, in logs, scratch ("samples/") and the job file ("sample.json").
    noun: str
    #: "the generation": what a stopped or late job's message says ended or took too long.
    work: str
    #: "workers.sampling": the program run on the job file.
    module: str
    #: "the sampling program": as a failed exit's message names it.
    program: str
    #: The exception its failures are raised as (``JobFailed`` subclass).
    failed: type
    #: The setting (``tasks/settings.py``) of the longest the program may
    #: take, in seconds: ``sample_time_limit_s``.
    time_limit: str


def worker_id(settings):
    # As workers.boot names this process (tunix_runs.worker_id).
    return f"{settings.hostname}:{os.getpid()}"


def execute(kind, job_id, claim, make, finish):
    """Claim ``job_id`` with ``claim(conn, id, me)``, do it with
    ``make(row, settings, pool) -> (fields, timings)``, and record it with
    ``finish(conn, id, me, error=, timings=, **fields)``."""
    pool = get_pool()
    settings = get_settings()
    me = worker_id(settings)
    with db.connection(pool) as conn:
        row = claim(conn, job_id, me)
    if row is None:
        logger.info("%s %s is not pending any more: left alone", kind.noun, job_id)
        return None
    started = time.monotonic()
    fields, timings, error = {}, None, None
    try:
        fields, timings = make(row, settings, pool)
        timings["total_s"] = round(time.monotonic() - started, 3)
    except BaseException as exc:  # noqa: BLE001 - recorded; a worker's Shutdown or TimeLimit ends it too
        fields, timings = {}, None
        error = describe(exc)
        if isinstance(exc, Interrupt):
            # dramatiq stopped this thread: the worker is stopping (Shutdown)
            # or the message outlived its TimeLimit; the program was stopped.
            error = {"type": type(exc).__name__, "code": "worker_stopped",
                     "message": f"the worker stopped before {kind.work} ended; ask for the {kind.noun} again"}
        logger.warning("%s %s failed: %s", kind.noun, job_id, error["message"])

    def write():
        with db.connection(pool) as conn:
            return finish(conn, job_id, me, error=error, timings=timings, **fields)

    try:
        retrying.patiently(write, FINAL_WRITE_PATIENCE_S, db.UNAVAILABLE, what="a database call")
    except Exception:
        # NOTE: loud: the row stays 'running' in the registry.
        logger.exception("FAILED TO RECORD %s %s", kind.noun, job_id)
    return None


@contextlib.contextmanager
def scratch_folder(kind, settings, job_id):
    """``$DATA_DIR/<noun>s/<id>/``, empty, removed when the block ends."""
    scratch = os.path.join(settings.data_dir, f"{kind.noun}s", str(job_id))
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch_checkpoint(kind, row, scratch, store, settings, pool):
    """``(run, checkpoint_dir, fetch_s)``: the row's run and its checkpoint of
    ``row["step"]``, downloaded into ``scratch/checkpoints``; ``checkpoint_gone``
    when retention deleted it since the request."""
    with db.connection(pool) as conn:
        run = registry.get_run(conn, row["run_id"])
        checkpoint = registry.get_checkpoint(conn, row["run_id"], row["step"])
    if checkpoint is None:
        raise kind.failed(f"the checkpoint of step {row['step']} is no longer recorded "
                          "(retention deleted it since the request)", code="checkpoint_gone")
    t = time.monotonic()
    checkpoint_dir = os.path.join(scratch, "checkpoints")
    # An outage is waited out; a refused key (StoreForbidden) fails the job at once.
    retrying.patiently(artifacts.retried(lambda: store.download_tree(checkpoint["object_key"], checkpoint_dir,
                                                                     sha256=checkpoint["sha256"]),
                                         f"{kind.noun}_checkpoint"),
                       settings.store_patience_s, StoreUnavailable, what="an artifact store call")
    return run, checkpoint_dir, time.monotonic() - t


def ensure_weights(model_id, settings):
    """A real preset's weights, as a training finds them: the operator's
    WEIGHTS_DIR, this host's converted copy, the store's, or converted now
    (workers/weights/ensure.py); None for a tiny model."""
    from tasks.models import get_model

    from .weights.ensure import ensure

    return ensure(get_model(model_id), settings)


def write_job(kind, scratch, job):
    """The job file (``scratch/<noun>.json``) the program reads; its path."""
    job_path = os.path.join(scratch, f"{kind.noun}.json")
    with open(job_path, "w", encoding="utf-8") as fh:
        json.dump(job, fh)
    return job_path


def run_program(kind, job_path, settings):
    """Run ``python -m <kind.module>`` on the job; its result event, or
    ``kind.failed`` with the program's ``error:`` line (else its exit status)
    and its stderr's tail."""
    proc = subprocess.Popen(
        [*lifeline_argv(), sys.executable, "-m", kind.module, job_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        cwd=str(PROJECT_ROOT), env=training_env(settings), start_new_session=True)
    try:
        # communicate in slices: dramatiq's TimeLimit and Shutdown interrupt
        # this thread with an exception, which must reach the finally below.
        limit_s = getattr(settings, kind.time_limit)
        deadline = time.monotonic() + limit_s
        while True:
            try:
                out, err = proc.communicate(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise kind.failed(f"{kind.work} took over {limit_s:g}s",
                                      code=f"{kind.noun}_timeout") from None
    finally:
        stop_process_group(proc)
    tail = err.splitlines()[-TAIL_LINES:]
    for line in reversed(out.splitlines()):
        if line.startswith(EVENT_PREFIX):
            event = json.loads(line[len(EVENT_PREFIX):])
            if event.get("event") == "result" and proc.returncode == 0:
                return event
    message = next((line[len("error:"):].strip() for line in reversed(tail) if line.startswith("error:")),
                   f"{kind.program} exited with status {proc.returncode}")
    raise kind.failed(message, exit_code=proc.returncode, stderr_tail=tail)
