"""The attempts cap holds when recoveries race (tasks/lifecycle.py, "Attempts").

Found by the chaos soak: with ``MAX_ATTEMPTS=3`` one run was attempted 4
times ("attempt 4 of 3"), another 5.  A hand-back (a sibling process told to
stop when one process of a launch dies) sent a run back to pending without
touching the cap, and the claim did not check it.
"""

import random
import threading

from tasks import db, registry
from tasks.errors import AttemptsExhausted, DatabaseUnavailable, InvalidTransition
from tasks.lifecycle import RunStatus as S
from tasks.settings import get_settings
from workers.middleware import RunRegistry
from workers.reaper import Reaper

from test_worker_middleware_pg import calls, deliver, pending_run, stub  # noqa: F401  (fixtures)

MAX_ATTEMPTS = 3


def lose(conn, run_id):
    """The run's worker dies: its heartbeat stops."""
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_runs SET heartbeat_at = clock_timestamp() - interval '1 hour' WHERE id = %s",
                    (run_id,))


def test_claims_hand_backs_losses_and_reapers_racing_never_overshoot_the_cap(pool, conn):
    # Given 12 pending runs, MAX_ATTEMPTS=3, three reapers and four workers
    assert get_settings().max_attempts == MAX_ATTEMPTS  # what the workers' claims use
    settings = get_settings().replace(heartbeat_timeout_s=30)
    runs = [str(pending_run(conn)["id"]) for _ in range(12)]
    reapers = [Reaper(pool, settings) for _ in range(3)]
    hand_backs = {run_id: 0 for run_id in runs}
    losses = {run_id: 0 for run_id in runs}
    books = threading.Lock()
    errors, stop = [], threading.Event()

    def worker(seed):
        rng = random.Random(seed)
        middleware = RunRegistry(pool, f"w{seed}:1")  # the worker's own claim and hand-back
        try:
            while not stop.is_set():
                run_id = rng.choice(runs)
                try:
                    run = middleware._claimer(run_id)()
                except InvalidTransition:
                    continue  # not pending (or out of attempts): as a duplicate delivery sees it
                if rng.random() < 0.4:
                    # When a worker shuts down, it hands the run back (fenced by its attempt)
                    middleware._hand_back(run, dict(attempt=run["attempts"]))
                    with books:
                        hand_backs[run_id] += 1
                else:
                    # When a worker is killed, its run goes silent while the reapers run
                    with db.connection(pool) as c:
                        lose(c, run_id)
                    with books:
                        losses[run_id] += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def reap(reaper):
        try:
            while not stop.is_set():
                reaper.recover_lost()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    # When they race until every run has ended
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=reap, args=(r,)) for r in reapers]
    for t in threads:
        t.start()
    try:
        for _ in range(600):
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM tunix_runs WHERE status <> 'failed'")
                if cur.fetchone()[0] == 0:
                    break
            stop.wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    # Then every run ended failed (WorkerLost) after exactly MAX_ATTEMPTS losses:
    # a hand-back gave its attempt back, a loss used one, and none overshot
    rows = {str(r["id"]): r for r in (registry.get_run(conn, run_id) for run_id in runs)}
    for run_id, row in rows.items():
        assert row["status"] == "failed" and row["error"]["type"] == "WorkerLost", row
        assert losses[run_id] == MAX_ATTEMPTS, (run_id, losses[run_id], hand_backs[run_id])
        assert row["attempts"] == row["max_attempts"] == MAX_ATTEMPTS + hand_backs[run_id], row
        assert row["error"]["message"].endswith(f"(attempt {row['attempts']} of {row['max_attempts']})")
    assert sum(hand_backs.values()) > 0  # the race did exercise hand-backs


def test_a_claim_past_the_budget_is_refused_and_the_database_enforces_it(conn):
    # Given a run that has had its attempts (as a racing recovery could leave it)
    run = pending_run(conn)
    claimed = registry.claim(conn, run["id"], "w:1", max_attempts=1)
    registry.transition(conn, run["id"], "recover", attempt=claimed["attempts"])
    # When it is claimed again, even by a worker whose MAX_ATTEMPTS is higher
    try:
        registry.claim(conn, run["id"], "w:2", max_attempts=5)
        raise AssertionError("claimed past its budget")
    except AttemptsExhausted as exc:
        # Then the claim is refused and the run is untouched
        assert (exc.attempts, exc.max_attempts) == (1, 1)
    assert registry.get_run(conn, run["id"])["attempts"] == 1
    # And the database refuses an overshoot written by hand
    with conn.cursor() as cur:
        try:
            cur.execute("UPDATE tunix_runs SET attempts = 2 WHERE id = %s", (run["id"],))
            raise AssertionError("the CHECK let attempts exceed max_attempts")
        except Exception as exc:  # psycopg2.errors.CheckViolation
            assert "tunix_runs_attempts_within_budget" in str(exc)


