"""A real (tiny) Tunix training, submitted over HTTP and run by a worker's
training subprocess (``python -m workers.train``)."""

import math

import pytest

pytestmark = pytest.mark.training


def test_a_tiny_training_completes_with_its_final_loss_and_steps(api, workers, data_dir):
    # Given a training of the tiny llama on the synthetic set, five steps
    body = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 5,
            "batch_size": 2, "max_seq_length": 32, "seed": 3, "device": "cpu"}
    # When it is submitted asynchronously and awaited
    response = api.submit(body, mode="async")
    assert response.status_code == 202, response.text
    run = api.wait_final(response.json()["run_id"], timeout=300)
    # Then it completed, reporting a finite final loss after exactly 5 steps
    assert run["status"] == "completed", run["error"]
    result = run["result"]
    assert result["kind"] == "training"
    assert isinstance(result["final_loss"], float) and math.isfinite(result["final_loss"])
    assert result["steps"] == 5
    assert result["exit_code"] == 0 and run["exit_code"] == 0
    assert result["effective_max_seq_length"] == 32
    assert run["attempts"] == 1
    # And the training's logs are in the run's folder
    run_dir = data_dir / "runs" / run["run_id"]
    assert (run_dir / "training.json").is_file()
    assert (run_dir / "stdout.log").is_file()
    # And its per-step series was recorded: one loss per step
    series = api.get(f"/api/tunix/runs/{run['run_id']}/metrics").json()["data"]
    assert [point["step"] for point in series] == [1, 2, 3, 4, 5]
    assert series[-1]["loss"] == pytest.approx(result["final_loss"])
