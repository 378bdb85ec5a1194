"""A run's files: its whole log, searchable and downloadable, and what the
artifact store holds for it.

``GET /api/tunix/runs/{run_id}/logs/full`` is the run's whole log as plain
text, every attempt's, one after the other.  Its source (``X-Log-Source``):

- ``store``: once the run's latest attempt stored its log
  (``runs/<id>/logs/a<attempt>.log.gz``, ``workers/runner.py``
  ``_store_log``): every stored attempt's log, oldest attempt first, each
  line as the training printed it (stdout and stderr as they came) and the
  runner's own lines;
- ``registry``: before that (a running attempt, an attempt that never
  started its training, a run from before logs were stored) and for a dry
  run, which has no training: the registry's lines, at most
  ``MAX_LOG_LINES`` of a run (``workers/monitor.py``).

``GET .../logs/search?q=`` answers the lines of that same text holding
``q`` (case-insensitive for ASCII letters) with their line numbers, at most
``limit`` of them after line ``after`` (the next page starts after the last
one given).  Both stream: a gigabyte of log is read chunk by chunk, never
held (a search holds one chunk and at most ``MAX_LINE_BYTES`` of a line).

``GET /api/tunix/runs/{run_id}/artifacts`` lists every object under the
run's folder of the store (manifest, summary, checkpoints, exports, logs)
with its size, time and the API path that downloads it: a recorded
checkpoint's and a live export's downloads (``app/checkpoints.py``,
``app/exports.py``), and ``.../artifacts/manifest``, ``.../artifacts/summary``
and ``.../artifacts/logs/{attempt}`` (the gzip as stored) here.  An object
nothing serves (a checkpoint no row records, a deleted export's tar the
reaper has not removed yet) is listed with ``download: null``.

Reads like the run's other reads (``app/auth.py``); a store that is down
answers 503, one that refuses the API's credentials 502 (``StoreForbidden``).
"""

import gzip
import posixpath
from datetime import datetime, timezone
from typing import Literal, Optional

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from pydantic import BaseModel, Field

from tasks import artifacts, db, lifecycle, registry
from tasks.artifacts import CHUNK, get_store, read_chunks
from tasks.errors import ObjectMissing, RunNotFound
from tasks.jobs import JobStatus

from . import db as request_db
from .db import close_db, get_db
from .errors import ApiError
from .parse import int_arg, parse_run_id

bp = Blueprint("run_artifacts", __name__, url_prefix="/api/tunix")

#: Registry lines read per query while streaming a run's log.
BATCH = 1000
#: Longest piece of one line the search holds (a longer line is searched
#: in pieces, each with its line's number).
MAX_LINE_BYTES = 64 * 1024
#: Characters of a matching line given back in a search's answer.
MAX_MATCH_CHARS = 4096
#: Longest search text.
MAX_QUERY = 200
#: Most matches one search answers (``limit``), and its default.
MAX_MATCHES = 1000
DEFAULT_MATCHES = 200
#: The kinds of the store's objects.
KINDS = ("manifest", "summary", "checkpoint", "export", "log", "other")


# ---------------------------------------------------------------- the whole log