def test_a_users_resume_gives_a_fresh_budget(conn):
    # Given a run that failed having had all its attempts
    run = pending_run(conn)
    for _ in range(MAX_ATTEMPTS):
        claimed = registry.claim(conn, run["id"], "w:1")
        registry.transition(conn, run["id"], "recover", attempt=claimed["attempts"], max_attempts=MAX_ATTEMPTS)
    claimed = registry.transition(conn, run["id"], "reject")
    assert claimed["attempts"] == claimed["max_attempts"] == MAX_ATTEMPTS
    # When a user resumes it
    resumed = registry.transition(conn, run["id"], "resume", max_attempts=MAX_ATTEMPTS)
    # Then it may be attempted MAX_ATTEMPTS more times
    assert resumed["max_attempts"] == 2 * MAX_ATTEMPTS
    assert registry.claim(conn, run["id"], "w:1")["attempts"] == MAX_ATTEMPTS + 1


def test_a_claim_whose_answer_was_lost_is_adopted_not_wasted(stub, pool, conn, calls, monkeypatch):  # noqa: F811
    broker, actors = stub
    # Given a database that commits a claim and then drops the connection before answering
    real_claim, lost = registry.claim, []

    def claim_then_lose_the_answer(c, run_id, worker_id, max_attempts=None):
        row = real_claim(c, run_id, worker_id, max_attempts=max_attempts)
        if not lost:
            lost.append(row)
            c.commit()
            raise DatabaseUnavailable("server closed the connection unexpectedly")
        return row

    monkeypatch.setattr(registry, "claim", claim_then_lose_the_answer)
    # When a message for a pending run is processed
    run = pending_run(conn)
    deliver(broker, actors["succeed"], run["id"])
    # Then the worker adopted its own claim: the run ran once, in one attempt
    row = registry.get_run(conn, run["id"])
    assert lost and row["status"] == "completed", row
    assert row["attempts"] == 1 and calls == [str(run["id"])]


def test_a_hand_back_of_a_run_the_reaper_already_requeued_leaves_it_pending(pool, conn):
    # Given a run whose worker went quiet while it stopped its training, and
    # which the reaper has meanwhile sent back to pending
    middleware = RunRegistry(pool, "w:1")
    run = middleware._claimer(pending_run(conn)["id"])()
    lose(conn, run["id"])
    reaper = Reaper(pool, get_settings().replace(heartbeat_timeout_s=30))
    assert reaper.recover_lost()["requeued"] == 1
    # When the stopping worker hands it back
    middleware._hand_back(run, dict(attempt=run["attempts"]))
    # Then it is still pending, for its next attempt (not cancelled: nobody cancelled it)
    row = registry.get_run(conn, run["id"])
    assert (row["status"], row["attempts"]) == ("pending", 1), row


def test_a_stale_attempts_buffered_steps_cannot_relabel_a_newer_attempts(conn):
    # Given step 30 recorded by attempt 2
    run = pending_run(conn)
    registry.record_activity(conn, run["id"], metrics=[(30, 1.5, 0.01, 0.9, 2)])
    # When attempt 1, back from a cut link, flushes what it buffered: steps 30 and 40
    registry.record_activity(conn, run["id"], metrics=[(30, 1.5, 0.01, 0.9, 1), (40, 1.4, 0.01, 0.8, 1)])
    # Then step 30 stays attempt 2's; step 40 is attempt 1's until attempt 2 gets there
    assert {m["step"]: m["attempt"] for m in registry.get_metrics(conn, run["id"])} == {30: 2, 40: 1}
    registry.record_activity(conn, run["id"], metrics=[(40, 1.4, 0.01, 0.8, 2)])
    assert {m["step"]: m["attempt"] for m in registry.get_metrics(conn, run["id"])} == {30: 2, 40: 2}
