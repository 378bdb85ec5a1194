"""Runs: submit, read, list."""

import contextlib
import functools
import hashlib
import json
import re
import time
import uuid

from flask import Blueprint, current_app, jsonify, request, url_for

from tasks import catalog, db, lifecycle, registry, retrying
from tasks.errors import RunNotFound
from tasks.run_service import wrote_deferred
from tasks.run_spec import (MAX_TAGS, MODES, TAG_PATTERN, UUID_PATTERN, RunFilter, RunSpec, RunUpdate,
                            SeriesRequest, ValidationError, field_errors)

from . import audit, request_slots
from .auth import caller, require_may_act_on, require_priority, require_queue_room
from .csv_export import csv_answer
from .curves import MAX_STEP, check as check_series, series_json
from .db import close_db, get_db, transaction
from .errors import ApiError
from .parse import MAX_OFFSET, int_arg, json_body, page, pagination, parse_run_id
from .serialize import run_json, status_json
from .service import admit_deferred, run_service
from .waiter import get_waiter

bp = Blueprint("runs", __name__, url_prefix="/api/tunix")

#: Longest accepted Idempotency-Key header.
MAX_IDEMPOTENCY_KEY = 255
#: Most runs one batch submit may carry.
MAX_BATCH = 1000
#: How long a sync submit's last read waits for a busy pool or the database.
FINAL_READ_PATIENCE_S = 30

#: Filters the history accepts: each an exact match on a column but ``tag``
#: (repeatable: the run carries every one) and ``q`` (a case-insensitive
#: substring of the name); ``owner=me`` is the caller's own runs.
LIST_FILTERS = ("status", "mode", "dataset_key", "model_id", "owner", "tag", "sweep_id", "q")
#: Longest ``q`` (a run's name is at most 200 characters).
MAX_QUERY = 200
#: Most runs one ``GET /api/tunix/runs.csv`` holds.
MAX_CSV_ROWS = 10_000
#: The columns of ``runs.csv``, each a field of the run's JSON (``_run_row``).
RUN_CSV_COLUMNS = ("run_id", "name", "owner", "status", "mode", "dataset_key", "model_id", "tags", "priority",
                   "sweep_id", "created_at", "started_at", "completed_at", "duration_seconds", "final_loss")


def _field_problems(body, datasets, prefix=""):
    """``((resolved config, priority, (name, tags)), [])`` or ``(None, [{"field", "message"}])``."""
    try:
        config = RunSpec.model_validate(body)
    except ValidationError as exc:
        return None, [dict(e, field=prefix + e["field"]) for e in field_errors(exc)]
    priority, labels = config.priority, (config.name, config.tags)
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
        return (config.resolved(current_app.config["SETTINGS"]), priority, labels), []
    except ValueError as exc:
        return None, [{"field": prefix + "time_limit_s", "message": str(exc)}]


def _validated(body):
    """``(resolved config, priority, (name, tags))`` of a run request, or the 422."""
    spec, fields = _field_problems(body, catalog.datasets(current_app.config["SETTINGS"]))
    if fields:
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields)
    return spec


def _mode():
    mode = request.args.get("mode", "sync")
    if mode not in MODES:
        raise ApiError(422, "validation_error", "mode must be sync or async",
                       [{"field": "mode", "message": f"expected one of {', '.join(MODES)}"}])
    return mode


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
    return retrying.patiently(read, FINAL_READ_PATIENCE_S, db.UNAVAILABLE, what="a database call")


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
    run = registry.get_run_by_idempotency_key(get_db(), key, caller().name)
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
    body = json_body()
    config, priority, labels = _validated(body)
    require_priority({"priority": priority})
    require_queue_room(1)
    request_hash = _request_hash(mode, body) if key else None
    run_id = uuid.uuid4()
    # Watch before the commit, so a fast worker cannot finish unseen.  No
    # watch: async, or every thread the API may let wait is waiting (then
    # the sync submit is answered as it would be after SYNC_TIMEOUT_S).
    watch = get_waiter().watch(run_id) if mode == "sync" else None
    with watch or contextlib.nullcontext():
        run = _submit(run_id, mode, config, priority, key, request_hash, labels)
        if run is None:
            return _replay(key, request_hash)
        if wrote_deferred([run]):
            admit_deferred()
        if watch is not None:
            request_slots.leave()  # waiting is not work
            run = _wait_until_final(run_id, watch, current_app.config["SYNC_TIMEOUT_S"])
    if run["status"] in lifecycle.FINAL:
        return jsonify(run_json(run)), 200
    return jsonify(run_json(run)), 202, {"Location": url_for("runs.get_run", run_id=str(run_id))}


