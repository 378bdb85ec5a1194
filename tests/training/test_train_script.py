"""``python -m workers.training``: real (tiny) Tunix trainings in a subprocess.

Every run shares one JAX compilation cache (a session tmp dir), so only the
first run of each model compiles; the whole file takes ~30-40 s on 2 cores.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tasks.models import MODELS
from tasks.run_spec import RunSpec
from workers.training import data as data_mod
from workers.training import spec as spec_mod
from workers.training.errors import ConfigError
from workers.training.events import Unknown, parse_event

pytestmark = pytest.mark.training

ROOT = pathlib.Path(__file__).resolve().parents[2]
PREFIX = "@@tunix "
SHIPPED = ROOT / "tasks" / "data" / "text-sft.jsonl"


@pytest.fixture(scope="session")
def jax_cache():
    """The session's JAX compilation cache (``tests/conftest.py``)."""
    return os.environ["JAX_COMPILATION_CACHE_DIR"]


#: Keys of a job's ``run`` part (the placement); every other override goes to its ``spec``.
PLACEMENT = {"run_id", "run_dir", "dataset_kind", "dataset_path", "effective_max_seq_length", "weights_dir"}


def base_spec(**overrides):
    """A stored spec (every field, as a submit resolves it)."""
    spec = {
        "dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "learning_rate": 3e-3,
        "num_epochs": 1, "batch_size": 8, "max_seq_length": 64, "max_steps": 24, "seed": 1, "device": "cpu",
        "time_limit_s": 3600,
        # An interval the runs never reach: only the last step is saved.
        "checkpoint_every_steps": 10_000,
        # What a spec stored before these fields reads as (tasks/run_spec.py ADDED_SINCE_FIRST_STORE).
        "lora": None, "sample_held_out": 0, "method": "sft", "dpo": None, "grpo": None,
    }
    spec.update(overrides)
    return spec


def base_job(run_dir, **overrides):
    """A job file as the worker writes it: ``{"spec": ..., "run": ...}``."""
    spec = base_spec(**{k: v for k, v in overrides.items() if k not in PLACEMENT})
    model = MODELS.get(spec["model_id"])
    run = {"run_id": "test", "run_dir": str(run_dir), "dataset_kind": "synthetic", "dataset_path": None,
           "effective_max_seq_length": min(spec["max_seq_length"], model.max_seq_length if model else 128),
           "weights_dir": None}
    run.update({k: v for k, v in overrides.items() if k in PLACEMENT})
    return {"spec": spec, "run": run}


class Run:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout, self.stderr = proc.stdout, proc.stderr
        # Read with the worker's own parser; every line the training writes
        # is one of the kinds it knows, and reads back to the same JSON.
        lines = [line for line in proc.stdout.splitlines() if line.startswith(PREFIX)]
        parsed = [parse_event(line) for line in lines]
        assert not [e for e in parsed if e is None or isinstance(e, Unknown)], lines
        assert [e.line() for e in parsed] == lines
        self.events = [e.to_dict() for e in parsed]

    def of(self, kind):
        return [e for e in self.events if e["event"] == kind]

    @property
    def losses(self):
        return [e["loss"] for e in self.of("progress")]

    @property
    def error_line(self):
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def run_train(tmp_path, jax_cache, name="run", env=None, timeout=180, **overrides):
    return finish_train(start_train(tmp_path, jax_cache, name, env=env, **overrides), timeout)


