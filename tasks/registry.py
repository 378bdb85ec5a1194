"""The run registry: one small function per named query.

Views and middleware call these and hold no SQL.  Every status change is a
named move of ``tasks.lifecycle`` made by ``transition``, and this module is
the one place ``tunix_runs_total`` is counted (``_count``: after the commit).
"""

import collections

import psycopg2.extras
from psycopg2.extras import Json, execute_values

from . import db, lifecycle
from .errors import AttemptsExhausted, InvalidTransition, RunNotFound
from .metrics import RUNS_TOTAL, timed_write
from .settings import get_settings
from .sql import QUERIES


def _cursor(conn):
    return conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)


def _json(value):
    return None if value is None else Json(value)


def insert_run(conn, *, run_id, mode, dry_run, dataset_key, model_id, config, idempotency_key=None,
               request_hash=None):
    """The new pending run, or None when ``idempotency_key`` is taken."""
    with timed_write("insert"), _cursor(conn) as cur:
        cur.execute(
            QUERIES["insert_run"],
            dict(
                run_id=run_id,
                mode=mode,
                dry_run=dry_run,
                dataset_key=dataset_key,
                model_id=model_id,
                config=Json(config),
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            ),
        )
        run = cur.fetchone()
    if run is not None:
        _count(conn, lifecycle.RunStatus.PENDING, mode)
    return run


def submit_run(conn, *, run_id, mode, dry_run, dataset_key, model_id, config, message, priority=0,
               idempotency_key=None, request_hash=None):
    """Insert the new run, pending with its dramatiq ``message``
    ``(queue_name, message_id, message_json)`` or deferred (see the query),
    in one statement; the run, or None when ``idempotency_key`` is taken
    (nothing is written then)."""
    queue_name, message_id, message_json = message
    assert str(message_id) == str(run_id), "a run's message id is its run id"
    S = lifecycle.RunStatus
    with timed_write("submit"), _cursor(conn) as cur:
        cur.execute(QUERIES["submit_run"], dict(
            run_id=run_id, mode=mode, dry_run=dry_run, dataset_key=dataset_key, model_id=model_id,
            config=Json(config), priority=priority, idempotency_key=idempotency_key, request_hash=request_hash,
            queue_name=queue_name, message=Json(message_json), ahead=get_settings().admit_ahead,
            pending=S.PENDING.value, deferred=S.DEFERRED.value))
        run = cur.fetchone()
    if run is not None:
        _count(conn, run["status"], mode)
    return run


def get_run_by_idempotency_key(conn, key):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_run_by_idempotency_key"], dict(idempotency_key=key))
        return cur.fetchone()


def insert_runs(conn, runs):
    """Insert ``runs`` (dicts of ``submit_run``'s fields, with ``status``)
    in ``conn``'s transaction."""
    with timed_write("insert_batch"), _cursor(conn) as cur:
        rows = execute_values(
            cur, QUERIES["insert_runs"],
            [(r["run_id"], r["status"].value, r["mode"], r["dry_run"], r["dataset_key"], r["model_id"],
              Json(r["config"]), r.get("priority", 0)) for r in runs],
            fetch=True, page_size=len(runs) or 1)
    for (status, mode), n in collections.Counter((r["status"], r["mode"]) for r in rows).items():
        _count(conn, status, mode, n)
    return rows


def enqueue_messages(conn, messages):
    """Write dramatiq ``messages`` ``(queue_name, message_id, message_json)``
    in ``conn``'s transaction: they are delivered once it commits (the
    transactional outbox; the commit's NOTIFY wakes a consumer)."""
    with timed_write("enqueue"), conn.cursor() as cur:
        execute_values(cur, QUERIES["enqueue_messages"], [(q, mid, Json(m)) for q, mid, m in messages],
                       template="(%s, %s, 'queued', %s)", page_size=len(messages) or 1)


