"""Admission through the real API and a worker launch with one training slot
(one process, ``TRAIN_CONCURRENCY=1``): a single run does not wait behind a
sweep, and a higher priority overtakes the runs waiting before it."""

import pytest

from support import wait_for
from training_support import stack_for_module

pytestmark = pytest.mark.training

TRAIN = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 5, "batch_size": 4,
         "max_seq_length": 32, "checkpoint_every_steps": 100}


@pytest.fixture(scope="module")
def stack(databases, data_dir, log_dir, worker_launch):
    yield from stack_for_module(databases, data_dir, log_dir, worker_launch)


def started(stack, ids):
    """``{run_id: started_at}`` of the runs that started."""
    with stack.conn.cursor() as cur:
        cur.execute("SELECT id::text, started_at FROM tunix_runs WHERE id = ANY(%s::uuid[]) "
                    "AND started_at IS NOT NULL", (list(ids),))
        return dict(cur.fetchall())


@pytest.mark.slow  # make test-all: the rule stays in make test (tests/integration/test_admission_order.py)
def test_a_single_run_submitted_after_a_20_trial_sweep_starts_before_its_third_trial(stack):
    # Given a 20-trial sweep of tiny trainings, its first trial running
    response = stack.api.http.post(stack.api.url("/api/tunix/sweeps"), timeout=60, json={
        "name": "twenty", "base": TRAIN, "grid": {"seed": list(range(20))}})
    assert response.status_code == 202, response.text
    sweep = response.json()
    trials = [r["run_id"] for r in sweep["runs"]]
    # (one trial is queued, and one more once a worker takes it; the rest wait in the registry, with no message)
    assert sweep["counts"].get("deferred", 0) >= 18 and sum(sweep["counts"].values()) == 20, sweep["counts"]
    stack.wait_status(trials[0], lambda s: s["status"] == "running", 60, message="first trial running")
    # When one single run is submitted
    single = stack.submit(dict(TRAIN, seed=99))
    # Then it starts before the sweep's third trial
    assert stack.api.wait_final(single, timeout=180)["status"] == "completed"
    times = started(stack, [single, *trials])
    trial_starts = sorted(t for run_id, t in times.items() if run_id != single)
    assert len(trial_starts) < 3 or times[single] < trial_starts[2], (times[single], trial_starts)
    # (the sweep is stopped so the next test has the slot)
    stack.api.http.post(stack.api.url(f"/api/tunix/sweeps/{sweep['sweep_id']}/cancel"), timeout=30)
    wait_for(lambda: stack.api.get(f"/api/tunix/sweeps/{sweep['sweep_id']}").json()["status"] == "finished", 120,
             message="sweep cancelled")


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_a_higher_priority_run_overtakes_the_lower_priority_runs_waiting(stack):
    # Given one training running, one queued behind it, and two more waiting, all of priority 0
    first = stack.submit(dict(TRAIN, max_steps=20, seed=1))
    stack.wait_status(first, lambda s: s["status"] == "running", 60, message="first running")
    low = [stack.submit(dict(TRAIN, seed=s)) for s in (2, 3, 4)]
    assert [stack.api.run(r)["status"] for r in low] == ["pending", "deferred", "deferred"]
    # When a run of priority 5 is submitted after them
    high = stack.submit(dict(TRAIN, seed=5, priority=5))
    assert stack.api.run(high)["priority"] == 5
    # Then it starts before the two low-priority runs that were waiting for admission
    for run_id in [first, *low, high]:
        assert stack.api.wait_final(run_id, timeout=240)["status"] == "completed"
    times = started(stack, [first, *low, high])
    order = sorted(times, key=times.get)
    assert order == [first, low[0], high, low[1], low[2]], order
