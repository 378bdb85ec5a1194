"""Sweeps: submit a search space, read its trials, cancel and resume it.

A sweep's trials are ordinary async runs (``tasks/sweep_spec.py``); they are
written with the sweep in one transaction, so a sweep is all there or not at
all, every one deferred: admission queues them in turn (``tasks/admission.py``).
"""

import uuid
from typing import Literal, Optional

from flask import Blueprint, current_app, jsonify, url_for
from pydantic import BaseModel, Field

from tasks import catalog, early_stopping, importance, lifecycle, registry, sweep_spec
from tasks.errors import SweepNotFound
from tasks.run_spec import MAX_SERIES_POINTS, METHOD_DATA, RunSpec

from .auth import caller, require_may_act_on, require_priority, require_queue_room
from .csv_export import csv_answer
from .curves import range_args, series_json
from .db import get_db, transaction
from .errors import ApiError
from .parse import int_arg, json_body, page, pagination
from .serialize import sweep_created_json, sweep_detail_json, sweep_json, trial_json
from .service import admit_deferred, run_service

bp = Blueprint("sweeps", __name__, url_prefix="/api/tunix")


def _parse_id(raw):
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise SweepNotFound(raw) from None


def _better(row):
    """The sweep's direction: its stored ``mode`` (a sweep stored before
    modes existed ranked lower-is-better)."""
    return (row.get("spec") or {}).get("mode") or sweep_spec.direction(row["metric"])


def _detail(conn, sweep_id):
    row = registry.get_sweep(conn, sweep_id)
    if row is None:
        raise SweepNotFound(sweep_id)
    metric = row["metric"]
    rows = registry.sweep_trials(conn, sweep_id, metric)
    trials = [trial_json(t, metric) for t in rows]
    ranked = [t for t in trials if t["status"] == lifecycle.RunStatus.COMPLETED and t[metric] is not None]
    pick = max if _better(row) == "max" else min
    best = pick(ranked, key=lambda t: t[metric]) if ranked else None
    stopped = [t for t in rows if t["stop_reason"] == early_stopping.REASON]
    return sweep_detail_json(row, _better(row), trials, best, early_stopped=len(stopped),
                             steps_saved=sum(early_stopping.saved_steps(t) for t in stopped))


def _dataset_problems(spec):
    """Unknown datasets, and datasets a method of the sweep cannot train on,
    checked on the space (every method the trials may have with every
    dataset they may name and with the base's, and the base's own pair: the
    base is a run request too), so that a random search is refused whatever
    it draws."""
    settings = current_app.config["SETTINGS"]
    known = catalog.datasets(settings)
    base = RunSpec.model_validate(spec.base)
    where, keys = sweep_spec.trial_values(spec, base, "dataset_key")
    method_where, methods = sweep_spec.trial_values(spec, base, "method")
    keys = [k for k in keys if isinstance(k, str)]  # others: the trials' validation names them
    methods = sorted({m for m in methods if m in METHOD_DATA})
    problems = []

    def dataset(key):
        return known.get(key) or catalog.get_dataset(key, settings, max_age=catalog.MISS_MAX_AGE_S)

    for field, key in [("base.dataset_key", base.dataset_key), *((where, k) for k in keys)]:
        if dataset(key) is None:
            problems.append({"field": field, "message": f"unknown dataset {key!r}; see GET /api/tunix/datasets"})
    # The base's own pair (it is a run request), then every method of the
    # sweep with every dataset a trial may name and with the base's (what
    # every trial shares suits every trial: app/openapi.py states it so).
    pairs = [("base.dataset_key", base.method, base.dataset_key)]
    pairs += [(where if where != "base.dataset_key" else method_where, m, k) for m in methods for k in keys]
    pairs += [("base.dataset_key", m, base.dataset_key) for m in methods]
    for field, method, key in pairs:
        problem = dataset(key) is not None and catalog.method_data_problem(dataset(key), method)
        if problem:
            problems.append({"field": field, "message": problem})
    return [dict(t) for t in dict.fromkeys(tuple(p.items()) for p in problems)]


