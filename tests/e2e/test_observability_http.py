"""Fleet observability against live processes: every scrape of every worker
launch adds up to what the registry says, and nothing survives a restart
that should not.

Each test gets its own database, API and launches, so the counts it reads
are its own.
"""

import os
import signal

import pytest
import requests

from support import DRY, ApiClient, connect, metric, metric_samples, scalar, start_api, wait_for
from tasks import lifecycle


@pytest.fixture
def own_system(databases, data_dir, log_dir, worker_launch):
    """A fresh database with its own API; ``launch(**kw)`` starts worker
    launches on it."""
    url = databases.create()
    # Every scrape reads the registry (no cache): the counts are compared with it at once.
    api_proc = start_api(url, data_dir, log_dir, METRICS_CACHE_S=0)
    conn = connect(url)

    def launch(**kwargs):
        return worker_launch(url=url, **kwargs)

    yield ApiClient(api_proc.url), launch, conn
    conn.close()
    api_proc.stop()


def test_completed_runs_sum_exactly_over_every_worker_launch_scrape(own_system):
    # Given two launches on one database: 2 processes, and a second on another metrics port
    api, launch, conn = own_system
    first, second = launch(workers=2, threads=4), launch(workers=1, threads=4)
    # When N async dry runs are submitted and all complete
    n = 60
    ids = [api.submit(dict(DRY)).json()["run_id"] for _ in range(n)]
    wait_for(lambda: scalar(conn, "SELECT count(*) FROM tunix_runs WHERE status = 'completed'") == n, 60,
             message="all runs completed")
    # Then the completed counters of both endpoints add up to exactly N
    scrapes = [first.metrics(), second.metrics()]
    total = sum(metric(s, "tunix_runs_total", status="completed", mode="async") for s in scrapes)
    assert total == n
    # and the duration and queue-wait histograms saw every one of them
    assert sum(metric(s, "tunix_runs_duration_seconds_count", status="completed") for s in scrapes) == n
    assert sum(metric(s, "tunix_runs_queue_wait_seconds_count") for s in scrapes) == n
    # and the API counted the N submits, and no final status (that is the workers' to count)
    api_samples = api.metrics()
    assert metric(api_samples, "tunix_runs_total", status="pending", mode="async") == n
    assert metric(api_samples, "tunix_runs_total", status="completed") == 0
    # and every registry write operation has observations where it happens
    worker_ops = {op for s in scrapes for (name, labels), v in s.items()
                  if name == "tunix_db_write_latency_ms_count" and v > 0 for k, op in labels if k == "operation"}
    assert {"claim", "finish", "worker_heartbeat"} <= worker_ops
    assert metric(api_samples, "tunix_db_write_latency_ms_count", operation="submit") == n
    assert len(set(ids)) == n


@pytest.mark.slow  # make test-all: a killed worker shown lost stays in make test (tests/e2e/test_fleet_http.py)
def test_fleet_gauges_match_the_registry_after_a_worker_is_killed(own_system):
    # Given a long training running on a one-process launch
    api, launch, conn = own_system
    fleet = launch(workers=1, threads=2)
    wait_for(lambda: metric(api.metrics(), "tunix_workers_alive") == 1, 15, message="worker heartbeat")
    body = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 5000,
            "batch_size": 2, "max_seq_length": 16, "learning_rate": 0.01}
    run_id = api.submit(body).json()["run_id"]
    api.wait_final(api.submit(dict(DRY)).json()["run_id"])  # and a dry run that completed
    running = wait_for(lambda: (lambda r: r if r["status"] == "running" else None)(api.run(run_id)), 30,
                       message="training running")
    # When its worker process is SIGKILLed (dramatiq then stops the whole launch)
    os.kill(int(running["worker_id"].rsplit(":", 1)[1]), signal.SIGKILL)
    fleet.proc.wait(30)
    # Then the scrape-time gauges equal the registry, status by status
    samples = api.metrics()
    for status in lifecycle.ALL:
        in_db = scalar(conn, "SELECT count(*) FROM tunix_runs WHERE status = %s", (status,))
        assert metric(samples, "tunix_runs_in_state", status=status) == in_db, status
    assert metric(samples, "tunix_runs_in_state", status="running") == 1
    # and the killed process no longer counts as alive once its heartbeat is stale
    samples = wait_for(lambda: (lambda s: s if metric(s, "tunix_workers_alive") == 0 else None)(api.metrics()),
                       45, interval=1, message="dead worker dropped from tunix_workers_alive")
    assert metric(samples, "tunix_queue_oldest_pending_age_seconds") == 0


def test_a_restarted_launch_starts_from_clean_metric_files(own_system, data_dir):
    # Given a launch on a fixed metrics port that completed some runs
    api, launch, conn = own_system
    port_env = {}
    first = launch(workers=1, threads=2)
    port_env["METRICS_PORT"] = first.metrics_port
    ids = [api.submit(dict(DRY)).json()["run_id"] for _ in range(5)]
    for run_id in ids:
        api.wait_final(run_id)
    assert metric(first.metrics(), "tunix_runs_total", status="completed") == 5
    folder = os.path.join(str(data_dir), "prometheus", f"workers-{first.metrics_port}")
    assert any(name.endswith(".db") for name in os.listdir(folder))
    # When it stops and a new launch starts on the same port
    first.stop()
    second = launch(workers=1, threads=2, **port_env)
    # Then the new launch reports nothing it did not do itself
    samples = second.metrics()
    assert metric(samples, "tunix_runs_total", status="completed") == 0
    run_id = api.submit(dict(DRY)).json()["run_id"]
    api.wait_final(run_id)
    assert metric(second.metrics(), "tunix_runs_total", status="completed") == 1


def test_no_metric_label_carries_a_run_id(own_system):
    # Given some runs through the system
    api, launch, conn = own_system
    fleet = launch(workers=1, threads=2)
    run_ids = {api.submit(dict(DRY)).json()["run_id"] for _ in range(3)}
    for run_id in run_ids:
        api.get(f"/api/tunix/runs/{run_id}/status")
        api.wait_final(run_id)
    # When the API and the worker launch are scraped
    pages = api.get("/metrics").text + requests.get(fleet.metrics_url, timeout=5).text
    # Then no run id appears anywhere, labels included
    assert not any(run_id in pages for run_id in run_ids)
    endpoints = {dict(labels).get("endpoint") for (name, labels) in metric_samples(pages)
                 if name == "tunix_http_requests_total"}
    assert "/api/tunix/runs/<run_id>/status" in endpoints