def transition(conn, run_id, move, *, attempt=None, worker_id=None, result=None, error=None, exit_code=None,
               max_attempts=None, stop_reason=None):
    """Make ``move`` (a name of ``tasks.lifecycle.MOVES``) on a run, if its
    status is one the move starts from and, when ``attempt`` is given, only
    if that is still the run's attempt.  ``max_attempts`` defaults to
    ``MAX_ATTEMPTS`` (see "Attempts" in ``tasks/lifecycle.py``).  Once the
    transaction commits, ``tunix_runs_total`` counts the run's arrival in
    the move's status.

    Returns the updated run.

    Raises:
      RunNotFound: no run has this id.
      AttemptsExhausted: a claim of a pending run that has had its attempts.
      InvalidTransition: the run is in a status the move does not start from.
    """
    move = lifecycle.move(move)
    if max_attempts is None:
        max_attempts = get_settings().max_attempts
    params = dict(
        run_id=run_id,
        target=move.target.value,
        from_statuses=[s.value for s in move.sources],
        claim=move.claims,
        final=move.ends,
        requeue=move.requeues,
        worker_id=worker_id,
        result=_json(result),
        error=_json(error),
        exit_code=exit_code,
        attempt=attempt,
        budget=move.budget,
        max_attempts=max_attempts,
        stop_reason=stop_reason,
    )
    with timed_write(move.name), _cursor(conn) as cur:
        cur.execute(QUERIES["transition"], params)
        row = cur.fetchone()
    if row is not None:
        _count(conn, move.target, row["mode"])
        return row
    current = get_status(conn, run_id)
    if current is None:
        raise RunNotFound(run_id)
    if move.claims and current["status"] == lifecycle.RunStatus.PENDING:
        raise AttemptsExhausted(run_id, current["attempts"], current["max_attempts"] or max_attempts)
    raise InvalidTransition(run_id, current["status"], move.target.value)


def _count(conn, status, mode, n=1):
    """The one place ``tunix_runs_total`` is counted: runs arriving in
    ``status``, once the transaction that moved them commits."""
    if n:
        db.after_commit(conn, lambda: RUNS_TOTAL.labels(str(status), mode).inc(n))


def claim(conn, run_id, worker_id, max_attempts=None):
    """pending -> running, stamping the worker; see ``transition``."""
    return transition(conn, run_id, "claim", worker_id=worker_id, max_attempts=max_attempts)


