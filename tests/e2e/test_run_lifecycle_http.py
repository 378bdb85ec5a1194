"""Runs through the real API process and a real worker launch."""

import re
import uuid
from urllib.parse import urljoin

import pytest

from tasks import artifacts
from tasks.artifacts import ArtifactStore
from support import ApiClient, count_runs, start_api


@pytest.fixture(autouse=True)
def _workers(workers):
    """Every test here has the session's worker launch serving the queue."""
    return workers


def test_an_async_submit_answers_202_with_location_then_completes_with_a_manifest(api, submit, dry_body,
                                                                                  data_dir):
    # Given a dry run request
    # When it is submitted asynchronously
    response = submit(dry_body, mode="async")
    # Then it is accepted at once, pending, with where to look
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "pending" and run["mode"] == "async" and run["dry_run"] is True
    uuid.UUID(run["run_id"])
    assert response.headers["Location"].endswith(f"/api/tunix/runs/{run['run_id']}")
    # When it is polled at that location
    final = api.wait_final(run["run_id"])
    assert api.http.get(urljoin(api.base, response.headers["Location"]), timeout=10).json()["status"] == "completed"
    # Then a worker completed it once, and the manifest it names is in the artifact store
    assert final["status"] == "completed", final["error"]
    assert final["attempts"] == 1 and final["worker_id"]
    assert final["started_at"] and final["completed_at"] and final["duration_seconds"] >= 0
    assert final["queue_wait_seconds"] >= 0
    result = final["result"]
    assert result["kind"] == "dry_run"
    store = ArtifactStore(f"file://{data_dir}/artifacts")  # the default ARTIFACTS_URL
    assert result["manifest"] == store.uri(artifacts.manifest_key(run["run_id"]))
    written = store.get_json(artifacts.manifest_key(run["run_id"]))
    assert written["run_id"] == run["run_id"] and written["dry_run"] is True
    # And the spec the dry run read is exactly the stored one, seed included
    assert written["spec"] == final["config"]
    assert written["run"]["run_id"] == run["run_id"] and written["run"]["dataset_kind"] == "synthetic"
    assert written["model"]["model_id"] == "llama3-tiny"
    # And the tiny model's window clamps the requested sequence length
    assert result["effective_max_seq_length"] == min(final["config"]["max_seq_length"],
                                                     written["model"]["max_seq_length"])


def test_a_sync_submit_answers_200_with_the_completed_run(api, submit, dry_body):
    # Given a dry run with a chosen seed
    dry_body.update(seed=1234, batch_size=2)
    # When it is submitted synchronously (the default mode)
    response = submit(dry_body, mode=None)
    # Then the answer is the finished run itself
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "completed" and run["mode"] == "sync"
    assert run["config"]["seed"] == 1234 and run["config"]["batch_size"] == 2
    assert run["result"]["kind"] == "dry_run"
    assert "Location" not in response.headers
    # And reading it again gives the same run
    assert api.run(run["run_id"])["completed_at"] == run["completed_at"]


def test_a_training_whose_operator_weights_are_incomplete_fails_with_the_reason(databases, worker_launch, log_dir,
                                                                               tmp_path):
    # Given an operator's WEIGHTS_DIR whose gemma3-270m folder holds no weights (it wins over the packaged ones)
    (tmp_path / "weights" / "gemma3-270m").mkdir(parents=True)
    url = databases.create()
    api_proc = start_api(url, tmp_path, log_dir)
    worker_launch(url=url, workers=1, threads=2, DATA_DIR=tmp_path, WEIGHTS_DIR=tmp_path / "weights")
    api = ApiClient(api_proc.url)
    try:
        # When a training of gemma3-270m is submitted
        body = {"dataset_key": "synthetic", "model_id": "gemma3-270m", "dry_run": False, "device": "cpu"}
        run = api.wait_final(api.submit(body).json()["run_id"])
        # Then it ended failed at once (exit 2, not retried), saying why, and nothing was converted
        assert run["status"] == "failed" and run["exit_code"] == 2 and run["attempts"] == 1
        assert run["error"]["type"] == "TrainingFailed"
        assert "WeightsNotFound" in run["error"]["message"] and "no *.safetensors" in run["error"]["message"]
        assert not (tmp_path / "models").exists()
    finally:
        api_proc.stop()


