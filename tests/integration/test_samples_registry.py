"""The checkpoint jobs' named queries (samples, exports) against real PostgreSQL (tasks/registry/jobs.py)."""

import uuid

import psycopg2
import pytest

from support import scalar
from test_worker_middleware_pg import pending_run
from tasks import registry

PARAMS = {"prompts": ["a"], "step": None, "max_new_tokens": 8, "temperature": 0.0, "seed": 1}


def submit(conn, **fields):
    sample_id = uuid.uuid4()
    message = ("tunix-samples", str(sample_id), {"message_id": str(sample_id), "args": [str(sample_id)]})
    row = registry.submit_sample(conn, sample_id=sample_id, run_id=fields.get("run_id"),
                                 model_id=fields.get("model_id", "llama3-tiny"), step=fields.get("step"),
                                 params=PARAMS, message=message)
    return row


def test_a_sample_and_its_message_are_written_in_one_statement(conn):
    # When a base model's sample is submitted
    row = submit(conn)
    # Then it is pending, and its message is queued on tunix-samples under its id
    assert row["status"] == "pending" and row["params"] == PARAMS and row["run_id"] is None
    assert scalar(conn, "SELECT queue_name || ':' || state FROM dramatiq.queue WHERE message_id = %s",
                  (str(row["id"]),)) == "tunix-samples:queued"


def test_a_sample_of_an_unknown_run_writes_neither_row_nor_message(conn):
    # When a sample names a run that does not exist
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        submit(conn, run_id=uuid.uuid4(), step=3)
    # Then nothing was written: the statement is one
    assert scalar(conn, "SELECT count(*) FROM tunix_samples") == 0
    assert scalar(conn, "SELECT count(*) FROM dramatiq.queue") == 0


def test_a_sample_is_claimed_once_and_finished_only_by_its_claimer(conn):
    row = submit(conn)
    # When two workers claim it (a duplicate delivery)
    first = registry.claim_sample(conn, row["id"], "h:1")
    second = registry.claim_sample(conn, row["id"], "h:2")
    # Then only the first holds it
    assert first["status"] == "running" and first["worker_id"] == "h:1" and second is None
    # And only it can finish it
    assert registry.finish_sample(conn, row["id"], "h:2", outputs=[]) is None
    done = registry.finish_sample(conn, row["id"], "h:1", outputs=[{"text": "x"}], timings={"total_s": 1})
    assert done["status"] == "completed" and done["outputs"] == [{"text": "x"}] and done["finished_at"]
    # And a finished sample is final
    assert registry.finish_sample(conn, row["id"], "h:1", error={"message": "late"}) is None


@pytest.fixture
def workers(conn):
    """Worker rows of this test's own (other tests count tunix_workers), removed after it."""
    ids = [f"{name}-{uuid.uuid4().hex[:8]}:{pid}" for pid, name in enumerate(("live", "silent", "forgotten"), 1)]
    yield ids
    with conn.cursor() as cur:
        cur.execute("DELETE FROM tunix_workers WHERE worker_id = ANY(%s)", (ids,))


def test_a_sample_whose_worker_went_silent_ends_failed_and_no_other(conn, workers):
    # Given three running samples: one on a live worker, one on a silent one, one on a forgotten one
    live, silent, forgotten = workers
    registry.worker_heartbeat(conn, live, "live", 1)
    registry.worker_heartbeat(conn, silent, "silent", 2)
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_workers SET heartbeat_at = clock_timestamp() - interval '1 minute' "
                    "WHERE worker_id = %s", (silent,))
    rows = {}
    for worker in workers:
        rows[worker] = submit(conn)
        registry.claim_sample(conn, rows[worker]["id"], worker)
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_samples SET started_at = clock_timestamp() - interval '1 minute'")
    # When the lost samples are failed with a 30 s timeout
    lost = registry.fail_lost_jobs(conn, "sample", 30)
    # Then the silent and the forgotten worker's samples failed (WorkerLost), the live one runs on
    assert sorted(map(str, lost)) == sorted(str(rows[w]["id"]) for w in (silent, forgotten))
    failed = registry.get_sample(conn, rows[silent]["id"])
    assert failed["status"] == "failed" and failed["error"]["type"] == "WorkerLost" and failed["finished_at"]
    assert failed["error"]["message"] == (f"the worker generating it ({silent}) stopped answering; "
                                          "ask for the sample again")
    assert registry.get_sample(conn, rows[live]["id"])["status"] == "running"
    # And a second pass finds nothing more
    assert registry.fail_lost_jobs(conn, "sample", 30) == []


def submit_export(conn, run_id, step=2):
    export_id = uuid.uuid4()
    message = ("tunix-samples", str(export_id), {"message_id": str(export_id), "args": [str(export_id)]})
    return registry.submit_export(conn, export_id=export_id, run_id=run_id, model_id="llama3-tiny", step=step,
                                  message=message)


def test_an_export_makes_the_moves_a_sample_makes_with_its_own_columns_and_error(conn, workers):
    # Given a pending export of a run, claimed by a live worker
    live, silent, _ = workers
    registry.worker_heartbeat(conn, live, "live", 1)
    run_id = pending_run(conn)["id"]
    # (two steps: a second export of one step would be the first, reused)
    done, lost = submit_export(conn, run_id, 2), submit_export(conn, run_id, 4)
    assert done["status"] == "pending"
    assert registry.claim_export(conn, done["id"], live)["status"] == "running"
    assert registry.claim_export(conn, done["id"], silent) is None
    # When its worker finishes it with its tar
    stored = {"object_key": "k", "uri": "file:///k", "size_bytes": 3, "sha256": "0" * 64}
    row = registry.finish_export(conn, done["id"], live, stored=stored, manifest={"files": []}, timings={"total_s": 1})
    # Then it is completed with the tar's columns
    assert row["status"] == "completed" and row["size_bytes"] == 3 and row["manifest"] == {"files": []}
    # And an export whose worker went silent ends failed with an export's WorkerLost, not a sample's
    registry.claim_export(conn, lost["id"], silent)
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_exports SET started_at = clock_timestamp() - interval '1 minute'")
    assert registry.fail_lost_jobs(conn, "export", 30) == [lost["id"]]
    failed = registry.get_export(conn, lost["id"])
    assert failed["status"] == "failed" and failed["error"]["type"] == "WorkerLost"
    assert failed["error"]["message"] == (f"the worker exporting it ({silent}) stopped answering; "
                                          "ask for the export again")
    assert {r["id"] for r in registry.list_run_exports(conn, run_id)} == {done["id"], lost["id"]}