def get_run(conn, run_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_run"], dict(run_id=run_id))
        return cur.fetchone()


def get_status(conn, run_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_status"], dict(run_id=run_id))
        return cur.fetchone()


def list_runs(conn, *, limit, offset, status=None, mode=None, dataset_key=None, model_id=None):
    """``(rows, total)`` for one page of history, newest first."""
    filters = dict(status=status, mode=mode, dataset_key=dataset_key, model_id=model_id)
    with _cursor(conn) as cur:
        cur.execute(QUERIES["list_runs"], dict(filters, limit=limit, offset=offset))
        rows = cur.fetchall()
        cur.execute(QUERIES["count_runs"], filters)
        total = cur.fetchone()["count"]
    return rows, total


def heartbeat(conn, run_id, attempt, progress=None):
    """Stamp the run's attempt as alive (with its latest progress); return its
    status, or None when that attempt is no longer the run's."""
    with timed_write("heartbeat"), conn.cursor() as cur:
        cur.execute(QUERIES["heartbeat"], dict(run_id=run_id, attempt=attempt, progress=_json(progress)))
        row = cur.fetchone()
    return row[0] if row else None


def record_activity(conn, run_id, *, metrics=(), logs=(), evals=()):
    """Store a batch of step metrics ``(step, loss, lr, grad_norm, attempt,
    method metrics (a dict or None), samples (a list or None))``,
    eval losses ``(step, eval_loss, examples, attempt)`` and log lines
    ``(seq, stream, line)``.  No NOTIFY: the API's waiter sees
    the new lines on its next tick (``watch_runs``)."""
    with conn.cursor() as cur:
        if metrics:
            with timed_write("progress"):
                execute_values(cur, QUERIES["upsert_metrics"],
                               [(run_id, *m[:5], *(_json(x) for x in m[5:7]), *[None] * (7 - len(m)))
                                for m in metrics])
        if evals:
            with timed_write("progress"):
                execute_values(cur, QUERIES["upsert_evals"], [(run_id, *e) for e in evals])
        if logs:
            with timed_write("log_batch"):
                execute_values(cur, QUERIES["append_logs"], [(run_id, *line) for line in logs])


def settle_message(conn, message, outcome="done"):
    """Mark a processed dramatiq message ``done`` (acked) or ``rejected``
    (nacked), in ``conn``'s transaction; no NOTIFY (``tasks/broker.py``)."""
    from dramatiq_pg.utils import tidy4json

    query = {"done": "ack_message", "rejected": "nack_message"}[outcome]
    with conn.cursor() as cur:
        cur.execute(QUERIES[query], dict(message=Json(tidy4json(message)), message_id=message.message_id,
                                         queue_name=message.queue_name))


def watch_runs(conn, ids):
    """``{run id (str): (status, updated_at, progress, last log seq)}`` for
    the runs of ``ids`` that exist."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["watch_runs"], dict(ids=list(ids)))
        return {row[0]: row[1:] for row in cur.fetchall()}


def last_log_seq(conn, run_id):
    with conn.cursor() as cur:
        cur.execute(QUERIES["last_log_seq"], dict(run_id=run_id))
        return cur.fetchone()[0]


def get_metrics(conn, run_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_metrics"], dict(run_id=run_id))
        return cur.fetchall()


def get_logs(conn, run_id, after=0, limit=1000):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_logs"], dict(run_id=run_id, after=after, limit=limit))
        return cur.fetchall()


def lost_runs(conn, timeout_s, limit=100):
    """Runs whose worker went silent, row-locked until ``conn`` commits."""
    with _cursor(conn) as cur:
        cur.execute(QUERIES["lost_runs"], dict(timeout_s=timeout_s, limit=limit))
        return cur.fetchall()


def unqueued_pending_runs(conn, min_age_s, limit=500):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["unqueued_pending_runs"], dict(min_age_s=min_age_s, limit=limit))
        return cur.fetchall()


def nudge_passed_over(conn, min_age_s):
    """Ids of the messages announced again (see the query)."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["nudge_passed_over"], dict(min_age_s=min_age_s))
        return [row[0] for row in cur.fetchall()]


def held_advisory_locks(conn, keys):
    with conn.cursor() as cur:
        cur.execute(QUERIES["held_advisory_locks"], dict(keys=list(keys)))
        return {row[0] for row in cur.fetchall()}


def silent_worker_sessions(conn, timeout_s):
    """``[(pid, worker_id)]``: sessions of workers silent for over ``timeout_s``."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["silent_worker_sessions"], dict(timeout_s=timeout_s))
        return cur.fetchall()


def terminate_session(conn, pid):
    with conn.cursor() as cur:
        cur.execute(QUERIES["terminate_session"], dict(pid=pid))
        return cur.fetchone()[0]


def worker_heartbeat(conn, worker_id, hostname, pid):
    with timed_write("worker_heartbeat"), conn.cursor() as cur:
        cur.execute(QUERIES["worker_heartbeat"], dict(worker_id=worker_id, hostname=hostname, pid=pid))


def worker_gone(conn, worker_id):
    with conn.cursor() as cur:
        cur.execute(QUERIES["worker_gone"], dict(worker_id=worker_id))


def forget_dead_workers(conn, age_s):
    with conn.cursor() as cur:
        cur.execute(QUERIES["forget_dead_workers"], dict(age_s=age_s))
        return cur.rowcount


def fleet_gauges(conn, heartbeat_timeout_s):
    """``{"in_state": {status: n}, "oldest_pending_age_s", "workers_alive"}``."""
    with _cursor(conn) as cur:
        cur.execute(QUERIES["fleet_gauges"], dict(timeout_s=heartbeat_timeout_s))
        row = cur.fetchone()
        cur.execute(QUERIES["final_status_counts"])
        in_state = dict(row["active"])
        in_state.update({r["status"]: r["n"] for r in cur.fetchall()})
    return {"in_state": in_state, "oldest_pending_age_s": row["oldest_pending_age_s"],
            "workers_alive": row["workers_alive"]}


def fleet(conn, lost_window_s):
    """What the fleet view shows, in three queries:
    ``{"workers": [one row per (worker, held run) pair], "queues": [one row
    per queue with messages], "deferred": {dry_run: runs waiting for
    admission}}`` (``fleet_workers``, ``fleet_queues``, ``fleet_deferred``)."""
    with _cursor(conn) as cur:
        cur.execute(QUERIES["fleet_workers"], dict(lost_window_s=lost_window_s))
        workers = cur.fetchall()
        cur.execute(QUERIES["fleet_queues"])
        queues = cur.fetchall()
        cur.execute(QUERIES["fleet_deferred"])
        deferred = {row["dry_run"]: row["n"] for row in cur.fetchall()}
    return {"workers": workers, "queues": queues, "deferred": deferred}


def record_checkpoint(conn, *, run_id, step, attempt, uri, object_key, size_bytes, sha256, loss=None):
    """The recorded step, or None when this attempt may not record it (see the query)."""
    with timed_write("checkpoint"), _cursor(conn) as cur:
        cur.execute(QUERIES["record_checkpoint"], dict(run_id=run_id, step=step, attempt=attempt, uri=uri,
                                                        object_key=object_key, size_bytes=size_bytes,
                                                        sha256=sha256, loss=loss))
        return cur.fetchone()


def list_checkpoints(conn, run_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["list_checkpoints"], dict(run_id=run_id))
        return cur.fetchall()


def get_checkpoint(conn, run_id, step):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_checkpoint"], dict(run_id=run_id, step=step))
        return cur.fetchone()


def latest_checkpoint(conn, run_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["latest_checkpoint"], dict(run_id=run_id))
        return cur.fetchone()


def mark_checkpoints_for_deletion(conn, run_id, keep):
    """``[(run_id, step, object_key)]`` now marked (see the query)."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["mark_checkpoints_for_deletion"], dict(run_id=run_id, keep=keep))
        return cur.fetchall()


def checkpoints_being_deleted(conn, run_id=None, limit=500):
    with conn.cursor() as cur:
        cur.execute(QUERIES["checkpoints_being_deleted"], dict(run_id=run_id, limit=limit))
        return cur.fetchall()


def all_checkpoint_keys(conn, run_id):
    with conn.cursor() as cur:
        cur.execute(QUERIES["all_checkpoint_keys"], dict(run_id=run_id))
        return {row[0] for row in cur.fetchall()}


def delete_checkpoint_row(conn, run_id, step):
    with conn.cursor() as cur:
        cur.execute(QUERIES["delete_checkpoint_row"], dict(run_id=run_id, step=step))


def insert_sweep(conn, *, sweep_id, name, spec, metric, duplicates, trials, max_concurrent=None, priority=0,
                 early_stopping=None):
    """A sweep and its ``trials`` (dicts as for ``insert_runs``, with
    ``params``), all deferred, in ``conn``'s transaction; ``(sweep row, run
    rows)``.  Admission queues them (``tasks.admission``)."""
    deferred = lifecycle.RunStatus.DEFERRED.value
    with timed_write("insert_sweep"), _cursor(conn) as cur:
        cur.execute(QUERIES["insert_sweep"], dict(sweep_id=sweep_id, name=name, spec=Json(spec), metric=metric,
                                                  duplicates=duplicates, max_concurrent=max_concurrent,
                                                  priority=priority, early_stopping=_json(early_stopping)))
        sweep = cur.fetchone()
        rows = execute_values(
            cur, QUERIES["insert_trials"],
            [(t["run_id"], deferred, t["mode"], t["dry_run"], t["dataset_key"], t["model_id"], Json(t["config"]),
              priority, sweep_id, Json(t["params"])) for t in trials],
            fetch=True, page_size=len(trials) or 1)
    for mode, n in collections.Counter(r["mode"] for r in rows).items():
        _count(conn, deferred, mode, n)
    return sweep, rows


def runs_to_admit(conn, room=None, limit=1000):
    """The deferred runs admission takes, in its order: every dry run its
    sweep has a place for, and the first ``room`` trainings (all when None)."""
    with _cursor(conn) as cur:
        cur.execute(QUERIES["runs_to_admit"], dict(limit=limit, room=room))
        return cur.fetchall()


def queued_trainings(conn, ahead):
    """Admitted trainings no worker took yet, counted up to ``ahead``."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["queued_trainings"], dict(ahead=ahead))
        return cur.fetchone()[0]


def list_sweeps(conn, *, limit, offset):
    """``(rows, total)`` for one page of sweeps, newest first."""
    with _cursor(conn) as cur:
        cur.execute(QUERIES["list_sweeps"], dict(limit=limit, offset=offset))
        rows = cur.fetchall()
        cur.execute(QUERIES["count_sweeps"])
        total = cur.fetchone()["count"]
    return rows, total


def get_sweep(conn, sweep_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_sweep"], dict(sweep_id=sweep_id))
        return cur.fetchone()


def sweep_trials(conn, sweep_id, metric=None):
    """A sweep's trials; ``metric_value`` is a method metric's mean over each
    trial's last ``RANK_LAST_STEPS`` steps (None for the losses)."""
    from .sweep_spec import RANK_LAST_STEPS

    with _cursor(conn) as cur:
        cur.execute(QUERIES["sweep_trials"], dict(sweep_id=sweep_id, metric=metric or "", last=RANK_LAST_STEPS))
        return cur.fetchall()


def sweep_rule(conn, sweep_id):
    """A sweep's early-stopping rule (a dict), or None."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["sweep_rule"], dict(sweep_id=sweep_id))
        row = cur.fetchone()
    return row[0] if row else None


def _stopping(rule):
    """The rule's per-step value as SQL parameters: its ``metric`` (``loss``
    or a method metric's key) and ``sign`` (-1 for higher-is-better, so the
    queries' "lower is better" holds for every metric)."""
    return dict(metric=rule.get("metric") or "loss", sign=-1 if rule.get("mode") == "max" else 1)


def median_inputs(conn, run_id, sweep_id, step, rule=None):
    """``(best value up to step, [other trials' mean value up to it])``; the
    value is the loss, or the rule's metric signed so that lower is better."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["median_inputs"], dict(run_id=run_id, sweep_id=sweep_id, step=step,
                                                   **_stopping(rule or {})))
        best, peers = cur.fetchone()
    return best, list(peers)


def rung_inputs(conn, run_id, sweep_id, step, rule=None):
    """``(the trial's value at the rung, [the other trials' there])`` (signed as in ``median_inputs``)."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["rung_inputs"], dict(run_id=run_id, sweep_id=sweep_id, step=step,
                                                 **_stopping(rule or {})))
        rows = cur.fetchall()
    own = [loss for is_own, loss in rows if is_own]
    return (own[0] if own else None), [loss for is_own, loss in rows if not is_own]