def test_a_run_on_an_operator_dataset_completes(api, submit, dry_body):
    # Given a dataset an operator dropped into DATA_DIR/datasets
    dry_body["dataset_key"] = "ops-set"
    # When a run names it
    run = submit(dry_body, mode="sync").json()
    # Then the API accepted it and the worker resolved it
    assert run["status"] == "completed", run["error"]
    assert run["result"]["dataset_key"] == "ops-set"


def test_the_status_endpoint_answers_the_short_form(api, submit, dry_body):
    # Given a completed run
    run = submit(dry_body, mode="sync").json()
    # When its status is asked for
    response = api.get(f"/api/tunix/runs/{run['run_id']}/status")
    # Then the answer is the short form, without config or result
    assert response.status_code == 200
    status = response.json()
    assert {"run_id", "status", "queued_at", "started_at", "completed_at", "exit_code", "attempts"} <= set(status)
    assert (status["run_id"], status["status"], status["attempts"]) == (run["run_id"], "completed", 1)
    assert "config" not in status and "result" not in status


@pytest.mark.parametrize("suffix", ["", "/status"])
def test_an_unknown_run_id_is_404(api, suffix):
    response = api.get(f"/api/tunix/runs/{uuid.uuid4()}{suffix}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "run_not_found"


@pytest.mark.parametrize("suffix", ["", "/status"])
@pytest.mark.parametrize("bad_id", ["not-a-uuid", "12345", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
def test_a_malformed_run_id_is_404_too(api, suffix, bad_id):
    response = api.get(f"/api/tunix/runs/{bad_id}{suffix}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "run_not_found"


class TestHistory:
    @pytest.fixture(scope="class")
    def runs(self, api, database_url, workers):
        """Eight finished runs, oldest first: a mix of modes, datasets, models and outcomes."""
        from support import connect, truncate

        conn = connect(database_url)
        truncate(conn)
        conn.close()
        specs = [
            ("async", "synthetic", "llama3-tiny"),
            ("sync", "synthetic", "llama3-tiny"),
            ("async", "ops-set", "llama3-tiny"),
            ("async", "synthetic", "qwen3-tiny"),
            ("sync", "ops-set", "qwen3-tiny"),
            ("async", "synthetic", "gemma3-tiny"),  # a training past its 1 s time limit: timeout
            ("sync", "synthetic", "gemma3-tiny"),
            ("async", "synthetic", "llama3-tiny"),
        ]
        ids = []
        for i, (mode, dataset_key, model_id) in enumerate(specs):
            body = {"dataset_key": dataset_key, "model_id": model_id}
            if i == 5:
                body.update(dry_run=False, device="cpu", time_limit_s=1)
            response = api.submit(body, mode=mode)
            assert response.status_code in (200, 202), response.text
            # One at a time: creation order is history order.
            run = api.wait_final(response.json()["run_id"], timeout=120)
            ids.append(run["run_id"])
        return [dict(zip(("mode", "dataset_key", "model_id"), spec), run_id=i) for spec, i in zip(specs, ids)]

    def page(self, api, **params):
        response = api.get("/api/tunix/runs", **params)
        assert response.status_code == 200, response.text
        return response.json()

    def test_the_default_page_is_newest_first_with_pagination(self, api, runs):
        # When the history is read with no parameters
        body = self.page(api)
        # Then every run is there, newest first, on one page
        assert [r["run_id"] for r in body["data"]] == [r["run_id"] for r in reversed(runs)]
        assert body["pagination"] == {"limit": 20, "offset": 0, "next_offset": None, "total": 8}
        # Each item is a whole run
        assert {"config", "result", "error", "status", "queued_at"} <= set(body["data"][0])

    def test_pages_follow_next_offset_to_the_end(self, api, runs):
        # When the history is read three at a time, following next_offset
        seen, offset, pages = [], 0, 0
        while offset is not None:
            body = self.page(api, limit=3, offset=offset)
            assert body["pagination"]["limit"] == 3 and body["pagination"]["total"] == 8
            assert body["pagination"]["offset"] == offset
            seen += [r["run_id"] for r in body["data"]]
            offset = body["pagination"]["next_offset"]
            pages += 1
        # Then three pages cover every run once, newest first
        assert pages == 3
        assert seen == [r["run_id"] for r in reversed(runs)]

    def test_an_offset_past_the_end_is_an_empty_page(self, api, runs):
        body = self.page(api, offset=100)
        assert body["data"] == []
        assert body["pagination"]["total"] == 8 and body["pagination"]["next_offset"] is None

    @pytest.mark.parametrize(("params", "expected"), [
        ({"status": "timeout"}, [5]),
        ({"status": "failed"}, []),
        ({"status": "completed"}, [0, 1, 2, 3, 4, 6, 7]),
        ({"mode": "sync"}, [1, 4, 6]),
        ({"dataset_key": "ops-set"}, [2, 4]),
        ({"model_id": "qwen3-tiny"}, [3, 4]),
        ({"mode": "async", "dataset_key": "synthetic", "model_id": "llama3-tiny"}, [0, 7]),
        ({"status": "pending"}, []),
    ])
    def test_filters_select_exactly_the_matching_runs(self, api, runs, params, expected):
        # When the history is filtered
        body = self.page(api, **params)
        # Then exactly the matching runs are listed, newest first, and counted
        assert [r["run_id"] for r in body["data"]] == [runs[i]["run_id"] for i in reversed(expected)]
        assert body["pagination"]["total"] == len(expected)

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"offset": -1},
                                        {"status": "bogus"}, {"mode": "bogus"}])
    def test_bad_page_parameters_are_422_naming_them(self, api, runs, params):
        # When the history is asked for with a bad parameter
        response = api.get("/api/tunix/runs", **params)
        # Then it is refused, naming that parameter
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert [f["field"] for f in error["fields"]] == list(params)

    def test_the_largest_page_is_one_hundred(self, api, runs):
        assert self.page(api, limit=100)["pagination"]["limit"] == 100


def test_the_catalog_lists_the_shipped_and_operator_datasets_and_the_models(api):
    # When the catalog is listed
    datasets = {d["key"]: d for d in api.get("/api/tunix/datasets").json()["data"]}
    # Then it has the built-in, shipped and operator datasets, and the tiny models
    assert datasets["synthetic"]["kind"] == "synthetic"
    assert datasets["ops-set"]["kind"] == "jsonl"
    assert "text-sft" in datasets
    for item in datasets.values():
        assert {"key", "kind", "description"} <= set(item)
    models = {m["model_id"]: m for m in api.get("/api/tunix/models").json()["data"]}
    assert {"llama3-tiny", "qwen3-tiny", "gemma3-tiny"} <= set(models)
    assert models["llama3-tiny"]["requires_weights"] is False
    assert models["llama3-tiny"]["param_count"] > 0


def test_health_and_readiness_answer(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_a_submit_is_counted_in_the_api_metrics(api, submit, dry_body, db_conn):
    from support import metric

    # Given the API's counters now
    before = api.metrics()
    # When one async run is submitted
    assert submit(dry_body, mode="async").status_code == 202
    after = api.metrics()
    # Then the pending counter and the HTTP counter each moved by exactly one
    assert metric(after, "tunix_runs_total", status="pending", mode="async") - \
        metric(before, "tunix_runs_total", status="pending", mode="async") == 1
    assert metric(after, "tunix_http_requests_total", endpoint="/api/tunix/run", method="POST", status="202") - \
        metric(before, "tunix_http_requests_total", endpoint="/api/tunix/run", method="POST", status="202") == 1
    # And a run id never becomes a label
    uuid_like = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
    assert not any(uuid_like.search(value) for (_, labels) in after for _, value in labels)
    assert count_runs(db_conn) >= 1


def test_the_api_metrics_count_the_live_worker_processes(api):
    from support import metric, wait_for

    assert wait_for(lambda: metric(api.metrics(), "tunix_workers_alive") == 2, timeout=15,
                    message="2 workers alive")
