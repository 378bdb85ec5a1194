"""Live logs: ``GET /api/tunix/runs/<id>/logs`` as Server-Sent Events.

Events: ``log`` (``id:`` is the line's sequence number, so a client resumes
with ``Last-Event-ID`` or ``?since=``), ``progress`` as steps complete, and a
final ``status`` when the run ends, after which the stream closes.  A run that
already ended replays its log and closes.  With ``?follow=0`` the stream sends
the lines there are now and closes (with ``status`` only if the run ended):
``tunix logs`` without ``-f``.  A following stream closes after
``SSE_MAX_STREAM_S`` even if its run goes on (a stream of a run nobody
trains, as in a fuzzing run with no worker, would otherwise never end); the
CLI and the console then open it again from the last line they saw.

Costs: a stream holds a gunicorn thread while it is open, but no database
connection while it waits: it sleeps until the process' waiter sees its run
change (``app/waiter.py``) and borrows a pooled connection only to read new
lines.  One API process serves at most ``SSE_MAX_STREAMS`` streams at once (one more
gets 503 and ``Retry-After``); ``API_THREADS`` must stay above it so other
requests always find a thread.
"""

import json
import threading
import time

from flask import Blueprint, Response, current_app, request

from tasks import db, lifecycle, registry
from tasks.errors import RunNotFound

from . import request_slots
from .db import close_db, get_db, get_pool
from .errors import ApiError
from .extensions import once
from .parse import parse_run_id
from .waiter import get_waiter

bp = Blueprint("streams", __name__, url_prefix="/api/tunix")

#: Seconds between keep-alive comments on an idle stream (also how soon a
#: vanished client is noticed).
KEEPALIVE_S = 15
#: Lines read per query.
BATCH = 500

def _stream_slots():
    return once("tunix_stream_slots", lambda settings: threading.BoundedSemaphore(settings.sse_max_streams))


def _since():
    """Where the stream starts: ``Last-Event-ID`` (a reconnecting client)
    over ``?since``; each one given must be a line number, or 422."""
    given = {"Last-Event-ID": request.headers.get("Last-Event-ID"), "since": request.args.get("since")}
    values = {}
    for name, raw in given.items():
        if raw is None:
            continue
        try:
            values[name] = int(raw) if raw.strip().isdigit() else -1
        except ValueError:
            values[name] = -1
        if values[name] < 0:
            raise ApiError(422, "validation_error", f"{name} must be a non-negative integer",
                           [{"field": name, "message": "expected a non-negative integer"}])
    return values.get("Last-Event-ID", values.get("since", 0))


def sse(event, data, event_id=None):
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def _follow():
    raw = request.args.get("follow", "1")
    if raw not in ("0", "1", "true", "false"):
        raise ApiError(422, "validation_error", "follow must be 0 or 1",
                       [{"field": "follow", "message": "expected 0 or 1"}])
    return raw in ("1", "true")


def _events(pool, watch, run_id, after, follow=True, max_s=None):
    progress = None
    deadline = time.monotonic() + max_s if max_s else None
    while True:
        # Status first, then lines: once a final status is seen, every
        # line the training wrote is already stored.
        with db.connection(pool) as conn:
            status = registry.get_status(conn, run_id)
            lines = registry.get_logs(conn, run_id, after, BATCH)
        for line in lines:
            after = line["seq"]
            yield sse("log", {"seq": line["seq"], "stream": line["stream"], "line": line["line"],
                              "at": line["created_at"].isoformat()}, event_id=line["seq"])
        if status["progress"] and status["progress"] != progress:
            progress = status["progress"]
            yield sse("progress", progress)
        if len(lines) == BATCH:
            continue
        if status["status"] in lifecycle.FINAL:
            yield sse("status", {"run_id": str(run_id), "status": status["status"],
                                 "exit_code": status["exit_code"]})
            return
        if not follow:
            return
        left = deadline - time.monotonic() if deadline else KEEPALIVE_S
        if left <= 0:
            return  # the client opens it again from the last id it saw
        if not watch.wait(min(KEEPALIVE_S, left)):
            yield ": keep-alive\n\n"


@bp.get("/runs/<run_id:run_id>/logs")
def stream_logs(run_id):
    run_id = parse_run_id(run_id)
    after = _since()
    follow = _follow()
    if registry.get_status(get_db(), run_id) is None:
        raise RunNotFound(run_id)
    close_db()  # the stream must not keep the request's connection
    slots = _stream_slots()
    if not slots.acquire(blocking=False):
        raise ApiError(503, "too_many_streams", "this API process serves its maximum of log streams; retry")
    watch = get_waiter().watch(run_id)
    if watch is None:
        slots.release()
        raise ApiError(503, "too_many_streams", "this API process has as many requests waiting as it may; retry")
    watch.__enter__()
    request_slots.leave()  # a stream mostly waits; its reads take no slot
    max_s = current_app.config["SETTINGS"].sse_max_stream_s
    response = Response(_events(get_pool(), watch, run_id, after, follow, max_s), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # The server closes the response however the stream ends (finished,
    # client gone, never started), so the slot and the watch are freed here.
    def release():
        watch.__exit__(None, None, None)
        slots.release()

    response.call_on_close(release)
    return response
