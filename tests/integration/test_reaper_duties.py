"""The reaper's housekeeping against real PostgreSQL."""

from tasks import registry
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
    Reaper(pool, get_settings(), publish=lambda run_id, dry_run: None).run_once()
    # Then only the one silent for a day is gone
    with conn.cursor() as cur:
        cur.execute("SELECT worker_id FROM tunix_workers ORDER BY worker_id")
        assert [w for (w,) in cur.fetchall()] == ["live:1", "lost:2"]