def promote(conn, run_id, attempt, rung):
    with conn.cursor() as cur:
        cur.execute(QUERIES["promote"], dict(run_id=run_id, attempt=attempt, rung=rung))


def series(conn, run_ids, points):
    """``{run id (str): (steps, losses)}``, each at most ``points`` long
    (see the query); runs with no recorded loss are absent."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["series"], dict(ids=[str(i) for i in run_ids], points=points))
        return {run_id: (steps, losses) for run_id, steps, losses in cur.fetchall()}


def existing_runs(conn, run_ids):
    """The ids (str) of ``run_ids`` that are runs."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["existing_runs"], dict(ids=[str(i) for i in run_ids]))
        return {row[0] for row in cur.fetchall()}


def sweep_trial_ids(conn, sweep_id):
    with conn.cursor() as cur:
        cur.execute(QUERIES["sweep_trial_ids"], dict(sweep_id=sweep_id))
        return [row[0] for row in cur.fetchall()]


def sweep_runs(conn, sweep_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["sweep_runs"], dict(sweep_id=sweep_id))
        return cur.fetchall()


def matching_runs(conn, status_set, *, status=None, sweep_id=None, dataset_key=None, model_id=None):
    """The runs a bulk move acts on: ``status_set`` ``"active"`` (to cancel)
    or ``"resumable"``, narrowed by the filters; oldest first."""
    assert status_set in ("active", "resumable"), status_set
    with _cursor(conn) as cur:
        cur.execute(QUERIES["matching_runs"], dict(status_set=status_set, status=status, sweep_id=sweep_id,
                                                   dataset_key=dataset_key, model_id=model_id))
        return cur.fetchall()


