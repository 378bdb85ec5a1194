"""Retention (RETENTION_DAYS; workers/reaper.py, "Retention") against real
PostgreSQL and a local folder store, on a database of its own."""

import os
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from tasks import artifacts, db, registry
from tasks.artifacts import ArtifactStore
from tasks.settings import Settings, SettingsError, get_settings
from workers import reaper as reaper_module
from workers.reaper import METRICS_TAIL, QUEUE_KEEP_S, STORE_GRACE_S, Reaper

from support import connect

DAYS = 30
OLD, RECENT = 40, 5  # days since a run finished


@pytest.fixture(scope="module")
def url(databases):
    return databases.create()


@pytest.fixture
def conn(url):
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE tunix_sweeps, tunix_runs CASCADE; TRUNCATE dramatiq.queue")
    yield conn
    conn.close()


@pytest.fixture
def pool(url):
    pool = db.make_pool(url, 4)
    yield pool
    pool.closeall()


@pytest.fixture
def settings(url, tmp_path):
    return Settings(database_url=url, data_dir=str(tmp_path), artifacts=f"file://{tmp_path}/store",
                    retention_days=DAYS)


def make_run(conn, status="completed", days_ago=OLD, sweep_id=None, logs=30, steps=20):
    """A run in ``status`` (final ones finished ``days_ago`` days ago) with
    ``logs`` log lines and ``steps`` metrics rows."""
    run_id = uuid.uuid4()
    final = status in ("completed", "failed", "cancelled", "timeout")
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config, sweep_id, attempts, "
            "created_at, completed_at) VALUES (%s, %s, 'async', false, 'synthetic', 'llama3-tiny', '{}', %s, 1, "
            "clock_timestamp() - make_interval(days => %s + 1), "
            "CASE WHEN %s THEN clock_timestamp() - make_interval(days => %s) END)",
            (str(run_id), status, sweep_id and str(sweep_id), days_ago, final, days_ago))
        cur.execute("INSERT INTO tunix_run_logs (run_id, seq, stream, line) "
                    "SELECT %s, s, 'stdout', 'line ' || s FROM generate_series(1, %s) s", (str(run_id), logs))
        cur.execute("INSERT INTO tunix_run_metrics (run_id, step, loss, attempt) "
                    "SELECT %s, s, 1.0 / s, 1 FROM generate_series(1, %s) s", (str(run_id), steps))
    return str(run_id)


def make_sweep(conn):
    sweep_id = uuid.uuid4()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tunix_sweeps (id, name, spec, metric) VALUES (%s, 'sweep', '{}', 'loss')",
                    (str(sweep_id),))
    return sweep_id


