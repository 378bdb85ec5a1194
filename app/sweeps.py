"""Sweeps: submit a search space, read its trials, cancel and resume it.

A sweep's trials are ordinary async runs (``tasks/sweep_spec.py``); they are
written with the sweep in one transaction, so a sweep is all there or not at
all, every one deferred: admission queues them in turn (``tasks/admission.py``).
"""

import uuid

from flask import Blueprint, current_app, jsonify, url_for

from tasks import catalog, early_stopping, lifecycle, registry, sweep_spec
from tasks.errors import SweepNotFound

from .db import get_db, transaction
from .errors import ApiError
from tasks.run_spec import MAX_SERIES_POINTS

from .runs import MAX_LIMIT, MAX_OFFSET, _int_arg, _json_body, admit_deferred, cancel_each, resume_each, series_json
from .serialize import _ts, run_json

bp = Blueprint("sweeps", __name__, url_prefix="/api/tunix")


def _parse_id(raw):
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise SweepNotFound(raw) from None


def _trial_json(row, metric):
    out = {"run_id": str(row["id"]), "status": row["status"], "params": row["trial"] or {},
           "step": row["step"], "loss": row["loss"], "eval_loss": row["eval_loss"], "attempts": row["attempts"],
           "stop_reason": row["stop_reason"]}
    if metric in sweep_spec.METHOD_METRICS:
        out[metric] = row["metric_value"]
    return out


def _better(row):
    """The sweep's direction: its stored ``mode`` (a sweep stored before
    modes existed ranked lower-is-better)."""
    return (row.get("spec") or {}).get("mode") or sweep_spec.direction(row["metric"])


def _summary(row):
    counts = {status: int(n) for status, n in (row["counts"] or {}).items()}
    active = any(status in lifecycle.ACTIVE for status in counts)
    return {"sweep_id": str(row["id"]), "name": row["name"], "metric": row["metric"], "mode": _better(row),
            "status": "active" if active else "finished", "trials": sum(counts.values()), "counts": counts,
            "duplicates": row["duplicates"], "priority": row.get("priority", 0),
            "created_at": _ts(row["created_at"])}


def _detail(conn, sweep_id):
    row = registry.get_sweep(conn, sweep_id)
    if row is None:
        raise SweepNotFound(sweep_id)
    metric = row["metric"]
    rows = registry.sweep_trials(conn, sweep_id, metric)
    trials = [_trial_json(t, metric) for t in rows]
    ranked = [t for t in trials if t["status"] == lifecycle.RunStatus.COMPLETED and t[metric] is not None]
    pick = max if _better(row) == "max" else min
    best = pick(ranked, key=lambda t: t[metric]) if ranked else None
    stopped = [t for t in rows if t["stop_reason"] == early_stopping.REASON]
    return dict(_summary(row), spec=row["spec"], best=best, runs=trials, early_stopped=len(stopped),
                steps_saved=sum(early_stopping.saved_steps(t) for t in stopped))


def _unknown_datasets(trials):
    settings = current_app.config["SETTINGS"]
    known = catalog.datasets(settings)
    problems = []
    for key in sorted({config["dataset_key"] for _, config in trials}):
        dataset = known.get(key) or catalog.get_dataset(key, settings, max_age=catalog.MISS_MAX_AGE_S)
        if dataset is None:
            problems.append({"field": "base.dataset_key", "message": f"unknown dataset {key!r}; see GET "
                                                                      "/api/tunix/datasets"})
    for method in sorted({config["method"] for _, config in trials}):
        for key in sorted({config["dataset_key"] for _, config in trials if config["method"] == method}):
            problem = catalog.method_data_problem(known.get(key), method)
            if problem:
                problems.append({"field": "base.dataset_key", "message": problem})
    return problems


@bp.post("/sweeps")
def submit_sweep():
    body = _json_body()
    try:
        spec, trials, duplicates, seeds = sweep_spec.expand(body, current_app.config["SETTINGS"])
    except sweep_spec.SweepInvalid as exc:
        raise ApiError(422, "validation_error", str(exc), exc.fields) from None
    problems = _unknown_datasets(trials)
    if problems:
        raise ApiError(422, "validation_error", f"{len(problems)} invalid field(s)", problems)
    sweep_id = uuid.uuid4()
    runs = [dict(run_id=uuid.uuid4(), mode="async", dry_run=config["dry_run"], dataset_key=config["dataset_key"],
                 model_id=config["model_id"], config=config, params=params) for params, config in trials]
    stored = dict(spec.model_dump(), mode=spec.better(), **seeds)
    rule = spec.early_stopping and dict(spec.early_stopping.model_dump(), metric=sweep_spec.stopping_metric(spec.metric),
                                        mode=spec.better() if spec.metric in sweep_spec.METHOD_METRICS else "min")
    with transaction() as conn:
        sweep, rows = registry.insert_sweep(conn, sweep_id=sweep_id, name=spec.name, spec=stored,
                                            metric=spec.metric, duplicates=duplicates, trials=runs,
                                            max_concurrent=spec.max_concurrent,
                                            priority=sweep_spec.trial_priority(spec),
                                            early_stopping=rule)
    admit_deferred()
    rows = registry.sweep_runs(get_db(), sweep_id)  # as admission left them
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    answer = dict(_summary(dict(sweep, counts=counts)), runs=[run_json(r) for r in rows])
    return jsonify(answer), 202, {"Location": url_for("sweeps.get_sweep", sweep_id=str(sweep_id))}


@bp.get("/sweeps")
def list_sweeps():
    limit = _int_arg("limit", 20, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    rows, total = registry.list_sweeps(get_db(), limit=limit, offset=offset)
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    return jsonify(data=[_summary(r) for r in rows],
                   pagination={"limit": limit, "offset": offset, "next_offset": next_offset, "total": total})


@bp.get("/sweeps/<sweep_id>")
def get_sweep(sweep_id):
    return jsonify(_detail(get_db(), _parse_id(sweep_id)))


@bp.get("/sweeps/<sweep_id>/series")
def get_sweep_series(sweep_id):
    """Every trial's loss curve, downsampled to ``points``, in one answer:
    what the sweep's overlaid curves draw."""
    sweep_id = _parse_id(sweep_id)
    points = _int_arg("points", 200, 2, MAX_SERIES_POINTS)
    conn = get_db()
    if registry.get_sweep(conn, sweep_id) is None:
        raise SweepNotFound(sweep_id)
    return jsonify(series_json(conn, registry.sweep_trial_ids(conn, sweep_id), points))


@bp.post("/sweeps/<sweep_id>/cancel")
def cancel_sweep(sweep_id):
    """Every trial still in the system's hands stops: a pending one at once
    (it never starts), a running one at its next heartbeat (checkpoint saved)."""
    sweep_id = _parse_id(sweep_id)
    conn = get_db()
    if registry.get_sweep(conn, sweep_id) is None:
        raise SweepNotFound(sweep_id)
    cancel_each(conn, registry.matching_runs(conn, "active", sweep_id=sweep_id))
    return jsonify(_detail(conn, sweep_id)), 202


@bp.post("/sweeps/<sweep_id>/resume")
def resume_sweep(sweep_id):
    """Every failed, cancelled or timed-out trial is queued again; each goes
    on from its latest checkpoint."""
    sweep_id = _parse_id(sweep_id)
    with transaction() as conn:
        if registry.get_sweep(conn, sweep_id) is None:
            raise SweepNotFound(sweep_id)
        resume_each(conn, registry.matching_runs(conn, "resumable", sweep_id=sweep_id))
    return jsonify(_detail(get_db(), sweep_id)), 202
