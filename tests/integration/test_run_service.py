"""The run service against real PostgreSQL: which move a cancel makes from
each status (decided by the lifecycle, not by its callers), runs that move
under a cancel, and resumes that write their messages with them."""

import uuid

import pytest

from tasks import lifecycle, registry
from tasks.errors import InvalidTransition, RunNotFound
from tasks.lifecycle import RunStatus as S
from tasks.run_service import RunService
from tasks.settings import get_settings

from support import scalar

DRY = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": True, "seed": 7}
TRAINING = dict(DRY, dry_run=False)


@pytest.fixture
def service():
    return RunService(get_settings())


def in_status(conn, service, status):
    """A run submitted as the API submits one, then moved to ``status``."""
    run = service.submit(conn, DRY)
    if status != S.PENDING:
        with conn.cursor() as cur:
            cur.execute("UPDATE tunix_runs SET status = %s WHERE id = %s", (status.value, run["id"]))
    return run["id"]


def status_of(conn, run_id):
    return registry.get_status(conn, run_id)["status"]


def queued_message(conn, run_id):
    """The state of the run's message, None when it has none."""
    return scalar(conn, "SELECT (SELECT state::text FROM dramatiq.queue WHERE message_id = %s)", (run_id,))


@pytest.mark.parametrize("status", [S.DEFERRED, S.PENDING])
def test_a_cancel_ends_a_run_no_worker_holds(conn, service, status):
    run_id = in_status(conn, service, status)
    run = service.cancel(conn, run_id)
    assert run["status"] == S.CANCELLED
    assert status_of(conn, run_id) == S.CANCELLED


def test_a_cancel_asks_a_running_run_to_stop(conn, service):
    run_id = service.submit(conn, DRY)["id"]
    registry.claim(conn, run_id, "host:1")
    assert service.cancel(conn, run_id)["status"] == S.CANCEL_REQUESTED


def test_a_cancel_of_a_stopping_run_answers_it_as_it_is(conn, service):
    run_id = in_status(conn, service, S.CANCEL_REQUESTED)
    assert service.cancel(conn, run_id)["status"] == S.CANCEL_REQUESTED


@pytest.mark.parametrize("status", sorted(lifecycle.FINAL, key=list(S).index))
def test_a_cancel_of_a_final_run_is_refused_and_changes_nothing(conn, service, status):
    run_id = in_status(conn, service, status)
    with pytest.raises(InvalidTransition) as raised:
        service.cancel(conn, run_id)
    assert raised.value.current == status
    assert status_of(conn, run_id) == status


def test_a_cancel_of_an_unknown_run_is_not_found(conn, service):
    with pytest.raises(RunNotFound):
        service.cancel(conn, uuid.uuid4())


def test_every_status_a_cancel_acts_on_has_a_move_and_no_other_has_one():
    assert lifecycle.CANCELLABLE == {S.DEFERRED, S.PENDING, S.RUNNING}
    for status in S:
        move = lifecycle.cancel_move(status)
        assert (move is not None) == (status in lifecycle.CANCELLABLE)
        if move is not None:
            assert status in move.sources


def test_cancel_each_follows_a_run_claimed_under_it(conn, service):
    # Given a pending run, read as pending, then claimed by a worker
    run_id = service.submit(conn, DRY)["id"]
    stale = registry.get_status(conn, run_id)
    registry.claim(conn, run_id, "host:1")
    # When a bulk cancel acts on the stale row
    moved = service.cancel_each(conn, [stale])
    # Then the run is asked to stop rather than skipped
    assert moved == {S.CANCELLED.value: 0, S.CANCEL_REQUESTED.value: 1}
    assert status_of(conn, run_id) == S.CANCEL_REQUESTED


def test_cancel_matching_counts_each_move_and_leaves_final_runs(conn, service):
    pending = in_status(conn, service, S.PENDING)
    running = service.submit(conn, DRY)["id"]
    registry.claim(conn, running, "host:1")
    done = in_status(conn, service, S.COMPLETED)
    matched, moved = service.cancel_matching(conn)
    assert sorted(map(str, matched)) == sorted(map(str, (pending, running)))
    assert moved == {S.CANCELLED.value: 1, S.CANCEL_REQUESTED.value: 1}
    assert [status_of(conn, r) for r in (pending, running, done)] == [S.CANCELLED, S.CANCEL_REQUESTED, S.COMPLETED]


def test_a_resume_queues_the_run_with_its_message(conn, service):
    run_id = in_status(conn, service, S.FAILED)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM dramatiq.queue WHERE message_id = %s", (run_id,))
    run = service.resume(conn, run_id)
    assert run["status"] == S.PENDING
    assert queued_message(conn, run_id) == "queued"


def test_resume_each_takes_only_resumable_runs(conn, service):
    failed = in_status(conn, service, S.FAILED)
    completed = in_status(conn, service, S.COMPLETED)
    rows = [registry.get_status(conn, r) for r in (failed, completed)]
    resumed = service.resume_each(conn, rows)
    assert [r["id"] for r in resumed] == [failed]
    assert status_of(conn, completed) == S.COMPLETED


def test_submit_many_queues_dry_runs_and_defers_trainings(conn, service):
    rows = service.submit_many(conn, [(DRY, 0), (TRAINING, 5)])
    assert [r["status"] for r in rows] == [S.PENDING, S.DEFERRED]
    assert queued_message(conn, rows[0]["id"]) == "queued"
    assert queued_message(conn, rows[1]["id"]) is None
