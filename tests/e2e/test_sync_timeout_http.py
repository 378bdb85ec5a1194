"""Runs submitted while no worker serves the queue: a sync submit answers
202 after SYNC_TIMEOUT_S, and the run waits, queued, for a worker to come."""

import time
from urllib.parse import urljoin

import pytest

from support import DRY, ApiClient, metric, start_api


@pytest.fixture(scope="module")
def lonely(databases, tmp_path_factory, log_dir):
    """``(api, database url)``: an API with a 0.5 s sync timeout, on a database no worker serves (yet)."""
    url = databases.create()
    process = start_api(url, tmp_path_factory.mktemp("lonely-data"), log_dir, SYNC_TIMEOUT_S=0.5, METRICS_CACHE_S=0)
    yield ApiClient(process.url), url
    process.stop()


def test_a_sync_submit_with_no_worker_answers_202_pending_after_the_timeout(lonely):
    api, _ = lonely
    # Given no worker serves the queue
    # When a run is submitted synchronously
    started = time.monotonic()
    response = api.submit(DRY, mode="sync")
    waited = time.monotonic() - started
    # Then, after about SYNC_TIMEOUT_S, the answer is 202 with the pending run and its location
    assert response.status_code == 202, response.text
    assert 0.4 <= waited < 5
    run = response.json()
    assert run["status"] == "pending" and run["mode"] == "sync"
    assert run["started_at"] is None and run["attempts"] == 0
    location = response.headers["Location"]
    assert location.endswith(f"/api/tunix/runs/{run['run_id']}")
    # And the run stays pending
    assert api.http.get(urljoin(api.base, location), timeout=10).json()["status"] == "pending"


def test_the_fleet_gauges_show_the_waiting_runs_and_no_live_worker(lonely):
    api, _ = lonely
    # Given one more run waiting in a queue nobody serves
    pending = api.get("/api/tunix/runs", status="pending").json()["pagination"]["total"]
    assert api.submit(DRY, mode="async").status_code == 202
    # Then the API's gauges, read from PostgreSQL, say so
    samples = api.metrics()
    assert metric(samples, "tunix_workers_alive") == 0
    assert metric(samples, "tunix_runs_in_state", status="pending") == pending + 1
    assert metric(samples, "tunix_runs_in_state", status="completed") == 0
    assert metric(samples, "tunix_queue_oldest_pending_age_seconds") > 0


def test_runs_queued_while_no_worker_ran_complete_once_a_launch_starts(lonely, worker_launch):
    api, url = lonely
    # Given runs that have waited in the queue
    waiting = api.get("/api/tunix/runs", status="pending", limit=100).json()["data"]
    assert waiting
    # When a worker launch starts on that database
    launch = worker_launch(workers=1, threads=4, url=url)
    try:
        # Then each waiting run completes, once
        for run in waiting:
            final = api.wait_final(run["run_id"], timeout=60)
            assert final["status"] == "completed", final["error"]
            assert final["attempts"] == 1
        assert metric(launch.metrics(), "tunix_runs_total", status="completed") == len(waiting)
    finally:
        assert launch.stop() == 0