@bp.post("/sweeps")
def submit_sweep():
    body = json_body()
    try:
        spec, trials, duplicates, seeds = sweep_spec.expand(body, current_app.config["SETTINGS"])
    except sweep_spec.SweepInvalid as exc:
        raise ApiError(422, "validation_error", str(exc), exc.fields) from None
    except sweep_spec.SweepTooLarge as exc:
        # A limit, not a malformed request: 403, like a priority over the ceiling
        # (a plain schemathesis run counts a 422 for a schema-valid body as a bug).
        raise ApiError(403, "limit_exceeded", f"the sweep {exc}: split its space into several sweeps",
                       [{"field": exc.field, "message": str(exc)}],
                       extra={"limit": sweep_spec.MAX_TRIALS, "trials": exc.trials}) from None
    problems = _dataset_problems(spec)
    if problems:
        raise ApiError(422, "validation_error", f"{len(problems)} invalid field(s)", problems)
    require_priority({"priority": sweep_spec.trial_priority(spec)})
    require_queue_room(len(trials))
    stored = dict(spec.model_dump(), mode=spec.better(), **seeds)
    rule = spec.early_stopping and dict(spec.early_stopping.model_dump(), metric=sweep_spec.stopping_metric(spec.metric),
                                        mode=spec.better() if spec.metric in sweep_spec.METHOD_METRICS else "min")
    with transaction() as conn:
        sweep, _ = run_service().submit_sweep(conn, name=spec.name, spec=stored, metric=spec.metric,
                                              duplicates=duplicates, trials=trials,
                                              max_concurrent=spec.max_concurrent,
                                              priority=sweep_spec.trial_priority(spec), early_stopping=rule,
                                              owner=caller().name)
    sweep_id = sweep["id"]
    admit_deferred()
    rows = registry.sweep_runs(get_db(), sweep_id)  # as admission left them
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    answer = sweep_created_json(dict(sweep, counts=counts), _better(sweep), rows, sweep_spec.overridden(spec))
    return jsonify(answer), 202, {"Location": url_for("sweeps.get_sweep", sweep_id=str(sweep_id))}


@bp.get("/sweeps")
def list_sweeps():
    limit, offset = page()
    rows, total = registry.list_sweeps(get_db(), limit=limit, offset=offset)
    return jsonify(data=[sweep_json(r, _better(r)) for r in rows], pagination=pagination(limit, offset, len(rows), total))


@bp.get("/sweeps/<sweep_id>")
def get_sweep(sweep_id):
    return jsonify(_detail(get_db(), _parse_id(sweep_id)))


@bp.get("/sweeps/<sweep_id>/series")
def get_sweep_series(sweep_id):
    """Every trial's curve of ``metric`` (default: the loss), downsampled to
    ``points``, within ``from_step``..``to_step`` if given, in one answer:
    what the sweep's overlaid curves draw."""
    sweep_id = _parse_id(sweep_id)
    points = int_arg("points", 200, 2, MAX_SERIES_POINTS)
    args = range_args()
    conn = get_db()
    if registry.get_sweep(conn, sweep_id) is None:
        raise SweepNotFound(sweep_id)
    return jsonify(series_json(conn, registry.sweep_trial_ids(conn, sweep_id), points, **args))


#: The columns of ``trials.csv`` after its parameters: ``wire.Trial``'s.
TRIAL_CSV_COLUMNS = ("status", "step", "loss", "eval_loss")


@bp.get("/sweeps/<sweep_id>/trials.csv")
def trials_csv(sweep_id):
    """A sweep's trials as CSV, in the order they were made: the run id,
    each swept parameter a column (by name: a trial's stored parameters
    keep no order), then ``TRIAL_CSV_COLUMNS`` and, for a sweep ranked on a method's
    metric, that metric; each row ``GET /sweeps/{id}``'s trial."""
    sweep_id = _parse_id(sweep_id)
    detail = _detail(get_db(), sweep_id)
    params = sorted({name for t in detail["runs"] for name in t["params"]})
    ranked = [detail["metric"]] if detail["metric"] in sweep_spec.METHOD_METRICS else []
    columns = [*TRIAL_CSV_COLUMNS, *ranked]
    rows = [[t["run_id"], *(t["params"].get(p) for p in params), *(t.get(c) for c in columns)]
            for t in detail["runs"]]
    return csv_answer(f"sweep-{sweep_id}-trials.csv", ["run_id", *params, *columns], rows)


