"""One worker launch as a process tree: started, serving metrics, stopped whole."""

import pathlib

from support import metric, wait_for


def process_group(pgid):
    """Pids of the live processes in process group ``pgid``."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after ')'
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def test_a_launch_runs_its_worker_processes_and_sigterm_stops_every_one(databases, worker_launch):
    # Given a launch of two worker processes on a database of its own
    launch = worker_launch(workers=2, threads=2, url=databases.create())
    # Then its process group holds the launcher, dramatiq's main process and two workers
    wait_for(lambda: len(process_group(launch.pid)) >= 4, timeout=30, message="4 processes in the launch")
    # And its metrics page answers in the Prometheus format
    samples = launch.metrics()
    assert metric(samples, "tunix_runs_total") == 0
    # When it is told to stop (SIGTERM to the launcher, as a supervisor does)
    code = launch.stop()
    # Then it exits cleanly and no process of the group is left
    assert code == 0, launch.log()
    assert process_group(launch.pid) == []
    assert "Killing worker process" not in launch.log()  # a graceful stop, not the hard kill



def test_a_training_gets_no_credentials_from_its_worker(databases, worker_launch, data_dir, log_dir):
    # Given a worker launch whose environment holds the database URL, tokens,
    # the store's keys and an operator's own secret
    import os

    import requests

    from support import ApiClient, pids_with, start_api

    url = databases.create()
    secrets = dict(API_TOKEN="tok-sekrit", AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="aws-sekrit",
                   SLACK_WEBHOOK_TOKEN="slack-sekrit", MY_SERVICE_PASSWORD="pw-sekrit")
    launch = worker_launch(workers=1, threads=2, url=url, **secrets)
    api = start_api(url, data_dir, log_dir, API_TOKEN="tok-sekrit")
    try:
        client = ApiClient(api.url)
        client.http.headers["Authorization"] = "Bearer tok-sekrit"
        body = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 5000,
                "batch_size": 4, "max_seq_length": 32, "device": "cpu"}
        response = client.submit(body, mode="async")
        assert response.status_code == 202, response.text
        run_id = response.json()["run_id"]
        # When its training runs (the process that names the run's job file and
        # runs workers.training, under its lifeline)
        def trainings():
            return [pid for pid in pids_with(f"{run_id}/")
                    if "workers.training" in open(f"/proc/{pid}/cmdline").read().replace("\0", " ")]

        pids = wait_for(trainings, timeout=120, message="the training process")
        environ = dict(entry.split("=", 1) for entry in
                       open(f"/proc/{pids[0]}/environ").read().split("\0") if "=" in entry)
        # Then the training's environment holds none of them
        assert "DATABASE_URL" not in environ
        assert not set(secrets) & set(environ), sorted(set(secrets) & set(environ))
        assert not any("sekrit" in value or url in value for value in environ.values())
        # And it still has what it needs (its data folder, JAX's cache)
        assert environ.get("DATA_DIR") and environ.get("JAX_COMPILATION_CACHE_DIR")
        requests.post(f"{api.url}/api/tunix/runs/{run_id}/cancel", headers={"Authorization": "Bearer tok-sekrit"},
                      timeout=10)
    finally:
        api.stop()
        launch.stop()
