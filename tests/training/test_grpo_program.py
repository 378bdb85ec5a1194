"""``python -m workers.training`` with method grpo: GRPO trainings in a subprocess.

Tiny models on the shipped prompt set (``tasks/data/arithmetic.jsonl``),
sharing one JAX compilation cache (~1 minute in all on 2 cores); the real
model's measurement is the slow test at the end.

A random tiny model answers with random bytes, which no answer-checking
reward ever scores; ``length_penalty`` does (a random answer's decoded
length varies around the 64 characters it allows when 72 bytes may be
sampled), so these runs have a reward that varies within a group: their
advantages, losses and updates are not zero, and what a resume must
reproduce is a real training's.
"""

import json
import os
import signal
import time

import pytest
from test_train_script import ROOT, PREFIX, gemma_weights, jax_cache, run_train, start_train  # noqa: F401

pytestmark = pytest.mark.training

ARITHMETIC = ROOT / "tasks" / "data" / "arithmetic.jsonl"
METRICS = {"reward_mean", "reward_std", "kl", "completion_length"}
STEPS = 6


def grpo_job(**overrides):
    """A GRPO job on the shipped prompt set: 6 steps of 2 prompts, each answered twice."""
    job = dict(method="grpo", model_id="gemma3-tiny", dataset_key="arithmetic", dataset_kind="jsonl",
               dataset_path=str(ARITHMETIC), max_seq_length=128, max_steps=STEPS, learning_rate=3e-3,
               batch_size=2, checkpoint_every_steps=3, sample_held_out=2,
               grpo={"num_generations": 2, "max_new_tokens": 72, "temperature": 1.0, "beta": 0.04,
                     "epsilon": 0.2, "reward": [{"name": "length_penalty", "weight": 1.0},
                                                {"name": "final_answer", "weight": 1.0}]})
    job.update(overrides)
    return job


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, jax_cache):  # noqa: F811 - the fixture imported above
    """An uninterrupted full fine-tuning of gemma3-tiny with GRPO (its reference: a copy of the model)."""
    return run_train(tmp_path_factory.mktemp("grpo"), jax_cache, **grpo_job())


def test_a_grpo_run_reports_rewards_at_every_step_samples_at_logged_steps_and_held_out_rewards(grpo_run):
    # Given a GRPO run of 6 steps on the 400 prompts (every 10th held out)
    run = grpo_run
    assert run.returncode == 0, run.stderr
    start = run.of("start")[0]
    assert start["num_examples"] == 360 and start["batch_size"] == 2
    # Then every step reports its loss and the method's metrics: the group's rewards, the KL, the answers' length
    progress = run.of("progress")
    assert [e["step"] for e in progress] == list(range(1, STEPS + 1))
    assert all(set(e["metrics"]) == METRICS and None not in e["metrics"].values() for e in progress)
    assert all(-1.0 <= e["metrics"]["reward_mean"] <= 1.0 and 0 <= e["metrics"]["completion_length"] <= 72
               for e in progress)
    # And at step 1 the policy is its reference: no KL
    assert abs(progress[0]["metrics"]["kl"]) < 1e-6
    # And the rewards varied within the groups, so the policy moved: losses and KL that are not zero
    assert any(e["metrics"]["reward_std"] > 0 for e in progress)
    assert any(abs(loss) > 1e-6 for loss in run.losses) and progress[-1]["metrics"]["kl"] > 0
    # And every step of a 6-step run is a logged one: 3 sampled answers each, scored by the run's reward
    for e in progress:
        assert len(e["samples"]) == 3, e
        for sample in e["samples"]:
            assert set(sample) == {"prompt", "completion", "reward"}
            assert sample["prompt"].startswith('Answer in the form "The answer is N."')
            assert len(sample["completion"]) <= 300 and -1.0 <= sample["reward"] <= 1.0
    # And the result scores the 40 held-out prompts answered greedily by the base and the trained model
    result = run.of("result")[0]
    assert result["final_loss"] == run.losses[-1] and result["steps"] == STEPS
    assert result["held_out_examples"] == 40
    report = result["held_out_rewards"]
    assert report["prompts"] == 40 and report["max_new_tokens"] == 72
    keys = {"reward_mean", "final_answer_rate", "format_rate"}
    assert set(report["base"]) == set(report["trained"]) == keys
    assert report["base"]["final_answer_rate"] == 0.0  # random bytes never state the answer
    assert len(report["samples"]) == 2  # sample_held_out
    assert "held-out rewards (40 prompts, greedy): reward mean" in run.stdout
    # And the step timing: the share of a step spent sampling
    timing = result["grpo_timing"]
    assert timing["steps"] == STEPS and 0 < timing["sample_share"] < 1 and timing["peak_rss_mb"] > 0


