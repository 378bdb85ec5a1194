"""An operator adds a dataset by dropping a JSONL file into $DATA_DIR/datasets,
or by uploading it to the artifact store (a file store, a real S3 server)."""

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from s3server import S3Server
from support import ROOT, ApiClient, start_api
from tasks import artifacts
from tasks.artifacts import ArtifactStore


@pytest.fixture
def own_data(databases, log_dir, tmp_path, worker_launch):
    """An API and a worker launch whose DATA_DIR is this test's own."""
    url = databases.create()
    (tmp_path / "datasets").mkdir()
    api_proc = start_api(url, tmp_path, log_dir)
    worker_launch(url=url, workers=1, threads=2, DATA_DIR=tmp_path)
    yield ApiClient(api_proc.url), tmp_path / "datasets"
    api_proc.stop()


def test_a_dropped_jsonl_file_is_listed_and_runs(own_data):
    # Given an operator drops a well-formed file
    api, folder = own_data
    (folder / "support-faq.jsonl").write_text(
        '{"prompt": "How do I reset?", "completion": "Hold the button."}\n'
        '{"prompt": "Where is the log?", "completion": "In the run page."}\n')
    # Then it is listed at once, beside the shipped ones
    keys = {d["key"]: d for d in api.get("/api/tunix/datasets").json()["data"]}
    assert {"synthetic", "text-sft", "support-faq"} <= set(keys)
    assert keys["support-faq"]["kind"] == "jsonl"
    # and a dry run on it completes, counting its examples
    run = api.wait_final(api.submit({"dataset_key": "support-faq", "model_id": "llama3-tiny"}).json()["run_id"])
    assert run["status"] == "completed", run["error"]
    assert run["result"]["dataset_key"] == "support-faq"


def test_a_malformed_jsonl_file_fails_its_run_naming_the_line(own_data):
    # Given a file whose second line is not a prompt/completion object
    api, folder = own_data
    (folder / "broken.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "no completion"}\n')
    # When a run uses it
    run = api.wait_final(api.submit({"dataset_key": "broken", "model_id": "llama3-tiny"}).json()["run_id"])
    # Then the run failed with an error that names the file's line
    assert run["status"] == "failed"
    assert run["error"]["type"] == "InvalidDataset"
    assert "line 2" in run["error"]["message"]


def test_an_unknown_dataset_is_refused_up_front_and_writes_nothing(own_data):
    api, _ = own_data
    before = api.get("/api/tunix/runs").json()["pagination"]["total"]
    response = api.submit({"dataset_key": "not-dropped-yet", "model_id": "llama3-tiny"})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "dataset_key"
    assert api.get("/api/tunix/runs").json()["pagination"]["total"] == before


# --------------------------------------------------------------------------
# Datasets in the artifact store (datasets/<key>.jsonl): what every host sees

GOOD = ('{"prompt": "What is the capital of France?", "completion": "Paris."}\n'
        '{"prompt": "2 + 2 =", "completion": "4"}\n'
        '{"prompt": "Say hi", "completion": "Hi!"}\n')
BROKEN = '{"prompt": "a", "completion": "b"}\n{"prompt": "no completion here"}\n'
TINY_TRAINING = {"dry_run": False, "max_steps": 2, "batch_size": 2, "max_seq_length": 32, "seed": 1,
                 "device": "cpu", "checkpoint_every_steps": 100}


class StoreSetup:
    """An API and a worker launch sharing an artifact store (``file`` or a real S3 server)."""

    def __init__(self, kind, api, data_dir, env, server=None):
        self.kind, self.api, self.data_dir, self.env, self.server = kind, api, data_dir, env, server

    def put_with_the_operator_command(self, path, key):
        """``python -m tasks.datasets put FILE KEY``, as an operator runs it."""
        env = dict(os.environ, DATA_DIR=str(self.data_dir), **self.env,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        return subprocess.run([sys.executable, "-m", "tasks.datasets", "put", str(path), key], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    def put_raw(self, key, text):
        """An object written without the command's checks (``aws s3 cp``, or a copy into the file store)."""
        if self.server is None:
            folder = self.data_dir / "artifacts" / "datasets"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f".{key}.part").write_text(text)
            os.replace(folder / f".{key}.part", folder / f"{key}.jsonl")
        else:
            self.server.fs().pipe(f"{self.server.bucket}/{STORE_PREFIX}/datasets/{key}.jsonl", text.encode())

    def manifest(self, run_id):
        """The run's manifest, read from the store (a dry run writes it nowhere else)."""
        key = artifacts.manifest_key(run_id)
        if self.server is None:
            return ArtifactStore(f"file://{self.data_dir}/artifacts").get_json(key)
        return json.loads(self.server.fs().cat(f"{self.server.bucket}/{STORE_PREFIX}/{key}"))

    @property
    def cache(self):
        return self.data_dir / "cache" / "datasets"

    def cache_files(self):
        """``{name: (inode, mtime_ns)}`` of the worker's cached datasets and index entries."""
        return {str(p.relative_to(self.cache)): (p.stat().st_ino, p.stat().st_mtime_ns)
                for p in self.cache.rglob("*") if p.is_file()}


STORE_PREFIX = "team/tunix"


# The S3 variants in `make test-all` (tests/multihost covers the S3 store in `make test`).
@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.slow)])
def store_setup(request, databases, log_dir, tmp_path, worker_launch):
    server, env = None, {"DATASETS_TTL_S": 1, "STORE_PATIENCE_S": 3}
    if request.param == "s3":
        server = S3Server(tmp_path / "s3", ip="127.0.0.1").start()
        env.update(server.env, ARTIFACTS_URL=server.url(STORE_PREFIX))
    url = databases.create()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    api_proc = start_api(url, data_dir, log_dir, **env)
    worker_launch(url=url, workers=1, threads=2, DATA_DIR=data_dir, **env)
    try:
        yield StoreSetup(request.param, ApiClient(api_proc.url), data_dir, {k: str(v) for k, v in env.items()},
                         server)
    finally:
        api_proc.stop()
        if server is not None:
            server.stop(kill=True)