def finish_train(proc, timeout=180):
    """The Run of a started training, once it exits (killed past ``timeout``, as ``subprocess.run`` does)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return Run(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, jax_cache):
    return run_train(tmp_path_factory.mktemp("llama"), jax_cache)


def test_llama3_synthetic_trains_and_loss_falls(llama_run):
    run = llama_run
    assert run.returncode == 0, run.stderr
    assert run.events[0]["event"] == "start"
    assert run.events[-1]["event"] == "result"
    start = run.events[0]
    assert start["total_steps"] == 24
    assert start["param_count"] == MODELS["llama3-tiny"].param_count
    assert start["device"] == "cpu"
    progress = run.of("progress")
    assert [e["step"] for e in progress] == list(range(1, 25))
    assert all(e["total_steps"] == 24 and e["learning_rate"] > 0 and e["grad_norm"] > 0 for e in progress)
    assert progress[-1]["learning_rate"] == pytest.approx(3e-3)
    losses = run.losses
    assert losses[0] > 5.0  # ~ln(256): random init
    assert losses[-1] < 0.7 * losses[0], losses
    result = run.events[-1]
    assert result["final_loss"] == losses[-1]
    assert result["steps"] == result["total_steps"] == 24
    assert result["effective_max_seq_length"] == 64
    assert result["duration_s"] > 0
    # And the eval loss on the held-out tenth of the dataset (never trained on) was measured at the end
    # (checkpoint steps are never reached here), fell with the training, and is the result's
    evals = run.of("eval")
    assert [e["step"] for e in evals] == [24] and evals[0]["examples"] == 25  # 256 examples: every 10th
    assert evals[0]["eval_loss"] < 0.8 * losses[0]
    assert result["final_eval_loss"] == evals[0]["eval_loss"] and result["held_out_examples"] == 25


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_same_seed_gives_identical_losses(tmp_path, jax_cache, llama_run):
    again = run_train(tmp_path, jax_cache, name="again")
    assert again.returncode == 0, again.stderr
    assert again.losses == llama_run.losses  # bit-identical
    other = run_train(tmp_path, jax_cache, name="other-seed", seed=2, max_steps=3)
    assert other.returncode == 0, other.stderr
    assert other.losses != llama_run.losses[:3]


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_qwen3_jsonl_short_run(tmp_path, jax_cache):
    run = run_train(tmp_path, jax_cache, model_id="qwen3-tiny", dataset_key="text-sft", dataset_kind="jsonl",
                    dataset_path=str(SHIPPED), max_steps=6, max_seq_length=2048)
    assert run.returncode == 0, run.stderr
    start, result = run.of("start")[0], run.of("result")[0]
    assert start["param_count"] == MODELS["qwen3-tiny"].param_count
    assert [e["step"] for e in run.of("progress")] == [1, 2, 3, 4, 5, 6]
    assert result["steps"] == 6
    assert result["effective_max_seq_length"] == MODELS["qwen3-tiny"].max_seq_length  # 2048 clamped
    assert result["batch_seq_length"] % 8 == 0 and result["batch_seq_length"] <= 64


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_epochs_decide_the_steps_without_max_steps(tmp_path, jax_cache):
    data = tmp_path / "small.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"Q{i}?", "completion": f" A{i}."}) for i in range(10)) + "\n")
    run = run_train(tmp_path, jax_cache, dataset_kind="jsonl", dataset_path=str(data), batch_size=4,
                    num_epochs=2, max_steps=None)
    assert run.returncode == 0, run.stderr
    assert run.of("start")[0]["batches_per_epoch"] == 3  # ceil(10 / 4)
    assert run.of("result")[0]["steps"] == 6


def test_checkpoint_then_resume_is_exact(tmp_path, jax_cache, llama_run):
    first = run_train(tmp_path, jax_cache, name="ck", checkpoint_every_steps=12)
    assert first.returncode == 0, first.stderr
    assert first.losses == llama_run.losses  # checkpointing changes nothing
    assert {12, 24} <= {e["step"] for e in first.of("checkpoint")}
    ckpt = tmp_path / "ck" / "rundir" / "checkpoints"
    assert (ckpt / "24").is_dir()
    shutil.rmtree(ckpt / "24")  # as if the process had died between steps 12 and 24
    second = run_train(tmp_path, jax_cache, name="ck", checkpoint_every_steps=12)
    assert second.returncode == 0, second.stderr
    assert second.of("start")[0]["start_step"] == 12
    assert [e["step"] for e in second.of("progress")] == list(range(13, 25))
    assert second.losses == first.losses[12:]
    assert second.of("result")[0]["steps"] == 24
    # The eval loss is measured at each checkpoint and at the end, and a resume measures the same
    assert [e["step"] for e in first.of("eval")] == [12, 24]
    assert [e["step"] for e in second.of("eval")] == [24]
    assert second.of("eval")[0]["eval_loss"] == first.of("eval")[1]["eval_loss"]


def checkpointed_params(step_dir):
    """The parameter paths a checkpoint's model item holds (orbax's tree metadata)."""
    return list(json.loads((step_dir / "model_params" / "_METADATA").read_text())["tree_metadata"])


LORA = {"rank": 4, "alpha": 8.0, "targets": ["q", "k", "v", "o", "gate", "up", "down"]}


def test_lora_trains_adapters_only_checkpoints_them_alone_and_resumes_exactly(tmp_path, jax_cache):
    # Given a LoRA run of the tiny Gemma (its key and value share one einsum)
    first = run_train(tmp_path, jax_cache, name="lora", model_id="gemma3-tiny", lora=LORA, checkpoint_every_steps=12)
    assert first.returncode == 0, first.stderr
    start = first.of("start")[0]
    # Then only the adapters train: rank x (in + out) per adapted projection, a small share of the model
    assert start["param_count"] == MODELS["gemma3-tiny"].param_count
    assert 0 < start["trainable_params"] < start["param_count"] // 5
    assert first.of("result")[0]["trainable_params"] == start["trainable_params"]
    assert all(loss == loss for loss in first.losses) and len(first.losses) == 24
    # And a checkpoint holds the adapters alone, not the base
    ckpt = tmp_path / "lora" / "rundir" / "checkpoints"
    params = checkpointed_params(ckpt / "24")
    assert params and all("lora" in p for p in params), params[:5]
    assert any("kv_einsum" in p for p in params) and any("down_proj" in p for p in params)
    # When the process dies between steps 12 and 24 and the run starts again
    shutil.rmtree(ckpt / "24")
    second = run_train(tmp_path, jax_cache, name="lora", model_id="gemma3-tiny", lora=LORA, checkpoint_every_steps=12)
    assert second.returncode == 0, second.stderr
    # Then it restores the adapters of step 12 over the same base and goes on bit for bit
    assert second.of("start")[0]["start_step"] == 12
    assert second.losses == first.losses[12:]


def test_a_full_fine_tune_checkpoints_every_parameter(llama_run, tmp_path, jax_cache):
    run = run_train(tmp_path, jax_cache, name="full", max_steps=2)
    assert run.returncode == 0, run.stderr
    assert run.of("start")[0]["trainable_params"] == MODELS["llama3-tiny"].param_count
    params = checkpointed_params(tmp_path / "full" / "rundir" / "checkpoints" / "2")
    assert any("embedder" in p or "embed" in p for p in params) and not any("lora" in p for p in params)


@pytest.fixture(scope="module")
def gemma_weights(tmp_path_factory):
    """A WEIGHTS_DIR holding the packaged gemma3-270m, converted (~40 s, 3 GB)."""
    root = tmp_path_factory.mktemp("weights")
    proc = subprocess.run([sys.executable, "-m", "workers.weights.convert", "--out", str(root / "gemma3-270m")],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.slow
def test_lora_on_the_real_model_checkpoints_its_adapters_and_resumes_exactly(tmp_path, jax_cache, gemma_weights):
    # Given a LoRA run of gemma3-270m on the instruction set, checkpointing at steps 2 and 4
    data = str(ROOT / "tasks" / "data" / "json-person.jsonl")
    job = dict(model_id="gemma3-270m", dataset_key="json-person", dataset_kind="jsonl", dataset_path=data,
               lora={"rank": 8, "alpha": 16.0, "targets": ["q", "k", "v", "o", "gate", "up", "down"]},
               learning_rate=1e-3, batch_size=2, max_seq_length=128, max_steps=4, checkpoint_every_steps=2)
    env = {"WEIGHTS_DIR": str(gemma_weights)}
    first = run_train(tmp_path, jax_cache, name="real", env=env, timeout=900, **job)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.of("start")[0]["trainable_params"] == 1_806_336 and len(first.losses) == 4
    # Then its checkpoint is the adapters, a small fraction of the 1.07 GB base
    ckpt = tmp_path / "real" / "rundir" / "checkpoints"
    size = sum(f.stat().st_size for f in (ckpt / "4").rglob("*") if f.is_file())
    assert size < 0.05 * 1_072_419_256, size
    assert all("lora" in p for p in checkpointed_params(ckpt / "4"))
    # When it dies between steps 2 and 4 and starts again
    shutil.rmtree(ckpt / "4")
    second = run_train(tmp_path, jax_cache, name="real", env=env, timeout=900, **job)
    assert second.returncode == 0, second.stderr[-3000:]
    # Then it goes on from step 2's adapters over the same base, with the uninterrupted run's losses
    assert second.of("start")[0]["start_step"] == 2
    assert [round(x, 4) for x in second.losses] == [round(x, 4) for x in first.losses[2:]]
    print(f"\ngemma3-270m LoRA: losses {first.losses}, checkpoint {size / 1e6:.1f} MB")


def test_held_out_prompts_are_answered_before_and_after_and_scored_by_the_sets_check(tmp_path, jax_cache):
    # Given a LoRA run on the shipped instruction set, asking for 4 held-out samples; then, side by side
    # (its programs compiled and cached by then), the same run asking for none and the first one again
    data = str(ROOT / "tasks" / "data" / "json-person.jsonl")
    job = dict(model_id="gemma3-tiny", dataset_key="json-person", dataset_kind="jsonl", dataset_path=data,
               lora=LORA, max_steps=3)
    run = run_train(tmp_path, jax_cache, name="samples", **job, sample_held_out=4)
    runs = run_trains(tmp_path, jax_cache, {"quiet": dict(job, sample_held_out=0),
                                            "again": dict(job, sample_held_out=4)})
    quiet, again = runs["quiet"], runs["again"]
    assert run.returncode == 0, run.stderr
    report = run.of("result")[0]["held_out_samples"]
    # Then the first 4 held-out records (every 10th) were answered by the base and the trained model
    records = [json.loads(line) for line in open(data, encoding="utf-8")]
    assert [s["prompt"] for s in report["samples"]] == [records[i]["prompt"] for i in (9, 19, 29, 39)]
    assert [s["reference"] for s in report["samples"]] == [records[i]["completion"] for i in (9, 19, 29, 39)]
    # And scored by the set's check: a random tiny model never answers in the JSON shape
    assert report["check"] == "json_person" and report["prompts"] == 4
    assert report["base"] == {"format_rate": 0.0, "correct_rate": 0.0}
    assert report["final"]["format_rate"] == 0.0
    assert all(s["base_format"] is False for s in report["samples"])
    assert "held-out samples (json_person, 4 prompts): format rate 0.00 (base)" in run.stdout
    # And the run that asked for none sampled none
    assert quiet.returncode == 0 and "held_out_samples" not in quiet.of("result")[0], quiet.stderr
    # And greedy answers repeat: the same run again reports the same texts
    assert again.returncode == 0, again.stderr
    assert again.of("result")[0]["held_out_samples"] == report


def run_trains(tmp_path, jax_cache, jobs, timeout=180):
    """``run_train`` for several jobs at once (name -> overrides): the Runs by name.
    Side by side on 2 cores, two tiny trainings whose programs are cached take ~1.4x one
    (the held-out test: 41 s -> 35 s)."""
    procs = {name: start_train(tmp_path, jax_cache, name, **overrides) for name, overrides in jobs.items()}
    return {name: finish_train(proc, timeout) for name, proc in procs.items()}


def start_train(tmp_path, jax_cache, name, env=None, **overrides):
    """``python -m workers.training`` on the job of ``overrides``, started in
    ``tmp_path/name``; ``WEIGHTS_DIR`` only where ``env`` gives it."""
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "training.json"
    path.write_text(json.dumps(base_job(folder / "rundir", **overrides)))
    full_env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax_cache, PYTHONPATH=str(ROOT))
    full_env.pop("WEIGHTS_DIR", None)
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "workers.training", str(path)], cwd=ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sigterm_when(proc, predicate, timeout=120):
    """Read ``proc``'s stdout; SIGTERM it at the first event ``predicate``
    accepts.  Returns (Run, seconds from the SIGTERM to the exit)."""
    lines, sent = [], None
    for line in proc.stdout:
        lines.append(line)
        if sent is None and line.startswith(PREFIX) and predicate(json.loads(line[len(PREFIX):])):
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
    proc.wait(timeout)
    assert sent is not None, "the training ended before the event to stop at"
    stopped_after = time.monotonic() - sent
    return Run(subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), proc.stderr.read())), \
        stopped_after


@pytest.mark.slow  # make test-all: the hand-back on SIGTERM stays in make test (tests/reliability/test_worker_crash.py)
def test_sigterm_mid_training_checkpoints_the_step_and_resume_is_exact(tmp_path, jax_cache, llama_run):
    # A checkpoint interval the run never reaches: the only checkpoints are
    # orbax's first step and the one SIGTERM forces.
    proc = start_train(tmp_path, jax_cache, "term", checkpoint_every_steps=100)
    first, stop_s = sigterm_when(proc, lambda e: e["event"] == "progress" and e["step"] >= 3)
    # Then it stopped after the step in flight, exiting 143, well within the worker's 10 s grace
    assert first.returncode == 143, first.stderr
    assert first.error_line.startswith("error: Terminated: SIGTERM: stopped after step ")
    assert stop_s < 5, stop_s
    progress = [e["step"] for e in first.of("progress")]
    last = progress[-1]
    assert progress == list(range(1, last + 1)) and 3 <= last < 24
    assert first.of("result") == []
    # And its last event is the forced checkpoint of the last reported step, complete on disk
    final = first.events[-1]
    assert final == {"event": "checkpoint", "step": last, "path": final["path"], "final": True,
                     "reason": "sigterm"}
    step_dir = tmp_path / "term" / "rundir" / "checkpoints" / str(last)
    assert (step_dir / "_CHECKPOINT_METADATA").is_file()
    assert json.loads((step_dir / "_CHECKPOINT_METADATA").read_text())["custom_metadata"]["tunix_rt"] == \
        {"step": last, "loss": llama_run.losses[last - 1]}
    # And the steps it did are the uninterrupted run's
    assert first.losses == llama_run.losses[:last]
    # When the same config runs again on the same run_dir
    second = run_train(tmp_path, jax_cache, name="term", checkpoint_every_steps=100)
    assert second.returncode == 0, second.stderr
    # Then it goes on from the checkpoint, and every later loss is the uninterrupted run's, bit for bit
    assert second.of("start")[0]["start_step"] == last
    assert [e["step"] for e in second.of("progress")] == list(range(last + 1, 25))
    assert second.losses == llama_run.losses[last:]
    assert second.of("result")[0]["final_loss"] == llama_run.losses[-1]
    assert second.of("result")[0]["steps"] == 24


def test_sigterm_before_the_first_step_exits_143_without_a_checkpoint(tmp_path, jax_cache):
    proc = start_train(tmp_path, jax_cache, "early", checkpoint_every_steps=1)
    run, stop_s = sigterm_when(proc, lambda e: e["event"] == "start")
    assert run.returncode == 143, run.stderr
    assert run.error_line == "error: Terminated: SIGTERM before the first step; nothing saved"
    assert stop_s < 5, stop_s
    assert run.of("progress") == [] and run.of("checkpoint") == []
    ckpt = tmp_path / "early" / "rundir" / "checkpoints"
    assert not ckpt.exists() or not [p for p in ckpt.iterdir() if p.name.isdigit()]


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_sigterm_after_the_last_step_finishes_and_a_resume_reports_the_final_loss(tmp_path, jax_cache, llama_run):
    # A SIGTERM that arrives once the last step is done (its progress event
    # comes from the trainer's close) changes nothing: the run completes.
    proc = start_train(tmp_path, jax_cache, "done", checkpoint_every_steps=12)
    first, _ = sigterm_when(proc, lambda e: e["event"] == "progress" and e["step"] == 24)
    assert first.returncode == 0, first.stderr
    assert first.losses == llama_run.losses
    assert first.of("result")[0]["final_loss"] == llama_run.losses[-1]
    assert "final_loss_from" not in first.of("result")[0]
    assert not [e for e in first.of("checkpoint") if e.get("final")]
    # Started again on a run_dir whose checkpoint is at the last step
    again = run_train(tmp_path, jax_cache, name="done", checkpoint_every_steps=12)
    assert again.returncode == 0, again.stderr
    assert again.of("start")[0]["start_step"] == 24
    assert again.of("progress") == []  # nothing trained
    result = again.of("result")[0]
    assert result["steps"] == 24 and result["start_step"] == 24
    # the loss recorded with the checkpoint: the last step's training loss
    assert result["final_loss"] == llama_run.losses[-1]
    assert result["final_loss_from"] == "checkpoint"


# A real preset's path (safetensors + SentencePiece from $WEIGHTS_DIR), with
# made-up weights: a gemma3-tiny-shaped checkpoint in Hugging Face naming.
FAKE_PRESET = r"""
import dataclasses, json, os, sys
from types import MappingProxyType
import numpy as np
import sentencepiece as spm
from safetensors.numpy import save_file
import tasks.models
from tasks.models import MODELS

