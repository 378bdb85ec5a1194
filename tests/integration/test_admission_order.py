"""Admission against real PostgreSQL: which deferred runs get their
messages, in which order, and only one admitter at a time
(``tasks/admission.py``)."""

import uuid


from tasks import admission, db, registry
from tasks.lifecycle import RunStatus as S
from tasks.run_service import RunService
from tasks.settings import get_settings


CONFIG = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "seed": 7}


def sweep(conn, n, *, dry_run=False, max_concurrent=None, priority=0):
    trials = [dict(run_id=uuid.uuid4(), mode="async", dry_run=dry_run, dataset_key="synthetic",
                   model_id="llama3-tiny", config=dict(CONFIG, seed=i, dry_run=dry_run), params={"seed": i})
              for i in range(n)]
    with conn:
        _, rows = registry.insert_sweep(conn, sweep_id=uuid.uuid4(), name="s", spec={}, metric="loss",
                                        duplicates=0, trials=trials, max_concurrent=max_concurrent,
                                        priority=priority)
    return [r["id"] for r in rows]


def single(conn, *, priority=0, dry_run=False, owner=None):
    """A single run, submitted as the API submits one (pending or deferred)."""
    with conn:
        return RunService(get_settings()).submit(conn, dict(CONFIG, dry_run=dry_run), priority=priority, owner=owner)


def admit(conn, ahead=1):
    with conn:
        return admission.admit(conn, ahead)


def status(conn, ids):
    with conn:
        return [registry.get_status(conn, i)["status"] for i in ids]


def take(conn, run_id):
    """A worker takes the run (claims it): its place in the queue is free."""
    with conn:
        registry.claim(conn, run_id, "w:1")


def end(conn, run_id):
    with conn:
        registry.transition(conn, run_id, "finish")


def messages(conn, run_id):
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dramatiq.queue WHERE message_id = %s", (run_id,))
        return cur.fetchone()[0]


def test_a_sweeps_trials_wait_deferred_and_one_training_at_a_time_is_queued_ahead(tx):
    # Given a 4-trial sweep of trainings: every trial is written deferred, with no message
    trials = sweep(tx, 4)
    assert status(tx, trials) == ["deferred"] * 4 and messages(tx, trials[0]) == 0
    # When admission runs with one training allowed ahead
    assert admit(tx) == 1
    # Then the first trial is queued, with its message, and the rest wait
    assert status(tx, trials) == ["pending", "deferred", "deferred", "deferred"]
    assert messages(tx, trials[0]) == 1
    # And nothing more goes while it waits for a worker; once a worker takes it the next is queued
    assert admit(tx) == 0
    take(tx, trials[0])
    assert admit(tx) == 1
    assert status(tx, trials) == ["running", "pending", "deferred", "deferred"]


def test_a_single_run_submitted_after_a_sweep_is_next_not_after_the_sweep(tx):
    # Given a 20-trial sweep whose first trial runs and second waits in the queue
    trials = sweep(tx, 20)
    admit(tx)
    take(tx, trials[0])
    admit(tx)
    # When a single training is submitted: the queue is full, so it is deferred
    run = single(tx)
    assert run["status"] == "deferred"
    # Then when the worker takes the next trial, the single run is admitted before the sweep's third trial
    take(tx, trials[1])
    assert admit(tx) == 1
    assert status(tx, [run["id"], trials[2]]) == ["pending", "deferred"]


def test_a_single_run_is_queued_at_once_when_nothing_waits_before_it(tx):
    run = single(tx)
    assert run["status"] == "pending" and messages(tx, run["id"]) == 1
    # A dry run is always queued at once: dry runs take milliseconds, admission orders trainings
    assert single(tx, dry_run=True)["status"] == "pending"
    assert single(tx, dry_run=True)["status"] == "pending"


def test_a_higher_priority_run_overtakes_the_lower_priority_ones_waiting(tx):
    # Given a queue that is full (one training waits for a worker) and three low-priority runs deferred
    first = single(tx)
    low = [single(tx, priority=0)["id"] for _ in range(3)]
    assert status(tx, low) == ["deferred"] * 3
    # When a high-priority run is submitted after them
    high = single(tx, priority=10)
    assert high["status"] == "deferred"
    # Then it is the next admitted, ahead of every lower one
    take(tx, first["id"])
    assert admit(tx) == 1
    assert status(tx, [high["id"]] + low) == ["pending", "deferred", "deferred", "deferred"]
    # And a submit whose priority is above everything waiting still waits its turn in a full queue
    assert single(tx, priority=20)["status"] == "deferred"


def test_a_priority_above_all_deferred_runs_is_queued_at_once_when_the_queue_has_room(tx):
    # Given deferred low-priority trials and a queue with room (nothing queued ahead)
    trials = sweep(tx, 3, priority=-5)
    # Then a normal-priority single run does not wait behind them
    assert single(tx)["status"] == "pending"
    # But one of lower priority than a deferred run does
    assert single(tx, priority=-10)["status"] == "deferred"
    assert status(tx, trials) == ["deferred"] * 3


