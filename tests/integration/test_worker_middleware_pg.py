"""The worker middleware around real messages: dramatiq's StubBroker and
Worker in this process, the registry in real PostgreSQL."""

import uuid

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from tasks import admission, db, registry
from tasks.errors import RunCancelled, UnknownModel
from tasks.lifecycle import RunStatus as S
from tasks.run_service import RunService
from tasks.settings import get_settings
from workers.middleware import AdmitAfterClaim, AdmitAfterEnd, RunMetrics, RunRegistry

QUEUE = "mw-test"


@pytest.fixture
def calls():
    return []


@pytest.fixture
def stub(pool, calls):
    """A stub broker with our middleware and three actors; yields (broker, actors)."""
    broker = StubBroker(middleware=[Retries(max_retries=0)])
    broker.emit_after("process_boot")
    # In the order workers.middleware.worker_middleware gives them.
    for middleware in (RunMetrics(), AdmitAfterEnd(pool), RunRegistry(pool, "stub:1"), AdmitAfterClaim(pool)):
        broker.add_middleware(middleware)

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
    def succeed(run_id):
        calls.append(run_id)
        return {"kind": "test", "exit_code": 0}

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
    def unknown_model(run_id):
        calls.append(run_id)
        raise UnknownModel("unknown model 'nope'; known models: llama3-tiny", field="model_id")

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
    def cancelled(run_id):
        calls.append(run_id)
        raise RunCancelled("cancelled by request while training", exit_code=-15)

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
    def look(run_id):
        # Every run's status while this one runs: what its claim led to.
        with db.connection(pool) as c, c.cursor() as cur:
            cur.execute("SELECT id::text, status FROM tunix_runs")
            calls.append(dict(cur.fetchall()))
        return {"kind": "test"}

    worker = Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield broker, {"succeed": succeed, "unknown_model": unknown_model, "cancelled": cancelled, "look": look}
    worker.stop()
    broker.close()


def pending_run(conn):
    """A dry run submitted as the API submits one: pending, with its message."""
    return RunService(get_settings()).submit(conn, {"dataset_key": "synthetic", "model_id": "llama3-tiny",
                                                    "dry_run": True})


def deliver(broker, actor, run_id):
    actor.send(str(run_id))
    broker.join(QUEUE, fail_fast=False, timeout=10_000)


def test_a_message_claims_its_run_and_records_the_actors_result(conn, stub, calls):
    broker, actors = stub
    # Given a pending run
    run = pending_run(conn)
    # When its message is processed
    deliver(broker, actors["succeed"], run["id"])
    # Then the actor ran once, and the run is completed by this worker with the result
    assert calls == [str(run["id"])]
    done = registry.get_run(conn, run["id"])
    assert done["status"] == "completed"
    assert done["worker_id"] == "stub:1" and done["attempts"] == 1
    assert done["result"] == {"kind": "test", "exit_code": 0} and done["exit_code"] == 0


def test_an_actor_error_fails_the_run_with_its_type_message_and_details(conn, stub):
    broker, actors = stub
    run = pending_run(conn)
    deliver(broker, actors["unknown_model"], run["id"])
    failed = registry.get_run(conn, run["id"])
    # Then the failure is the actor's, not overwritten by the nack that follows it
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "UnknownModel", "message": "unknown model 'nope'; known models: llama3-tiny",
                               "code": "unknown_model", "field": "model_id"}
    assert failed["exit_code"] is None


def test_a_stopped_run_ends_in_the_status_its_error_names(conn, stub):
    broker, actors = stub
    # Given a run whose actor is stopped by a cancel
    run = pending_run(conn)
    # When its message is processed
    deliver(broker, actors["cancelled"], run["id"])
    # Then it ends cancelled, not failed
    stopped = registry.get_run(conn, run["id"])
    assert stopped["status"] == "cancelled"
    assert stopped["error"]["type"] == "RunCancelled" and stopped["exit_code"] == -15


