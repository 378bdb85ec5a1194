"""The ``tunix-samples`` actor's body (``tasks.actors.execute_sample``).

Claim the request (pending -> running, stamping this worker's ``host:pid``),
fetch the run's checkpoint of the asked step from the artifact store into a
scratch folder (``$DATA_DIR/samples/<id>/``, removed afterwards), run
``python -m workers.sampling JOB`` under the trainings' lifeline
(``workers/runner.py``: if this worker dies, the generation dies with it),
and record its outputs, or the error (completed | failed).  A duplicate
delivery of a request no longer pending is left alone.  Nothing here retries:
a failed sample is asked for again by its user.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import time

from dramatiq.middleware import Interrupt

from tasks import artifacts, db, registry
from tasks.artifacts import get_store
from tasks.settings import get_settings

from ..middleware.run_registry import FINAL_WRITE_PATIENCE_S, describe
from ..runner import EVENT_PREFIX, PROJECT_ROOT, lifeline_argv, stop_process_group, training_env

logger = logging.getLogger(__name__)

#: Longest a generation may take (loading the model included): a tiny model
#: takes ~6 s on 2 CPU cores, gemma3-270m's 512 tokens a few minutes.
SAMPLE_TIME_LIMIT_S = float(os.environ.get("SAMPLE_TIME_LIMIT_S", 900))
#: Lines of the program's stderr kept in a failed sample's error.
TAIL_LINES = 20


class SampleFailed(Exception):
    """Raised when a generation could not be made; ``details`` go into the error."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def worker_id(settings):
    # As workers.boot names this process (tunix_runs.worker_id).
    return f"{settings.hostname}:{os.getpid()}"


def execute(sample_id):
    from tasks.broker import pool

    settings = get_settings()
    me = worker_id(settings)
    with db.connection(pool) as conn:
        sample = registry.claim_sample(conn, sample_id, me)
    if sample is None:
        logger.info("sample %s is not pending any more: left alone", sample_id)
        return None
    started = time.monotonic()
    outputs = timings = error = None
    try:
        outputs, timings = generate_sample(sample, settings, pool)
        timings["total_s"] = round(time.monotonic() - started, 3)
    except BaseException as exc:  # noqa: BLE001 - recorded; a worker's Shutdown or TimeLimit ends it too
        error = describe(exc)
        if isinstance(exc, Interrupt):
            # dramatiq stopped this thread: the worker is stopping (Shutdown)
            # or the message outlived its TimeLimit; the generation was stopped.
            error = {"type": type(exc).__name__, "code": "worker_stopped",
                     "message": "the worker stopped before the generation ended; ask for the sample again"}
        logger.warning("sample %s failed: %s", sample_id, error["message"])

    def write():
        with db.connection(pool) as conn:
            return registry.finish_sample(conn, sample_id, me, outputs=outputs, error=error, timings=timings)

    try:
        db.patiently(write, FINAL_WRITE_PATIENCE_S)
    except Exception:
        # NOTE: loud: the sample stays 'running' in the registry.
        logger.exception("FAILED TO RECORD sample %s", sample_id)
    return None


def sample_job(sample, run, checkpoint_dir, weights=None):
    params = sample["params"]
    return {"model_id": sample["model_id"], "spec": run["config"] if run else None, "checkpoint_dir": checkpoint_dir,
            "weights_dir": weights,
            "step": sample["step"], "prompts": params["prompts"], "max_new_tokens": params["max_new_tokens"],
            "temperature": params["temperature"], "seed": params["seed"]}


def generate_sample(sample, settings, pool):
    """``(outputs, timings)`` of one sample request."""
    store = get_store(settings)
    scratch = os.path.join(settings.data_dir, "samples", str(sample["id"]))
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    try:
        run = checkpoint_dir = None
        fetched_s = 0.0
        if sample["run_id"] is not None:
            with db.connection(pool) as conn:
                run = registry.get_run(conn, sample["run_id"])
                checkpoint = registry.get_checkpoint(conn, sample["run_id"], sample["step"])
            if checkpoint is None:
                raise SampleFailed(f"the checkpoint of step {sample['step']} is no longer recorded "
                                   "(retention deleted it since the request)", code="checkpoint_gone")
            t = time.monotonic()
            checkpoint_dir = os.path.join(scratch, "checkpoints")
            artifacts.patiently(lambda: store.download_tree(checkpoint["object_key"], checkpoint_dir,
                                                            sha256=checkpoint["sha256"]),
                                settings.store_patience_s)
            fetched_s = time.monotonic() - t
        # A real preset's weights, as a training finds them: the operator's
        # WEIGHTS_DIR, this host's converted copy, the store's, or converted
        # now (workers/weights/ensure.py); None for a tiny model.
        from tasks.models import get_model

        from ..weights.ensure import ensure as ensure_weights

        weights = ensure_weights(get_model(sample["model_id"]), settings)
        job_path = os.path.join(scratch, "sample.json")
        with open(job_path, "w", encoding="utf-8") as fh:
            json.dump(sample_job(sample, run, checkpoint_dir, weights), fh)
        result = run_program(job_path, settings)
        timings = dict(result.get("timings") or {}, fetch_s=round(fetched_s, 3))
        return result["outputs"], timings
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_program(job_path, settings):
    """Run ``python -m workers.sampling`` on the job; its result event."""
    proc = subprocess.Popen(
        [*lifeline_argv(), sys.executable, "-m", "workers.sampling", job_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        cwd=str(PROJECT_ROOT), env=training_env(settings), start_new_session=True)
    try:
        # communicate in slices: dramatiq's TimeLimit and Shutdown interrupt
        # this thread with an exception, which must reach the finally below.
        deadline = time.monotonic() + SAMPLE_TIME_LIMIT_S
        while True:
            try:
                out, err = proc.communicate(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise SampleFailed(f"the generation took over {SAMPLE_TIME_LIMIT_S:g}s",
                                       code="sample_timeout") from None
    finally:
        stop_process_group(proc)
    tail = err.splitlines()[-TAIL_LINES:]
    for line in reversed(out.splitlines()):
        if line.startswith(EVENT_PREFIX):
            event = json.loads(line[len(EVENT_PREFIX):])
            if event.get("event") == "result" and proc.returncode == 0:
                return event
    message = next((line[len("error:"):].strip() for line in reversed(tail) if line.startswith("error:")),
                   f"the sampling program exited with status {proc.returncode}")
    raise SampleFailed(message, exit_code=proc.returncode, stderr_tail=tail)
