"""``python -m workers.exporting JOB_JSON``: one export, in a process of its
own (JAX state never lives in the worker), written by
``workers/exporting/worker.py``.

The job::

    {"model_id": str, "spec": <the run's stored spec>, "run_id": str,
     "checkpoint_dir": str,           # an orbax root holding the step
     "weights_dir": str | null,       # a real preset's weights
     "step": int, "out_dir": str}     # the folder to write (created)

The model is the one sampling restores (``workers.sampling.__main__.
load_model``: the run's model, its LoRA adapters, the checkpoint's model
parameters).  A LoRA run's adapters are folded into the base weights
(``merge.py``); a full fine-tune's parameters are written as they are.
``out_dir`` receives ``model.safetensors`` (Hugging Face names, written by
the family's module: ``gemma3.py``, ``llama3.py``, ``qwen3.py``; see
``EXPORTERS``), ``config.json`` (``Gemma3ForCausalLM``, ``LlamaForCausalLM``,
``Qwen3ForCausalLM``), the tokenizer (``tokenizer.model`` for a
SentencePiece model; ``tokenizer_byte.json`` describing the byte vocabulary
of a tiny model) and ``tunix_export.json`` (run, step, spec, base model,
whether LoRA was merged, the loss check, each file's size and sha256).

The program proves its own folder before it answers: it loads the folder
back through tunix's ``create_model_from_safe_tensors`` (the family's own:
the exporter's ``LOADER``) and scores fixed
sentences with both models (``verification``: the two mean losses, their
difference, the largest logit difference); a difference over
``MAX_LOSS_DIFF`` fails the export.

Prints one ``@@tunix {"event": "result", ...}`` line; a failure is an
``error: <Type>: <message>`` line on stderr and exit status 2 (bad input)
or 1.
"""

import hashlib
import importlib
import json
import os
import shutil
import signal
import sys
import time

import numpy as np

from tasks.export_spec import EXPORT_FAMILIES
from tasks.models import get_model
from tasks.run_spec import RunSpec

from ..training.errors import ConfigError, InputError
from ..training.events import EVENT_PREFIX, report_error, write_stdout

USAGE = "usage: python -m workers.exporting JOB_JSON_PATH\n"

#: family -> the module writing its Hugging Face layout, ``<family>.py``
#: (``hf_tensors``, ``hf_config``, ``ARCHITECTURE``, ``LOADER``: tunix's
#: safetensors loader module).  The families are ``EXPORT_FAMILIES``
#: (tasks/export_spec.py), the list the API checks a request against.
EXPORTERS = {family: importlib.import_module(f"{__package__}.{family}") for family in EXPORT_FAMILIES}
#: Largest |loss(export) - loss(checkpoint)| accepted, nats per token
#: (float32; measured: ~1e-7 on gemma3-tiny, see the README).
MAX_LOSS_DIFF = 1e-4
#: Format of ``tunix_export.json``.
EXPORT_FORMAT = 1


