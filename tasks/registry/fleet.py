"""The fleet (``tunix_workers``, ``tasks/sql/fleet.sql``): worker processes'
heartbeats, and what the fleet view and the scrape-time gauges show."""

from ..lifecycle import RunStatus
from ..metrics import timed_write
from ..sql.cursor import execute, fetch_all, fetch_one


def worker_heartbeat(conn, worker_id, hostname, pid):
    with timed_write("worker_heartbeat"):
        execute(conn, "worker_heartbeat", worker_id=worker_id, hostname=hostname, pid=pid)


def worker_gone(conn, worker_id):
    execute(conn, "worker_gone", worker_id=worker_id)


def forget_dead_workers(conn, age_s):
    return execute(conn, "forget_dead_workers", age_s=age_s)


def fleet_gauges(conn, heartbeat_timeout_s, finals=True):
    """``{"in_state": {status: n}, "oldest_pending_age_s", "workers_alive",
    "queues": [fleet_queues rows]}``.  Bounded by the runs not final and the
    queue's live messages; with ``finals``, the final statuses' counts too
    (a count over every finished run: the caller decides how often)."""
    row = fetch_one(conn, "fleet_gauges", timeout_s=heartbeat_timeout_s)
    in_state = dict(row["active"])
    if finals:
        in_state.update({r["status"]: r["n"] for r in fetch_all(conn, "final_status_counts")})
    return {"in_state": in_state, "oldest_pending_age_s": row["oldest_pending_age_s"],
            "workers_alive": row["workers_alive"], "queues": fetch_all(conn, "fleet_queues")}


def fleet(conn, lost_window_s):
    """What the fleet view shows, in three queries:
    ``{"workers": [one row per (worker, held run) pair], "queues": [one row
    per queue with messages], "deferred": {dry_run: runs waiting for
    admission}}`` (``fleet_workers``, ``fleet_queues``, ``fleet_deferred``)."""
    return {"workers": fetch_all(conn, "fleet_workers", lost_window_s=lost_window_s),
            "queues": fetch_all(conn, "fleet_queues"),
            RunStatus.DEFERRED.value: {row["dry_run"]: row["n"] for row in fetch_all(conn, "fleet_deferred")}}
