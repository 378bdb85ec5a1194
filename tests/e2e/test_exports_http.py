"""Exports: take the model away.  A run's checkpoint asked for over HTTP as
a standalone folder, made by a worker (``workers/exporting``), downloaded,
checked and loaded back through tunix's own gemma3 safetensors loader
(llama3 and qwen3 exports: tests/training/test_export_program.py).

One stack of its own: a database, the API under gunicorn, one worker launch
that trains and exports (``tunix-samples`` carries exports).  The round
trip's proof is the issue's: the exported folder, loaded into a plain model,
scores the checkpoint's loss (the LoRA model restored from the checkpoint
the API serves) on fixed sentences, float32, to 1e-4.
"""

import hashlib
import io
import json
import os
import tarfile

import numpy as np
import pytest

from support import ApiClient, connect, scalar, start_api, wait_for

pytestmark = pytest.mark.training

BASE = {"dataset_key": "synthetic", "model_id": "gemma3-tiny", "dry_run": False, "batch_size": 2,
        "max_seq_length": 32, "device": "cpu", "learning_rate": 3e-3}
LORA_RUN = dict(BASE, max_steps=4, checkpoint_every_steps=2, seed=21,
                lora={"rank": 4, "alpha": 16.0, "targets": ["q", "k", "v", "o", "gate", "up", "down"]},
                learning_rate=3e-2)
FULL_RUN = dict(BASE, max_steps=2, checkpoint_every_steps=2, seed=22)
FINAL = ("completed", "failed")


@pytest.fixture(scope="module")
def stack(databases, data_dir, log_dir, worker_launch):
    url = databases.create()
    api_process = start_api(url, data_dir, log_dir)
    worker_launch(workers=1, threads=4, url=url, TRAIN_CONCURRENCY=2,
                  WORKER_QUEUES="tunix-dry,tunix-train,tunix-samples")
    conn = connect(url)
    yield {"api": ApiClient(api_process.url), "conn": conn}
    conn.close()
    api_process.stop()


def train(api, body):
    response = api.submit(body, mode="async")
    assert response.status_code == 202, response.text
    return response.json()["run_id"]


@pytest.fixture(scope="module")
def runs(stack):
    """A LoRA run (4 steps, checkpoints at 2 and 4) and a full one (2 steps), trained together."""
    api = stack["api"]
    ids = {"lora": train(api, LORA_RUN), "full": train(api, FULL_RUN)}
    for name, run_id in ids.items():
        run = api.wait_final(run_id, timeout=400)
        assert run["status"] == "completed", (name, run["error"])
    return ids


def post(api, run_id, body):
    return api.http.post(api.url(f"/api/tunix/runs/{run_id}/exports"), json=body, timeout=30)


def wait_export(api, export_id, timeout=300):
    def final():
        export = api.get(f"/api/tunix/exports/{export_id}").json()
        return export if export["status"] in FINAL else None

    return wait_for(final, timeout, interval=0.3, message=f"export {export_id} final")


def download(api, path, into):
    """GET ``path`` (a tar), check it against its header's sha256, extract into ``into``; (bytes, header sha)."""
    response = api.http.get(api.url(path), timeout=60)
    assert response.status_code == 200, response.text
    body = response.content
    sha = response.headers.get("X-Export-SHA256") or response.headers.get("X-Checkpoint-SHA256")
    assert hashlib.sha256(body).hexdigest() == sha and int(response.headers["Content-Length"]) == len(body)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r|") as tar:
        tar.extractall(into, filter="data")
    return body, sha


def checkpoint_model(api, run_id, step, tmp_path):
    """The run's model with its checkpoint of ``step`` restored, as sampling builds it,
    from the checkpoint the API serves."""
    from tasks.models import get_model
    from workers.sampling.__main__ import load_model

    run = api.run(run_id)
    where = tmp_path / "checkpoint"
    download(api, f"/api/tunix/runs/{run_id}/checkpoints/{step}", where)
    assert (where / str(step)).is_dir()  # the tar holds the step's orbax folder
    job = {"spec": run["config"], "checkpoint_dir": str(where), "step": step, "seed": 0}
    return load_model(job, get_model(run["config"]["model_id"]), None)


