"""An operator adds a dataset by dropping a JSONL file into $DATA_DIR/datasets."""

import pytest

from support import ApiClient, start_api


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
