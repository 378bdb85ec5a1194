"""Fair share between users, through the real API (with users: auth on) and a
worker launch with one training slot (one process, ``TRAIN_CONCURRENCY=1``):
one person's batch does not fill the fleet ahead of everyone else (#21)."""

import pytest
import requests

from support import connect, first_admin, start_api, wait_for

# make test-all: the rule stays in make test (tests/integration/test_admission_order.py).
pytestmark = [pytest.mark.training, pytest.mark.slow]

TRAIN = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 5, "batch_size": 4,
         "max_seq_length": 32, "checkpoint_every_steps": 100}


@pytest.fixture(scope="module")
def stack(databases, data_dir, log_dir, worker_launch):
    url = databases.create()
    root = first_admin(url)
    api = start_api(url, data_dir, log_dir)
    launch = worker_launch(workers=1, threads=4, url=url, TRAIN_CONCURRENCY=1)
    conn = connect(url)
    tokens = {}
    for name in ("alice", "bob"):
        made = requests.post(f"{api.url}/api/tunix/users", json={"name": name, "role": "member"}, timeout=30,
                             headers={"Authorization": f"Bearer {root}"})
        assert made.status_code == 201, made.text
        tokens[name] = made.json()["token"]["token"]
    yield api.url, tokens, conn
    launch.stop()
    api.stop()
    conn.close()


def call(base, token, method, path, **kwargs):
    return requests.request(method, base + path, headers={"Authorization": f"Bearer {token}"}, timeout=60, **kwargs)


def test_a_run_of_another_user_starts_before_the_third_of_a_20_run_batch(stack):
    base, tokens, conn = stack
    # Given alice's batch of 20 tiny trainings, her first running
    batch = call(base, tokens["alice"], "POST", "/api/tunix/runs/batch",
                 json={"runs": [dict(TRAIN, seed=i) for i in range(20)]})
    assert batch.status_code == 202, batch.text
    alice = [r["run_id"] for r in batch.json()["data"]]
    wait_for(lambda: call(base, tokens["alice"], "GET", f"/api/tunix/runs/{alice[0]}").json()["status"] == "running",
             60, message="alice's first run running")
    # When bob submits one run
    submitted = call(base, tokens["bob"], "POST", "/api/tunix/run?mode=async", json=dict(TRAIN, seed=99))
    assert submitted.status_code == 202 and submitted.json()["owner"] == "bob", submitted.text
    bob = submitted.json()["run_id"]
    # Then it completes, having started before alice's third
    wait_for(lambda: call(base, tokens["bob"], "GET", f"/api/tunix/runs/{bob}").json()["status"] == "completed",
             180, interval=0.5, message="bob's run completed")
    with conn.cursor() as cur:
        cur.execute("SELECT id::text, started_at FROM tunix_runs WHERE started_at IS NOT NULL "
                    "AND id = ANY(%s::uuid[])", ([bob, *alice],))
        times = dict(cur.fetchall())
    alice_starts = sorted(t for run_id, t in times.items() if run_id != bob)
    assert len(alice_starts) < 3 or times[bob] < alice_starts[2], (times[bob], alice_starts)
    # And alice's bulk cancel stops her own batch (bob's run is not hers to move: nothing skipped, it ended)
    cancelled = call(base, tokens["alice"], "POST", "/api/tunix/runs/cancel", json={"status": "deferred"})
    assert cancelled.status_code == 202 and cancelled.json()["skipped"] == 0, cancelled.text
