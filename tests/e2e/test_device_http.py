"""``device`` of a training, honoured end to end: ``gpu`` trains on a GPU
where JAX finds one (the ``worker-gpu`` image, Dockerfile) and fails at once,
clearly, where it does not; never a silent fall-back to the CPU."""

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.training

BODY = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 2, "batch_size": 2,
        "max_seq_length": 16, "seed": 5, "device": "gpu"}


def jax_backend():
    """What JAX picks on this machine, asked as a training would (no JAX_PLATFORMS)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS" and not k.startswith("COVERAGE")}
    done = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"], capture_output=True,
                          text=True, timeout=120, env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"))
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else None


def test_a_gpu_training_runs_on_a_gpu_or_fails_at_once_saying_there_is_none(api, workers):
    backend = jax_backend()
    # Given a training that asks for the GPU
    t0 = time.monotonic()
    response = api.submit(BODY, mode="async")
    assert response.status_code == 202, response.text
    # When a worker runs it
    run = api.wait_final(response.json()["run_id"], timeout=300)
    took_s = time.monotonic() - t0
    if backend == "gpu":
        # Then, on a machine with a GPU JAX can use, it trains there
        assert run["status"] == "completed", run["error"]
        return
    # Then, on this machine without one, it fails before training a step, as bad input (exit 2), naming why
    assert run["status"] == "failed", run
    assert run["exit_code"] == 2, run["error"]
    message = run["error"]["message"]
    assert message.startswith("DeviceUnavailable: device 'gpu' requested but JAX found no GPU"), message
    assert f"(backend: {backend})" in message, (backend, message)
    assert run["result"] is None and api.get(f"/api/tunix/runs/{run['run_id']}/metrics").json()["data"] == []
    # and at once: the time to start the training process and import JAX, no step, no time limit
    assert took_s < 60, took_s
