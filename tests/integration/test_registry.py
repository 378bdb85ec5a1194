"""The run registry against real PostgreSQL: submits, guarded transitions,
races, history pages."""

import itertools
import threading
import uuid

import pytest

from tasks import lifecycle, registry
from tasks.errors import InvalidTransition, RunNotFound
from tasks.lifecycle import RunStatus as S
from tasks.run_service import RunService
from tasks.settings import get_settings

from support import connect

CONFIG = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": True, "seed": 7}


def new_run(conn, *, mode="async", dataset_key="synthetic", model_id="llama3-tiny"):
    """A dry run submitted as the API submits one: pending, with its message."""
    return RunService(get_settings()).submit(conn, dict(CONFIG, dataset_key=dataset_key, model_id=model_id),
                                             mode=mode)


def force_status(conn, run_id, status):
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_runs SET status = %s WHERE id = %s", (status, run_id))


def test_a_run_is_inserted_pending_with_its_config_and_nothing_else_stamped(conn):
    # Given a submitted run
    run = new_run(conn, mode="sync")
    # Then it is pending, not yet started, never attempted, with its config stored as JSON
    assert run["status"] == "pending"
    assert run["mode"] == "sync" and run["dry_run"] is True
    assert run["config"] == CONFIG
    assert run["attempts"] == 0
    assert run["started_at"] is None and run["completed_at"] is None and run["worker_id"] is None
    assert registry.get_run(conn, run["id"]) == run


def test_claiming_then_finishing_stamps_worker_attempt_start_end_and_result(conn):
    # Given a pending run
    run = new_run(conn)
    # When a worker claims it
    claimed = registry.claim(conn, run["id"], "host:42")
    # Then it is running on that worker, attempt 1, started
    assert claimed["status"] == "running"
    assert claimed["worker_id"] == "host:42"
    assert claimed["attempts"] == 1
    assert claimed["started_at"] is not None and claimed["started_at"] >= run["created_at"]
    # When it finishes
    done = registry.transition(conn, run["id"], "finish", result={"kind": "dry_run"}, exit_code=0)
    # Then it is completed with its result, end time and a duration
    assert done["status"] == "completed"
    assert done["result"] == {"kind": "dry_run"} and done["exit_code"] == 0
    assert done["completed_at"] >= done["started_at"]
    assert done["duration_seconds"] == pytest.approx(
        (done["completed_at"] - done["started_at"]).total_seconds(), abs=0.01)
    assert done["attempts"] == 1 and done["worker_id"] == "host:42"


def test_a_failed_run_keeps_its_error(conn):
    # Given a running run
    run = new_run(conn)
    registry.claim(conn, run["id"], "w")
    # When it fails
    failed = registry.transition(conn, run["id"], "fail", error={"type": "Boom", "message": "m"}, exit_code=3)
    # Then its error and exit code are stored, and no result
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "Boom", "message": "m"} and failed["exit_code"] == 3
    assert failed["result"] is None


def test_claiming_a_run_twice_raises_invalid_transition_and_changes_nothing(conn):
    # Given a run claimed by one worker
    run = new_run(conn)
    first = registry.claim(conn, run["id"], "w1")
    # When a second worker claims it
    with pytest.raises(InvalidTransition) as info:
        registry.claim(conn, run["id"], "w2")
    # Then it is refused, naming the current and target statuses, and the first claim stands
    assert (info.value.current, info.value.target) == ("running", "running")
    assert registry.get_run(conn, run["id"]) == first


def test_finishing_a_run_twice_raises_invalid_transition_on_the_second(conn):
    # Given a completed run
    run = new_run(conn)
    registry.claim(conn, run["id"], "w1")
    done = registry.transition(conn, run["id"], "finish", result={"n": 1})
    # When it is finished again, either way
    for move in ("finish", "fail"):
        with pytest.raises(InvalidTransition) as info:
            registry.transition(conn, run["id"], move, result={"n": 2}, error={"type": "x"})
        assert info.value.current == "completed"
    # Then the first outcome stands untouched
    assert registry.get_run(conn, run["id"]) == done


def test_a_transition_of_an_unknown_run_raises_run_not_found(conn):
    with pytest.raises(RunNotFound):
        registry.claim(conn, uuid.uuid4(), "w")
    assert registry.get_run(conn, uuid.uuid4()) is None
    assert registry.get_status(conn, uuid.uuid4()) is None