# ---------------------------------------------------------------- samples
# (tunix_samples: app/samples.py, workers/sampling/)


def submit_sample(conn, *, sample_id, run_id, model_id, step, params, message):
    """Insert a pending sample request with its dramatiq ``message``
    ``(queue_name, message_id, message_json)``, in one statement; the row."""
    queue_name, message_id, message_json = message
    assert str(message_id) == str(sample_id), "a sample's message id is its sample id"
    with timed_write("submit_sample"), _cursor(conn) as cur:
        cur.execute(QUERIES["submit_sample"], dict(sample_id=sample_id, run_id=run_id, model_id=model_id, step=step,
                                                   params=Json(params), queue_name=queue_name,
                                                   message=Json(message_json)))
        return cur.fetchone()


def get_sample(conn, sample_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_sample"], dict(sample_id=sample_id))
        return cur.fetchone()


def list_run_samples(conn, run_id, limit=100):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["list_run_samples"], dict(run_id=run_id, limit=limit))
        return cur.fetchall()


def claim_sample(conn, sample_id, worker_id):
    """pending -> running; the row, or None when it is not pending."""
    with timed_write("claim_sample"), _cursor(conn) as cur:
        cur.execute(QUERIES["claim_sample"], dict(sample_id=sample_id, worker_id=worker_id, pending="pending",
                                                  running="running"))
        return cur.fetchone()


