"""DPO and GRPO as ordinary runs, through the real API and the session's
worker launch (tiny models): they end completed with their own metrics in
the registry, and a sweep ranks DPO trials on reward accuracy, highest first."""

import statistics

import pytest

from support import wait_for

pytestmark = pytest.mark.training

DPO = {"dataset_key": "json-person-prefs", "model_id": "gemma3-tiny", "method": "dpo", "dry_run": False,
       "max_steps": 8, "batch_size": 4, "max_seq_length": 128, "learning_rate": 3e-3, "seed": 3,
       "checkpoint_every_steps": 100, "sample_held_out": 0}
GRPO = {"dataset_key": "arithmetic", "model_id": "gemma3-tiny", "method": "grpo", "dry_run": False,
        "max_steps": 4, "batch_size": 2, "max_seq_length": 128, "learning_rate": 1e-3, "seed": 3,
        "checkpoint_every_steps": 100, "sample_held_out": 0,
        "grpo": {"num_generations": 2, "max_new_tokens": 8}}


@pytest.fixture(autouse=True)
def _workers(workers):
    return workers


def post(api, path, body=None):
    return api.http.post(api.url(path), json=body, timeout=60)


def metrics(api, run_id):
    response = api.get(f"/api/tunix/runs/{run_id}/metrics")
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.mark.parametrize("body, names", [
    (DPO, {"reward_accuracy", "reward_margin"}),
    # make test-all: GRPO's metrics at every step stay in tests/training/test_grpo_program.py
    pytest.param(GRPO, {"reward_mean", "reward_std", "kl", "completion_length"}, marks=pytest.mark.slow),
], ids=["dpo", "grpo"])
def test_a_method_run_completes_with_its_metrics_at_every_step(api, body, names):
    # Given a DPO (or GRPO) training submitted over HTTP
    response = api.submit(body)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    # When it ends
    run = api.wait_final(run_id, timeout=240)
    # Then it completed, and each of its steps has the method's own figures in the registry beside the loss
    assert run["status"] == "completed", run.get("error")
    assert run["config"]["method"] == body["method"] and run["config"][body["method"]] is not None
    points = metrics(api, run_id)
    assert [p["step"] for p in points] == list(range(1, body["max_steps"] + 1))
    for point in points:
        assert names <= set(point["metrics"]), point
        assert isinstance(point["loss"], float)


@pytest.mark.slow  # make test-all: the ranking on reward accuracy stays in make test (tests/unit/test_sweep_spec.py)
def test_a_dpo_sweep_over_beta_ranks_its_trials_on_reward_accuracy_highest_first(api):
    # Given a sweep of DPO trials over beta and the learning rate, ranked on reward accuracy
    body = {"name": "dpo beta", "base": DPO, "metric": "reward_accuracy",
            "grid": {"dpo.beta": [0.05, 0.5], "learning_rate": [1e-4, 3e-3]}}
    response = post(api, "/api/tunix/sweeps", body)
    assert response.status_code == 202, response.text
    sweep_id = response.json()["sweep_id"]
    assert response.json()["mode"] == "max"
    # When every trial ended
    done = wait_for(lambda: (lambda s: s if s["status"] == "finished" else None)(
        api.get(f"/api/tunix/sweeps/{sweep_id}").json()), 600, message="sweep finished")
    # Then each completed, carrying its reward accuracy: the mean over its last 5 recorded steps
    assert done["counts"] == {"completed": 4}, done
    for trial in done["runs"]:
        accuracies = [p["metrics"]["reward_accuracy"] for p in metrics(api, trial["run_id"])][-5:]
        assert trial["reward_accuracy"] == pytest.approx(statistics.mean(accuracies))
    # And the best trial is the one with the highest, not the lowest
    best = max(done["runs"], key=lambda t: t["reward_accuracy"])
    assert done["best"]["run_id"] == best["run_id"]
    assert done["best"]["reward_accuracy"] == max(t["reward_accuracy"] for t in done["runs"])