def exported_model(folder):
    import jax.numpy as jnp
    from tunix.models.gemma3 import params_safetensors

    from tasks.models import get_model
    from workers.training.model import build_model_config

    return params_safetensors.create_model_from_safe_tensors(str(folder), build_model_config(get_model("gemma3-tiny")),
                                                             dtype=jnp.float32)


def fixed_sentence_loss(model):
    from workers.exporting.__main__ import sentence_batch, sentence_loss
    from workers.training.data import ByteTokenizer

    tokens, valid = sentence_batch(ByteTokenizer(), ["The quick brown fox jumps over the lazy dog.",
                                                     "0123456789 abcdefghij", "Exports round trip, float32."])
    return sentence_loss(model, tokens, valid)


def round_trip(api, run_id, tmp_path, body=None):
    from workers.training.model import setup_jax_env

    setup_jax_env("cpu")
    response = post(api, run_id, body or {})
    assert response.status_code == 202, response.text
    pending = response.json()
    assert response.headers["Location"] == f"/api/tunix/exports/{pending['export_id']}"
    assert pending["status"] == "pending" and pending["download"] is None
    done = wait_export(api, pending["export_id"])
    assert done["status"] == "completed", done["error"]
    assert done["uri"].endswith(f"/runs/{run_id}/exports/step-{done['step']}/{done['export_id']}.tar")
    body, sha = download(api, done["download"], tmp_path / "export")
    assert sha == done["sha256"] and len(body) == done["size_bytes"]
    folder = tmp_path / "export" / done["manifest"]["folder"]
    manifest = json.loads((folder / "tunix_export.json").read_text())
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
    assert manifest["run_id"] == run_id and manifest["step"] == done["step"]
    loss_checkpoint, logits_checkpoint = fixed_sentence_loss(checkpoint_model(api, run_id, done["step"], tmp_path))
    loss_export, logits_export = fixed_sentence_loss(exported_model(folder))
    return done, manifest, (loss_checkpoint, loss_export, float(np.abs(logits_export - logits_checkpoint).max()))


# make test-all: a LoRA run's round trip over HTTP with its loss stays in the next test (step 2), and
# the merged export's checks in tests/training/test_export_program.py
@pytest.mark.slow
def test_a_lora_runs_export_loads_back_merged_with_the_checkpoints_loss(stack, runs, tmp_path):
    api = stack["api"]
    # Given a LoRA run of gemma3-tiny with checkpoints at steps 2 and 4
    # When its latest checkpoint is exported, downloaded and checked
    done, manifest, (loss_checkpoint, loss_export, logit_diff) = round_trip(api, runs["lora"], tmp_path)
    # Then the latest step was exported, LoRA merged into the base (2 layers x q, kv, o, gate, up, down)
    assert done["step"] == 4
    assert manifest["lora"] == {"merged": True, "rank": 4, "alpha": 16.0, "merged_weights": 12,
                                "targets": ["q", "k", "v", "o", "gate", "up", "down"]}
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors", "tokenizer_byte.json"]
    # And the folder, through tunix's loader into a plain model, scores the checkpoint's loss (float32, 1e-4)
    assert abs(loss_export - loss_checkpoint) < 1e-4 and logit_diff < 1e-4
    assert done["manifest"]["verification"]["loss_diff"] < 1e-4
    # And the training changed the model: the step-4 LoRA model is not the base it started from
    from tasks.models import get_model
    from workers.training.model import build_model

    loss_base, _ = fixed_sentence_loss(build_model(get_model("gemma3-tiny"), LORA_RUN["seed"]))
    assert abs(loss_base - loss_export) > 1e-3


