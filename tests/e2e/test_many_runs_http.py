"""Two hundred async dry runs over one worker launch of two processes."""

from concurrent.futures import ThreadPoolExecutor

from tasks import artifacts
from tasks.artifacts import ArtifactStore
from support import DRY, metric, scalar, wait_for

N = 200


def test_two_hundred_async_runs_each_complete_exactly_once_across_both_processes(api, workers, db_conn, data_dir):
    # Given the session's launch (2 processes) and its counters now
    before = workers.metrics()
    # When 200 async dry runs are submitted, 8 at a time
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: api.submit(dict(DRY, seed=i), mode="async"), range(N)))
    refused = [r.text for r in responses if r.status_code != 202]
    assert not refused, f"{len(refused)} submits refused, e.g. {refused[:2]}"
    ids = [r.json()["run_id"] for r in responses]
    assert len(set(ids)) == N
    # Then all of them end, completed
    final = wait_for(lambda: scalar(db_conn, "SELECT count(*) FROM tunix_runs WHERE id = ANY(%s::uuid[]) "
                                              "AND status IN ('completed', 'failed', 'cancelled', 'timeout')",
                                    (ids,)) == N, timeout=120, interval=0.2, message=f"{N} runs final")
    assert final
    with db_conn.cursor() as cur:
        cur.execute("SELECT id::text, status, attempts, started_at IS NOT NULL, worker_id, result "
                    "FROM tunix_runs WHERE id = ANY(%s::uuid[])", (ids,))
        rows = cur.fetchall()
    assert len(rows) == N
    assert {status for _, status, *_ in rows} == {"completed"}
    # And each was executed exactly once: claimed once, one message done
    assert {attempts for _, _, attempts, *_ in rows} == {1}
    assert all(started for _, _, _, started, _, _ in rows)
    assert scalar(db_conn, "SELECT count(*) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[]) "
                           "AND state = 'done'", (ids,)) == N
    # And the actor wrote exactly one manifest per run, for that run, where its result says
    for run_id, _, _, _, _, result in rows:
        store = ArtifactStore(f"file://{data_dir}/artifacts")  # the default ARTIFACTS_URL
        assert result["manifest"] == store.uri(artifacts.manifest_key(run_id))
        assert store.get_json(artifacts.manifest_key(run_id))["run_id"] == run_id
    # and nothing on the worker's disk: a dry run has no scratch folder
    assert [run_id for run_id in ids if (data_dir / "runs" / run_id).exists()] == []
    # And both worker processes took part
    worker_ids = {worker_id for *_, worker_id, _ in rows}
    assert len(worker_ids) == 2, worker_ids
    # And the launch's metrics endpoint counts exactly these N completions and their claims
    after = workers.metrics()

    def moved(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    # (at least: a run another test of the session left pending may be
    # executed meanwhile, re-announced by the reaper; the registry above
    # shows each of these N ran exactly once)
    assert N <= moved("tunix_runs_total", status="completed", mode="async") <= N + 2
    assert moved("tunix_runs_total", status="failed", mode="async") == 0
    assert N <= moved("tunix_db_write_latency_ms_count", operation="claim") <= N + 2
    assert N <= moved("tunix_runs_duration_seconds_count", status="completed", mode="async") <= N + 2