def _submit(run_id, mode, config, priority, key, request_hash, labels):
    """The new run, pending and written with its message in one statement
    (one round trip, one commit), or deferred (``tasks/admission.py``); None
    when ``key`` was used before (nothing is written then).  The request's connection is given back at once: under
    load a thread waits its turn for the GIL, and it must not hold a
    connection while it does (measured: 64 clients spent 46% of their time
    waiting for the pool when the connection was kept to the end of the
    request).  A run with a name or tags (``labels``) gets them in the
    same transaction: a statement more, for those runs alone."""
    name, tags = labels
    write = functools.partial(run_service().submit, config=config, priority=priority, mode=mode,
                              idempotency_key=key, request_hash=request_hash, run_id=run_id, owner=caller().name)
    try:
        if name is None and not tags:
            return write(get_db())
        with transaction() as conn:
            run = write(conn)
            if run is not None:
                run = registry.update_run_labels(conn, run_id, name=name, tags=tags)
            return run
    finally:
        close_db()


@bp.get("/runs/<run_id:run_id>")
def get_run(run_id):
    conn = get_db()
    row = registry.get_run(conn, parse_run_id(run_id))
    if row is None:
        raise RunNotFound(run_id)
    answer = run_json(row)
    if row["status"] == lifecycle.RunStatus.DEFERRED:
        answer["waiting_reason"] = registry.waiting_reason(conn, row["id"],
                                                           current_app.config["SETTINGS"].user_max_trainings)
    return jsonify(answer)


@bp.get("/runs/<run_id:run_id>/status")
def get_status(run_id):
    row = registry.get_status(get_db(), parse_run_id(run_id))
    if row is None:
        raise RunNotFound(run_id)
    return jsonify(status_json(row))


def _history_filters():
    """The history's filters from the query string (``LIST_FILTERS``), as
    ``registry.list_runs`` takes them, or the 422 naming each bad one.  An
    empty filter (``?status=``, as the console sends it) is no filter."""
    args = {name: request.args.get(name) or None for name in LIST_FILTERS if name != "tag"}
    tags = [t for t in request.args.getlist("tag") if t]
    problems = []
    # PostgreSQL text cannot hold NUL: such a filter matches nothing, and
    # sent to the database it raised (500).
    problems += [{"field": name, "message": "NUL character"}
                 for name, value in args.items() if value is not None and "\x00" in value]
    if problems:
        raise ApiError(422, "validation_error", "filters may not contain NUL characters", problems)
    if args["status"] is not None and args["status"] not in lifecycle.ALL:
        problems.append({"field": "status", "message": f"expected one of {', '.join(lifecycle.ALL)}"})
    if args["mode"] is not None and args["mode"] not in MODES:
        problems.append({"field": "mode", "message": f"expected one of {', '.join(MODES)}"})
    if args["sweep_id"] is not None and not re.match(UUID_PATTERN, args["sweep_id"]):
        problems.append({"field": "sweep_id", "message": "expected a sweep id (a UUID)"})
    if args["q"] is not None and len(args["q"]) > MAX_QUERY:
        problems.append({"field": "q", "message": f"at most {MAX_QUERY} characters"})
    if len(tags) > MAX_TAGS:
        problems.append({"field": "tag", "message": f"at most {MAX_TAGS} tags (a run carries no more)"})
    problems += [{"field": "tag", "message": f"{tag!r} is no tag: 1 to 64 of A-Z a-z 0-9 _ . : = -"}
                 for tag in tags if not re.match(TAG_PATTERN, tag)]
    if args["owner"] == "me":
        args["owner"] = caller().name
        if args["owner"] is None:
            problems.append({"field": "owner", "message": "'me' needs a user: this request was made with none"})
    if problems:
        raise ApiError(422, "validation_error", f"{len(problems)} invalid filter(s)", problems)
    return dict(args, tags=tags or None)


@bp.get("/runs")
def list_runs():
    """One page of the history, newest first, and ``counts``: the runs the
    same filters match, by status (every page's, not this page's)."""
    limit, offset = page()
    rows, total, counts = registry.list_runs(get_db(), limit=limit, offset=offset, **_history_filters())
    return jsonify(data=[run_json(r) for r in rows], pagination=pagination(limit, offset, len(rows), total),
                   counts=counts)


