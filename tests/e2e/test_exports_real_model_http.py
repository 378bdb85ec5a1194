"""Export round trip on the real Gemma 3 270M: a LoRA run of 2 steps,
checkpointed, exported by a worker, downloaded, checked, and loaded back
through tunix's gemma3 safetensors loader into a plain model whose loss on
fixed English sentences is the checkpoint's (float32, to 1e-4).

Slow and heavy (~1 GB of float32 weights loaded several times; ~4 GB peak in
the export's process): run it alone, under ``flock /tmp/tunix-realmodel.lock``
with ``WEIGHTS_DIR`` set, on a shared machine.  Figures: README "Exports".
"""

import os
import time

import numpy as np
import pytest

from support import ApiClient, start_api, wait_for
from test_exports_http import download, post, wait_export

pytestmark = [pytest.mark.training, pytest.mark.slow]

RUN = {"dataset_key": "text-sft", "model_id": "gemma3-270m", "dry_run": False, "device": "cpu", "batch_size": 2,
       "max_seq_length": 64, "max_steps": 2, "checkpoint_every_steps": 2, "seed": 7, "learning_rate": 1e-3,
       "lora": {"rank": 8, "alpha": 16.0}}


def test_a_gemma3_270m_lora_export_loads_back_with_the_checkpoints_loss(databases, worker_launch, log_dir,
                                                                         data_dir, tmp_path):
    import jax.numpy as jnp
    from tunix.models.gemma3 import params_safetensors

    from tasks.models import get_model
    from workers.exporting.__main__ import sentence_batch, sentence_loss
    from workers.sampling.__main__ import load_model
    from workers.training.data import SentencePieceTokenizer
    from workers.training.model import build_model_config, setup_jax_env, weights_dir

    setup_jax_env("cpu")
    url = databases.create()
    api_proc = start_api(url, data_dir, log_dir)
    worker_launch(url=url, workers=1, threads=2, TRAIN_CONCURRENCY=1, JAX_PLATFORMS="cpu",
                  WORKER_QUEUES="tunix-dry,tunix-train,tunix-samples")
    api = ApiClient(api_proc.url)
    try:
        response = api.submit(RUN, mode="async")
        assert response.status_code == 202, response.text
        run = api.wait_final(response.json()["run_id"], timeout=1800)
        assert run["status"] == "completed", run["error"]
        t0 = time.monotonic()
        response = post(api, run["run_id"], {})
        assert response.status_code == 202, response.text
        done = wait_export(api, response.json()["export_id"], timeout=1800)
        export_s = time.monotonic() - t0
        assert done["status"] == "completed", done["error"]
        assert done["step"] == 2 and done["manifest"]["lora"]["merged"] is True
        body, _ = download(api, done["download"], tmp_path / "export")
        folder = tmp_path / "export" / done["manifest"]["folder"]
        assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "tokenizer.model",
                                              "tunix_export.json"]
        spec = get_model("gemma3-270m")
        weights = weights_dir(spec)
        tokens, valid = sentence_batch(SentencePieceTokenizer(str(folder / "tokenizer.model")))
        download(api, f"/api/tunix/runs/{run['run_id']}/checkpoints/2", tmp_path / "checkpoint")
        lora_model = load_model({"spec": run["config"], "checkpoint_dir": str(tmp_path / "checkpoint"), "step": 2},
                                spec, weights)
        loss_checkpoint, logits_checkpoint = sentence_loss(lora_model, tokens, valid)
        del lora_model
        plain = params_safetensors.create_model_from_safe_tensors(str(folder), build_model_config(spec),
                                                                  dtype=jnp.float32)
        loss_export, logits_export = sentence_loss(plain, tokens, valid)
        diff = abs(loss_export - loss_checkpoint)
        logit_diff = float(np.abs(logits_export - logits_checkpoint)[valid].max())
        print(f"\ngemma3-270m LoRA export: {export_s:.1f}s end to end (timings {done['timings']}), "
              f"tar {len(body)} bytes, loss checkpoint {loss_checkpoint:.6f} export {loss_export:.6f} "
              f"(diff {diff:.2e}, max logit diff {logit_diff:.2e}); verification {done['manifest']['verification']}")
        assert diff < 1e-4
    finally:
        api_proc.stop()