def _run(run_id):
    run = registry.get_run(get_db(), run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


def _store():
    return get_store(current_app.config["SETTINGS"])


def _log_objects(store, run_id):
    """``[(attempt, key)]`` of the run's stored logs, oldest attempt first."""
    found = []
    for key in store.objects(artifacts.logs_prefix(run_id)):
        attempt = artifacts.log_attempt(key)
        if attempt is not None:
            found.append((attempt, key))
    return sorted(found)


def _source(run):
    """``("store", [(attempt, key)])`` when the run's latest attempt stored
    its log, else ``("registry", [])`` (see the module docstring)."""
    logs = _log_objects(_store(), run["id"])
    if logs and logs[-1][0] >= run["attempts"]:
        return "store", logs
    return "registry", []


def _registry_lines(run_id):
    """The registry's lines of the run, each as text lines (a stored line
    holding a newline is two lines of the text), reading ``BATCH`` at a time
    on a pooled connection (none held between batches)."""
    after = 0
    while True:
        with db.connection(request_db.get_pool()) as conn:
            rows = registry.get_logs(conn, run_id, after, BATCH)
        for row in rows:
            after = row["seq"]
            yield from row["line"].split("\n")
        if len(rows) < BATCH:
            return


def _gunzipped(store, key):
    """The object ``key`` gunzipped, opened (a binary file)."""
    return gzip.GzipFile(fileobj=store.open(key), mode="rb")


def _full_text(store, source, logs, run_id):
    if source == "registry":
        batch = []
        for line in _registry_lines(run_id):
            batch.append(line)
            if len(batch) >= BATCH:
                yield ("\n".join(batch) + "\n").encode()
                batch = []
        if batch:
            yield ("\n".join(batch) + "\n").encode()
        return
    for _, key in logs:
        last = b"\n"
        with _gunzipped(store, key) as gz:
            while True:
                data = gz.read(CHUNK)
                if not data:
                    break
                last = data[-1:]
                yield data
        if last != b"\n":
            yield b"\n"  # the next attempt's log starts on a line of its own


@bp.get("/runs/<run_id:run_id>/logs/full")
def full_log(run_id):
    """The run's whole log, streamed as plain text (see the module docstring)."""
    run_id = parse_run_id(run_id)
    run = _run(run_id)
    close_db()  # the stream may outlast a short request: the connection goes back now
    source, logs = _source(run)
    store = _store()
    headers = {"X-Log-Source": source, "Content-Disposition": f'attachment; filename="{run_id}.log"'}
    return Response(stream_with_context(_full_text(store, source, logs, run_id)),
                    mimetype="text/plain", headers=headers)


class _Scan:
    """The lines of the text ``full_log`` streams that hold ``needle`` (bytes,
    lower case), as ``(line number, attempt, line)``; ``lines`` counts the
    lines read so far.  A stored log is read ``CHUNK`` by ``CHUNK``: a chunk
    without the text is only counted (its newlines), so a gigabyte is read in
    seconds; a line is never held beyond ``MAX_LINE_BYTES`` (a longer one is
    searched piece by piece, every piece with its line's number)."""

    def __init__(self, store, source, logs, run_id, needle):
        self.store, self.source, self.logs, self.run_id, self.needle = store, source, logs, run_id, needle
        self.lines = 0

    def __iter__(self):
        if self.source == "registry":
            for line in _registry_lines(self.run_id):
                self.lines += 1
                data = line.encode()
                if self.needle in data.lower():
                    yield self.lines, None, data
            return
        for attempt, key in self.logs:
            with _gunzipped(self.store, key) as gz:
                yield from self._chunks(gz, attempt)

    def _chunks(self, gz, attempt):
        carry = b""
        while True:
            data = gz.read(CHUNK)
            if not data:
                break
            buf = carry + data
            cut = buf.rfind(b"\n") + 1
            whole, carry = buf[:cut], buf[cut:]
            if self.needle in whole.lower():
                for i, line in enumerate(whole.split(b"\n")[:-1], 1):
                    if self.needle in line.lower():
                        yield self.lines + i, attempt, line
            self.lines += whole.count(b"\n")
            if len(carry) > MAX_LINE_BYTES:  # inside a long line: search this piece, keep its end
                if self.needle in carry.lower():
                    yield self.lines + 1, attempt, carry
                carry = carry[len(carry) - len(self.needle) + 1:] if len(self.needle) > 1 else b""
        if carry:  # a last line without its newline (full_log ends it with one)
            self.lines += 1
            if self.needle in carry.lower():
                yield self.lines, attempt, carry


def _excerpt(line, needle):
    """At most ``MAX_MATCH_CHARS`` of ``line`` around the first ``needle`` in it."""
    if len(line) > MAX_MATCH_CHARS:
        start = max(0, line.lower().find(needle) - MAX_MATCH_CHARS // 4)
        line = line[start:start + MAX_MATCH_CHARS]
    return line.decode("utf-8", "replace")[:MAX_MATCH_CHARS]


def _query():
    q = request.args.get("q")
    if q is None or not 1 <= len(q) <= MAX_QUERY or "\x00" in q:
        raise ApiError(422, "validation_error", f"q must be a text of 1 to {MAX_QUERY} characters",
                       [{"field": "q", "message": f"expected 1 to {MAX_QUERY} characters (no NUL)"}])
    return q


@bp.get("/runs/<run_id:run_id>/logs/search")
def search_log(run_id):
    """The lines of the run's whole log holding ``q`` (see the module docstring)."""
    run_id = parse_run_id(run_id)
    q = _query()
    limit = int_arg("limit", DEFAULT_MATCHES, 1, MAX_MATCHES)
    after = int_arg("after", 0, 0, 10**12)
    run = _run(run_id)
    close_db()
    source, logs = _source(run)
    needle = q.encode().lower()
    scan = _Scan(_store(), source, logs, run_id, needle)
    matches, more = [], False
    for number, attempt, line in scan:
        if number <= after or (matches and matches[-1]["line"] == number):
            continue  # before the page, or another piece of a line already given
        if len(matches) >= limit:
            more = True
            break
        matches.append({"line": number, "attempt": attempt, "text": _excerpt(line, needle)})
    return jsonify(run_id=str(run_id), q=q, source=source, data=matches, more=more,
                   next_after=matches[-1]["line"] if more else None, lines_read=scan.lines)


# ---------------------------------------------------------------- what the store holds


def _iso(modified):
    if modified is None:
        return None
    if isinstance(modified, datetime):
        return modified.astimezone(timezone.utc).isoformat()
    try:
        return datetime.fromtimestamp(float(modified), timezone.utc).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _describe(run_id, key, recorded, exports):
    """``{kind, step, attempt, export_id, download}`` of the object ``key``."""
    base = f"/api/tunix/runs/{run_id}"
    described = {"kind": "other", "step": None, "attempt": None, "export_id": None, "download": None}
    if key == artifacts.manifest_key(run_id):
        described.update(kind="manifest", download=f"{base}/artifacts/manifest")
    elif key == artifacts.summary_key(run_id):
        described.update(kind="summary", download=f"{base}/artifacts/summary")
    elif key.startswith(artifacts.logs_prefix(run_id) + "/") and artifacts.log_attempt(key) is not None:
        attempt = artifacts.log_attempt(key)
        described.update(kind="log", attempt=attempt, download=f"{base}/artifacts/logs/{attempt}")
    elif key.startswith(artifacts.checkpoints_prefix(run_id) + "/"):
        described.update(kind="checkpoint", attempt=artifacts.checkpoint_attempt(key))
        name = posixpath.basename(key).split(".", 1)[0]
        described["step"] = int(name) if name.isdigit() else None
        row = recorded.get(key)
        if row is not None:
            described["download"] = f"{base}/checkpoints/{row['step']}"
    elif key.startswith(artifacts.run_prefix(run_id) + "/exports/"):
        described["kind"] = "export"
        row = exports.get(key)
        if row is not None:
            described.update(step=row["step"], export_id=str(row["id"]))
            if row["status"] == JobStatus.COMPLETED and row["deleted_at"] is None:
                described["download"] = f"/api/tunix/exports/{row['id']}/download"
    return described


@bp.get("/runs/<run_id:run_id>/artifacts")
def list_artifacts(run_id):
    """Every object of the run in the store, by key (see the module docstring)."""
    run_id = parse_run_id(run_id)
    conn = get_db()
    run = registry.get_status(conn, run_id)
    if run is None:
        raise RunNotFound(run_id)
    recorded = {row["object_key"]: row for row in registry.list_checkpoints(conn, run_id)}
    exports = {row["object_key"]: row for row in registry.list_run_exports(conn, run_id)
               if row["object_key"] is not None}
    close_db()  # the store may take seconds (an outage): the connection goes back first
    store = _store()
    objects = store.objects(artifacts.run_prefix(run_id))
    data = []
    for key in sorted(objects):
        entry = objects[key]
        data.append({"key": key, **_describe(run_id, key, recorded, exports), "size_bytes": entry["size"],
                     "modified_at": _iso(entry["modified"]), "uri": store.uri(key)})
    return jsonify(run_id=str(run_id), status=run["status"], final=run["status"] in lifecycle.FINAL, data=data)


def _object(key, mimetype, filename, what, status):
    store = _store()
    try:
        size = store.stat(key)["size"]
        source = store.open(key)
    except ObjectMissing:
        if status not in lifecycle.FINAL:
            # Not there *yet*: a 409 says so (a 404 would tell a client that
            # just made the run that the run's file is gone for good).
            raise ApiError(409, "artifact_not_ready", f"{what} is not in the artifact store yet: the run is "
                                                      f"{status}", extra={"status": status}) from None
        raise ApiError(404, "artifact_missing", f"{what} is not in the artifact store") from None

    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if size is not None:
        headers["Content-Length"] = str(size)
    return Response(stream_with_context(read_chunks(source)), mimetype=mimetype, headers=headers)


def _known(run_id):
    """The run's id and status; 404 for an unknown run."""
    run_id = parse_run_id(run_id)
    row = registry.get_status(get_db(), run_id)
    if row is None:
        raise RunNotFound(run_id)
    close_db()
    return run_id, row["status"]


@bp.get("/runs/<run_id:run_id>/artifacts/manifest")
def download_manifest(run_id):
    run_id, status = _known(run_id)
    return _object(artifacts.manifest_key(run_id), "application/json", f"{run_id}-manifest.json",
                   f"run {run_id}'s manifest", status)


@bp.get("/runs/<run_id:run_id>/artifacts/summary")
def download_summary(run_id):
    run_id, status = _known(run_id)
    return _object(artifacts.summary_key(run_id), "application/json", f"{run_id}-summary.json",
                   f"run {run_id}'s summary", status)


@bp.get("/runs/<run_id:run_id>/artifacts/logs/<int:attempt>")
def download_attempt_log(run_id, attempt):
    run_id, status = _known(run_id)
    return _object(artifacts.log_key(run_id, attempt), "application/gzip", f"{run_id}-a{attempt}.log.gz",
                   f"run {run_id}'s log of attempt {attempt}", status)


# ---------------------------------------------------------------- OpenAPI


class LogMatch(BaseModel):
    line: int = Field(description="its number in the text GET .../logs/full answers (from 1)")
    attempt: Optional[int] = Field(description="the attempt whose log holds it (null: the registry's lines)")
    text: str = Field(description=f"the line (its first {MAX_MATCH_CHARS} characters)")


class LogSearch(BaseModel):
    run_id: str
    q: str
    source: Literal["store", "registry"]
    data: list[LogMatch]
    more: bool = Field(description="more lines match past the last one given")
    next_after: Optional[int] = Field(description="when more: the `after` of the next page")
    lines_read: int = Field(description="lines read before the search stopped (every line when not more)")


class Artifact(BaseModel):
    key: str = Field(description="the object's key in the artifact store")
    kind: Literal[KINDS]
    size_bytes: Optional[int]
    modified_at: Optional[str]
    uri: str
    download: Optional[str] = Field(description="the API path that downloads it; null: none serves it (a "
                                                "checkpoint no row records, a deleted or failed export's tar)")
    step: Optional[int]
    attempt: Optional[int]
    export_id: Optional[str]


class ArtifactList(BaseModel):
    run_id: str
    status: str
    final: bool
    data: list[Artifact]


def openapi_schemas():
    """``LogSearch``, ``LogMatch``, ``ArtifactList``, ``Artifact``."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema([(LogSearch, "serialization"), (ArtifactList, "serialization")],
                                ref_template="#/components/schemas/{model}")
    return dict(top["$defs"])


def openapi_paths(ref, json_answer, errors, run_id_param):
    store_errors = {"502": json_answer(ref("Error"), "the artifact store refused the API's credentials "
                                                     "(artifact_store_forbidden)"),
                    "503": json_answer(ref("Error"), "the database or the artifact store is unavailable; see "
                                                     "Retry-After")}

    def answers(ok, *codes):
        return {"200": ok, **errors(*codes), **store_errors}

    def download(media, description, schema=None):
        return {"description": description,
                "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                "content": {media: {"schema": schema or {"type": "string", "format": "binary"}}}}

    text = {"description": "the whole log, every attempt's, as plain text; X-Log-Source says whence (store: the "
                           "attempts' stored logs; registry: the registry's lines, at most 10,000)",
            "headers": {"X-Log-Source": {"schema": {"type": "string", "enum": ["store", "registry"]}},
                        "Content-Disposition": {"schema": {"type": "string"}}},
            "content": {"text/plain": {"schema": {"type": "string"}}}}
    search_params = [
        run_id_param,
        {"name": "q", "in": "query", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY, "pattern": "^[^\\u0000]*$"},
         "description": "the text to find (case-insensitive for ASCII letters)"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_MATCHES},
         "description": f"most lines answered (default {DEFAULT_MATCHES})"},
        {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 10**12},
         "description": "only lines after this line number (a previous answer's next_after)"},
    ]
    return {
        "/api/tunix/runs/{run_id}/logs/full": {"get": {
            "operationId": "getRunLogFull",
            "summary": "The run's whole log as plain text, streamed: the attempts' logs kept in the artifact "
                       "store once its latest attempt ended, else the registry's lines.",
            "parameters": [run_id_param], "responses": answers(text, 401, 404, 405)}},
        "/api/tunix/runs/{run_id}/logs/search": {"get": {
            "operationId": "searchRunLog",
            "summary": "The lines of the run's whole log holding q, with their line numbers.",
            "parameters": search_params, "responses": answers(json_answer(ref("LogSearch")), 401, 404, 405, 422)}},
        "/api/tunix/runs/{run_id}/artifacts": {"get": {
            "operationId": "listRunArtifacts",
            "summary": "What the artifact store holds for the run (manifest, summary, checkpoints, exports, "
                       "logs): key, kind, size, time and the API path downloading each.",
            "parameters": [run_id_param], "responses": answers(json_answer(ref("ArtifactList")), 401, 404, 405)}},
        "/api/tunix/runs/{run_id}/artifacts/manifest": {"get": {
            "operationId": "downloadRunManifest",
            "summary": "The run's manifest (what it executed with); 409 artifact_not_ready while the run has not "
                       "finished without one, 404 artifact_missing once it has.",
            "parameters": [run_id_param],
            "responses": answers(download("application/json", "manifest.json", {"type": "object"}), 401, 404, 405, 409)}},
        "/api/tunix/runs/{run_id}/artifacts/summary": {"get": {
            "operationId": "downloadRunSummary",
            "summary": "The run's summary (its final result); 409 artifact_not_ready until the run has finished, "
                       "404 artifact_missing when it finished without one (only a completed training has one).",
            "parameters": [run_id_param],
            "responses": answers(download("application/json", "summary.json", {"type": "object"}), 401, 404, 405,
                                 409)}},
        "/api/tunix/runs/{run_id}/artifacts/logs/{attempt}": {"get": {
            "operationId": "downloadRunAttemptLog",
            "summary": "One attempt's whole log as stored (gzip); 409 artifact_not_ready while the run has not "
                       "finished without it, 404 artifact_missing when it stored none.",
            "parameters": [run_id_param, {"name": "attempt", "in": "path", "required": True,
                                          "schema": {"type": "integer", "minimum": 0}}],
            "responses": answers(download("application/gzip", "the attempt's log, gzipped"), 401, 404, 405, 409)}},
    }