def _run_row(run):
    """A run's ``runs.csv`` row (``RUN_CSV_COLUMNS``) from its JSON."""
    fields = dict(run, tags=" ".join(run.get("tags") or []), created_at=run.get("queued_at"),
                  final_loss=(run.get("result") or {}).get("final_loss"))
    return [fields.get(column) for column in RUN_CSV_COLUMNS]


@bp.get("/runs.csv")
def runs_csv():
    """The history as CSV, by the same filters: up to ``MAX_CSV_ROWS`` runs,
    newest first, each row the JSON answer's run (``_run_row``)."""
    limit, offset = int_arg("limit", MAX_CSV_ROWS, 1, MAX_CSV_ROWS), int_arg("offset", 0, 0, MAX_OFFSET)
    rows, _, _ = registry.list_runs(get_db(), limit=limit, offset=offset, **_history_filters())
    return csv_answer("runs.csv", RUN_CSV_COLUMNS, [_run_row(run_json(r)) for r in rows])


@bp.patch("/runs/<run_id:run_id>")
def update_run(run_id):
    """Change a run's name, tags or notes (the fields sent; a null name
    clears it): its owner's or an admin's edit (403 otherwise)."""
    run_id = parse_run_id(run_id)
    try:
        update = RunUpdate.model_validate(json_body())
    except ValidationError as exc:
        fields = field_errors(exc)
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields) from None
    conn = get_db()
    _require_own(conn, run_id)
    row = registry.update_run_labels(conn, run_id, **update.given())
    if row is None:
        raise RunNotFound(run_id)
    return jsonify(run_json(row))


def _require_own(conn, run_id):
    """403 unless the caller may move the run (``Caller.may_act_on``); an
    admin's move reads nothing more (every run is theirs to move)."""
    if caller().moves_only is None:
        return
    row = registry.run_owner(conn, run_id)
    if row is None:
        raise RunNotFound(run_id)
    require_may_act_on(f"run {run_id}", row["owner"])


@bp.post("/runs/<run_id:run_id>/cancel")
def cancel(run_id):
    """A pending run is cancelled at once (200); a running one is asked to
    stop (202: the worker saves a checkpoint and ends it ``cancelled``).
    A member cancels only their own runs (403 otherwise)."""
    run_id, conn = parse_run_id(run_id), get_db()
    _require_own(conn, run_id)
    run = run_service().cancel(conn, run_id)
    return jsonify(run_json(run)), 200 if run["status"] in lifecycle.FINAL else 202


@bp.post("/runs/<run_id:run_id>/resume")
def resume(run_id):
    """Queue a failed, cancelled or timed-out run again; the training goes
    on from its latest checkpoint.  A member resumes only their own runs."""
    run_id = parse_run_id(run_id)
    with transaction() as conn:
        _require_own(conn, run_id)
        run = run_service().resume(conn, run_id)
    return jsonify(run_json(run)), 202, {"Location": url_for("runs.get_run", run_id=str(run_id))}


@bp.get("/runs/<run_id:run_id>/metrics")
def get_metrics(run_id):
    """Every recorded step of a run, or those from ``from_step`` to ``to_step``
    (both included), whole: the curves' downsampled reads are ``series``."""
    run_id = parse_run_id(run_id)
    from_step, to_step = int_arg("from_step", 0, 0, MAX_STEP), int_arg("to_step", MAX_STEP, 0, MAX_STEP)
    check_series("loss", from_step, to_step)
    conn = get_db()
    if registry.get_status(conn, run_id) is None:
        raise RunNotFound(run_id)
    rows = registry.get_metrics(conn, run_id, from_step, to_step)
    return jsonify(data=[{"step": r["step"], "loss": r["loss"], "learning_rate": r["learning_rate"],
                          "grad_norm": r["grad_norm"], "attempt": r["attempt"], "eval_loss": r["eval_loss"],
                          **({"metrics": r["metrics"]} if r["metrics"] is not None else {}),
                          **({"samples": r["samples"]} if r["samples"] is not None else {})}
                         for r in rows])


#: The fixed columns of ``metrics.csv``; the method's own metrics follow, by name.
METRICS_CSV_COLUMNS = ("step", "attempt", "loss", "learning_rate", "grad_norm", "eval_loss")