def finish_sample(conn, sample_id, worker_id, *, outputs=None, error=None, timings=None):
    """running -> completed (``outputs``) or failed (``error``); the row, or
    None when this worker does not hold it running."""
    status = "failed" if error is not None else "completed"
    with timed_write("finish_sample"), _cursor(conn) as cur:
        cur.execute(QUERIES["finish_sample"], dict(sample_id=sample_id, worker_id=worker_id, status=status,
                                                   running="running",
                                                   outputs=_json(outputs), error=_json(error),
                                                   timings=_json(timings)))
        return cur.fetchone()


def fail_lost_samples(conn, timeout_s):
    """End failed (``WorkerLost``) the running samples whose worker has been
    silent for ``timeout_s``; their ids.  The reaper's duty."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["fail_lost_samples"], dict(timeout_s=timeout_s, failed="failed", running="running"))
        return [row[0] for row in cur.fetchall()]


# ---------------------------------------------------------------- exports
# (tunix_exports: app/exports.py, workers/exporting/)


def submit_export(conn, *, export_id, run_id, model_id, step, message):
    """Insert a pending export request with its dramatiq ``message``
    ``(queue_name, message_id, message_json)``, in one statement; the row."""
    queue_name, message_id, message_json = message
    assert str(message_id) == str(export_id), "an export's message id is its export id"
    with timed_write("submit_export"), _cursor(conn) as cur:
        cur.execute(QUERIES["submit_export"], dict(export_id=export_id, run_id=run_id, model_id=model_id, step=step,
                                                   queue_name=queue_name, message=Json(message_json)))
        return cur.fetchone()


def get_export(conn, export_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_export"], dict(export_id=export_id))
        return cur.fetchone()


def list_run_exports(conn, run_id, limit=100):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["list_run_exports"], dict(run_id=run_id, limit=limit))
        return cur.fetchall()


def claim_export(conn, export_id, worker_id):
    """pending -> running; the row, or None when it is not pending."""
    with timed_write("claim_export"), _cursor(conn) as cur:
        cur.execute(QUERIES["claim_export"], dict(export_id=export_id, worker_id=worker_id, pending="pending",
                                                  running="running"))
        return cur.fetchone()


def finish_export(conn, export_id, worker_id, *, stored=None, manifest=None, error=None, timings=None):
    """running -> completed (``stored``: ``{object_key, uri, size_bytes,
    sha256}``) or failed (``error``); the row, or None when this worker does
    not hold it running."""
    status = "failed" if error is not None else "completed"
    stored = stored or {}
    with timed_write("finish_export"), _cursor(conn) as cur:
        cur.execute(QUERIES["finish_export"], dict(
            export_id=export_id, worker_id=worker_id, status=status, running="running",
            object_key=stored.get("object_key"), uri=stored.get("uri"), size_bytes=stored.get("size_bytes"),
            sha256=stored.get("sha256"), manifest=_json(manifest), error=_json(error), timings=_json(timings)))
        return cur.fetchone()


def fail_lost_exports(conn, timeout_s):
    """End failed (``WorkerLost``) the running exports whose worker has been
    silent for ``timeout_s``; their ids.  The reaper's duty."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["fail_lost_exports"], dict(timeout_s=timeout_s, failed="failed", running="running"))
        return [row[0] for row in cur.fetchall()]