def test_a_second_delivery_of_a_finished_run_is_skipped_without_executing(conn, stub, calls):
    broker, actors = stub
    # Given a run already completed by its first delivery
    run = pending_run(conn)
    deliver(broker, actors["succeed"], run["id"])
    first = registry.get_run(conn, run["id"])
    # When its message is delivered again
    deliver(broker, actors["succeed"], run["id"])
    # Then the actor did not run again and the run is untouched
    assert calls == [str(run["id"])]
    assert registry.get_run(conn, run["id"]) == first


def test_a_message_for_an_unknown_run_is_skipped(conn, stub, calls):
    broker, actors = stub
    # When a message names a run the registry does not have
    deliver(broker, actors["succeed"], uuid.uuid4())
    # Then the actor never runs and the message is not dead-lettered
    assert calls == []
    assert broker.dead_letters == []


def test_a_run_cancelled_while_queued_never_starts(conn, stub, calls):
    broker, actors = stub
    # Given a run cancelled while its message waited in the queue
    run = pending_run(conn)
    registry.transition(conn, run["id"], "cancel_pending")
    # When the message is delivered
    deliver(broker, actors["succeed"], run["id"])
    # Then the claim fails, the actor never runs and the run stays cancelled
    assert calls == []
    assert registry.get_run(conn, run["id"])["status"] == "cancelled"


# -- admission (workers/middleware/admission.py) ----------------------------


def training(conn):
    """A training submitted as the API submits one: pending while the queue
    has room (ADMIT_AHEAD, 1 by default), deferred after."""
    return RunService(get_settings()).submit(conn, {"dataset_key": "synthetic", "model_id": "llama3-tiny",
                                                    "dry_run": False})


def sweep_one_at_a_time(conn, *, dry_run):
    """Two trials of a sweep with max_concurrent 1, admitted as far as it allows: the first queued."""
    trials = [dict(run_id=uuid.uuid4(), mode="async", dry_run=dry_run, dataset_key="synthetic",
                   model_id="llama3-tiny", config={"dataset_key": "synthetic", "dry_run": dry_run, "seed": i},
                   params={"seed": i})
              for i in range(2)]
    with conn:
        _, rows = registry.insert_sweep(conn, sweep_id=uuid.uuid4(), name="s", spec={}, metric="loss",
                                        duplicates=0, trials=trials, max_concurrent=1)
    with conn:
        admission.admit(conn)
    ids = [r["id"] for r in rows]
    assert [registry.get_status(conn, i)["status"] for i in ids] == [S.PENDING, S.DEFERRED]
    return ids


def test_a_claimed_training_gives_its_place_in_the_queue_to_the_next_before_it_runs(conn, stub, calls):
    broker, actors = stub
    # Given a training waiting in the queue and a second deferred behind it (the queue is full)
    first, second = training(conn), training(conn)
    assert (first["status"], second["status"]) == (S.PENDING, S.DEFERRED)
    # When a worker takes the first
    deliver(broker, actors["look"], first["id"])
    # Then the second was queued once the first was claimed, before the first's actor ran
    assert calls == [{str(first["id"]): S.RUNNING, str(second["id"]): S.PENDING}]


def test_a_trial_that_ends_gives_its_place_in_the_sweep_to_the_next(conn, stub):
    broker, actors = stub
    # Given a sweep that runs one dry trial at a time: the first queued, the second deferred
    first, second = sweep_one_at_a_time(conn, dry_run=True)
    # When the first completes
    deliver(broker, actors["succeed"], first)
    # Then the second is queued at once, not at the next reaper pass
    assert registry.get_status(conn, second)["status"] == S.PENDING


def test_a_training_trial_that_fails_gives_its_place_in_the_sweep_to_the_next(conn, stub):
    broker, actors = stub
    # Given a sweep that runs one training at a time: the first queued, the second deferred
    first, second = sweep_one_at_a_time(conn, dry_run=False)
    # When the first fails
    deliver(broker, actors["unknown_model"], first)
    # Then its end, not its claim (the sweep was full while it ran), queued the second
    assert registry.get_status(conn, first)["status"] == S.FAILED
    assert registry.get_status(conn, second)["status"] == S.PENDING