def test_twenty_threads_racing_to_claim_one_run_leave_exactly_one_winner(conn, registry_url):
    # Given one pending run and twenty workers, each with its own connection
    run = new_run(conn)
    conns = [connect(registry_url) for _ in range(20)]
    barrier = threading.Barrier(20)
    wins, losses, other = [], [], []

    def race(i):
        barrier.wait()
        try:
            wins.append(registry.claim(conns[i], run["id"], f"worker-{i}"))
        except InvalidTransition as exc:
            losses.append(exc)
        except Exception as exc:  # noqa: BLE001 - any other outcome is a failure
            other.append(exc)

    # When they all claim it at once
    threads = [threading.Thread(target=race, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in conns:
        c.close()
    # Then exactly one wins, nineteen get InvalidTransition, and the run was attempted once
    assert other == []
    assert len(wins) == 1 and len(losses) == 19
    stored = registry.get_run(conn, run["id"])
    assert stored["attempts"] == 1
    assert stored["worker_id"] == wins[0]["worker_id"]


def test_a_move_starts_only_from_its_own_statuses_not_from_every_way_into_its_target(conn):
    # Given a running run, which another move (a worker's cancel) may end cancelled
    run = new_run(conn)
    registry.claim(conn, run["id"], "w")
    # When a user's cancel of a pending run is made on it
    with pytest.raises(InvalidTransition):
        registry.transition(conn, run["id"], "cancel_pending")
    # Then it stays running
    assert registry.get_status(conn, run["id"])["status"] == "running"


def test_a_stale_attempt_cannot_finish_the_next_attempt_of_its_run(conn):
    # Given a run claimed (attempt 1), handed back, and claimed again (attempt 2)
    run = new_run(conn)
    registry.claim(conn, run["id"], "old")
    registry.transition(conn, run["id"], "hand_back")
    registry.claim(conn, run["id"], "new")
    # When the first attempt's worker tries to finish it
    with pytest.raises(InvalidTransition):
        registry.transition(conn, run["id"], "finish", attempt=1)
    # Then only the current attempt may
    assert registry.transition(conn, run["id"], "finish", attempt=2)["worker_id"] == "new"


def test_requeueing_a_run_clears_the_previous_attempts_outcome(conn):
    # Given a failed run
    run = new_run(conn)
    registry.claim(conn, run["id"], "w")
    registry.transition(conn, run["id"], "fail", error={"type": "X"}, exit_code=1)
    # When it is queued again (resume)
    again = registry.transition(conn, run["id"], "resume")
    # Then it is pending with no trace of the failed attempt's outcome
    assert again["status"] == "pending"
    assert (again["error"], again["result"], again["exit_code"], again["completed_at"]) == (None,) * 4
    assert again["attempts"] == 1  # attempts count claims, not requeues


STATUSES = [s.value for s in S]


@pytest.mark.parametrize(("current", "move"), list(itertools.product(STATUSES, lifecycle.MOVES)),
                         ids=[f"{a}-{m}" for a, m in itertools.product(STATUSES, lifecycle.MOVES)])
def test_the_database_guard_enforces_every_move_from_every_status(conn, current, move):
    # Given a run stored in status `current` (the CHECK constraint must accept it)
    run = new_run(conn)
    force_status(conn, run["id"], current)
    # When the move is made on it
    move = lifecycle.MOVES[move]
    if lifecycle.RunStatus(current) in move.sources:
        # Then the update happens exactly when the move starts from that status
        assert registry.transition(conn, run["id"], move.name)["status"] == move.target
    else:
        with pytest.raises(InvalidTransition):
            registry.transition(conn, run["id"], move.name)
        assert registry.get_status(conn, run["id"])["status"] == current


def test_the_database_refuses_a_status_the_lifecycle_does_not_know(conn):
    import psycopg2

    # Given a run
    run = new_run(conn)
    # When a status outside the lifecycle is written behind the registry's back
    # Then the CHECK constraint refuses it
    with pytest.raises(psycopg2.errors.CheckViolation):
        force_status(conn, run["id"], "paused")


class TestHistory:
    @pytest.fixture
    def runs(self, conn):
        """Seven runs, oldest first, with a mix of modes, datasets, models and statuses."""
        specs = [
            ("async", "synthetic", "llama3-tiny", "completed"),
            ("sync", "synthetic", "llama3-tiny", "failed"),
            ("async", "text-sft", "llama3-tiny", "pending"),
            ("async", "synthetic", "qwen3-tiny", "completed"),
            ("sync", "text-sft", "qwen3-tiny", "completed"),
            ("async", "synthetic", "llama3-tiny", "running"),
            ("async", "synthetic", "gemma3-tiny", "pending"),
        ]
        out = []
        for mode, dataset_key, model_id, status in specs:
            run = new_run(conn, mode=mode, dataset_key=dataset_key, model_id=model_id)
            force_status(conn, run["id"], status)
            out.append(registry.get_run(conn, run["id"]))
        return out

    def test_the_history_is_newest_first_with_the_total(self, conn, runs):
        rows, total, counts = registry.list_runs(conn, limit=100, offset=0)
        assert total == 7 and counts == {"completed": 3, "pending": 2, "failed": 1, "running": 1}
        assert [r["id"] for r in rows] == [r["id"] for r in reversed(runs)]

    def test_pages_cover_the_history_once_in_order(self, conn, runs):
        # When the history is read three at a time
        seen = []
        for offset in range(0, 9, 3):
            rows, total, _ = registry.list_runs(conn, limit=3, offset=offset)
            assert total == 7
            assert len(rows) == min(3, 7 - offset)
            seen += [r["id"] for r in rows]
        # Then every run appears once, newest first
        assert seen == [r["id"] for r in reversed(runs)]

    def test_an_offset_past_the_end_is_an_empty_page_with_the_total(self, conn, runs):
        assert registry.list_runs(conn, limit=10, offset=50)[:2] == ([], 7)

    @pytest.mark.parametrize(("filters", "expected"), [
        ({"status": "completed"}, [0, 3, 4]),
        ({"status": "pending"}, [2, 6]),
        ({"mode": "sync"}, [1, 4]),
        ({"dataset_key": "text-sft"}, [2, 4]),
        ({"model_id": "qwen3-tiny"}, [3, 4]),
        ({"status": "completed", "mode": "async", "model_id": "llama3-tiny"}, [0]),
        ({"status": "cancelled"}, []),
    ])
    def test_filters_match_exactly_and_the_total_counts_the_filtered_runs(self, conn, runs, filters, expected):
        rows, total, counts = registry.list_runs(conn, limit=2, offset=0, **filters)
        assert sum(counts.values()) == total
        want = [runs[i]["id"] for i in reversed(expected)]
        assert total == len(expected)
        assert [r["id"] for r in rows] == want[:2]


def _runs_total(status, mode="async"):
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("tunix_runs_total", {"status": status, "mode": mode}) or 0.0


def test_a_move_is_counted_once_its_transaction_commits_and_never_when_it_rolls_back(registry_url):
    from tasks import db

    conn = db.connect(registry_url)
    try:
        conn.autocommit = True
        run = new_run(conn)
        conn.autocommit = False
        # Given a claim whose transaction rolls back (an outage at commit)
        before = _runs_total("running")
        registry.claim(conn, run["id"], "w:1")
        assert _runs_total("running") == before  # not yet: nothing is committed
        conn.rollback()
        # Then it was never counted
        assert _runs_total("running") == before
        # When the claim is made again and commits
        with conn:
            registry.claim(conn, run["id"], "w:2")
        # Then it is counted once
        assert _runs_total("running") == before + 1
        # And a reaper's move is counted like any other (status pending, from the recover)
        pending = _runs_total("pending")
        with conn:
            registry.transition(conn, run["id"], "recover", attempt=1)
        assert _runs_total("pending") == pending + 1
    finally:
        conn.close()


def test_a_submit_on_an_autocommit_connection_is_counted_at_once(conn):
    # Given the API's way of writing a submit (autocommit: the statement commits)
    before = _runs_total("pending", "sync")
    new_run(conn, mode="sync")
    assert _runs_total("pending", "sync") == before + 1


class TestLabels:
    def test_names_tags_and_owner_narrow_the_history_and_its_counts(self, conn):
        # Given three runs, two named and tagged, one of them alice's
        a, b, c = (new_run(conn) for _ in range(3))
        registry.label_runs(conn, [(a["id"], "LR Sweep one", ["base", "lr:1e-4"]), (b["id"], "other", ["base"])])
        conn.cursor().execute("UPDATE tunix_runs SET owner = 'alice' WHERE id = %s", (a["id"],))
        force_status(conn, c["id"], "failed")

        def ids(**filters):
            rows, total, counts = registry.list_runs(conn, limit=10, offset=0, **filters)
            assert total == len(rows) == sum(counts.values())
            return {r["id"] for r in rows}

        # Then each filter narrows, and together they all must match
        assert ids(tags=["base"]) == {a["id"], b["id"]}
        assert ids(tags=["base", "lr:1e-4"]) == {a["id"]}
        assert ids(q="sweep ONE") == {a["id"]} and ids(q="%") == set()
        assert ids(owner="alice") == {a["id"]}
        assert ids(tags=["base"], q="other", owner="alice") == set()
        assert registry.list_runs(conn, limit=10, offset=0)[2] == {"pending": 2, "failed": 1}

    def test_an_edit_sets_only_what_it_names(self, conn):
        run = new_run(conn)
        registry.update_run_labels(conn, run["id"], name="first", tags=["x"])
        row = registry.update_run_labels(conn, run["id"], notes="why it failed")
        assert (row["name"], row["tags"], row["notes"]) == ("first", ["x"], "why it failed")
        row = registry.update_run_labels(conn, run["id"], name=None, tags=[])
        assert (row["name"], row["tags"], row["notes"]) == (None, [], "why it failed")
        assert registry.update_run_labels(conn, uuid.uuid4(), notes="") is None


def test_the_prepared_claim_and_finish_with_its_ack_survive_a_migration_and_a_lost_statement(databases):
    # Given a worker's connection (pooled, autocommit), whose moves are prepared once per
    # session, the finish with its message's ack in the same round trip (tasks/registry/runs.py)
    from types import SimpleNamespace

    from tasks import db

    pool = db.make_pool(databases.create(), 1)
    try:
        with db.autocommit(pool) as conn:
            first, second, third = new_run(conn), new_run(conn), new_run(conn)
            registry.claim(conn, first["id"], "w1")
            assert "transition" in conn.prepared
            with conn.cursor() as cur:
                cur.execute("UPDATE dramatiq.queue SET state = 'consumed' WHERE message_id = %s RETURNING queue_name",
                            (first["id"],))
                taken = SimpleNamespace(message_id=str(first["id"]), queue_name=cur.fetchone()[0])
                # When a migration adds a column to the row the move returns
                cur.execute("ALTER TABLE tunix_runs ADD COLUMN tunix_test_extra int")
            done = registry.transition(conn, first["id"], "finish", attempt=1, ack=taken)
            # Then the finish is prepared again and made once, its message marked done with it,
            # the message's body as it was enqueued (an ack writes the state only)
            assert done["status"] == "completed" and "tunix_test_extra" in done
            with conn.cursor() as cur:
                cur.execute("SELECT state::text, message->'args'->>0 FROM dramatiq.queue WHERE message_id = %s",
                            (first["id"],))
                assert cur.fetchone() == ("done", str(first["id"]))
                # And a claim after the session lost its prepared statements is made too
                cur.execute("DEALLOCATE ALL")
            assert registry.claim(conn, second["id"], "w1")["status"] == "running"
            # And one whose session holds a statement this connection's record lost (a PREPARE
            # of several that failed part-way leaves the ones before it)
            conn.prepared.clear()
            assert registry.claim(conn, third["id"], "w1")["status"] == "running"
            assert registry.get_run(conn, first["id"])["attempts"] == 1
    finally:
        pool.closeall()


def test_the_prepared_submit_survives_a_migration_that_changes_its_row_and_a_lost_statement(databases):
    # Given the API's connection (pooled, autocommit), whose submit statement is prepared once
    # per session (tasks/sql/cursor.fetch_one_prepared)
    from tasks import db

    pool = db.make_pool(databases.create(), 1)
    try:
        with db.autocommit(pool) as conn:
            first = new_run(conn)
            assert "submit_run" in conn.prepared
            # When a migration adds a column to the row it returns (PostgreSQL then refuses
            # the prepared plan: "cached plan must not change result type")
            conn.cursor().execute("ALTER TABLE tunix_runs ADD COLUMN tunix_test_extra int")
            # Then the next submit prepares it again and writes its run, once
            second = new_run(conn)
            assert "tunix_test_extra" in second
            # And so does one after the session lost its prepared statements
            conn.cursor().execute("DEALLOCATE ALL")
            third = new_run(conn)
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM tunix_runs")
                assert cur.fetchone()[0] == 3
            assert len({first["id"], second["id"], third["id"]}) == 3
    finally:
        pool.closeall()
