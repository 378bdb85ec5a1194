"""A queued message whose NOTIFY no consumer acted on.

Every dramatiq-pg consumer hears every NOTIFY and tries to take the message
under its advisory lock; one that finds the lock held drops the NOTIFY.
When the holder was a session on its way out (a frozen worker's ended
session, measured), the message stays queued with nobody told, and upstream
rescans only every 1-5 minutes.  The reaper announces the longest-waiting
message of each queue again once it has waited ``ORPHAN_AGE_S``.
"""

import uuid

from psycopg2.extras import Json

from support import DRY, ApiClient, connect, start_api
from reliability_support import Stopwatch, wait_row
from tasks import registry
from tasks.actors import message_for
from tasks.lifecycle import RunStatus

ORPHAN_AGE_S = 2
#: How soon the silent message's run must be final.
BOUND_S = ORPHAN_AGE_S + 10


def insert_without_notify(conn, like_run):
    """A pending run and its queued message, as a batch submit writes them, but no NOTIFY."""
    run_id = uuid.uuid4()
    message = message_for(run_id, dry_run=True)
    with conn.cursor() as cur:
        registry.insert_runs(conn, [dict(run_id=run_id, status=RunStatus.PENDING, mode="async", dry_run=True,
                                         dataset_key=like_run["dataset_key"], model_id=like_run["model_id"],
                                         config=like_run["config"])])
        cur.execute("INSERT INTO dramatiq.queue (queue_name, message_id, state, message) VALUES (%s, %s, 'queued', %s)",
                    (message.queue_name, message.message_id, Json(message.asdict())))
    return str(run_id)


def test_a_queued_message_nobody_was_told_of_is_announced_again(databases, data_dir, log_dir, worker_launch,
                                                                report):
    url = databases.create()
    conn = connect(url)
    api = start_api(url, data_dir, log_dir)
    try:
        # Given a launch whose consumers are listening (past their start-up rescan)
        worker_launch(workers=1, threads=2, url=url, ORPHAN_AGE_S=ORPHAN_AGE_S, REAPER_INTERVAL_S=1)
        warm = ApiClient(api.url).submit(DRY, mode="sync").json()
        assert warm["status"] == "completed", warm
        # When a run is queued and nobody is told (its NOTIFY lost)
        since = Stopwatch()
        run_id = insert_without_notify(conn, warm)
        # Then it runs once it has waited ORPHAN_AGE_S, not after upstream's rescan (1-5 minutes)
        final = wait_row(conn, run_id, lambda r: r["status"] == "completed", BOUND_S, "completed", interval=0.05)
        waited_s = since()
        assert final["attempts"] == 1
        report(f"a queued dry run nobody was told of completed after {waited_s:.1f}s "
               f"(ORPHAN_AGE_S={ORPHAN_AGE_S}, bound {BOUND_S}s), once")
    finally:
        api.stop()
        conn.close()
