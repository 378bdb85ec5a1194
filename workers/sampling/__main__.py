"""``python -m workers.sampling JOB_JSON``: one generation, in a process of
its own (JAX state never lives in the worker), written by
``workers/sampling/worker.py``.

The job::

    {"model_id": str,                 # a catalog model
     "spec": <the run's stored spec> | null,   # null: a base model
     "checkpoint_dir": str | null,    # an orbax root holding the step (a run)
     "weights_dir": str | null,       # a real preset's weights (workers/weights/ensure.py)
     "step": int | null,
     "prompts": [str], "max_new_tokens": int, "temperature": float, "seed": int}

The model is built as the run's training built it (``build_model`` from the
run's seed, then ``apply_lora`` for a LoRA run), and the checkpoint's model
parameters are restored over it: every parameter for a full fine-tune, the
adapters alone for a LoRA run (its checkpoint holds only them; the frozen
base is the same weights the training started from).  The optimizer state in
the checkpoint is not read.  A base model has no checkpoint: a real preset
is its weights; a tiny model is random, initialised from the request's
seed (what a run of that seed starts from at step 0).

Prints one ``@@tunix {"event": "result", "outputs": [...], "timings": {...}}``
line; a failure is an ``error: <Type>: <message>`` line on stderr and exit
status 2 (bad input: weights, device) or 1.
"""

import json
import os
import signal
import sys
import time

from tasks.models import get_model
from tasks.run_spec import RunSpec

from ..training.errors import ConfigError, InputError
from ..training.events import emit, report_error
from .generate import generate

USAGE = "usage: python -m workers.sampling JOB_JSON_PATH\n"


def load_job(path):
    try:
        with open(path, encoding="utf-8") as fh:
            job = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the sample job {path}: {exc}") from None
    if get_model(job.get("model_id")) is None:
        raise ConfigError(f"unknown model {job.get('model_id')!r}")
    return job


def tokenizer_for(model_spec, weights):
    from ..training.data import ByteTokenizer, SentencePieceTokenizer

    if model_spec.tokenizer == "byte":
        return ByteTokenizer()
    return SentencePieceTokenizer(os.path.join(weights, model_spec.tokenizer_file))


def load_model(job, model_spec, weights):
    """The model the job samples: a run's checkpoint restored over the model
    its training built, or the base model."""
    from ..training.model import build_model

    spec = RunSpec.stored(job["spec"]) if job.get("spec") else None
    model = build_model(model_spec, spec.seed if spec else job["seed"], weights)
    if spec is None:
        return model
    lora = getattr(spec, "lora", None)
    if lora is not None:
        from ..training.model import apply_lora

        model = apply_lora(model, lora, model_spec, spec.seed)
    from tunix.sft.checkpoint_manager import CheckpointManager

    manager = CheckpointManager(job["checkpoint_dir"])
    try:
        restored, _ = manager.maybe_restore(model, step=job["step"], restore_only_lora_params=lora is not None)
    finally:
        manager.close()
    if restored != job["step"]:
        raise ConfigError(f"the checkpoint of step {job['step']} was not found in {job['checkpoint_dir']}")
    return model


def run(job):
    from ..training.model import configure_jax, setup_jax_env, weights_dir

    t0 = time.monotonic()
    model_spec = get_model(job["model_id"])
    weights = None
    if model_spec.requires_weights:
        weights = job.get("weights_dir") or weights_dir(model_spec)
    tokenizer = tokenizer_for(model_spec, weights)
    device = (job.get("spec") or {}).get("device", "auto")
    setup_jax_env(device)
    platform = configure_jax(device)
    model = load_model(job, model_spec, weights)
    loaded = time.monotonic()
    outputs = generate(model, tokenizer, job["prompts"], model_spec=model_spec,
                       max_new_tokens=job["max_new_tokens"], temperature=job["temperature"], seed=job["seed"])
    done = time.monotonic()
    tokens = sum(o["num_tokens"] for o in outputs)
    timings = {"load_s": round(loaded - t0, 3), "generate_s": round(done - loaded, 3),
               "tokens": tokens, "ms_per_token": round(1000 * (done - loaded) / tokens, 3) if tokens else None,
               "device": platform}
    emit({"event": "result", "outputs": outputs, "timings": timings})


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write(USAGE)
        return 2
    # A generation has nothing to save: SIGTERM (the worker stops, the
    # lifeline) ends it at once, as the default action would, but reported.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        run(load_job(argv[0]))
        return 0
    except InputError as exc:
        code, error = exc.exit_code, exc
    except SystemExit as exc:
        code, error = exc.code, RuntimeError("stopped by SIGTERM")
    except BaseException as exc:  # noqa: BLE001 - report every failure as one line
        code, error = 1, exc
    report_error(error)
    return code


if __name__ == "__main__":
    sys.exit(main())
