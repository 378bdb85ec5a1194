"""The reaper's housekeeping against real PostgreSQL."""

from tasks import registry
from tasks.run_service import RunService
from tasks.settings import get_settings
from workers.reaper import FORGET_WORKERS_AFTER_S, Reaper


def test_the_rows_of_workers_silent_for_a_day_are_forgotten_and_no_others(pool, conn):
    # Given a live worker, one lost an hour ago and one silent for over a day
    for worker_id in ("live:1", "lost:2", "gone:3"):
        registry.worker_heartbeat(conn, worker_id, worker_id.split(":")[0], int(worker_id[-1]))
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_workers SET heartbeat_at = clock_timestamp() - interval '1 hour' "
                    "WHERE worker_id = 'lost:2'")
        cur.execute("UPDATE tunix_workers SET heartbeat_at = clock_timestamp() - make_interval(secs => %s) "
                    "WHERE worker_id = 'gone:3'", (FORGET_WORKERS_AFTER_S + 60,))
    # When a reaper pass runs
    Reaper(pool, get_settings()).run_once()
    # Then only the one silent for a day is gone
    with conn.cursor() as cur:
        cur.execute("SELECT worker_id FROM tunix_workers ORDER BY worker_id")
        assert [w for (w,) in cur.fetchall()] == ["live:1", "lost:2"]


def test_a_retention_pass_whose_worker_died_after_marking_is_finished_by_the_reaper(pool, conn, tmp_path):
    from tasks import artifacts
    from tasks.artifacts import ArtifactStore

    # Given a checkpoint marked for deletion whose worker died before deleting it
    settings = get_settings().replace(artifacts=f"file://{tmp_path}/store")
    store = ArtifactStore(settings.artifacts_url)
    run = RunService(settings).submit(conn, {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False})
    registry.claim(conn, run["id"], "w:1")
    for step in (10, 20):
        key = artifacts.checkpoint_key(run["id"], step, 1)
        store.put_json(key, {"fake": step})
        registry.record_checkpoint(conn, run_id=run["id"], step=step, attempt=1, uri=store.uri(key), object_key=key,
                                   size_bytes=1, sha256="x", loss=float(step))
    assert registry.mark_checkpoints_for_deletion(conn, run["id"], keep=0)  # both: keep none but the best (10)
    # When a reaper pass runs
    Reaper(pool, settings).run_once()
    # Then the marked one is gone, object and row; the kept one stays
    assert [c["step"] for c in registry.list_checkpoints(conn, run["id"])] == [10]
    assert list(store.list(artifacts.checkpoints_prefix(run["id"]))) == [artifacts.checkpoint_key(run["id"], 10, 1)]
    assert registry.checkpoints_being_deleted(conn) == []