root, data, config_path = sys.argv[1:4]
folder = os.path.join(root, "gemma3-fake")
os.makedirs(folder)
texts = [json.loads(l)["prompt"] + json.loads(l)["completion"] for l in open(data)]
with open(os.path.join(root, "corpus.txt"), "w") as fh:
    fh.write("\n".join(texts * 3))
spm.SentencePieceTrainer.Train(input=os.path.join(root, "corpus.txt"), model_prefix=folder + "/tokenizer",
                               vocab_size=200, pad_id=0, eos_id=1, bos_id=2, unk_id=3, model_type="bpe",
                               minloglevel=2)
spec = dataclasses.replace(MODELS["gemma3-tiny"], model_id="gemma3-fake", requires_weights=True,
                           tokenizer="sentencepiece", weights_subdir="gemma3-fake",
                           tokenizer_file="tokenizer.model", vocab_size=200)
D, F, N, K, H, V = spec.embed_dim, spec.hidden_dim, spec.num_heads, spec.num_kv_heads, spec.head_dim, 200
rng = np.random.default_rng(0)
def w(*shape):
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)
def z(n):
    return np.zeros(n, np.float32)
t = {"model.embed_tokens.weight": w(V, D), "model.norm.weight": z(D)}
for i in range(spec.num_layers):
    p = f"model.layers.{i}."
    t.update({p + "self_attn.q_proj.weight": w(N * H, D), p + "self_attn.k_proj.weight": w(K * H, D),
              p + "self_attn.v_proj.weight": w(K * H, D), p + "self_attn.o_proj.weight": w(D, N * H),
              p + "mlp.gate_proj.weight": w(F, D), p + "mlp.up_proj.weight": w(F, D),
              p + "mlp.down_proj.weight": w(D, F), p + "input_layernorm.weight": z(D),
              p + "post_attention_layernorm.weight": z(D), p + "pre_feedforward_layernorm.weight": z(D),
              p + "post_feedforward_layernorm.weight": z(D), p + "self_attn.q_norm.weight": z(H),
              p + "self_attn.k_norm.weight": z(H)})
