"""The fleet view over HTTP (``GET /api/tunix/workers``) against live
processes, and ``LOG_FORMAT=json``.

The fleet has two worker launches of one process and one training slot
each, and ``HEARTBEAT_TIMEOUT_S=4``.  Each holds one training: a real one,
frozen (SIGSTOP) by the test once its worker has claimed it, so it holds its
run without spending the CPU (the worker keeps beating for it).
"""

import contextlib
import json
import os
import signal
import time

import pytest

from support import DRY, ApiClient, Launch, connect, freeze_training, kill_pids, start_api, wait_for

#: Short, so a lost worker shows within seconds.
HEARTBEAT_TIMEOUT_S = 4
FLEET_ENV = dict(HEARTBEAT_TIMEOUT_S=HEARTBEAT_TIMEOUT_S, REAPER_INTERVAL_S=1, TRAIN_CONCURRENCY=1)
#: A training that would run for minutes: it is frozen, then killed.
LONG_TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 100000,
                 "batch_size": 4, "max_seq_length": 32, "device": "cpu"}


def fleet(api):
    response = api.get("/api/tunix/workers")
    assert response.status_code == 200, response.text
    return response.json()


def workers_by_id(body):
    return {w["worker_id"]: w for host in body["hosts"] for w in host["workers"]}


def queue(body, kind):
    return next(q for q in body["queues"] if q["kind"] == kind)


@pytest.fixture
def system(databases, data_dir, log_dir, worker_launch):
    url = databases.create()
    api_proc = start_api(url, data_dir, log_dir, HEARTBEAT_TIMEOUT_S=HEARTBEAT_TIMEOUT_S)
    conn = connect(url)
    frozen = []
    yield url, ApiClient(api_proc.url), conn, frozen
    # The frozen trainings cannot act on SIGTERM: they go first.
    kill_pids(frozen)
    conn.close()
    api_proc.stop()


def test_the_fleet_lists_each_worker_with_its_run_and_shows_a_killed_one_lost(system, worker_launch):
    url, api, conn, frozen = system
    # Given two worker launches of one process each
    first, second = (worker_launch(workers=1, threads=2, url=url, **FLEET_ENV) for _ in range(2))
    body = wait_for(lambda: (lambda b: b if b["totals"]["alive"] == 2 else None)(fleet(api)), 20,
                    message="both workers alive")
    assert body["heartbeat_timeout_s"] == HEARTBEAT_TIMEOUT_S
    assert body["totals"]["lost"] == 0 and body["totals"]["runs_held"] == 0
    # And a training held by each (one slot per process, so the second goes to the other)
    held = {}
    for _ in range(2):
        run_id = api.submit(dict(LONG_TRAINING)).json()["run_id"]
        row = wait_for(lambda: (lambda r: r if r["status"] == "running" else None)(api.run(run_id)), 30,
                       message=f"run {run_id} running")
        frozen.extend(freeze_training(run_id))
        held[row["worker_id"]] = run_id
    assert len(held) == 2, held
    # And a known backlog: three more trainings (no slot free) and no dry run
    backlog = [api.submit(dict(LONG_TRAINING)).json()["run_id"] for _ in range(3)]

    # When the fleet is read
    body = fleet(api)
    # Then both processes are listed alive, each with the run it holds
    workers = workers_by_id(body)
    assert set(workers) == set(held), (workers.keys(), held)
    for worker_id, run_id in held.items():
        worker = workers[worker_id]
        assert worker["state"] == "alive"
        assert 0 <= worker["heartbeat_age_s"] < HEARTBEAT_TIMEOUT_S
        assert worker["pid"] == int(worker_id.rsplit(":", 1)[1]) and worker["started_at"]
        [run] = worker["runs"]
        assert run["run_id"] == run_id and run["status"] == "running"
        assert run["dry_run"] is False and run["model_id"] == "llama3-tiny"
        assert 0 <= run["heartbeat_age_s"] < HEARTBEAT_TIMEOUT_S
    assert body["totals"]["hosts"] == len(body["hosts"]) == 1
    assert body["totals"]["runs_held"] == 2
    # And the queues: of the backlog one waits on the train queue (ADMIT_AHEAD) and two for admission,
    # the two held are in flight
    train, dry = queue(body, "train"), queue(body, "dry")
    assert (train["depth"], train["deferred"], train["in_flight"], train["running"]) == (1, len(backlog) - 1, 2, 2)
    assert body["totals"]["deferred"] == len(backlog) - 1
    assert train["oldest_pending_age_s"] >= 0
    assert (dry["depth"], dry["deferred"], dry["in_flight"], dry["running"], dry["oldest_pending_age_s"]) == \
        (0, 0, 0, 0, None)

    # When one launch is killed outright (SIGKILL to every process of it)
    victim_id = next(w for w in held if int(w.rsplit(":", 1)[1]) in _group(first.pid))
    os.killpg(first.pid, signal.SIGKILL)
    killed_at = time.monotonic()

    # Then the fleet shows it lost within HEARTBEAT_TIMEOUT_S (plus a poll), the other alive
    def lost():
        body = fleet(api)
        return body if workers_by_id(body)[victim_id]["state"] == "lost" else None

    body = wait_for(lost, HEARTBEAT_TIMEOUT_S + 5, interval=0.1, message="the killed worker lost")
    took = time.monotonic() - killed_at
    assert took <= HEARTBEAT_TIMEOUT_S + 1.0, f"shown lost {took:.1f}s after the kill"
    workers = workers_by_id(body)
    assert workers[victim_id]["heartbeat_age_s"] >= HEARTBEAT_TIMEOUT_S
    survivor_id = next(w for w in held if w != victim_id)
    assert workers[survivor_id]["state"] == "alive"
    assert (body["totals"]["alive"], body["totals"]["lost"]) == (1, 1)
    print(f"killed worker shown lost {took:.2f}s after SIGKILL (HEARTBEAT_TIMEOUT_S={HEARTBEAT_TIMEOUT_S})")
    kill_pids(frozen)  # before the survivor stops: a frozen training would make it wait for its SIGKILL
    second.stop()