def kept(conn, run_id):
    """``(log lines, metrics steps)`` the run still has."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM tunix_run_logs WHERE run_id = %s", (run_id,))
        (logs,), = cur.fetchall()
        cur.execute("SELECT coalesce(array_agg(step ORDER BY step), '{}') FROM tunix_run_metrics WHERE run_id = %s",
                    (run_id,))
        (steps,), = cur.fetchall()
    return logs, steps


def pruned_total(kind):
    return REGISTRY.get_sample_value("tunix_retention_pruned_total", {"kind": kind}) or 0.0


def until_done(reaper, passes=20):
    for _ in range(passes):
        if not any(reaper.prune().values()):
            return
    raise AssertionError(f"retention still pruning after {passes} passes")


def test_a_pass_prunes_exactly_the_old_finished_runs_logs_and_metrics(conn, pool, settings):
    # Given old and recent finished runs, runs not final, and trials of a
    # running and of a finished sweep
    old_runs = [make_run(conn, status) for status in ("completed", "failed", "cancelled", "timeout")]
    recent = make_run(conn, days_ago=RECENT)
    running = make_run(conn, "running", days_ago=OLD)
    pending = make_run(conn, "pending", days_ago=OLD)
    busy_sweep, done_sweep = make_sweep(conn), make_sweep(conn)
    busy_trial = make_run(conn, sweep_id=busy_sweep)
    make_run(conn, "running", sweep_id=busy_sweep)
    done_trial = make_run(conn, sweep_id=done_sweep)
    # and a recorded checkpoint of an old failed run (a resume needs it)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tunix_checkpoints (run_id, step, attempt, uri, object_key, size_bytes, sha256) "
                    "VALUES (%s, 10, 1, 'file:///x', 'runs/x/checkpoints/10.a1.tar', 1, 'x')", (old_runs[1],))
    before = pruned_total("logs"), pruned_total("metrics")
    # When retention runs to the end
    until_done(Reaper(pool, settings))
    # Then the old finished runs kept no log line and only their last steps
    tail = list(range(20 - METRICS_TAIL + 1, 21))
    for run_id in old_runs + [done_trial]:
        assert kept(conn, run_id) == (0, tail), run_id
    # and everything else is whole
    for run_id in (recent, running, pending, busy_trial):
        assert kept(conn, run_id) == (30, list(range(1, 21))), run_id
    # the run rows and the checkpoint stay; the pruned runs are stamped
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(pruned_at) FROM tunix_runs")
        assert cur.fetchone() == (10, 5)
        cur.execute("SELECT count(*) FROM tunix_checkpoints")
        assert cur.fetchone() == (1,)
    # and the counter says what went
    assert pruned_total("logs") - before[0] == 5 * 30
    assert pruned_total("metrics") - before[1] == 5 * (20 - METRICS_TAIL)


def test_each_statement_and_pass_is_bounded_and_passes_finish_the_job(conn, pool, settings, monkeypatch):
    # Given small batches: 7 rows a statement, 2 statements a pass
    monkeypatch.setattr(reaper_module, "PRUNE_ROWS", 7)
    monkeypatch.setattr(reaper_module, "PRUNE_BATCHES", 2)
    runs = [make_run(conn, logs=10, steps=10) for _ in range(3)]
    reaper = Reaper(pool, settings)
    # When one pass runs, then at most 14 lines and 14 steps went
    first = reaper.prune()
    assert (first["logs"], first["metrics"]) == (14, 14)
    # And passes finish it
    until_done(reaper)
    assert all(kept(conn, run_id) == (0, list(range(10 - METRICS_TAIL + 1, 11))) for run_id in runs)


def test_retention_days_0_prunes_no_run(conn, pool, settings):
    run_id = make_run(conn, days_ago=3650)
    Reaper(pool, settings.replace(retention_days=0)).prune()
    assert kept(conn, run_id) == (30, list(range(1, 21)))


def test_a_resumed_run_that_finishes_again_is_pruned_again(conn, pool, settings):
    # Given an old failed run, pruned (36 days ago, for the test)
    run_id = make_run(conn, "failed")
    until_done(Reaper(pool, settings))
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_runs SET pruned_at = clock_timestamp() - interval '36 days' "
                    "WHERE id = %s AND pruned_at IS NOT NULL", (run_id,))
        assert cur.rowcount == 1
    # When it is resumed, logs again and ends again (long ago, for the test)
    registry.transition(conn, run_id, "resume")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tunix_run_logs (run_id, seq, stream, line) VALUES (%s, 100, 'stdout', 'again')",
                    (run_id,))
        cur.execute("UPDATE tunix_runs SET status = 'failed', completed_at = clock_timestamp() - interval '35 days' "
                    "WHERE id = %s", (run_id,))
    # Then its new lines are pruned too
    until_done(Reaper(pool, settings))
    assert kept(conn, run_id)[0] == 0


def insert_messages(conn, state, n, age_s):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO dramatiq.queue (message_id, queue_name, state, mtime, message) "
                    "SELECT gen_random_uuid(), 'tunix-dry', %s, "
                    "(now() AT TIME ZONE 'UTC') - make_interval(secs => %s), '{}' FROM generate_series(1, %s)",
                    (state, age_s, n))


def queue_states(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT state::text, mtime < (now() AT TIME ZONE 'UTC') - make_interval(secs => %s), count(*) "
                    "FROM dramatiq.queue GROUP BY 1, 2", (QUEUE_KEEP_S,))
        return {(state, old): n for state, old, n in cur.fetchall()}


def test_settled_messages_are_bounded_while_consumers_are_busy(conn, pool, settings, monkeypatch):
    # Given a busy queue: messages queued and consumed all along (dramatiq-pg
    # would purge only from an idle consumer), and settled ones old and new
    monkeypatch.setattr(reaper_module, "PRUNE_ROWS", 100)
    monkeypatch.setattr(reaper_module, "PRUNE_BATCHES", 3)
    insert_messages(conn, "queued", 50, QUEUE_KEEP_S * 2)
    insert_messages(conn, "consumed", 20, QUEUE_KEEP_S * 2)
    insert_messages(conn, "done", 20, 60)
    reaper = Reaper(pool, settings.replace(retention_days=0))  # the queue is kept bounded whatever the retention
    before = pruned_total("queue")
    # When settled messages keep coming, 250 a pass, and the reaper keeps passing
    sizes = []
    for _ in range(8):
        insert_messages(conn, "done", 200, QUEUE_KEEP_S + 60)
        insert_messages(conn, "rejected", 50, QUEUE_KEEP_S + 60)
        pruned = reaper.prune()["queue"]
        assert pruned <= 300  # a pass' bound
        sizes.append(queue_states(conn).get(("done", True), 0) + queue_states(conn).get(("rejected", True), 0))
    # Then the old settled ones do not pile up: each pass takes up to 300 of the 250 new
    assert max(sizes) == 0, sizes
    # and what is live or recent stays
    states = queue_states(conn)
    assert states[("queued", True)] == 50 and states[("consumed", True)] == 20 and states[("done", False)] == 20
    assert pruned_total("queue") - before == 8 * 250


def age(store, key, seconds):
    """Make the object ``key`` ``seconds`` old."""
    when = time.time() - seconds
    os.utime(store.path(key), (when, when))


def test_orphaned_store_objects_go_and_recorded_ones_stay(conn, pool, settings):
    store = ArtifactStore(settings.artifacts_url)
    old = STORE_GRACE_S + 60
    # Given an old finished run with a recorded checkpoint, an unrecorded one,
    # its manifest, a live export's tar and a failed export's
    done = make_run(conn, logs=0, steps=0)
    recorded, unrecorded = artifacts.checkpoint_key(done, 20, 1), artifacts.checkpoint_key(done, 10, 1)
    live_export, failed_export = uuid.uuid4(), uuid.uuid4()
    live_tar, failed_tar = artifacts.export_key(done, 20, live_export), artifacts.export_key(done, 20, failed_export)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tunix_checkpoints (run_id, step, attempt, uri, object_key, size_bytes, sha256) "
                    "VALUES (%s, 20, 1, 'file:///x', %s, 1, 'x')", (done, recorded))
        cur.execute("INSERT INTO tunix_exports (id, run_id, model_id, step, status, object_key, size_bytes, sha256, "
                    "finished_at) VALUES (%s, %s, 'llama3-tiny', 20, 'completed', %s, 1, repeat('a', 64), "
                    "clock_timestamp()), (%s, %s, 'llama3-tiny', 20, 'failed', NULL, NULL, NULL, clock_timestamp())",
                    (str(live_export), done, live_tar, str(failed_export), done))
    # a run not final with a checkpoint not recorded yet (its upload on its way)
    running = make_run(conn, "running", logs=0, steps=0)
    uploading = artifacts.checkpoint_key(running, 10, 1)
    # a recent finished run's unrecorded checkpoint (inside the retention)
    recent = make_run(conn, days_ago=RECENT, logs=0, steps=0)
    recent_orphan = artifacts.checkpoint_key(recent, 10, 1)
    # and the folder of a run the registry does not know: one object older than the retention, one newer
    ghost = str(uuid.uuid4())
    ghost_old, ghost_new = artifacts.manifest_key(ghost), artifacts.checkpoint_key(ghost, 5, 1)
    keys = [recorded, unrecorded, artifacts.manifest_key(done), live_tar, failed_tar, uploading, recent_orphan,
            ghost_old, ghost_new]
    for key in keys:
        store.put_json(key, {"k": key})
        age(store, key, old)
    age(store, ghost_old, (DAYS + 1) * 86400)
    before = pruned_total("store")
    # When a pass sweeps the store
    Reaper(pool, settings).prune()
    # Then exactly the orphans went
    gone = {unrecorded, failed_tar, ghost_old}
    assert {key for key in keys if not store.exists(key)} == gone
    assert pruned_total("store") - before == len(gone)


def test_a_fresh_unrecorded_checkpoint_of_a_finished_run_is_left_for_a_later_pass(conn, pool, settings):
    store = ArtifactStore(settings.artifacts_url)
    done = make_run(conn, logs=0, steps=0)
    fresh = artifacts.checkpoint_key(done, 10, 2)
    store.put_json(fresh, {})
    Reaper(pool, settings).prune()
    assert store.exists(fresh)


def test_checkpoint_keep_0_is_refused_at_start_naming_the_variable(monkeypatch):
    monkeypatch.setenv("CHECKPOINT_KEEP", "0")
    with pytest.raises(SettingsError, match=r"CHECKPOINT_KEEP='0'"):
        get_settings()


def test_retention_days_must_not_be_negative(monkeypatch):
    monkeypatch.setenv("RETENTION_DAYS", "-1")
    with pytest.raises(SettingsError, match=r"RETENTION_DAYS='-1'"):
        get_settings()
