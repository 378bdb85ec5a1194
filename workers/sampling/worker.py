"""The ``execute_sample`` actor's body (declared by ``workers/actors.py``, on
the ``tunix-samples`` queue).

A checkpoint job (``workers/checkpoint_jobs.py``: claim, scratch folder
``$DATA_DIR/samples/<id>/``, the run's checkpoint of the asked step, the
program under the trainings' lifeline, the record or the error): the job
file asks ``python -m workers.sampling`` for completions of the prompts, and
its outputs are recorded.  A sample of no run (``run_id`` null) generates
from the model's base weights, without a checkpoint.  Nothing here retries:
a failed sample is asked for again by its user.
"""


from tasks import registry
from tasks.artifacts import get_store

from .. import checkpoint_jobs



class SampleFailed(checkpoint_jobs.JobFailed):
    """Raised when a generation could not be made; ``details`` go into the error."""


KIND = checkpoint_jobs.JobKind(noun="sample", work="the generation", module="workers.sampling",
                               program="the sampling program", failed=SampleFailed,
                               # A tiny model takes ~6 s on 2 CPU cores, gemma3-270m's 512 tokens a few minutes.
                               time_limit="sample_time_limit_s")


def execute(sample_id):
    checkpoint_jobs.execute(KIND, sample_id, registry.claim_sample, generate_sample, registry.finish_sample)


def sample_job(sample, run, checkpoint_dir, weights=None):
    params = sample["params"]
    return {"model_id": sample["model_id"], "spec": run["config"] if run else None, "checkpoint_dir": checkpoint_dir,
            "weights_dir": weights,
            "step": sample["step"], "prompts": params["prompts"], "max_new_tokens": params["max_new_tokens"],
            "temperature": params["temperature"], "seed": params["seed"]}


def generate_sample(sample, settings, pool):
    """``({"outputs": ...}, timings)`` of one sample request."""
    store = get_store(settings)
    with checkpoint_jobs.scratch_folder(KIND, settings, sample["id"]) as scratch:
        run = checkpoint_dir = None
        fetched_s = 0.0
        if sample["run_id"] is not None:
            run, checkpoint_dir, fetched_s = checkpoint_jobs.fetch_checkpoint(KIND, sample, scratch, store,
                                                                              settings, pool)
        weights = checkpoint_jobs.ensure_weights(sample["model_id"], settings)
        job_path = checkpoint_jobs.write_job(KIND, scratch, sample_job(sample, run, checkpoint_dir, weights))
        result = checkpoint_jobs.run_program(KIND, job_path, settings)
        timings = dict(result.get("timings") or {}, fetch_s=round(fetched_s, 3))
        return {"outputs": result["outputs"]}, timings