save_file(t, os.path.join(folder, "model.safetensors"))
tasks.models.MODELS = MappingProxyType({**MODELS, spec.model_id: spec})  # the catalog RunSpec checks
from workers.training.__main__ import main
sys.exit(main([config_path]))
"""


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_real_preset_path_loads_safetensors_and_tokenizer(tmp_path, jax_cache):
    script = tmp_path / "fake_preset.py"
    script.write_text(FAKE_PRESET)
    weights = tmp_path / "weights"
    weights.mkdir()
    config = tmp_path / "training.json"
    config.write_text(json.dumps(base_job(tmp_path / "rundir", model_id="gemma3-fake", dataset_key="text-sft",
                                          dataset_kind="jsonl", dataset_path=str(SHIPPED), max_steps=4)))
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax_cache, PYTHONPATH=str(ROOT), WEIGHTS_DIR=str(weights))
    proc = subprocess.run([sys.executable, str(script), str(weights), str(SHIPPED), str(config)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=180)
    run = Run(proc)
    assert run.returncode == 0, run.stderr
    assert [e["step"] for e in run.of("progress")] == [1, 2, 3, 4]
    assert all(6.0 > loss > 0 for loss in run.losses)  # ~ln(200): a 200-id model was loaded
    assert run.of("result")[0]["steps"] == 4


def test_malformed_dataset_line_exits_2_naming_the_line(tmp_path, jax_cache):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n{"prompt": "e"\n')
    run = run_train(tmp_path, jax_cache, dataset_kind="jsonl", dataset_path=str(data))
    assert run.returncode == 2
    assert run.error_line.startswith("error: DatasetError: ")
    assert "line 3" in run.error_line
    assert run.events == []


def test_unknown_model_exits_2_naming_the_known_ones(tmp_path, jax_cache):
    run = run_train(tmp_path, jax_cache, model_id="no-such-model")
    assert run.returncode == 2
    assert run.error_line.startswith("error: ConfigError: invalid spec: 'model_id': unknown model 'no-such-model'")
    assert all(model_id in run.error_line for model_id in MODELS)


def test_missing_weights_exit_2_without_download(tmp_path, jax_cache):
    run = run_train(tmp_path, jax_cache, model_id="gemma3-270m",
                    env={"WEIGHTS_DIR": str(tmp_path), "DATA_DIR": str(tmp_path / "data")})
    assert run.returncode == 2
    assert run.error_line.startswith("error: WeightsNotFound: ")
    assert "gemma3-270m" in run.error_line


@pytest.mark.parametrize("overrides, fragment", [
    ({"batch_size": 0}, "'batch_size'"),
    ({"dataset_kind": "csv"}, "'dataset_kind'"),
    ({"learning_rate": -1.0}, "'learning_rate'"),
    ({"device": "tpu"}, "'device'"),
    ({"seed": None}, "'seed'"),
    ({"effective_max_seq_length": 256}, "effective_max_seq_length"),
])
def test_bad_config_exits_2(tmp_path, jax_cache, overrides, fragment):
    run = run_train(tmp_path, jax_cache, **overrides)
    assert run.returncode == 2
    assert run.error_line.startswith("error: ConfigError: ")
    assert fragment in run.error_line


def test_catalog_param_counts_are_exact():
    proc = subprocess.run([sys.executable, "-m", "workers.training", "--param-counts"], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    counts = {line.split()[0]: int(line.split()[1]) for line in proc.stdout.splitlines() if line.strip()}
    assert counts == {model_id: spec.param_count for model_id, spec in MODELS.items()}


# In-process checks of the pure helpers (no JAX import).


def test_a_job_reads_its_spec_as_stored_and_its_placement():
    # Given a job file as the worker writes it
    job = base_job("/x", learning_rate=1.0, max_steps=None)
    # When it is parsed
    parsed = spec_mod.parse_job(json.loads(json.dumps(job)))
    # Then the spec is exactly the stored one, and the placement is the worker's
    assert parsed.spec.as_stored() == job["spec"]
    assert parsed.run.model_dump() == job["run"]


@pytest.mark.parametrize("change", [
    lambda job: job.pop("run"),
    lambda job: job.update(extra={}),
    lambda job: job["spec"].pop("batch_size"),  # a missing field is an error, not a default
    lambda job: job["spec"].update(seed=True),
    lambda job: job["spec"].update(max_steps=0),
    lambda job: job["spec"].update(colour="blue"),
    lambda job: job["run"].update(dataset_kind="jsonl", dataset_path=None),
    lambda job: job["run"].pop("run_dir"),
], ids=["no run", "extra key", "missing spec field", "bool seed", "max_steps zero", "unknown spec field",
        "jsonl without a path", "no run_dir"])
def test_a_bad_job_is_a_config_error(change):
    job = base_job("/x")
    change(job)
    with pytest.raises(ConfigError):
        spec_mod.parse_job(job)


def test_encode_example_masks_the_completion_only():
    tok = data_mod.ByteTokenizer()
    ids, mask, cut = data_mod.encode_example(tok, "ab", "c", 8)
    assert ids == [data_mod.BOS_ID, 97, 98, data_mod.SEP_ID, 99, data_mod.EOS_ID, 0, 0]
    assert mask == [0, 0, 0, 0, 1, 1, 0, 0]
    assert not cut
    ids, mask, cut = data_mod.encode_example(tok, "x" * 100, "yz", 16)
    assert cut and len(ids) == 16 and ids[0] == data_mod.BOS_ID and ids[-1] == data_mod.EOS_ID
    assert sum(mask) == 3
    # a short prompt before a long completion is kept whole
    ids, mask, cut = data_mod.encode_example(tok, "abcde", "z" * 100, 32)
    assert cut and ids[:7] == [data_mod.BOS_ID, 97, 98, 99, 100, 101, data_mod.SEP_ID]
    assert len(ids) == 32 and sum(mask) == 25


def test_batches_are_full_and_seeded():
    a = list(data_mod.batch_indices(10, 4, seed=3, total_steps=7))
    b = list(data_mod.batch_indices(10, 4, seed=3, total_steps=7))
    assert len(a) == 7 and all(len(x) == 4 for x in a)
    assert all((x == y).all() for x, y in zip(a, b))
    assert sorted(set(int(i) for x in a[:3] for i in x)) == list(range(10))  # one epoch sees every example


def test_steps_are_capped():
    spec = RunSpec.stored(base_spec(max_steps=10**7))
    assert data_mod.plan_steps(spec, 256) == (data_mod.MAX_TOTAL_STEPS, 32, True)


#: ``python -m workers.training`` with the model's arrays committed to the
#: device after ``build_model``, as tunix's safetensors loader leaves a loaded
#: model's (a tiny model's random init leaves them uncommitted);
#: ``SKIP_COMMIT=1`` also turns the trainer's ``commit_to_device`` off.
LOADED_LIKE = """
import os, runpy, sys
import jax
from flax import nnx
from workers.training import loop
build = loop.build_model
def loaded(*args, **kwargs):
    model = build(*args, **kwargs)
    nnx.update(model, jax.device_put(nnx.state(model), jax.devices()[0]))
    return model
