"""Registry rows as the API shows them."""


def _ts(value):
    return value.isoformat() if value is not None else None


def run_json(row):
    queue_wait = None
    if row["started_at"] is not None:
        queue_wait = (row["started_at"] - row["created_at"]).total_seconds()
    return {
        "run_id": str(row["id"]),
        "status": row["status"],
        "mode": row["mode"],
        "dry_run": row["dry_run"],
        "dataset_key": row["dataset_key"],
        "model_id": row["model_id"],
        "config": row["config"],
        "attempts": row["attempts"],
        "max_attempts": row.get("max_attempts"),
        "worker_id": row["worker_id"],
        "error": row["error"],
        "result": row["result"],
        "exit_code": row["exit_code"],
        "queued_at": _ts(row["created_at"]),
        "started_at": _ts(row["started_at"]),
        "completed_at": _ts(row["completed_at"]),
        "queue_wait_seconds": queue_wait,
        "duration_seconds": row["duration_seconds"],
        "progress": row.get("progress"),
        "heartbeat_at": _ts(row.get("heartbeat_at")),
        "sweep_id": str(row["sweep_id"]) if row.get("sweep_id") else None,
        "trial": row.get("trial"),
        "priority": row.get("priority", 0),
    }


def status_json(row):
    return {
        "run_id": str(row["id"]),
        "status": row["status"],
        "queued_at": _ts(row["created_at"]),
        "started_at": _ts(row["started_at"]),
        "completed_at": _ts(row["completed_at"]),
        "exit_code": row["exit_code"],
        "attempts": row["attempts"],
        "max_attempts": row.get("max_attempts"),
        "progress": row.get("progress"),
    }
