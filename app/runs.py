"""Runs: submit, read, list."""

import contextlib
import hashlib
import json
import logging
import time
import uuid

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.routing import BaseConverter

from tasks import actors, catalog, db, lifecycle, registry
from tasks import admission as run_admission
from tasks.errors import InvalidTransition, RunNotFound
from tasks.metrics import RUNS_RETRIED
from tasks.run_spec import MODES, RunFilter, RunSpec, SeriesRequest, ValidationError, field_errors

from . import admission
from .db import close_db, get_db, transaction
from .errors import ApiError
from .serialize import run_json, status_json
from .waiter import get_waiter

logger = logging.getLogger(__name__)

bp = Blueprint("runs", __name__, url_prefix="/api/tunix")

#: Longest accepted Idempotency-Key header.
MAX_IDEMPOTENCY_KEY = 255
#: Most runs one batch submit may carry.
MAX_BATCH = 1000
#: Highest ``offset`` the history accepts (the document says so too).
MAX_OFFSET = 10**9
#: Most runs one page of the history holds.
MAX_LIMIT = 100

#: How long a sync submit's last read waits for a busy pool or the database.
FINAL_READ_PATIENCE_S = 30

#: Filters the history accepts, each an exact match on a column.
LIST_FILTERS = ("status", "mode", "dataset_key", "model_id")

class RunIdConverter(BaseConverter):
    """``<run_id:...>``: any path segment but ``batch``, ``cancel``,
    ``resume`` and ``series``, its siblings (``POST /runs/batch``, the bulk
    moves, many runs' curves), so each
    is one resource whose ``Allow`` lists its own methods, not also a run's GET.  Not a UUID check: a
    malformed id stays a JSON 404 naming the run (``parse_run_id``)."""

    regex = r"(?!(?:batch|cancel|resume|series)(?![^/]))[^/]+"


def parse_run_id(raw):
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise RunNotFound(raw) from None


def _json_body():
    """The request's JSON object, or the right 4xx."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)")
    try:
        # Not request.get_json: it answers None both for a malformed body and
        # for a valid `null`, which is a 422 (valid JSON, not an object).
        body = json.loads(request.get_data(cache=True))
    except ValueError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object",
                       [{"field": "body", "message": "expected an object"}])
    return body


def _field_problems(body, datasets, prefix=""):
    """``((resolved config, priority), [])`` or ``(None, [{"field", "message"}])``."""
    try:
        config = RunSpec.model_validate(body)
    except ValidationError as exc:
        return None, [dict(e, field=prefix + e["field"]) for e in field_errors(exc)]
    priority = config.priority
    # A key the (cached) listing lacks may have just been uploaded to the store: list it again, at most
    # once per MISS_MAX_AGE_S.
    dataset = datasets.get(config.dataset_key) or catalog.get_dataset(
        config.dataset_key, current_app.config["SETTINGS"], max_age=catalog.MISS_MAX_AGE_S)
    if dataset is None:
        return None, [{"field": prefix + "dataset_key",
                       "message": f"unknown dataset {config.dataset_key!r}; see GET /api/tunix/datasets"}]
    problem = catalog.method_data_problem(dataset, config.method)
    if problem:
        return None, [{"field": prefix + "dataset_key", "message": problem}]
    try:
        return (config.resolved(current_app.config["SETTINGS"]), priority), []
    except ValueError as exc:
        return None, [{"field": prefix + "time_limit_s", "message": str(exc)}]


def _validated(body):
    """``(resolved config, priority)`` of a run request, or the 422."""
    spec, fields = _field_problems(body, catalog.datasets(current_app.config["SETTINGS"]))
    if fields:
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields)
    return spec


def admit_deferred():
    """Runs were written deferred: admit now those whose turn it is (one
    transaction; a failure leaves them to the next reaper pass)."""
    try:
        with transaction() as conn:
            run_admission.admit(conn)
    except Exception:  # noqa: BLE001 - see the docstring
        logger.exception("admission after a submit failed; the next reaper pass admits")
    finally:
        close_db()


def _mode():
    mode = request.args.get("mode", "sync")
    if mode not in MODES:
        raise ApiError(422, "validation_error", "mode must be sync or async",
                       [{"field": "mode", "message": f"expected one of {', '.join(MODES)}"}])
    return mode


def _queue(conn, runs):
    """Write the messages of ``runs`` (``(run_id, dry_run)`` pairs) in
    ``conn``'s transaction: the runs and their messages are committed
    together, so a run is never pending without its message."""
    registry.enqueue_messages(conn, actors.outbox_rows(runs))


def _wait_until_final(run_id, watch, timeout):
    """The run once final, or as it stands after ``timeout``.  Waiting holds
    no connection: the waiter's tick says when the status changed."""
    deadline = time.monotonic() + timeout
    while watch.status not in lifecycle.FINAL:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not watch.wait(remaining):
            break

    def read():
        try:
            return registry.get_run(get_db(), run_id)
        finally:
            close_db()

    # The run is accepted: a busy pool or a short outage delays the answer
    # rather than turning it into a 503 the client might retry as a new run.
    return db.patiently(read, FINAL_READ_PATIENCE_S)


