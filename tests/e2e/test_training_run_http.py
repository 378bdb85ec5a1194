"""A real (tiny) Tunix training, submitted over HTTP and run by a worker's
training subprocess (``python -m workers.training``)."""

import math

import pytest

from support import scratch
from tasks import artifacts
from tasks.artifacts import ArtifactStore

pytestmark = pytest.mark.training


def stored_manifest(data_dir, run_id):
    """What the training read, as the worker stored it (its scratch copy is
    removed with the folder once the run ended)."""
    return ArtifactStore(f"file://{data_dir}/artifacts").get_json(artifacts.manifest_key(run_id))


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
    # And the run's scratch folder is gone: its checkpoints and manifest are in the store
    assert not scratch(data_dir, run["run_id"], attempt=1).run_root.exists()
    # And the spec the training read (from the job file the worker wrote) is
    # exactly the stored one: every default filled at submit, the seed and
    # the time limit included, nothing added
    manifest = stored_manifest(data_dir, run["run_id"])
    assert manifest["spec"] == run["config"]
    assert manifest["dry_run"] is False and manifest["run"]["run_id"] == run["run_id"]
    assert manifest["run"]["effective_max_seq_length"] == 32
    # And its per-step series was recorded: one loss per step
    series = api.get(f"/api/tunix/runs/{run['run_id']}/metrics").json()["data"]
    assert [point["step"] for point in series] == [1, 2, 3, 4, 5]
    assert series[-1]["loss"] == pytest.approx(result["final_loss"])


def test_a_minimal_training_request_trains_on_exactly_its_stored_spec(api, workers, data_dir):
    # Given a training request that leaves every optional field to its default
    body = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 2,
            "max_seq_length": 16}
    # When it is submitted and awaited
    response = api.submit(body, mode="async")
    assert response.status_code == 202, response.text
    run = api.wait_final(response.json()["run_id"], timeout=300)
    assert run["status"] == "completed", run["error"]
    # Then its stored spec has every field, the defaults of the one schema filled in at submit
    config = run["config"]
    assert (config["learning_rate"], config["num_epochs"], config["batch_size"]) == (2e-5, 3, 8)
    assert isinstance(config["seed"], int) and isinstance(config["time_limit_s"], int)
    # And the training read exactly that spec: no default of its own
    manifest = stored_manifest(data_dir, run["run_id"])
    assert manifest["spec"] == config
    assert run["result"]["steps"] == 2


def test_a_dry_run_reads_exactly_its_stored_spec(api, workers, data_dir):
    # Given a dry run with a few fields set and the rest left to their defaults
    body = {"dataset_key": "text-sft", "model_id": "qwen3-tiny", "batch_size": 3, "learning_rate": 1}
    # When it is submitted and awaited
    run = api.wait_final(api.submit(body, mode="async").json()["run_id"])
    assert run["status"] == "completed", run["error"]
    # Then the manifest records exactly the stored spec, beside where it was placed
    manifest = ArtifactStore(f"file://{data_dir}/artifacts").get_json(artifacts.manifest_key(run["run_id"]))
    assert manifest["spec"] == run["config"]
    assert manifest["spec"]["learning_rate"] == 1.0 and manifest["spec"]["batch_size"] == 3
    assert manifest["run"]["dataset_kind"] == "jsonl"
    assert manifest["run"]["effective_max_seq_length"] == run["result"]["effective_max_seq_length"] == 128
