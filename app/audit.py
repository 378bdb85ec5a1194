"""The audit trail and the access log: what each request did, and who.

Every mutating request under ``/api/`` (submit, cancel, resume, the bulk
moves, sweeps, exports, users and tokens; refusals too) writes one
``tunix_audit`` row once its answer is made, through a writer thread of
its own (``app/audit_writer.py``): who (user, role, token), what
(the endpoint, method and path), which runs (the path's run and those the
answer names), when, from where, and the answer's status.  The table is
append-only (migration 0021); ``GET /api/tunix/audit`` reads it.

With ``ACCESS_LOG`` on (the default), every request also logs one JSON line
to the ``tunix.access`` logger for a log shipper: time, method, path (never
the query string, never a header, so never a token), status, duration, user
and address.
"""

import json
import logging
import time
import uuid

from flask import current_app, g, request

from .audit_writer import AuditWriter
from .auth import MUTATING, READING_POSTS, caller

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("tunix.access")

#: Run ids taken from an answer's body, at most (a batch of 1,000 names them all).
MAX_RUN_IDS = 1000


def names_runs(run_ids):
    """The request moved these runs though its answer only counts them (a bulk move): the audit names them."""
    g.audit_run_ids = [str(r) for r in run_ids]


def _uuid(value):
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _run_ids(body):
    """``body``: the answer's JSON (None when it is not JSON)."""
    ids = list(g.get("audit_run_ids", ()))
    # A path's run id as given: a malformed one (its 404) names no run.
    view_id = _uuid((request.view_args or {}).get("run_id"))
    if view_id:
        ids.append(view_id)
    if body is not None:
        rows = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), list) else [body]
        for row in rows:
            run_id = _uuid(row.get("run_id")) if isinstance(row, dict) else None
            if run_id:
                ids.append(run_id)
    return list(dict.fromkeys(ids))[:MAX_RUN_IDS]


def _detail(body):
    """What the answer (its JSON ``body``) said besides its runs: an error's code, a bulk move's counts, a sweep."""
    if not isinstance(body, dict):
        return None
    detail = {}
    if isinstance(body.get("error"), dict):
        detail["error"] = body["error"].get("code")
    for key in ("matched", "moved", "skipped", "sweep_id", "export_id", "sample_id", "name"):
        if key in body and isinstance(body[key], (str, int, dict)):
            detail[key] = body[key]
    if caller().via == "API_TOKEN":
        detail["via"] = "API_TOKEN"
    return detail or None


def _audited():
    return (request.method in MUTATING and request.path.startswith("/api/")
            and request.path not in READING_POSTS)


def writer():
    """This app's audit writer (``app/audit_writer.py``), made on first use."""
    extensions = current_app.extensions
    if "tunix_audit" not in extensions:
        extensions["tunix_audit"] = AuditWriter(current_app.config["SETTINGS"].database_url)
    return extensions["tunix_audit"]


def _record(response):
    if current_app.config["AUDIT"] and _audited():
        who = caller()
        # The answer's JSON, parsed once for both.
        body = response.get_json(silent=True) if response.is_json else None
        row = dict(user_name=who.name, role=who.role if who.via != "open" else None, token_id=who.token_id,
                   action=request.endpoint or "unmatched", method=request.method, path=request.path,
                   run_ids=_run_ids(body), status=response.status_code, remote_addr=request.remote_addr,
                   detail=_detail(body))
        # Written by the writer's thread, off the request's (its commit is not the client's wait).
        writer().put(row)
    settings = current_app.config["SETTINGS"]
    if settings.access_log:
        started = g.get("access_started")
        line = {"method": request.method, "path": request.path, "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
                "user": caller().name, "remote_addr": request.remote_addr}
        if settings.log_format == "json":
            # The process' JSON lines (tasks/log_format.py: host, pid, ...) with these as their fields.
            access_logger.info("%s %s %s", request.method, request.path, response.status_code, extra=line)
        else:
            access_logger.info(json.dumps(line, separators=(",", ":")))
    return response


def _access_handler():
    """The access log's own handler under ``LOG_FORMAT=text``: the line is
    JSON already.  Under ``json`` the process' own JSON handler writes it."""
    if not access_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_logger.addHandler(handler)
        access_logger.setLevel(logging.INFO)
        access_logger.propagate = False


def _start():
    g.access_started = time.perf_counter()


def init_app(app):
    """Before ``auth``'s: a refused request is timed and logged too."""
    if app.config["SETTINGS"].access_log and app.config["SETTINGS"].log_format != "json":
        _access_handler()
    app.before_request(_start)
    app.after_request(_record)