class ExportUnsupported(InputError):
    """The run's model family has no exporter."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sentence_batch(tokenizer, sentences=None, max_tokens=128):
    """``(tokens, valid)`` int32/bool arrays: each sentence after BOS, padded."""
    from ..weights.smoke import SENTENCES

    rows = [[tokenizer.bos_id, *tokenizer.encode(text)][:max_tokens] for text in (sentences or SENTENCES)]
    length = max(len(row) for row in rows)
    tokens = np.full((len(rows), length), tokenizer.pad_id, dtype=np.int32)
    valid = np.zeros((len(rows), length), dtype=bool)
    for i, row in enumerate(rows):
        tokens[i, :len(row)], valid[i, :len(row)] = row, True
    return tokens, valid


def sentence_loss(model, tokens, valid):
    """``(mean next-token loss in nats, logits as float32 ndarray)``."""
    import jax
    import jax.numpy as jnp
    from tunix.sft.utils import build_positions_from_mask, make_causal_attn_mask

    mask = jnp.asarray(valid)
    logits, _ = model(jnp.asarray(tokens), build_positions_from_mask(mask), None, make_causal_attn_mask(mask))
    logits = logits.astype(jnp.float32)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.asarray(tokens[:, 1:])[..., None], axis=-1)[..., 0]
    weight = jnp.asarray(valid[:, 1:], dtype=jnp.float32)
    return float((nll * weight).sum() / weight.sum()), np.asarray(logits)


def write_tokenizer(model_spec, weights, tokenizer, out_dir):
    if model_spec.tokenizer == "byte":
        note = {"type": "byte-level", "vocab_size": 256,
                "description": "token id = the UTF-8 byte (1-252); ids 0, 253, 254, 255 are special",
                "special_ids": {"pad": tokenizer.pad_id, "sep": tokenizer.sep_id, "bos": tokenizer.bos_id,
                                "eos": tokenizer.eos_id},
                "prompt_format": "BOS prompt SEP completion EOS"}
        with open(os.path.join(out_dir, "tokenizer_byte.json"), "w", encoding="utf-8") as fh:
            json.dump(note, fh, indent=2)
    else:
        shutil.copyfile(os.path.join(weights, model_spec.tokenizer_file),
                        os.path.join(out_dir, os.path.basename(model_spec.tokenizer_file)))


def export(job):
    """Write the folder; the result event's body."""
    from ..sampling.__main__ import load_model, tokenizer_for
    from ..training.model import build_model_config, configure_jax, setup_jax_env, weights_dir
    from .merge import merged_params

    t0 = time.monotonic()
    model_spec = get_model(job["model_id"])
    exporter = EXPORTERS.get(model_spec.family)
    if exporter is None:
        raise ExportUnsupported(f"model {model_spec.model_id!r} (family {model_spec.family}): "
                                f"export supports {', '.join(EXPORTERS)} models")
    spec = RunSpec.stored(job["spec"])
    weights = (job.get("weights_dir") or weights_dir(model_spec)) if model_spec.requires_weights else None
    tokenizer = tokenizer_for(model_spec, weights)
    # On the CPU whatever the run used: float32 exactly (a GPU's matmuls may
    # round through TF32), and the GPU may be a training's.
    setup_jax_env("cpu")
    platform = configure_jax("cpu")
    model = load_model(dict(job, seed=spec.seed), model_spec, weights)
    loaded = time.monotonic()

    tokens, valid = sentence_batch(tokenizer)
    loss_checkpoint, logits_checkpoint = sentence_loss(model, tokens, valid)
    lora = getattr(spec, "lora", None)
    params, merged = merged_params(model, lora.alpha if lora else 0, lora.rank if lora else 0)
    del model
    cfg = build_model_config(model_spec)
    tensors = exporter.hf_tensors(params, cfg)
    del params
    out_dir = job["out_dir"]
    os.makedirs(out_dir, exist_ok=True)
    from safetensors.numpy import save_file

    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    n_tensors = len(tensors)
    del tensors
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(exporter.hf_config(model_spec, cfg, tokenizer), fh, indent=2)
    write_tokenizer(model_spec, weights, tokenizer, out_dir)
    written = time.monotonic()

    # The proof: the folder, through tunix's own loader, scores as the checkpoint.
    from ..training.model import _dtype

    loader = importlib.import_module(exporter.LOADER)
    reloaded = loader.create_model_from_safe_tensors(out_dir, cfg, dtype=_dtype(model_spec.dtype))
    loss_export, logits_export = sentence_loss(reloaded, tokens, valid)
    del reloaded
    logit_diff = float(np.abs(logits_export - logits_checkpoint)[valid].max())
    verification = {"sentences": int(tokens.shape[0]), "tokens": int(valid[:, 1:].sum()),
                    "loss_checkpoint": loss_checkpoint, "loss_export": loss_export,
                    "loss_diff": abs(loss_export - loss_checkpoint), "max_logit_diff": logit_diff,
                    "dtype": model_spec.dtype}
    if not verification["loss_diff"] <= MAX_LOSS_DIFF:
        raise RuntimeError(f"the exported folder scores {loss_export:.6f} nats/token, the checkpoint "
                           f"{loss_checkpoint:.6f}: over {MAX_LOSS_DIFF:g} apart; the export is wrong")
    verified = time.monotonic()

    files = {name: {"size": os.path.getsize(os.path.join(out_dir, name)),
                    "sha256": sha256_of(os.path.join(out_dir, name))}
             for name in sorted(os.listdir(out_dir))}
    manifest = {
        "format": EXPORT_FORMAT, "run_id": job.get("run_id"), "step": job["step"], "model_id": model_spec.model_id,
        "family": model_spec.family, "base_model": {"model_id": model_spec.model_id,
                                                    "weights_source": model_spec.weights_source or
                                                    "random initialisation from the run's seed"},
        "spec": job["spec"],
        "lora": ({"merged": True, "rank": lora.rank, "alpha": lora.alpha, "targets": list(lora.targets),
                  "merged_weights": len(merged)} if lora else {"merged": False}),
        "layout": f"Hugging Face {exporter.ARCHITECTURE} names (model.safetensors); loads with tunix's "
                  f"{exporter.LOADER}.create_model_from_safe_tensors",
        "tensors": n_tensors, "verification": verification, "files": files,
    }
    with open(os.path.join(out_dir, "tunix_export.json"), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, default=str)
    timings = {"load_s": round(loaded - t0, 3), "write_s": round(written - loaded, 3),
               "verify_s": round(verified - written, 3), "total_s": round(time.monotonic() - t0, 3),
               "device": platform}
    return {"event": "result", "files": files, "verification": verification, "lora_merged": bool(lora),
            "merged_weights": len(merged), "tensors": n_tensors, "timings": timings}


def load_job(path):
    try:
        with open(path, encoding="utf-8") as fh:
            job = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the export job {path}: {exc}") from None
    if get_model(job.get("model_id")) is None:
        raise ConfigError(f"unknown model {job.get('model_id')!r}")
    return job


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write(USAGE)
        return 2
    # Nothing to save: SIGTERM ends it at once, as the default would, but reported.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        write_stdout(EVENT_PREFIX + json.dumps(export(load_job(argv[0])), allow_nan=False) + "\n")
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
