"""The ``execute_export`` actor's body (``tasks.actors``, on the
``tunix-samples`` queue, the queue of inference-like jobs).

Claim the request (pending -> running, stamping this worker's ``host:pid``),
fetch the run's checkpoint of the step from the artifact store into a
scratch folder (``$DATA_DIR/exports/<id>/``, removed afterwards), run
``python -m workers.exporting JOB`` under the trainings' lifeline (if this
worker dies, the export dies with it), stream the folder it wrote as a tar
to ``runs/<run>/exports/step-<N>/<export>.tar`` (``artifacts.export_key``;
size and sha256 taken while streaming), and record it, or the error
(completed | failed).  A duplicate delivery of a request no longer pending
is left alone.  Nothing here retries: a failed export is asked for again.
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

#: Longest an export may take: gemma3-tiny takes ~10 s on 2 CPU cores,
#: gemma3-270m about a minute (README "Exports").
EXPORT_TIME_LIMIT_S = float(os.environ.get("EXPORT_TIME_LIMIT_S", 1800))
#: Lines of the program's stderr kept in a failed export's error.
TAIL_LINES = 20


class ExportFailed(Exception):
    """Raised when an export could not be made; ``details`` go into the error."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def worker_id(settings):
    # As workers.boot names this process (tunix_runs.worker_id).
    return f"{settings.hostname}:{os.getpid()}"


def folder_name(run_id, step):
    """The folder inside the tar (and the CLI's default): ``<run8>-step<N>``."""
    return f"{str(run_id)[:8]}-step{int(step)}"


def execute(export_id):
    from tasks.broker import pool

    settings = get_settings()
    me = worker_id(settings)
    with db.connection(pool) as conn:
        export = registry.claim_export(conn, export_id, me)
    if export is None:
        logger.info("export %s is not pending any more: left alone", export_id)
        return None
    started = time.monotonic()
    stored = manifest = timings = error = None
    try:
        stored, manifest, timings = make_export(export, settings, pool)
        timings["total_s"] = round(time.monotonic() - started, 3)
    except BaseException as exc:  # noqa: BLE001 - recorded; a worker's Shutdown or TimeLimit ends it too
        error = describe(exc)
        if isinstance(exc, Interrupt):
            error = {"type": type(exc).__name__, "code": "worker_stopped",
                     "message": "the worker stopped before the export ended; ask for the export again"}
        logger.warning("export %s failed: %s", export_id, error["message"])

    def write():
        with db.connection(pool) as conn:
            return registry.finish_export(conn, export_id, me, stored=stored, manifest=manifest, error=error,
                                          timings=timings)

    try:
        db.patiently(write, FINAL_WRITE_PATIENCE_S)
    except Exception:
        # NOTE: loud: the export stays 'running' in the registry.
        logger.exception("FAILED TO RECORD export %s", export_id)
    return None


def make_export(export, settings, pool):
    """``(stored, manifest, timings)`` of one export request."""
    store = get_store(settings)
    scratch = os.path.join(settings.data_dir, "exports", str(export["id"]))
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    try:
        with db.connection(pool) as conn:
            run = registry.get_run(conn, export["run_id"])
            checkpoint = registry.get_checkpoint(conn, export["run_id"], export["step"])
        if checkpoint is None:
            raise ExportFailed(f"the checkpoint of step {export['step']} is no longer recorded "
                               "(retention deleted it since the request)", code="checkpoint_gone")
        t = time.monotonic()
        checkpoint_dir = os.path.join(scratch, "checkpoints")
        artifacts.patiently(lambda: store.download_tree(checkpoint["object_key"], checkpoint_dir,
                                                        sha256=checkpoint["sha256"]),
                            settings.store_patience_s)
        fetched_s = time.monotonic() - t
        from tasks.models import get_model

        from ..weights.ensure import ensure as ensure_weights

        weights = ensure_weights(get_model(export["model_id"]), settings)
        name = folder_name(export["run_id"], export["step"])
        out_dir = os.path.join(scratch, name)
        job = {"model_id": export["model_id"], "spec": run["config"], "run_id": str(export["run_id"]),
               "checkpoint_dir": checkpoint_dir, "weights_dir": weights, "step": export["step"], "out_dir": out_dir}
        job_path = os.path.join(scratch, "export.json")
        with open(job_path, "w", encoding="utf-8") as fh:
            json.dump(job, fh)
        result = run_program(job_path, settings)
        # The checkpoint is not needed any more: free the disk before the tar.
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        t = time.monotonic()
        key = artifacts.export_key(export["run_id"], export["step"], export["id"])
        size, sha256 = artifacts.patiently(lambda: store.upload_tree(out_dir, key, name), settings.store_patience_s)
        uploaded_s = time.monotonic() - t
        with open(os.path.join(out_dir, "tunix_export.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
        manifest.pop("spec", None)  # the run's own; GET /runs/{id} has it
        manifest["folder"] = name
        timings = dict(result.get("timings") or {}, fetch_s=round(fetched_s, 3), upload_s=round(uploaded_s, 3))
        stored = {"object_key": key, "uri": store.uri(key), "size_bytes": size, "sha256": sha256}
        return stored, manifest, timings
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_program(job_path, settings):
    """Run ``python -m workers.exporting`` on the job; its result event."""
    proc = subprocess.Popen(
        [*lifeline_argv(), sys.executable, "-m", "workers.exporting", job_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        cwd=str(PROJECT_ROOT), env=training_env(settings), start_new_session=True)
    try:
        # communicate in slices: dramatiq's TimeLimit and Shutdown interrupt
        # this thread with an exception, which must reach the finally below.
        deadline = time.monotonic() + EXPORT_TIME_LIMIT_S
        while True:
            try:
                out, err = proc.communicate(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise ExportFailed(f"the export took over {EXPORT_TIME_LIMIT_S:g}s",
                                       code="export_timeout") from None
    finally:
        stop_process_group(proc)
    tail = err.splitlines()[-TAIL_LINES:]
    for line in reversed(out.splitlines()):
        if line.startswith(EVENT_PREFIX):
            event = json.loads(line[len(EVENT_PREFIX):])
            if event.get("event") == "result" and proc.returncode == 0:
                return event
    message = next((line[len("error:"):].strip() for line in reversed(tail) if line.startswith("error:")),
                   f"the export program exited with status {proc.returncode}")
    raise ExportFailed(message, exit_code=proc.returncode, stderr_tail=tail)
