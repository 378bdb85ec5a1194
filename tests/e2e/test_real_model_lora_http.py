"""LoRA on the real Gemma 3 270M, over HTTP, on the shipped instruction set.

What an ML engineer would try first: 30 LoRA steps (rank 8, every
projection) of ``gemma3-270m`` on ``json-person``, then the held-out prompts
the training answers itself.  Measured here (2 cores, ~3.3 s a step at batch
4 x 80): losses 2.37 -> 0.0066, the check's format rate on 16 held-out prompts
0.00 (base: it repeats the prompt) -> 1.00, correct 1.00; each checkpoint
(adapters and their AdamW state) 20.7 MB, 1.9% of the 1.07 GB base; 9.4 minutes
through the API with other work on the machine.

Slow (about 5 minutes: a ~40 s conversion, compilation, 30 steps, sampling)
and heavy (~8 GB): ``make test-all``; on a shared machine run it under
``flock /tmp/tunix-realmodel.lock``.
"""

import pytest

from support import ApiClient, start_api

pytestmark = [pytest.mark.training, pytest.mark.slow]

#: Bytes of the converted base (model.safetensors, float32).
BASE_BYTES = 1_072_419_256

BODY = {"dataset_key": "json-person", "model_id": "gemma3-270m", "dry_run": False, "device": "cpu",
        "lora": {"rank": 8}, "learning_rate": 1e-3, "batch_size": 4, "max_seq_length": 128, "max_steps": 30,
        "checkpoint_every_steps": 10, "sample_held_out": 16, "seed": 1}


def test_lora_teaches_the_real_model_the_json_shape_and_checkpoints_only_its_adapters(
        databases, worker_launch, log_dir, tmp_path, data_dir, monkeypatch):
    # Given a host with no WEIGHTS_DIR (the packaged model converts), an API and one worker
    monkeypatch.delenv("WEIGHTS_DIR", raising=False)
    url = databases.create()
    api_proc = start_api(url, tmp_path, log_dir)
    worker_launch(url=url, workers=1, threads=2, DATA_DIR=tmp_path, TRAIN_CONCURRENCY=1,
                  JAX_COMPILATION_CACHE_DIR=data_dir / "jax-cache")
    api = ApiClient(api_proc.url)
    try:
        # When a LoRA run of gemma3-270m on json-person is submitted
        response = api.submit(BODY, mode="async")
        assert response.status_code == 202, response.text
        run = api.wait_final(response.json()["run_id"], timeout=1500)
        assert run["status"] == "completed", run["error"]
        result = run["result"]
        # Then only the adapters trained: rank 8 on every projection of the 18 layers
        assert result["param_count"] == 268_098_176 and result["trainable_params"] == 1_806_336
        # And the loss fell
        losses = [m["loss"] for m in api.get(f"/api/tunix/runs/{run['run_id']}/metrics").json()["data"]]
        assert len(losses) == 30 and sum(losses[-5:]) / 5 < losses[0] / 5, losses
        # And each checkpoint is the adapters (with their optimizer state), a small fraction of the base
        checkpoints = api.get(f"/api/tunix/runs/{run['run_id']}/checkpoints").json()["data"]
        assert {c["step"] for c in checkpoints} >= {30}
        assert all(c["size_bytes"] < BASE_BYTES * 0.05 for c in checkpoints), checkpoints
        # And the held-out prompts, which the base answers without the JSON shape, are answered in it
        samples = result["held_out_samples"]
        assert samples["check"] == "json_person" and samples["prompts"] == 16
        assert samples["base"]["format_rate"] <= 0.25 and samples["final"]["format_rate"] >= 0.8, samples
        print(f"\ngemma3-270m LoRA on json-person: losses {losses[0]:.3f} -> {losses[-1]:.4f}; format rate "
              f"{samples['base']['format_rate']:.2f} -> {samples['final']['format_rate']:.2f}, correct "
              f"{samples['base']['correct_rate']:.2f} -> {samples['final']['correct_rate']:.2f}; checkpoint "
              f"{max(c['size_bytes'] for c in checkpoints) / 1e6:.1f} MB; wall {result['wall_s']} s")
    finally:
        api_proc.stop()