def _group(pgid):
    """Pids in process group ``pgid``."""
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(name)) == pgid:
                    out.add(int(name))
    return out


def test_fleet_reads_honour_api_token_reads(databases, data_dir, log_dir):
    url = databases.create()
    api_proc = start_api(url, data_dir, log_dir, API_TOKEN="s3cret", API_TOKEN_READS=1)
    try:
        api = ApiClient(api_proc.url)
        assert api.get("/api/tunix/workers").status_code == 401
        answer = api.http.get(api.url("/api/tunix/workers"), headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert answer.status_code == 200 and answer.json()["hosts"] == []
    finally:
        api_proc.stop()


def json_lines(path):
    """Every line of ``path`` parsed; fails naming the first that is not a JSON object."""
    records = []
    for number, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        assert isinstance(record, dict), f"{path}:{number} is not a JSON object: {line!r}"
        records.append(record)
    return records


def test_log_format_json_makes_every_line_a_json_object_with_host_pid_and_the_run(databases, log_dir, tmp_path):
    # Given an API and a worker launch with LOG_FORMAT=json, and an operator dataset with a malformed line
    data_dir = tmp_path / "data"
    (data_dir / "datasets").mkdir(parents=True)
    (data_dir / "datasets" / "broken.jsonl").write_text('{"prompt": "1 + 1 =", "completion": "2"}\nnot json\n')
    url = databases.create()
    env = dict(LOG_FORMAT="json", WORKER_HOSTNAME="fleet-host-1")
    api_proc = start_api(url, data_dir, log_dir, **env)
    api = ApiClient(api_proc.url)
    launch = None
    try:
        launch = Launch(url, data_dir, log_dir, workers=1, threads=2, **env)
        # When a run fails in the worker (the bad line: logged with its traceback) and one completes
        failing = api.submit(dict(DRY, dataset_key="broken")).json()["run_id"]
        passing = api.submit(dict(DRY)).json()["run_id"]
        failed, completed = api.wait_final(failing), api.wait_final(passing)
        assert (failed["status"], completed["status"]) == ("failed", "completed"), failed
    finally:
        # (stopped with SIGTERM: the shutdown is logged too)
        if launch is not None:
            launch.stop()
        api_proc.stop()

    # Then every line the launch wrote is a JSON object with the fields
    records = json_lines(launch.log_path)
    assert len(records) >= 5, records
    for record in records:
        assert {"timestamp", "level", "logger", "message", "host", "pid"} <= record.keys(), record
        assert record["host"] == "fleet-host-1" and isinstance(record["pid"], int)
    loggers = {r["logger"] for r in records}
    assert "tunix.workers" in loggers and any(name.startswith("dramatiq") for name in loggers), loggers
    # and the lines logged while the failing run was processed carry its id, its worker's pid, the traceback
    during = [r for r in records if r.get("run_id") == failing]
    assert during, [r["message"] for r in records]
    worker_pid = int(failed["worker_id"].rsplit(":", 1)[1])
    assert {r["pid"] for r in during} == {worker_pid}
    assert any("InvalidDataset" in r.get("exception", "") and "line 2" in r["exception"] for r in during), during
    # and lines logged outside a run carry none
    assert any("run_id" not in r for r in records)
    # And the API's (gunicorn's) lines are JSON objects too
    api_records = json_lines(api_proc.log_path)
    assert any(r["logger"] == "gunicorn.error" for r in api_records), api_records
    assert all(r["host"] == "fleet-host-1" for r in api_records)
