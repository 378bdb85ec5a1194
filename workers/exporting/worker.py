"""The ``execute_export`` actor's body (declared by ``workers/actors.py``, on
the ``tunix-samples`` queue, the queue of inference-like jobs).

A checkpoint job (``workers/checkpoint_jobs.py``: claim, scratch folder
``$DATA_DIR/exports/<id>/``, the run's checkpoint of the step, the program
under the trainings' lifeline, the record or the error): the job file asks
``python -m workers.exporting`` for a merged folder, which is streamed as a
tar to ``runs/<run>/exports/step-<N>/<export>.tar`` (``artifacts.export_key``;
size and sha256 taken while streaming) and recorded with its manifest.
Nothing here retries: a failed export is asked for again.
"""

import json
import os
import shutil
import time

from tasks import artifacts, registry, retrying
from tasks.artifacts import get_store
from tasks.errors import StoreUnavailable

from .. import checkpoint_jobs



class ExportFailed(checkpoint_jobs.JobFailed):
    """Raised when an export could not be made; ``details`` go into the error."""


KIND = checkpoint_jobs.JobKind(noun="export", work="the export", module="workers.exporting",
                               program="the export program", failed=ExportFailed,
                               # gemma3-tiny takes ~10 s on 2 CPU cores, gemma3-270m about a minute.
                               time_limit="export_time_limit_s")


def folder_name(run_id, step):
    """The folder inside the tar (and the CLI's default): ``<run8>-step<N>``."""
    return f"{str(run_id)[:8]}-step{int(step)}"


def execute(export_id):
    checkpoint_jobs.execute(KIND, export_id, registry.claim_export, make_export, registry.finish_export)


def make_export(export, settings, pool):
    """``({"stored": ..., "manifest": ...}, timings)`` of one export request."""
    store = get_store(settings)
    with checkpoint_jobs.scratch_folder(KIND, settings, export["id"]) as scratch:
        run, checkpoint_dir, fetched_s = checkpoint_jobs.fetch_checkpoint(KIND, export, scratch, store,
                                                                          settings, pool)
        weights = checkpoint_jobs.ensure_weights(export["model_id"], settings)
        name = folder_name(export["run_id"], export["step"])
        out_dir = os.path.join(scratch, name)
        job = {"model_id": export["model_id"], "spec": run["config"], "run_id": str(export["run_id"]),
               "checkpoint_dir": checkpoint_dir, "weights_dir": weights, "step": export["step"], "out_dir": out_dir}
        result = checkpoint_jobs.run_program(KIND, checkpoint_jobs.write_job(KIND, scratch, job), settings)
        # The checkpoint is not needed any more: free the disk before the tar.
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        t = time.monotonic()
        key = artifacts.export_key(export["run_id"], export["step"], export["id"])
        size, sha256 = retrying.patiently(lambda: store.upload_tree(out_dir, key, name), settings.store_patience_s,
                                          StoreUnavailable, what="an artifact store call")
        uploaded_s = time.monotonic() - t
        with open(os.path.join(out_dir, "tunix_export.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
        manifest.pop("spec", None)  # the run's own; GET /runs/{id} has it
        manifest["folder"] = name
        timings = dict(result.get("timings") or {}, fetch_s=round(fetched_s, 3), upload_s=round(uploaded_s, 3))
        stored = {"object_key": key, "uri": store.uri(key), "size_bytes": size, "sha256": sha256}
        return {"stored": stored, "manifest": manifest}, timings