@pytest.mark.training
def test_a_dataset_uploaded_to_the_store_is_listed_dry_runs_and_trains_from_one_cached_copy(store_setup, tmp_path):
    s = store_setup
    api = s.api
    # Given an operator uploads a dataset with the documented command
    source = tmp_path / "capitals.jsonl"
    source.write_text(GOOD)
    done = s.put_with_the_operator_command(source, "capitals")
    assert done.returncode == 0, done.stderr
    uploaded = json.loads(done.stdout)
    assert uploaded["examples"] == 3 and uploaded["uri"].endswith("/datasets/capitals.jsonl")
    # Then the API lists it, from the store, with its size and etag, beside the shipped ones
    listed = {d["key"]: d for d in api.get("/api/tunix/datasets").json()["data"]}
    assert {"synthetic", "text-sft", "capitals"} <= set(listed)
    assert listed["capitals"]["origin"] == "store" and listed["capitals"]["size"] == len(GOOD.encode())
    assert listed["capitals"]["etag"] == uploaded["etag"]
    assert listed["text-sft"]["origin"] == "shipped"
    # When a dry run uses it
    run = api.wait_final(api.submit({"dataset_key": "capitals", "model_id": "llama3-tiny"}).json()["run_id"])
    # Then it completes, from the worker's local copy named by the content's sha256
    assert run["status"] == "completed", run["error"]
    digest = hashlib.sha256(GOOD.encode()).hexdigest()
    manifest = s.manifest(run["run_id"])
    assert manifest["dataset"]["origin"] == "store" and manifest["dataset"]["sha256"] == digest
    assert manifest["dataset"]["examples"] == 3
    assert manifest["run"]["dataset_path"] == str(s.cache / f"{digest}.jsonl")
    cached = s.cache_files()
    assert f"{digest}.jsonl" in cached and len(cached) == 2  # the copy and its index entry
    # When a tiny training uses it
    body = dict(TINY_TRAINING, dataset_key="capitals", model_id="llama3-tiny")
    run = api.wait_final(api.submit(body).json()["run_id"], timeout=300)
    # Then it completes, training from the same copy, which was not downloaded again
    assert run["status"] == "completed", run["error"]
    assert run["result"]["steps"] == 2
    # (the placement its job file gave it, as its stored manifest records it)
    assert s.manifest(run["run_id"])["run"]["dataset_path"] == str(s.cache / f"{digest}.jsonl")
    assert s.cache_files() == cached


def test_a_malformed_store_dataset_fails_its_run_naming_the_line(store_setup, tmp_path):
    s = store_setup
    # Given the upload command refuses a malformed file, naming its line
    source = tmp_path / "broken.jsonl"
    source.write_text(BROKEN)
    refused = s.put_with_the_operator_command(source, "broken")
    assert refused.returncode == 2 and "line 2" in refused.stderr
    # And an object put there by other means
    s.put_raw("broken", BROKEN)
    # When a run uses it (the listing may be older than the object: the submit lists the store again)
    response = s.api.submit({"dataset_key": "broken", "model_id": "llama3-tiny"})
    assert response.status_code == 202, response.text
    run = s.api.wait_final(response.json()["run_id"])
    # Then the run failed with an InvalidDataset that names the object's line
    assert run["status"] == "failed"
    assert run["error"]["type"] == "InvalidDataset"
    assert "line 2" in run["error"]["message"] and "datasets/broken.jsonl" in run["error"]["message"]
    # And nothing of it is cached
    assert not list(s.cache.glob("*.jsonl"))


def test_an_unreachable_store_leaves_the_other_datasets_listed_and_submittable(store_setup):
    s = store_setup
    if s.server is None:
        pytest.skip("the file store cannot be taken away")
    # Given a store dataset the API has listed
    s.put_raw("faq", GOOD)
    assert "faq" in {d["key"] for d in s.api.get("/api/tunix/datasets").json()["data"]}
    # When the store goes down, and the listing's TTL (1 s) has passed
    s.server.stop(kill=True)
    time.sleep(1.5)
    # Then the list still answers, with the last known store datasets, and a submit still works
    response = s.api.get("/api/tunix/datasets")
    assert response.status_code == 200
    assert {"synthetic", "text-sft", "faq"} <= {d["key"] for d in response.json()["data"]}
    response = s.api.submit({"dataset_key": "faq", "model_id": "llama3-tiny"})
    assert response.status_code == 202, response.text
    # And a run on the store dataset fails its attempt with a clear StoreUnavailable (STORE_PATIENCE_S=3)
    run = s.api.wait_final(response.json()["run_id"], timeout=60)
    assert run["status"] == "failed"
    assert run["error"]["type"] == "StoreUnavailable"
    assert "dataset 'faq': the artifact store could not be read within 3s" in run["error"]["message"]
    # And a key the store never listed is a 422, not a 500
    assert s.api.submit({"dataset_key": "never-uploaded", "model_id": "llama3-tiny"}).status_code == 422