def test_an_earlier_step_and_a_full_fine_tune_export_too(stack, runs, tmp_path):
    api = stack["api"]
    # A full fine-tune's checkpoint holds every parameter: written as they are, nothing merged
    done, manifest, (loss_checkpoint, loss_export, logit_diff) = round_trip(api, runs["full"], tmp_path / "f")
    assert done["step"] == 2 and manifest["lora"] == {"merged": False}
    assert abs(loss_export - loss_checkpoint) < 1e-4 and logit_diff < 1e-4
    # A LoRA run's earlier step, asked for by number
    done, _, (loss_checkpoint, loss_export, _) = round_trip(api, runs["lora"], tmp_path / "l", {"step": 2})
    assert done["step"] == 2 and abs(loss_export - loss_checkpoint) < 1e-4
    # And the run lists it first (newest first)
    listed = api.get(f"/api/tunix/runs/{runs['lora']}/exports").json()["data"]
    assert (listed[0]["export_id"], listed[0]["step"]) == (done["export_id"], 2), listed


def test_a_step_asked_again_is_reused_and_a_deleted_export_is_made_anew(stack, runs):
    api, conn = stack["api"], stack["conn"]
    # Given the full run's step-2 export, completed (asked for here, or reused from an earlier test)
    first = post(api, runs["full"], {"step": 2})
    assert first.status_code in (200, 202), first.text
    done = wait_export(api, first.json()["export_id"])
    assert done["status"] == "completed", done["error"]
    tar = done["uri"].removeprefix("file://")
    assert os.path.isfile(tar)
    # When it is asked for again: it is the answer (200, reused), and no row was written
    before = written(conn)
    again = post(api, runs["full"], {})
    assert again.status_code == 200 and again.json()["reused"] is True
    assert again.json()["export_id"] == done["export_id"] and written(conn) == before
    # When it is deleted: its tar leaves the store, the row stays with deleted_at, the download is gone (410)
    response = api.http.delete(api.url(f"/api/tunix/exports/{done['export_id']}"), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["deleted_at"] and not os.path.exists(tar)
    assert api.get(f"/api/tunix/exports/{done['export_id']}").json()["deleted_at"] == response.json()["deleted_at"]
    gone = api.http.get(api.url(done["download"]), timeout=30)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "export_deleted"
    # And deleting again answers the same
    assert api.http.delete(api.url(f"/api/tunix/exports/{done['export_id']}"), timeout=30).json() == response.json()
    # When the step is asked for again: a new export (202), busy (409) until a worker made it
    new = post(api, runs["full"], {"step": 2})
    assert new.status_code == 202 and new.json()["export_id"] != done["export_id"]
    busy = api.http.delete(api.url(f"/api/tunix/exports/{new.json()['export_id']}"), timeout=30)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "export_busy"
    assert wait_export(api, new.json()["export_id"])["status"] == "completed"


def written(conn):
    return (scalar(conn, "SELECT count(*) FROM tunix_exports"),
            scalar(conn, "SELECT count(*) FROM dramatiq.queue WHERE queue_name = 'tunix-samples'"))


def test_bad_requests_change_nothing(stack, runs):
    api, conn = stack["api"], stack["conn"]
    before = written(conn)
    # A step with no recorded checkpoint: 409 no_checkpoint naming the recorded ones
    response = post(api, runs["lora"], {"step": 3})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "no_checkpoint"
    recorded = response.json()["error"]["recorded_steps"]
    assert {2, 4} <= set(recorded) and 3 not in recorded
    # A run with no checkpoint at all (a dry run)
    dry = api.submit(dict(BASE, dry_run=True, seed=1), mode="async").json()["run_id"]
    api.wait_final(dry, timeout=120)
    response = post(api, dry, {})
    assert response.status_code == 409 and response.json()["error"]["code"] == "no_checkpoint"
    assert response.json()["error"]["recorded_steps"] == []
    # Every catalog family exports (no family is left for 409 export_unsupported, whose program side
    # tests/training/test_export_program.py checks): a llama3 run passes the family check, and without
    # a checkpoint it is the checkpoint that is missing
    llama = api.submit(dict(BASE, model_id="llama3-tiny", dry_run=True, seed=1), mode="async").json()["run_id"]
    response = post(api, llama, {})
    assert response.status_code == 409 and response.json()["error"]["code"] == "no_checkpoint"
    # Bad fields: 422 naming each
    for body, field in (({"step": "4"}, "step"), ({"step": -1}, "step"), ({"steps": 4}, "steps"),
                        ({"step": 4.5}, "step")):
        response = post(api, runs["lora"], body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field], body
    # Unknown run, unknown export
    assert post(api, "00000000-0000-4000-8000-000000000000", {}).status_code == 404
    assert api.get("/api/tunix/exports/00000000-0000-4000-8000-000000000000").status_code == 404
    assert api.get("/api/tunix/exports/not-a-uuid/download").status_code == 404
    # And nothing was written: no export row, no message
    assert written(conn) == before


def test_tunix_export_downloads_checks_and_extracts_the_folder(stack, runs, tmp_path):
    import subprocess
    import sys

    api = stack["api"]
    env = dict(os.environ, TUNIX_URL=api.base, COLUMNS="200")

    def tunix(*args):
        return subprocess.run([sys.executable, "-m", "tunix_cli", *args], capture_output=True, text=True,
                              timeout=300, env=env, cwd=str(tmp_path))

    # When the LoRA run's step 2 is exported from the command line into a folder
    done = tunix("export", runs["lora"], "--step", "2", "-o", "model")
    # Then it waited, downloaded, checked and extracted: the folder, its size and sha256 printed
    assert done.returncode == 0, done.stderr
    export = api.get(f"/api/tunix/runs/{runs['lora']}/exports").json()["data"][0]
    assert export["step"] == 2 and export["status"] == "completed"
    folder = tmp_path / "model"
    assert f"{folder}: {export['size_bytes']} bytes (tar), sha256 {export['sha256']} checked" in done.stdout
    manifest = json.loads((folder / "tunix_export.json").read_text())
    assert manifest["step"] == 2 and manifest["lora"]["merged"] is True
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
    # The default folder is ./<run-id-short>-step<N>; --json says where
    done = tunix("export", runs["full"], "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["folder"] == str(tmp_path / f"{runs['full'][:8]}-step2") and answer["status"] == "completed"
    assert (tmp_path / f"{runs['full'][:8]}-step2" / "model.safetensors").is_file()
    # A step exported before is not exported again: the same export, downloaded again, says it was reused
    done = tunix("export", runs["lora"], "--step", "2", "-o", "again")
    assert done.returncode == 0 and f"export {export['export_id']}: run {runs['lora']} step 2, reused" in done.stderr
    # --delete removes an export's tar, and says so again when asked twice; the step is then exported anew
    for _ in range(2):
        done = tunix("export", "--delete", export["export_id"])
        assert done.returncode == 0, done.stderr
        assert f"export {export['export_id']} (run {runs['lora']} step 2) deleted at" in done.stdout
    assert api.get(f"/api/tunix/exports/{export['export_id']}/download").status_code == 410
    done = tunix("export", "--delete", "00000000-0000-4000-8000-000000000000")
    assert done.returncode == 5 and "no export" in done.stderr
    done = tunix("export", "--delete", export["export_id"], runs["lora"])
    assert done.returncode == 2 and "takes no RUN_ID" in done.stderr
    # A step without a checkpoint is the API's 409, one line, exit 5; a non-empty folder is refused up front
    done = tunix("export", runs["lora"], "--step", "3")
    assert done.returncode == 5 and "no recorded checkpoint at step 3" in done.stderr
    done = tunix("export", runs["lora"], "-o", "model")
    assert done.returncode == 2 and "exists and is not empty" in done.stderr