def _idempotency_key():
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ApiError(422, "validation_error", "invalid Idempotency-Key header",
                       [{"field": "Idempotency-Key",
                         "message": f"1 to {MAX_IDEMPOTENCY_KEY} printable characters"}])
    return key


def _request_hash(mode, body):
    canonical = json.dumps({"mode": mode, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(key, request_hash):
    """The answer to a retried submit: the run its first try created."""
    run = registry.get_run_by_idempotency_key(get_db(), key)
    if run is None:  # the first try's row is gone (cannot happen: rows are kept)
        raise ApiError(409, "idempotency_conflict", "Idempotency-Key was used and its run is gone")
    if run["request_hash"] != request_hash:
        raise ApiError(409, "idempotency_conflict",
                       "Idempotency-Key was already used with a different request",
                       extra={"run_id": str(run["id"])})
    return jsonify(run_json(run)), 200, {"Location": url_for("runs.get_run", run_id=str(run["id"]))}


@bp.post("/run")
def submit():
    mode = _mode()
    key = _idempotency_key()
    body = _json_body()
    config, priority = _validated(body)
    request_hash = _request_hash(mode, body) if key else None
    run_id = uuid.uuid4()
    # Watch before the commit, so a fast worker cannot finish unseen.  No
    # watch: async, or every thread the API may let wait is waiting (then
    # the sync submit is answered as it would be after SYNC_TIMEOUT_S).
    watch = get_waiter().watch(run_id) if mode == "sync" else None
    with watch or contextlib.nullcontext():
        run = _insert_and_queue(run_id, mode, config, priority, key, request_hash)
        if run is None:
            return _replay(key, request_hash)
        if run["status"] == lifecycle.RunStatus.DEFERRED:
            admit_deferred()
        if watch is not None:
            admission.leave()  # waiting is not work
            run = _wait_until_final(run_id, watch, current_app.config["SYNC_TIMEOUT_S"])
    if run["status"] in lifecycle.FINAL:
        return jsonify(run_json(run)), 200
    return jsonify(run_json(run)), 202, {"Location": url_for("runs.get_run", run_id=str(run_id))}


def _insert_and_queue(run_id, mode, config, priority, key, request_hash):
    """The new run, pending and written with its message in one statement
    (one round trip, one commit), or deferred (``tasks/admission.py``); None
    when ``key`` was used before (nothing is written then).  The request's connection is given back at once: under
    load a thread waits its turn for the GIL, and it must not hold a
    connection while it does (measured: 64 clients spent 46% of their time
    waiting for the pool when the connection was kept to the end of the
    request)."""
    (message,) = actors.outbox_rows([(run_id, config["dry_run"])])
    try:
        run = registry.submit_run(get_db(), run_id=run_id, mode=mode, dry_run=config["dry_run"],
                                  dataset_key=config["dataset_key"], model_id=config["model_id"], config=config,
                                  message=message, priority=priority, idempotency_key=key,
                                  request_hash=request_hash)
    finally:
        close_db()
    return run


@bp.get("/runs/<run_id:run_id>")
def get_run(run_id):
    row = registry.get_run(get_db(), parse_run_id(run_id))
    if row is None:
        raise RunNotFound(run_id)
    return jsonify(run_json(row))


@bp.get("/runs/<run_id:run_id>/status")
def get_status(run_id):
    row = registry.get_status(get_db(), parse_run_id(run_id))
    if row is None:
        raise RunNotFound(run_id)
    return jsonify(status_json(row))


def _int_arg(name, default, low, high):
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ApiError(422, "validation_error", f"{name} must be an integer from {low} to {high}",
                       [{"field": name, "message": f"expected an integer from {low} to {high}"}])
    return value


@bp.get("/runs")
def list_runs():
    limit = _int_arg("limit", 20, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    filters = {name: request.args.get(name) or None for name in LIST_FILTERS}
    # PostgreSQL text cannot hold NUL: such a filter matches nothing, and
    # sent to the database it raised (500).
    bad = [name for name, value in filters.items() if value is not None and "\x00" in value]
    if bad:
        raise ApiError(422, "validation_error", "filters may not contain NUL characters",
                       [{"field": name, "message": "NUL character"} for name in bad])
    if filters["status"] is not None and filters["status"] not in lifecycle.ALL:
        raise ApiError(422, "validation_error", "unknown status",
                       [{"field": "status", "message": f"expected one of {', '.join(lifecycle.ALL)}"}])
    if filters["mode"] is not None and filters["mode"] not in MODES:
        raise ApiError(422, "validation_error", "unknown mode",
                       [{"field": "mode", "message": f"expected one of {', '.join(MODES)}"}])
    rows, total = registry.list_runs(get_db(), limit=limit, offset=offset, **filters)
    next_offset = offset + len(rows) if offset + len(rows) < total else None
    return jsonify(data=[run_json(r) for r in rows],
                   pagination={"limit": limit, "offset": offset, "next_offset": next_offset, "total": total})


@bp.post("/runs/<run_id:run_id>/cancel")
def cancel(run_id):
    """A pending run is cancelled at once; a running one is asked to stop
    (the worker saves a checkpoint and ends it ``cancelled``)."""
    run_id = parse_run_id(run_id)
    conn = get_db()
    row = registry.get_status(conn, run_id)
    if row is None:
        raise RunNotFound(run_id)
    S = lifecycle.RunStatus
    if row["status"] in (S.PENDING, S.DEFERRED):
        try:
            row = registry.transition(conn, run_id, "cancel_pending")
            return jsonify(run_json(row)), 200
        except InvalidTransition:
            row = registry.get_status(conn, run_id)  # claimed meanwhile: stop it instead
    if row["status"] == S.CANCEL_REQUESTED:
        return jsonify(run_json(registry.get_run(conn, run_id))), 202
    row = registry.transition(conn, run_id, "request_cancel")
    return jsonify(run_json(row)), 202


@bp.post("/runs/<run_id:run_id>/resume")
def resume(run_id):
    """Queue a failed, cancelled or timed-out run again; the training goes
    on from its latest checkpoint."""
    run_id = parse_run_id(run_id)
    with transaction() as conn:
        run = registry.transition(conn, run_id, "resume", max_attempts=current_app.config["SETTINGS"].max_attempts)
        _queue(conn, [(run["id"], run["dry_run"])])
    RUNS_RETRIED.labels("resume").inc()
    return jsonify(run_json(run)), 202, {"Location": url_for("runs.get_run", run_id=str(run_id))}


@bp.get("/runs/<run_id:run_id>/metrics")
def get_metrics(run_id):
    run_id = parse_run_id(run_id)
    conn = get_db()
    if registry.get_status(conn, run_id) is None:
        raise RunNotFound(run_id)
    rows = registry.get_metrics(conn, run_id)
    return jsonify(data=[{"step": r["step"], "loss": r["loss"], "learning_rate": r["learning_rate"],
                          "grad_norm": r["grad_norm"], "attempt": r["attempt"], "eval_loss": r["eval_loss"],
                          **({"metrics": r["metrics"]} if r["metrics"] is not None else {}),
                          **({"samples": r["samples"]} if r["samples"] is not None else {})}
                         for r in rows])


@bp.post("/runs/batch")
def submit_batch():
    """Up to ``MAX_BATCH`` async runs in one call: all valid or none written.
    The runs and their messages are written in one transaction; dry runs are
    queued at once, trainings deferred and admitted in turn
    (``tasks/admission.py``)."""
    body = _json_body()
    runs_in = body.get("runs")
    if set(body) != {"runs"} or not isinstance(runs_in, list) or not 1 <= len(runs_in) <= MAX_BATCH:
        raise ApiError(422, "validation_error", f"the body must be {{\"runs\": [1 to {MAX_BATCH} run requests]}}",
                       [{"field": "runs", "message": f"expected a list of 1 to {MAX_BATCH} objects"}])
    datasets = catalog.datasets(current_app.config["SETTINGS"])
    runs, fields = [], []
    for i, item in enumerate(runs_in):
        if not isinstance(item, dict):
            fields.append({"field": f"runs.{i}", "message": "expected an object"})
            continue
        spec, problems = _field_problems(item, datasets, prefix=f"runs.{i}.")
        fields += problems
        if spec is not None:
            config, priority = spec
            status = lifecycle.RunStatus.PENDING if config["dry_run"] else lifecycle.RunStatus.DEFERRED
            runs.append(dict(run_id=uuid.uuid4(), status=status, mode="async", dry_run=config["dry_run"],
                             dataset_key=config["dataset_key"], model_id=config["model_id"], config=config,
                             priority=priority))
    if fields:
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields)
    with transaction() as conn:
        rows = registry.insert_runs(conn, runs)
        _queue(conn, [(r["run_id"], r["dry_run"]) for r in runs if r["status"] == lifecycle.RunStatus.PENDING])
    if any(r["status"] == lifecycle.RunStatus.DEFERRED for r in rows):
        admit_deferred()
    return jsonify(data=[run_json(r) for r in rows]), 202


def cancel_each(conn, runs):
    """Cancel ``runs`` (rows with ``id`` and ``status``), each as its own
    cancel would: a pending one at once, a running one asked to stop.
    Returns how many reached each status; one that moved on meanwhile (it
    ended, or was claimed: then it is asked to stop) is taken as it is."""
    S = lifecycle.RunStatus
    moved = {S.CANCELLED.value: 0, S.CANCEL_REQUESTED.value: 0}
    for run in runs:
        if run["status"] not in (S.DEFERRED, S.PENDING, S.RUNNING):
            continue
        waiting = run["status"] in (S.DEFERRED, S.PENDING)
        for move in (("cancel_pending", "request_cancel") if waiting else ("request_cancel",)):
            try:
                moved[registry.transition(conn, run["id"], move)["status"]] += 1
                break
            except InvalidTransition:
                continue
    return moved


def resume_each(conn, runs):
    """Queue ``runs`` again, in ``conn``'s transaction (each from its latest
    checkpoint, with a fresh attempts budget); the runs resumed."""
    resumed = [registry.transition(conn, run["id"], "resume", max_attempts=current_app.config["SETTINGS"].max_attempts)
               for run in runs if run["status"] in lifecycle.RESUMABLE]
    _queue(conn, [(r["id"], r["dry_run"]) for r in resumed])
    if resumed:
        db.after_commit(conn, lambda: RUNS_RETRIED.labels("resume").inc(len(resumed)))
    return resumed


def _run_filter():
    try:
        return RunFilter.model_validate(_json_body()).given()
    except ValidationError as exc:
        fields = field_errors(exc)
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields) from None


@bp.post("/runs/cancel")
def cancel_matching():
    """Cancel every pending or running run the filter matches."""
    conn = get_db()
    runs = registry.matching_runs(conn, "active", **_run_filter())
    return jsonify(matched=len(runs), moved=cancel_each(conn, runs)), 202


@bp.post("/runs/resume")
def resume_matching():
    """Queue again every failed, cancelled or timed-out run the filter matches."""
    filters = _run_filter()
    with transaction() as conn:
        resumed = resume_each(conn, registry.matching_runs(conn, "resumable", **filters))
    return jsonify(matched=len(resumed), moved={lifecycle.RunStatus.PENDING.value: len(resumed)}), 202


def series_json(conn, run_ids, points):
    """The ``SeriesList`` answer for ``run_ids``, in their order."""
    curves = registry.series(conn, run_ids, points)
    data = []
    for run_id in run_ids:
        steps, losses = curves.get(str(run_id), ([], []))
        data.append({"run_id": str(run_id), "steps": steps, "loss": losses})
    return {"points": points, "data": data}


@bp.post("/runs/series")
def runs_series():
    """Many runs' loss curves in one answer, each downsampled to ``points``:
    what a comparison of runs draws."""
    try:
        query = SeriesRequest.model_validate(_json_body())
    except ValidationError as exc:
        fields = field_errors(exc)
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields) from None
    ids = list(dict.fromkeys(str(uuid.UUID(i)) for i in query.run_ids))
    conn = get_db()
    known = registry.existing_runs(conn, ids)
    missing = [i for i in ids if i not in known]
    if missing:
        raise ApiError(404, "run_not_found", f"{len(missing)} run(s) not found", extra={"run_ids": missing})
    return jsonify(series_json(conn, ids, query.points))
