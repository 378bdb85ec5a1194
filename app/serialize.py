"""Registry rows as the API shows them: each answer a ``tasks/wire.py``
model built from its row, sent as that model's JSON dump (its shape, key
order and formats are the model's; nothing here writes a key by hand)."""

from tasks import lifecycle, sweep_spec, wire


def as_json(answer):
    """The JSON-ready dict the API sends for ``answer``.  ``exclude_unset``
    keeps a run's ``progress`` as its worker reported it: a figure it did
    not report stays absent, not ``null`` (every top-level field is set
    here, so none is dropped)."""
    return answer.model_dump(mode="json", exclude_unset=True)


def _id(value):
    return str(value) if value else None


def run_answer(row):
    started = row["started_at"]
    return wire.Run(
        run_id=str(row["id"]), status=row["status"], mode=row["mode"], dry_run=row["dry_run"],
        dataset_key=row["dataset_key"], model_id=row["model_id"], config=row["config"],
        attempts=row["attempts"], max_attempts=row.get("max_attempts"), worker_id=row["worker_id"],
        error=row["error"], result=row["result"], exit_code=row["exit_code"],
        queued_at=row["created_at"], started_at=started, completed_at=row["completed_at"],
        queue_wait_seconds=None if started is None else (started - row["created_at"]).total_seconds(),
        duration_seconds=row["duration_seconds"], progress=row.get("progress"),
        heartbeat_at=row.get("heartbeat_at"), sweep_id=_id(row.get("sweep_id")), trial=row.get("trial"),
        priority=row.get("priority", 0), owner=row.get("owner"), name=row.get("name"), tags=row.get("tags") or [],
        notes=row.get("notes") or "")


def status_answer(row):
    return wire.RunStatusAnswer(
        run_id=str(row["id"]), status=row["status"], queued_at=row["created_at"],
        started_at=row["started_at"], completed_at=row["completed_at"], exit_code=row["exit_code"],
        attempts=row["attempts"], max_attempts=row.get("max_attempts"), progress=row.get("progress"))


def run_json(row):
    return as_json(run_answer(row))


def status_json(row):
    return as_json(status_answer(row))


def trial_json(row, metric):
    """A trial with its latest recorded step; a sweep ranked on a method's
    metric also carries that metric, by name (``wire.Trial`` keeps it)."""
    ranked_on = {metric: row["metric_value"]} if metric in sweep_spec.METHOD_METRICS else {}
    return as_json(wire.Trial(
        run_id=str(row["id"]), status=row["status"], params=row["trial"] or {}, step=row["step"],
        loss=row["loss"], eval_loss=row["eval_loss"], attempts=row["attempts"], stop_reason=row["stop_reason"],
        **ranked_on))


def _sweep(row, mode):
    """``wire.Sweep``'s fields from a sweep row with its trials ``counts``
    by status; ``mode`` is its direction (``min`` or ``max``)."""
    counts = {status: int(n) for status, n in (row["counts"] or {}).items()}
    active = any(status in lifecycle.ACTIVE for status in counts)
    return dict(sweep_id=str(row["id"]), name=row["name"], metric=row["metric"], mode=mode,
                status="active" if active else "finished", trials=sum(counts.values()), counts=counts,
                duplicates=row["duplicates"], priority=row.get("priority", 0), created_at=row["created_at"])


def sweep_json(row, mode):
    return as_json(wire.Sweep(**_sweep(row, mode)))


def sweep_created_json(row, mode, runs, warnings=()):
    """``row`` and its trials, ``runs``, as runs."""
    return as_json(wire.SweepCreated(**_sweep(row, mode), runs=[run_answer(r) for r in runs],
                                     warnings=list(warnings)))


def sweep_detail_json(row, mode, trials, best, early_stopped, steps_saved):
    """``trials``: ``trial_json``'s, in the order they were made; ``best``
    one of them or None."""
    return as_json(wire.SweepDetail(**_sweep(row, mode), spec=row["spec"], best=best, runs=trials,
                                    early_stopped=early_stopped, steps_saved=steps_saved))