class ParamImportance(BaseModel):
    """One swept parameter against the sweep's metric (``tasks/importance.py``)."""

    param: str
    kind: Literal["numeric", "categorical"] = Field(
        description="numeric: every value a number (Spearman's rho); categorical: words, booleans or a mix "
                    "(the correlation ratio of the metric's ranks, from Kruskal-Wallis H)")
    importance: Optional[float] = Field(description="strength over the sum of the strengths: the shares add up to "
                                                    "1; null when it measures nothing")
    strength: Optional[float] = Field(description="|rho| or eta, 0 to 1; null with fewer than 3 trials, one value "
                                                  "of the parameter or the metric equal in all")
    correlation: Optional[float] = Field(description="Spearman's rho, signed (numeric only): above 0, the metric "
                                                     "grows with the parameter")
    p_value: Optional[float] = Field(description="of the test that the parameter and the metric are unrelated")
    values: int = Field(description="distinct values of the parameter among those trials")


class SweepImportance(BaseModel):
    """``GET /api/tunix/sweeps/{sweep_id}/importance``: each swept parameter's
    importance for the sweep's metric over its completed trials, strongest
    first."""

    sweep_id: str
    metric: str
    mode: Literal["min", "max"]
    trials: int = Field(description="completed trials with the metric: those measured")
    explanation: str = Field(description="one line saying what the numbers are, for a page")
    params: list[ParamImportance]


def openapi_schemas():
    """``SweepImportance`` and ``ParamImportance`` (``app/openapi.py``)."""
    schema = SweepImportance.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    schemas = schema.pop("$defs", {})
    schemas["SweepImportance"] = schema
    return schemas


@bp.get("/sweeps/<sweep_id>/importance")
def get_sweep_importance(sweep_id):
    """How strongly each swept parameter goes with the sweep's metric, over
    its completed trials (``tasks/importance.py``: rank correlations)."""
    detail = _detail(get_db(), _parse_id(sweep_id))
    metric = detail["metric"]
    measured = [(t["params"], t[metric]) for t in detail["runs"]
                if t["status"] == lifecycle.RunStatus.COMPLETED and t.get(metric) is not None]
    params = sorted({name for t in detail["runs"] for name in t["params"]})
    rows = importance.importance(measured, params)
    answer = SweepImportance(sweep_id=detail["sweep_id"], metric=metric, mode=detail["mode"], trials=len(measured),
                             explanation=importance.explanation(metric, len(measured), rows), params=rows)
    return jsonify(answer.model_dump())


def _require_own(conn, sweep_id):
    """The sweep, or 404; 403 unless the caller may move it (its trials are its owner's)."""
    row = registry.get_sweep(conn, sweep_id)
    if row is None:
        raise SweepNotFound(sweep_id)
    require_may_act_on(f"sweep {sweep_id}", row["owner"])
    return row


@bp.post("/sweeps/<sweep_id>/cancel")
def cancel_sweep(sweep_id):
    """Every trial still in the system's hands stops: a pending one at once
    (it never starts), a running one at its next heartbeat (checkpoint saved).
    A member cancels only their own sweeps."""
    sweep_id = _parse_id(sweep_id)
    conn = get_db()
    _require_own(conn, sweep_id)
    run_service().cancel_sweep(conn, sweep_id)
    return jsonify(_detail(conn, sweep_id)), 202


@bp.post("/sweeps/<sweep_id>/resume")
def resume_sweep(sweep_id):
    """Every failed, cancelled or timed-out trial is queued again; each goes
    on from its latest checkpoint.  A member resumes only their own sweeps."""
    sweep_id = _parse_id(sweep_id)
    with transaction() as conn:
        _require_own(conn, sweep_id)
        run_service().resume_sweep(conn, sweep_id)
    return jsonify(_detail(get_db(), sweep_id)), 202
