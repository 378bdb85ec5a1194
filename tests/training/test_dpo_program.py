"""``python -m workers.training`` with method dpo: DPO and ORPO trainings in a subprocess.

Tiny models on the shipped preference set (``tasks/data/json-person-prefs.jsonl``),
sharing one JAX compilation cache; the real model's measurement is the
slow test at the end.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from test_train_script import (ROOT, LORA, PREFIX, Run, base_job, gemma_weights, jax_cache,  # noqa: F401
                               run_train, start_train)

pytestmark = pytest.mark.training

PREFS = ROOT / "tasks" / "data" / "json-person-prefs.jsonl"
METRICS = {"reward_accuracy", "reward_margin", "reward_chosen", "reward_rejected"}
LN2 = math.log(2)


def dpo_job(loss="dpo", beta=0.1, **overrides):
    """A DPO (or ORPO) job on the shipped preference set: 16 steps of 8 pairs."""
    job = dict(method="dpo", dpo={"beta": beta, "loss": loss, "lambda_orpo": 0.1, "label_smoothing": 0.0},
               dataset_key="json-person-prefs", dataset_kind="jsonl", dataset_path=str(PREFS),
               max_seq_length=128, max_steps=16)
    job.update(overrides)
    return job


def records():
    return [json.loads(line) for line in PREFS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory, jax_cache):  # noqa: F811 - the fixture imported above
    """A full fine-tuning of llama3-tiny with DPO (its reference: a copy of the model before training)."""
    return run_train(tmp_path_factory.mktemp("dpo"), jax_cache, **dpo_job())


def test_a_dpo_run_reports_its_preference_metrics_at_every_step_and_ranks_the_held_out_pairs(dpo_run):
    # Given a DPO run of 16 steps on the 400 pairs (every 10th held out)
    run = dpo_run
    assert run.returncode == 0, run.stderr
    assert run.of("start")[0]["num_examples"] == 360
    # Then every step reports tunix's reward metrics, all finite
    progress = run.of("progress")
    assert [e["step"] for e in progress] == list(range(1, 17))
    assert all(set(e["metrics"]) == METRICS and None not in e["metrics"].values() for e in progress)
    # And at step 1 the model is its reference: the loss is ln 2, every reward 0 (to float32's noise: the
    # policy's log-probabilities come from the compiled train step, the reference's from a forward of its
    # own, and XLA may sum them in another order; measured -9.5e-07).  Accuracy counts margins > 0, so at a
    # margin of noise it is noise: not asserted here.
    assert progress[0]["loss"] == pytest.approx(LN2, abs=1e-6)
    first = progress[0]["metrics"]
    assert {name: first[name] for name in METRICS - {"reward_accuracy"}} == pytest.approx(
        {name: 0.0 for name in METRICS - {"reward_accuracy"}}, abs=1e-5)
    # And the training separates the pairs: the loss falls below ln 2, the chosen answers win most batches
    assert sum(run.losses[-4:]) / 4 < LN2 - 0.1, run.losses
    assert sum(e["metrics"]["reward_accuracy"] for e in progress[-8:]) / 8 > 0.6
    # And the held-out pairs' DPO loss is measured at the end, below ln 2
    evals = run.of("eval")
    assert [(e["step"], e["examples"]) for e in evals] == [(16, 40)] and evals[0]["eval_loss"] < LN2
    # And the result compares how the base and the trained model rank the 40 held-out pairs:
    # the trained one puts more log-probability on the chosen answers
    result = run.of("result")[0]
    assert result["final_loss"] == run.losses[-1] and result["held_out_examples"] == 40
    prefs = result["held_out_preferences"]
    assert prefs["pairs"] == 40 and set(prefs["base"]) == set(prefs["trained"]) == {"preferred_rate",
                                                                                    "mean_logp_margin"}
    assert prefs["trained"]["mean_logp_margin"] > prefs["base"]["mean_logp_margin"], prefs
    assert "held-out preferences (40 pairs): chosen preferred" in run.stdout


@pytest.mark.slow  # make test-all: SFT's and LoRA's exact resumes stay in make test
def test_a_sigkilled_dpo_run_resumes_from_its_checkpoint_with_the_uninterrupted_losses(tmp_path, jax_cache,
                                                                                       dpo_run):
    # Given the same DPO run, checkpointing every 4 steps, killed (SIGKILL: no last checkpoint) after step 7
    proc = start_train(tmp_path, jax_cache, "killed", **dpo_job(checkpoint_every_steps=4))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(PREFIX) and '"event":"progress"' in line and json.loads(line[len(PREFIX):])["step"] >= 7:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    killed = Run(subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), ""))
    assert killed.of("result") == [] and killed.losses == dpo_run.losses[:len(killed.losses)]
    # When it starts again on the same run_dir
    again = run_train(tmp_path, jax_cache, name="killed", **dpo_job(checkpoint_every_steps=4))
    assert again.returncode == 0, again.stderr
    # Then it goes on from its last periodic checkpoint
    start = again.of("start")[0]["start_step"]
    assert start in (4, 8), start
    assert [e["step"] for e in again.of("progress")] == list(range(start + 1, 17))
    # And every later step is the uninterrupted run's (the reference is the model before the restore)
    assert [round(x, 4) for x in again.losses] == [round(x, 4) for x in dpo_run.losses[start:]]
    result = again.of("result")[0]
    assert round(result["final_loss"], 4) == round(dpo_run.of("result")[0]["final_loss"], 4)
    # And it ranks the held-out pairs as the uninterrupted run does, its base measured before the restore
    assert result["held_out_preferences"] == dpo_run.of("result")[0]["held_out_preferences"]


@pytest.mark.slow  # make test-all: full DPO and ORPO stay in make test
def test_a_lora_dpo_run_takes_the_frozen_base_as_its_reference(tmp_path, jax_cache):
    # Given a LoRA DPO run of the tiny Gemma that samples 2 held-out prompts
    run = run_train(tmp_path, jax_cache, **dpo_job(model_id="gemma3-tiny", lora=LORA, max_steps=6,
                                                   sample_held_out=2))
    assert run.returncode == 0, run.stderr
    start = run.of("start")[0]
    assert 0 < start["trainable_params"] < start["param_count"] // 5
    # Then step 1 compares the model with its base (ln 2), and later steps move away from it
    assert run.losses[0] == pytest.approx(LN2, abs=1e-6)
    assert all(abs(loss - LN2) > 1e-4 for loss in run.losses[2:]), run.losses
    assert all(set(e["metrics"]) == METRICS for e in run.of("progress"))
    # And the held-out prompts were answered before and after, the chosen answer their reference,
    # scored by the set's check
    samples = run.of("result")[0]["held_out_samples"]
    assert samples["check"] == "json_person" and samples["prompts"] == 2
    assert [s["reference"] for s in samples["samples"]] == [records()[i]["chosen"] for i in (9, 19)]
    assert run.of("result")[0]["held_out_preferences"]["pairs"] == 40


def test_an_orpo_run_trains_without_a_reference_and_its_loss_falls(tmp_path, jax_cache):
    # Given an ORPO run (the chosen answer's NLL plus the odds-ratio term) of qwen3-tiny
    run = run_train(tmp_path, jax_cache, **dpo_job(loss="orpo", model_id="qwen3-tiny"))
    assert run.returncode == 0, run.stderr
    progress = run.of("progress")
    assert [e["step"] for e in progress] == list(range(1, 17))
    assert all(set(e["metrics"]) == METRICS and None not in e["metrics"].values() for e in progress)
    # Then its loss starts near a random byte model's NLL (ln 256 = 5.5 a token), not at ln 2, and falls
    assert run.losses[0] > 4.0 and sum(run.losses[-4:]) / 4 < 0.7 * run.losses[0], run.losses
    # And its rewards are lambda x the answers' log-probabilities (no reference): negative
    assert all(e["metrics"]["reward_chosen"] < 0 for e in progress)
    prefs = run.of("result")[0]["held_out_preferences"]
    assert prefs["trained"]["mean_logp_margin"] > prefs["base"]["mean_logp_margin"], prefs


def test_a_preference_file_with_a_bad_line_exits_2_naming_the_line(tmp_path, jax_cache):
    # Given a preference file whose third pair has no rejected answer
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "d", "chosen": "e", "rejected": "f"}\n'
                    '{"prompt": "g", "chosen": "h"}\n')
    # When a DPO run reads it
    run = run_train(tmp_path, jax_cache, **dpo_job(dataset_path=str(data), dataset_key="bad"))
    # Then it exits 2 before training, naming the line
    assert run.returncode == 2 and run.events == []
    assert run.error_line == "error: DatasetError: dataset " + str(data) + ": line 3: missing field(s) 'rejected'"


def test_a_dataset_of_another_kind_given_to_dpo_exits_2_naming_the_kind(tmp_path, jax_cache):
    # Given the shipped prompt/completion set
    data = ROOT / "tasks" / "data" / "json-person.jsonl"
    # When a DPO run is given it
    run = run_train(tmp_path, jax_cache, **dpo_job(dataset_path=str(data), dataset_key="json-person"))
    # Then it exits 2 before training, saying what DPO needs and what the file holds
    assert run.returncode == 2 and run.events == []
    assert run.error_line.startswith("error: DatasetError: ")
    assert "method dpo needs preference pairs" in run.error_line
    assert "the dataset holds prompt/completion pairs" in run.error_line
    # And the synthetic set, which holds no pairs, is refused the same way
    run = run_train(tmp_path, jax_cache, name="synthetic", **dpo_job(dataset_kind="synthetic", dataset_path=None,
                                                                     dataset_key="synthetic"))
    assert run.returncode == 2 and "DatasetError: method dpo needs preference pairs" in run.error_line


@pytest.mark.slow  # make test-all; on a shared machine under ``flock /tmp/tunix-realmodel.lock``
def test_dpo_teaches_the_real_model_to_prefer_the_exact_json_answers(tmp_path, jax_cache, gemma_weights):
    """30 LoRA steps (rank 8, every projection) of gemma3-270m with DPO on
    json-person-prefs, batch 4, lr 1e-4, beta 0.1.  Measured here (2 shared
    cores): ~12 s a step (8 sequences of 83 tokens and the reference's
    forward pass; SFT's step at batch 4 is ~3.3 s), peak RSS 8.5 GB, ~8
    minutes with the conversion; the held-out preferred rate 0.95 (base: the
    prose and extra-key answers are longer, so already less likely) -> 1.00,
    the mean log-prob margin 7.1 -> 102 nats, reward accuracy 1.0 from step 3.
    DPO from a base model pushes the rejected answers down more than it pulls
    the chosen ones up: its greedy answers to the held-out prompts are no
    more JSON than the base's (format rate 0.00 -> 0.00); SFT first (or ORPO)
    is what teaches the shape."""

    # Given a LoRA DPO run of the real model on the preference set
    job = dpo_job(model_id="gemma3-270m", lora={"rank": 8, "alpha": 16.0, "targets": LORA["targets"]},
                  learning_rate=1e-4, batch_size=4, max_steps=30)
    path = tmp_path / "training.json"
    path.write_text(json.dumps(base_job(tmp_path / "rundir", **job)))
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax_cache, PYTHONPATH=str(ROOT), WEIGHTS_DIR=str(gemma_weights))
    # When it trains (its own rusage: the peak RSS of the training process alone)
    proc = subprocess.Popen([sys.executable, "-m", "workers.training", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, stamps = [], []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(PREFIX) and '"event":"progress"' in line:
            stamps.append(time.monotonic())
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read()
    run = Run(subprocess.CompletedProcess(proc.args, os.waitstatus_to_exitcode(status), "".join(lines), stderr))
    assert run.returncode == 0, stderr[-3000:]
    # Then the model starts as its reference (ln 2) and learns to separate the pairs
    progress = run.of("progress")
    assert len(progress) == 30 and run.losses[0] == pytest.approx(LN2, abs=1e-5)
    accuracy = [e["metrics"]["reward_accuracy"] for e in progress]
    assert sum(accuracy[-10:]) / 10 > 0.8, accuracy
    # And on the 40 held-out pairs it prefers the chosen (exact JSON) answer more often than the base did
    prefs = run.of("result")[0]["held_out_preferences"]
    assert prefs["trained"]["preferred_rate"] > 0.5, prefs
    assert prefs["trained"]["preferred_rate"] > prefs["base"]["preferred_rate"], prefs
    assert prefs["trained"]["mean_logp_margin"] > prefs["base"]["mean_logp_margin"], prefs
    step_s = (stamps[-1] - stamps[1]) / (len(stamps) - 2)
    print(f"\ngemma3-270m LoRA DPO on json-person-prefs: held-out preferred rate {prefs['base']['preferred_rate']:.2f}"
          f" -> {prefs['trained']['preferred_rate']:.2f}, margin {prefs['base']['mean_logp_margin']:.1f} -> "
          f"{prefs['trained']['mean_logp_margin']:.1f}; reward accuracy by step {accuracy}; losses {run.losses}; "
          f"{step_s:.1f} s a step; peak RSS {usage.ru_maxrss / 1024:.0f} MB")