@pytest.mark.slow  # make test-all: SFT's and LoRA's exact resumes stay in make test
def test_a_sigkilled_grpo_run_resumes_from_its_checkpoint_with_the_uninterrupted_runs_samples_and_losses(
        tmp_path, jax_cache, grpo_run):  # noqa: F811
    # Given the same run, checkpointing every 3 steps, killed (SIGKILL: no last checkpoint) after step 5
    proc = start_train(tmp_path, jax_cache, "killed", **grpo_job())
    checkpoint = tmp_path / "killed" / "rundir" / "checkpoints" / "3"
    for line in proc.stdout:
        if line.startswith(PREFIX) and '"event":"progress"' in line and json.loads(line[len(PREFIX):])["step"] >= 5:
            # (orbax finishes the periodic save of step 3 in the background)
            for _ in range(100):
                if (checkpoint / "commit_success.txt").exists():
                    break
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert not (checkpoint.parent / str(STEPS)).exists()
    # When the run starts again on the same folder
    again = run_train(tmp_path, jax_cache, "killed", **grpo_job())
    assert again.returncode == 0, again.stderr
    # Then it goes on from step 3 and samples, scores and trains as the uninterrupted run did
    assert again.of("start")[0]["start_step"] == 3
    resumed, uninterrupted = again.of("progress"), grpo_run.of("progress")[3:]
    assert [e["step"] for e in resumed] == [4, 5, 6]
    assert [e["samples"] for e in resumed] == [e["samples"] for e in uninterrupted]
    assert [e["metrics"] for e in resumed] == [e["metrics"] for e in uninterrupted]
    assert [round(x, 4) for x in again.losses] == [round(x, 4) for x in grpo_run.losses[3:]]
    assert round(again.of("result")[0]["final_loss"], 4) == round(grpo_run.of("result")[0]["final_loss"], 4)


def test_another_seed_samples_other_answers(tmp_path, jax_cache, grpo_run):  # noqa: F811
    # Given the same run with another seed, for one step
    other = run_train(tmp_path, jax_cache, "seed2", **grpo_job(seed=2, max_steps=1, sample_held_out=0))
    assert other.returncode == 0, other.stderr
    # Then its first answers differ (the sampling of step S is seeded from the run's seed and S)
    assert other.of("progress")[0]["samples"] != grpo_run.of("progress")[0]["samples"]


def test_a_prompt_completion_dataset_given_to_grpo_exits_2_naming_the_kind_it_needs(tmp_path, jax_cache):
    # Given a GRPO run on the shipped SFT set (prompt/completion pairs)
    data = str(ROOT / "tasks" / "data" / "json-person.jsonl")
    run = run_train(tmp_path, jax_cache, **grpo_job(dataset_key="json-person", dataset_path=data))
    # Then it exits 2 before training, naming the kind of records GRPO trains on
    assert run.returncode == 2, run.stderr
    assert run.error_line.startswith("error: DatasetError: ")
    assert "method grpo needs prompts with answers ({prompt, answer})" in run.error_line
    assert "prompt/completion pairs" in run.error_line
    assert not run.of("start")


def test_max_new_tokens_that_leave_no_room_for_a_prompt_exit_2(tmp_path, jax_cache):
    # Given answers as long as the tiny model's whole window
    grpo = dict(grpo_job()["grpo"], max_new_tokens=128)
    run = run_train(tmp_path, jax_cache, **grpo_job(grpo=grpo))
    # Then the run is refused before training
    assert run.returncode == 2 and "leaves no room for a prompt" in run.error_line, run.stderr


@pytest.mark.slow  # make test-all: the real model, ~15 minutes on 2 cores
def test_grpo_raises_the_real_models_held_out_reward(tmp_path, jax_cache, gemma_weights):  # noqa: F811
    # Given gemma3-270m with LoRA rank 8 on the arithmetic prompts, the default reward
    # (a right answer, half a point for the form), 24 steps of 2 prompts answered 4 times
    job = grpo_job(model_id="gemma3-270m", max_seq_length=512, max_steps=24, learning_rate=2e-4, batch_size=2,
                   checkpoint_every_steps=1000, sample_held_out=4,
                   lora={"rank": 8, "alpha": 16.0, "targets": ["q", "k", "v", "o", "gate", "up", "down"]},
                   grpo={"num_generations": 4, "max_new_tokens": 24, "temperature": 0.9, "beta": 0.04,
                         "epsilon": 0.2, "reward": [{"name": "final_answer", "weight": 1.0},
                                                    {"name": "answer_format", "weight": 0.5}]})
    run = run_train(tmp_path, jax_cache, env={"WEIGHTS_DIR": str(gemma_weights)}, timeout=3000, **job)
    assert run.returncode == 0, run.stderr[-3000:]
    result = run.of("result")[0]
    report, timing = result["held_out_rewards"], result["grpo_timing"]
    # Then the trained model's greedy answers to the 40 held-out prompts earn more than the base's
    # (measured: 0.147 -> 0.350; the base echoes the question before answering, the trained model
    # leads with "The answer is N.", and twice as many of its answers are right, 2 -> 4 of 40)
    assert report["trained"]["reward_mean"] > report["base"]["reward_mean"], report
    rewards = [e["metrics"]["reward_mean"] for e in run.of("progress")]
    print(f"\ngemma3-270m GRPO: held-out {report['base']} -> {report['trained']}; step rewards {rewards}; "
          f"timing {timing}; duration {result['duration_s']} s")