loop.build_model = loaded
if os.environ.get("SKIP_COMMIT") == "1":
    loop.commit_to_device = lambda trainer: None
sys.argv = ["workers.training", sys.argv[1]]
runpy.run_module("workers.training", run_name="__main__")
"""


def test_a_loaded_models_train_step_compiles_once(tmp_path, jax_cache):
    """Loaded weights are committed arrays and optax's scalar state was not:
    step 2 then saw other input shardings than step 1, and the train step
    compiled twice (for gemma3-270m, a second XLA compilation of 13 s)."""
    job = tmp_path / "training.json"
    job.write_text(json.dumps(base_job(tmp_path / "rundir", max_steps=3)))
    counts = {}
    for skip in ("1", "0"):
        env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax_cache, PYTHONPATH=str(ROOT), JAX_LOG_COMPILES="1",
                   SKIP_COMMIT=skip)
        shutil.rmtree(tmp_path / "rundir", ignore_errors=True)
        proc = subprocess.run([sys.executable, "-c", LOADED_LIKE, str(job)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert [e["step"] for e in Run(proc).of("progress")] == [1, 2, 3]
        counts[skip] = proc.stderr.count("Compiling jit(_train_step)")
    # Without the commit, the premise holds: two programs for one shape.
    assert counts == {"1": 2, "0": 1}, counts