def test_fair_share_alternates_between_two_sweeps_and_puts_single_runs_first(tx):
    # Given two sweeps of dry trials with 2 places each, and nothing running
    a = sweep(tx, 4, dry_run=True, max_concurrent=2)
    b = sweep(tx, 4, dry_run=True, max_concurrent=2)
    # When admission runs: each sweep gets its two places, in turn
    assert admit(tx) == 4
    assert status(tx, a) == ["pending", "pending", "deferred", "deferred"]
    assert status(tx, b) == ["pending", "pending", "deferred", "deferred"]
    # And with trainings, the order admission takes them is the round-robin of the sweeps
    x = sweep(tx, 3)
    y = sweep(tx, 3)
    with tx:
        order = [r["id"] for r in registry.runs_to_admit(tx) if not r["dry_run"]]
    assert order == [x[0], y[0], x[1], y[1], x[2], y[2]]
    # And a single run waiting comes before a sweep that already has a trial queued or running
    admit(tx)  # x[0] is queued
    lone = single(tx)
    with tx:
        order = [r["id"] for r in registry.runs_to_admit(tx) if not r["dry_run"]]
    assert order[:2] in ([y[0], lone["id"]], [lone["id"], y[0]])  # both have a share of 1
    assert order.index(lone["id"]) < order.index(x[1])


def test_max_concurrent_holds_as_trials_end_and_one_admitter_at_a_time(tx, registry_url):
    other = db.connect(registry_url)
    try:
        trials = sweep(tx, 5, dry_run=True, max_concurrent=2)
        assert admit(tx) == 2
        # Nothing to admit while both places are taken
        assert admit(tx) == 0
        # When one trial ends
        take(tx, trials[0])
        end(tx, trials[0])
        # A second admitter while the first holds the lock admits nothing
        with tx:
            with other.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (admission.LOCK_KEY,))
            assert admission.admit(tx) == 0
            other.rollback()
        # Then the oldest deferred trial takes its place, with its message
        assert admit(tx) == 1
        assert status(tx, trials) == ["completed", "pending", "pending", "deferred", "deferred"]
        assert messages(tx, trials[2]) == 1
    finally:
        other.close()


def test_a_cancelled_deferred_run_is_never_admitted(tx):
    trials = sweep(tx, 2)
    with tx:
        registry.transition(tx, trials[0], "cancel_pending")
    assert admit(tx) == 1
    assert status(tx, trials) == [S.CANCELLED, S.PENDING]
    assert messages(tx, trials[0]) == 0


def batch(conn, n, owner):
    """``owner``'s batch of ``n`` trainings, written deferred as the batch submit writes them."""
    with conn:
        rows = RunService(get_settings()).submit_many(conn, [(dict(CONFIG, seed=i, dry_run=False), 0) for i in range(n)],
                                                      owner=owner)
    return [r["id"] for r in rows]


def test_fair_share_between_users_one_persons_batch_does_not_fill_the_fleet(tx):
    # Given one training place: alice's 20-run batch, her first taken by the worker, her second queued
    alice = batch(tx, 20, "alice")
    admit(tx)
    take(tx, alice[0])
    admit(tx)
    assert status(tx, alice[:3]) == ["running", "pending", "deferred"]
    # When bob then submits one run (deferred: the queue is full)
    bob = single(tx, owner="bob")
    assert bob["status"] == "deferred"
    # Then bob's run starts before alice's third
    take(tx, alice[1])
    assert admit(tx) == 1
    assert status(tx, [bob["id"], alice[2]]) == ["pending", "deferred"]
    # And with bob served, alice's runs go on in turn
    take(tx, bob["id"])
    assert admit(tx) == 1
    assert status(tx, [alice[2], alice[3]]) == ["pending", "deferred"]


def test_a_users_concurrency_limit_holds_their_trainings_back_and_not_others(tx, monkeypatch):
    monkeypatch.setenv("USER_MAX_TRAININGS", "2")
    monkeypatch.setenv("ADMIT_AHEAD", "10")  # room in the queue: only the limit holds a run back
    # Given alice at her limit of 2 trainings (one running, one queued) and plenty of room
    first, second = single(tx, owner="alice"), single(tx, owner="alice")
    assert [first["status"], second["status"]] == ["pending", "pending"]
    take(tx, first["id"])
    # When she submits a third: it waits deferred even though the queue has room
    third = single(tx, owner="alice")
    assert third["status"] == "deferred"
    assert admit(tx, ahead=10) == 0
    # And bob is not held back by her limit: his run waits behind hers only until the pass the API
    # makes after a deferred submit (app/service.py admit_deferred)
    bob = single(tx, owner="bob")
    assert admit(tx, ahead=10) == (1 if bob["status"] == "deferred" else 0)
    assert status(tx, [bob["id"], third["id"]]) == ["pending", "deferred"]
    # Then once one of hers ends, her third is admitted
    end(tx, first["id"])
    assert admit(tx, ahead=10) == 1
    assert status(tx, [third["id"]]) == ["pending"]