@bp.get("/runs/<run_id:run_id>/metrics.csv")
def metrics_csv(run_id):
    """A run's recorded steps as CSV: the fixed figures, then every metric
    the run recorded (DPO's, GRPO's: ``metrics``), a column each, by name.
    Each row is ``GET .../metrics``'s point (its ``samples`` left out)."""
    points = get_metrics(run_id).get_json()["data"]
    names = sorted({name for p in points for name in p.get("metrics") or {}})
    rows = [[p.get(c) for c in METRICS_CSV_COLUMNS] + [(p.get("metrics") or {}).get(n) for n in names]
            for p in points]
    return csv_answer(f"run-{parse_run_id(run_id)}-metrics.csv", [*METRICS_CSV_COLUMNS, *names], rows)


@bp.post("/runs/batch")
def submit_batch():
    """Up to ``MAX_BATCH`` async runs in one call: all valid or none written.
    The runs and their messages are written in one transaction; dry runs are
    queued at once, trainings deferred and admitted in turn
    (``tasks/admission.py``)."""
    body = json_body()
    runs_in = body.get("runs")
    if set(body) != {"runs"} or not isinstance(runs_in, list) or not 1 <= len(runs_in) <= MAX_BATCH:
        raise ApiError(422, "validation_error", f"the body must be {{\"runs\": [1 to {MAX_BATCH} run requests]}}",
                       [{"field": "runs", "message": f"expected a list of 1 to {MAX_BATCH} objects"}])
    datasets = catalog.datasets(current_app.config["SETTINGS"])
    specs, labels, fields = [], [], []
    for i, item in enumerate(runs_in):
        if not isinstance(item, dict):
            fields.append({"field": f"runs.{i}", "message": "expected an object"})
            continue
        spec, problems = _field_problems(item, datasets, prefix=f"runs.{i}.")
        fields += problems
        if spec is not None:
            specs.append(spec[:2])
            labels.append(spec[2])
    if fields:
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields)
    require_priority({f"runs.{i}.priority": priority for i, (_, priority) in enumerate(specs)})
    require_queue_room(len(specs))
    with transaction() as conn:
        rows = run_service().submit_many(conn, specs, owner=caller().name)
        labelled = {r["id"]: r for r in registry.label_runs(
            conn, [(r["id"], name, tags) for r, (name, tags) in zip(rows, labels) if name is not None or tags])}
        rows = [labelled.get(r["id"], r) for r in rows]
    if wrote_deferred(rows):
        admit_deferred()
    return jsonify(data=[run_json(r) for r in rows]), 202


def _run_filter():
    try:
        return RunFilter.model_validate(json_body()).given()
    except ValidationError as exc:
        fields = field_errors(exc)
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields) from None


@bp.post("/runs/cancel")
def cancel_matching():
    """Cancel every pending or running run the filter matches: a member's
    own alone (``skipped``: how many matched that are not theirs, left as
    they are; 0 for an admin)."""
    filters, owner, conn = _run_filter(), caller().moves_only, get_db()
    matched, moved = run_service().cancel_matching(conn, owner=owner, **filters)
    skipped = run_service().skipped(conn, "cancel", owner, **filters)
    audit.names_runs(matched)
    return jsonify(matched=len(matched), moved=moved, skipped=skipped), 202


@bp.post("/runs/resume")
def resume_matching():
    """Queue again every failed, cancelled or timed-out run the filter
    matches: a member's own alone (``skipped`` as for the cancel)."""
    filters, owner = _run_filter(), caller().moves_only
    with transaction() as conn:
        resumed = run_service().resume_matching(conn, owner=owner, **filters)
        skipped = run_service().skipped(conn, "resume", owner, **filters)
    audit.names_runs([r["id"] for r in resumed])
    return jsonify(matched=len(resumed), moved={lifecycle.RunStatus.PENDING.value: len(resumed)},
                   skipped=skipped), 202


@bp.post("/runs/series")
def runs_series():
    """Many runs' curves of one metric in one answer, each downsampled to
    ``points`` (each bucket's extremes kept), within a step range if given:
    what a comparison of runs and a run's page draw."""
    try:
        query = SeriesRequest.model_validate(json_body())
    except ValidationError as exc:
        fields = field_errors(exc)
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields) from None
    ids = list(dict.fromkeys(str(uuid.UUID(i)) for i in query.run_ids))
    conn = get_db()
    known = registry.existing_runs(conn, ids)
    missing = [i for i in ids if i not in known]
    if missing:
        raise ApiError(404, "run_not_found", f"{len(missing)} run(s) not found", extra={"run_ids": missing})
    return jsonify(series_json(conn, ids, query.points, query.metric, query.from_step, query.to_step))
