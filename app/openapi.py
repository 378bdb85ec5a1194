"""``GET /openapi.json``: the API described for clients, for client
generators and for the fuzzing pass (schemathesis), and ``/docs``, a page
that reads it (Swagger UI, served from the ``swagger-ui-py`` package: no
CDN).

Nothing here is written twice: the request schema is ``RunSpec`` itself,
with the datasets this installation knows at the time of the request as
``dataset_key``'s enum (a key outside it is a 422, so the document says so);
every answer's schema is a model of ``tasks/wire.py``, the fleet's of
``app/fleet.py``; the links from a submit's answer (``run_id``) lead a
stateful client (schemathesis's stateful phase) through status, logs,
cancel, resume and checkpoints of the run it created.
"""

import os

from flask import Blueprint, current_app, jsonify, render_template, send_from_directory
from pydantic.json_schema import models_json_schema

from tasks import catalog, lifecycle, sweep_spec, wire
from tasks.run_spec import (MAX_SERIES_POINTS, MAX_SERIES_RUNS, MAX_TAGS, METHOD_DATA, MODES, TAG_PATTERN, RunFilter,
                            RunSpec, RunUpdate, SeriesRequest)
from tasks.sweep_spec import SweepSpec

from . import exports, fleet, run_artifacts, samples, sweeps, users
from .curves import MAX_STEP, METRIC_NAME
from .parse import MAX_LIMIT, MAX_OFFSET
from .runs import LIST_FILTERS, MAX_BATCH, MAX_CSV_ROWS, MAX_IDEMPOTENCY_KEY, MAX_QUERY

bp = Blueprint("openapi", __name__)

#: Every answer's model, published under its class name.
ANSWERS = (wire.Run, wire.RunStatusAnswer, wire.RunPage, wire.RunList, wire.CheckpointList, wire.MetricsList,
           wire.LogLine, wire.Progress, wire.StatusEvent, wire.DatasetList, wire.ModelList, wire.Health, wire.Error,
           wire.SweepCreated, wire.SweepDetail, wire.SweepPage, wire.BulkMove, wire.SeriesList)


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


_ERROR = _ref("Error")
_RUN = _ref("Run")


def _json(schema, description="OK", links=None):
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if links:
        answer["links"] = links
    return answer


def _errors(*codes):
    text = {400: "malformed JSON, nested deeper than 32 levels, or a body that ended early", 401: "missing or wrong bearer token",
            403: "forbidden: the caller's role, or whose the run is, does not allow it", 404: "unknown run",
            405: "method not allowed (the Allow header lists the allowed ones)",
            408: "the body did not arrive within BODY_READ_TIMEOUT_S",
            409: "not allowed in the run's status", 413: "body over 1 MiB", 415: "not JSON",
            422: "invalid fields",
            429: "quota_exceeded: the caller's waiting runs would pass USER_MAX_QUEUED; see Retry-After",
            503: "database unavailable or read-only (a failover), a statement past DB_STATEMENT_TIMEOUT_S, or "
                 "overloaded (no pooled connection within DB_POOL_WAIT_S); see Retry-After"}
    if 413 in codes:  # a route that reads a body may time out reading it (app/bodies.py)
        codes = sorted({*codes, 408})
    if 401 in codes:  # a route that may ask for a token may refuse the token's user (app/auth.py)
        codes = sorted({*codes, 403})
    return {str(code): _json(_ERROR, text[code]) for code in codes}


_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}

#: Where a submit's answer leads: the run-scoped operations, given its run_id.
_RUN_OPERATIONS = ("getRun", "getRunStatus", "getRunMetrics", "listCheckpoints", "streamLogs", "cancelRun",
                   "resumeRun", "getRunLogFull", "listRunArtifacts")


def _links(source="$response.body#/run_id"):
    return {op[0].upper() + op[1:]: {"operationId": op, "parameters": {"run_id": source}} for op in _RUN_OPERATIONS}


def _sse_event():
    """One event of the log stream (OpenAPI 3.1: a text/event-stream
    ``schema`` describes each event): its name, and its data, the JSON of a
    ``tasks/wire.py`` model."""
    def event(name, model, with_id=False):
        properties = {"event": {"const": name},
                      "data": {"type": "string", "contentMediaType": "application/json",
                               "contentSchema": _ref(model)}}
        if with_id:
            properties["id"] = {"type": "string", "pattern": "^[0-9]+$"}
        return {"type": "object", "properties": properties, "required": ["event", "data"]}

    return {"oneOf": [event("log", "LogLine", with_id=True), event("progress", "Progress"),
                      event("status", "StatusEvent")]}


def _schemas(datasets, run_time_limit_s):
    _, top = models_json_schema([(model, "serialization") for model in ANSWERS],
                                ref_template="#/components/schemas/{model}")
    schemas = dict(top["$defs"])
    run_spec = RunSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(run_spec.pop("$defs", {}))  # LoraSpec
    run_spec["properties"]["dataset_key"]["enum"] = sorted(datasets)
    run_spec["allOf"] = _method_rules(datasets)
    # The operator's maximum (RUN_TIME_LIMIT_S), checked at submit (RunSpec.resolved).
    for branch in run_spec["properties"]["time_limit_s"]["anyOf"]:
        if branch.get("type") == "integer":
            branch["maximum"] = run_time_limit_s
    schemas["RunSpec"] = run_spec
    schemas["SweepSpec"] = _sweep_spec(run_spec, schemas, datasets, run_time_limit_s)
    schemas["RunFilter"] = RunFilter.model_json_schema()
    schemas["SeriesRequest"] = SeriesRequest.model_json_schema()
    schemas["RunUpdate"] = RunUpdate.model_json_schema()
    schemas.update(fleet.openapi_schemas())
    schemas.update(sweeps.openapi_schemas())
    schemas.update(samples.openapi_schemas())
    schemas.update(exports.openapi_schemas())
    schemas.update(run_artifacts.openapi_schemas())
    schemas.update(users.openapi_schemas())
    return schemas


def _method_rules(datasets):
    """What RunSpec's own schema cannot say, as JSON Schema conditions: a
    method's settings only with that method, and each method's datasets
    (those of its record kind; a store object's kind is unknown until a
    worker reads it, so it is allowed for every method)."""
    rules = []
    for name in ("dpo", "grpo"):
        rules.append({"if": {"properties": {name: {"type": "object"}}, "required": [name]},
                      "then": {"properties": {"method": {"const": name}}, "required": ["method"]}})
    for method in METHOD_DATA:
        keys = sorted(key for key, d in datasets.items() if method in catalog.methods_for(d.data_kind))
        given = {"properties": {"method": {"const": method}}, "required": ["method"]}
        if method == "sft":  # the default: no method named is sft
            given = {"anyOf": [given, {"not": {"required": ["method"]}}]}
        rules.append({"if": given, "then": {"properties": {"dataset_key": {"enum": keys}}}})
    return rules


def _in_grid(name, schema):
    return {"properties": {"grid": {"properties": {name: schema}}}}


def _in_space(name, schema):
    return {"properties": {"random": {"properties": {"space": {"properties": {name: schema}}}}}}


def _swept_as(name, value_schema):
    """Every value a sweep lists for ``name``, in its grid or its random
    ``choice``, matches ``value_schema``."""
    return [_in_grid(name, {"items": value_schema}),
            _in_space(name, {"properties": {"choice": {"items": value_schema}}})]


def _method_variants(swept, datasets):
    """What ``tasks/sweep_spec.py`` and ``app/sweeps.py`` check across a
    sweep's fields about methods, as one ``anyOf`` of variants that each
    constrain every field on its own: JSON Schema can say more with
    conditions across fields (``if``/``not``), but schemathesis's generator
    gives up on a document with more than five of them (jsonschema_rs's
    canonical form: 6 took 4.4 s and came back raw, and a plain run then
    generated nothing for this operation).  A variant per method the trials
    all have, and where the method is (the base's, swept in the grid, drawn
    by choice), plus the sweeps that train several methods: then no method's
    settings, no method's own metric, and only datasets every method takes
    (those whose kind is unknown until read).  The dataset rule covers the
    base's dataset too: the API checks every method of the sweep against it."""
    methods = list(METHOD_DATA)
    fits = {m: sorted(k for k, d in datasets.items() if m in catalog.methods_for(d.data_kind)) for m in methods}
    fits_all = sorted(set.intersection(*(set(keys) for keys in fits.values())))
    settings = ("dpo", "grpo")

    def common(trial_methods):
        keys = fits[trial_methods[0]] if len(trial_methods) == 1 else fits_all
        parts = [{"properties": {"base": {"properties": {"dataset_key": {"enum": keys}}}}},
                 *_swept_as("dataset_key", {"enum": keys}),
                 {"properties": {"metric": {"enum": [*sweep_spec.METRICS, *(
                     metric for metric, (m, _) in sweep_spec.METHOD_METRICS.items() if [m] == trial_methods)]}}}]
        for name in settings:
            if [name] == trial_methods:
                continue
            parts += [{"properties": {"base": {"properties": {name: {"type": "null"}}}}},
                      *_swept_as(name, {"type": "null"}),
                      *(rule(f, False) for f in swept if f.startswith(name + ".") for rule in (_in_grid, _in_space))]
        return parts

    variants = []
    for m in methods:
        base_method = {"properties": {"method": {"const": m}}}
        if m != "sft":  # the default: a base that names no method trains sft
            base_method["required"] = ["method"]
        variants += [
            {"allOf": [{"properties": {"base": base_method}}, _in_grid("method", False), _in_space("method", False),
                       *common([m])]},
            {"allOf": [{"properties": {"grid": {"type": "object", "required": ["method"]}}, "required": ["grid"]},
                       _swept_as("method", {"const": m})[0], _in_space("method", False), *common([m])]},
            {"allOf": [{"properties": {"random": {"type": "object", "properties": {"space": {"required": ["method"]}}}},
                        "required": ["random"]},
                       _swept_as("method", {"const": m})[1], _in_grid("method", False), *common([m])]}]
    variants += [
        {"allOf": [_in_grid("method", {"items": {"enum": methods}}), _in_space("method", False), *common(methods)]},
        {"allOf": [_in_space("method", {"properties": {"choice": {"items": {"enum": methods}}}}),
                   _in_grid("method", False), *common(methods)]}]
    return {"anyOf": variants}


def _sweep_spec(run_spec, schemas, datasets, run_time_limit_s):
    """``SweepSpec``, with its base a ``RunSpec`` and each grid field a list
    of that field's values.  What no schema can say (the trials' count, a
    value's validity with the rest of its trial) is a 422 at submit
    (``tasks/sweep_spec.py``).  Its other models (``EarlyStopping``) join
    ``schemas``."""
    schema = SweepSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    schema["properties"]["base"] = _ref("RunSpec")
    swept = sweep_spec.sweepable()

    def field_schema(name):
        outer, _, inner = name.partition(".")
        if inner:
            return schemas[sweep_spec.NESTED[outer].__name__]["properties"][inner]
        return run_spec["properties"][name]

    fields = {name: {"type": "array", "minItems": 1, "items": field_schema(name)} for name in swept}
    schema["properties"]["grid"] = {"anyOf": [{"type": "object", "properties": fields, "additionalProperties": False},
                                              {"type": "null"}],
                                    "description": schema["properties"]["grid"].get("description")}
    random = defs["RandomSearch"]
    random["properties"]["space"]["propertyNames"] = {"enum": swept}

    def distribution(name):
        # What sweep_spec's 422s say, as far as JSON Schema can: a range
        # only over a number, [low, high] within its limits (log_uniform's
        # above 0); choice's at least one value, each one the field takes (a
        # plain run found `choice: [null]` for batch_size documented and refused).
        bounds = sweep_spec.numeric_bounds(name, run_time_limit_s)
        kinds = {"choice": {"type": "array", "minItems": 1, "items": field_schema(name)}}
        if bounds is not None:
            number = {"type": "number", **bounds}
            kinds["uniform"] = {"type": "array", "minItems": 2, "maxItems": 2, "items": number}
            kinds["log_uniform"] = {"type": "array", "minItems": 2, "maxItems": 2,
                                    "items": {**number, "exclusiveMinimum": max(0, bounds.get("exclusiveMinimum", 0))}}
        return {"type": "object", "minProperties": 1, "maxProperties": 1, "propertyNames": {"enum": list(kinds)},
                "properties": kinds, "additionalProperties": False}

    random["properties"]["space"]["properties"] = {name: distribution(name) for name in swept}
    random["properties"]["space"]["additionalProperties"] = False
    schema["properties"]["random"] = {"anyOf": [random, {"type": "null"}]}
    schema["properties"]["metric"]["enum"] = [*sweep_spec.METRICS, *sweep_spec.METHOD_METRICS]
    # A sweep sweeps something: a grid with a field, a random search, or both.
    sweeps_something = {"anyOf": [
        {"properties": {"grid": {"type": "object", "minProperties": 1}}, "required": ["grid"]},
        {"properties": {"random": {"type": "object"}}, "required": ["random"]}]}
    # (plain schemathesis runs found each of these documented and refused)
    schema["allOf"] = [sweeps_something, _method_variants(swept, datasets)]
    schemas.update((name, d) for name, d in defs.items() if name != "RandomSearch")
    return schema


_SWEEP_ID = {"name": "sweep_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
#: A range of steps (a zoomed chart's), both ends included; to_step before from_step is an empty range.
_STEP_RANGE = [{"name": "from_step", "in": "query", "description": "the first step (default: the run's first)",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_STEP}},
               {"name": "to_step", "in": "query", "description": "the last step (default: the run's last)",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_STEP}}]


def _csv(description):
    """A ``text/csv`` answer (``app/csv_export.py``): a header line, then rows."""
    return {"description": description, "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
            "content": {"text/csv": {"schema": {"type": "string"}}}}


#: What gunicorn answers itself, before the API sees the request (its limits:
#: gunicorn.conf.py): HTML, not the API's JSON error.
_SERVER_LIMITS = {
    "414": {"description": "request line over gunicorn's limit_request_line (8190 bytes), answered by the "
                           "HTTP server itself", "content": {"text/html": {"schema": {"type": "string"}}}},
    "431": {"description": "headers over gunicorn's limits, answered by the HTTP server itself",
            "content": {"text/html": {"schema": {"type": "string"}}}},
}


def _with_server_limits(paths):
    for item in paths.values():
        for operation in item.values():
            operation["responses"].update(_SERVER_LIMITS)
    return paths


def document(settings=None):
    """The document, as this installation's ``settings`` make it: the
    datasets runs may name (``tasks/catalog.py``, as the submit checks
    them) and the longest time limit."""
    settings = settings or current_app.config["SETTINGS"]
    datasets = catalog.datasets(settings)
    statuses = list(lifecycle.ALL)
    # Any text but a NUL (PostgreSQL text cannot hold one: the API answers 422).
    text_filter = {"type": "string", "pattern": "^[^\\u0000]*$"}
    list_params = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}},
        # An empty filter (`?status=`, as the console sends it) is no filter.
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["", *statuses]}},
        {"name": "mode", "in": "query", "schema": {"type": "string", "enum": ["", *MODES]}},
        {"name": "dataset_key", "in": "query", "schema": text_filter},
        {"name": "model_id", "in": "query", "schema": text_filter},
        {"name": "owner", "in": "query", "schema": text_filter,
         "description": "a user's name, or `me`: the caller's (422 for a request with no user)"},
        # An empty tag is no filter, as an empty status.
        {"name": "tag", "in": "query", "style": "form", "explode": True,
         "schema": {"type": "array", "maxItems": MAX_TAGS,
                    "items": {"type": "string", "anyOf": [{"pattern": TAG_PATTERN}, {"const": ""}]}},
         "description": "repeatable: runs carrying every tag given"},
        {"name": "sweep_id", "in": "query", "schema": {"type": "string", "anyOf": [{"format": "uuid"},
                                                                                   {"const": ""}]}},
        {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": MAX_QUERY, "pattern": "^[^\\u0000]*$"},
         "description": "a case-insensitive substring of the run's name"},
    ]
    assert {p["name"] for p in list_params} >= set(LIST_FILTERS)
    csv_params = [{"name": "limit", "in": "query",
                   "schema": {"type": "integer", "minimum": 1, "maximum": MAX_CSV_ROWS}}, *list_params[1:]]
    body = {"required": True, "content": {"application/json": {"schema": _ref("RunSpec")}}}
    run_answer = _json(_RUN, links=_links())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tunix RT", "version": "0.1.0",
                 "description": "Submit, watch, stop and resume Tunix training runs. From a terminal: `tunix --help`."},
        "components": {
            "schemas": _schemas(datasets, settings.run_time_limit_s),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": _with_server_limits({
            "/api/tunix/run": {"post": {
                "operationId": "submitRun",
                "summary": "Submit a run (sync waits for it; async answers at once).",
                "parameters": [
                    {"name": "mode", "in": "query", "schema": {"type": "string", "enum": list(MODES)}},
                    {"name": "Idempotency-Key", "in": "header",
                     "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY,
                                "pattern": "^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$"},
                     "description": "a retry with the same key and body answers the same run (200)"},
                ],
                "requestBody": body,
                "responses": {"200": run_answer, "202": run_answer,
                              **_errors(400, 401, 405, 409, 413, 415, 422, 429, 503)}}},
            "/api/tunix/runs/batch": {"post": {
                "operationId": "submitBatch",
                "summary": f"Submit up to {MAX_BATCH} async runs at once: all valid and created, or none.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"runs": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                                                              "items": _ref("RunSpec")}},
                    "required": ["runs"], "additionalProperties": False}}}},
                "responses": {"202": _json(_ref("RunList"), links=_links("$response.body#/data/0/run_id")),
                              **_errors(400, 401, 405, 413, 415, 422, 429, 503)}}},
            "/api/tunix/runs/cancel": {"post": {
                "operationId": "cancelRuns",
                "summary": "Cancel every pending or running run the filter matches (as each run's own cancel).",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RunFilter")}}},
                "responses": {"202": _json(_ref("BulkMove")), **_errors(400, 401, 405, 413, 415, 422, 503)}}},
            "/api/tunix/runs/resume": {"post": {
                "operationId": "resumeRuns",
                "summary": "Queue again every failed, cancelled or timed-out run the filter matches.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RunFilter")}}},
                "responses": {"202": _json(_ref("BulkMove")), **_errors(400, 401, 405, 413, 415, 422, 503)}}},
            "/api/tunix/runs/series": {"post": {
                "operationId": "getRunsSeries",
                "summary": f"Many runs' loss curves in one answer (up to {MAX_SERIES_RUNS}), each downsampled.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SeriesRequest")}}},
                "responses": {"200": _json(_ref("SeriesList")), **_errors(400, 401, 404, 405, 413, 415, 422, 503)}}},
            "/api/tunix/runs": {"get": {
                "operationId": "listRuns",
                "summary": "Run history, newest first.", "parameters": list_params,
                "responses": {"200": _json(_ref("RunPage")), **_errors(401, 405, 422, 503)}}},
            "/api/tunix/runs.csv": {"get": {
                "operationId": "exportRuns",
                "summary": f"The history as CSV (up to {MAX_CSV_ROWS} runs, newest first), by the same filters: "
                           "run_id, name, owner, status, mode, dataset_key, model_id, tags (space-separated), "
                           "priority, sweep_id, created_at, started_at, completed_at, duration_seconds, final_loss.",
                "parameters": csv_params,
                "responses": {"200": _csv("one run a row, as GET /api/tunix/runs answers it"),
                              **_errors(401, 405, 422, 503)}}},
            "/api/tunix/runs/{run_id}": {
                "get": {
                    "operationId": "getRun",
                    "parameters": [_RUN_ID], "responses": {"200": _json(_RUN), **_errors(401, 404, 405, 503)}},
                "patch": {
                    "operationId": "updateRun",
                    "summary": "Change a run's name, tags or notes (the fields sent): its owner's or an admin's.",
                    "parameters": [_RUN_ID],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RunUpdate")}}},
                    "responses": {"200": _json(_RUN), **_errors(400, 401, 404, 405, 413, 415, 422, 503)}}},
            "/api/tunix/runs/{run_id}/status": {"get": {
                "operationId": "getRunStatus",
                "parameters": [_RUN_ID],
                "responses": {"200": _json(_ref("RunStatusAnswer")), **_errors(401, 404, 405, 503)}}},
            "/api/tunix/runs/{run_id}/metrics": {"get": {
                "operationId": "getRunMetrics",
                "summary": "The per-step figures of a training, every attempt's: every step, or those from "
                           "from_step to to_step (both included; a range that ends before it starts is empty).",
                "parameters": [_RUN_ID, *_STEP_RANGE],
                "responses": {"200": _json(_ref("MetricsList")), **_errors(401, 404, 405, 422, 503)}}},
            "/api/tunix/runs/{run_id}/metrics.csv": {"get": {
                "operationId": "exportRunMetrics",
                "summary": "The per-step figures as CSV: step, attempt, loss, learning_rate, grad_norm, eval_loss, "
                           "then every metric the run recorded, a column each.",
                "parameters": [_RUN_ID],
                "responses": {"200": _csv("one recorded step a row"), **_errors(401, 404, 405, 503)}}},
            "/api/tunix/runs/{run_id}/checkpoints": {"get": {
                "operationId": "listCheckpoints",
                "summary": "The run's recorded checkpoints.",
                "parameters": [_RUN_ID],
                "responses": {"200": _json(_ref("CheckpointList")), **_errors(401, 404, 405, 503)}}},
            "/api/tunix/runs/{run_id}/checkpoints/{step}": {"get": {
                "operationId": "downloadCheckpoint",
                "summary": "One recorded checkpoint as a tar (its sha256 in X-Checkpoint-SHA256).",
                "parameters": [_RUN_ID, {"name": "step", "in": "path", "required": True,
                                         "schema": {"type": "integer", "minimum": 0}}],
                "responses": {"200": {"description": "the checkpoint folder, an uncompressed tar",
                                      "headers": {"X-Checkpoint-SHA256": {"schema": {"type": "string"}}},
                                      "content": {"application/x-tar": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}},
                              **_errors(401, 404, 405, 503)}}},
            "/api/tunix/runs/{run_id}/logs": {"get": {
                "operationId": "streamLogs",
                "summary": "The run's log and progress, live (Server-Sent Events) until it ends.",
                "parameters": [
                    _RUN_ID,
                    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0},
                     "description": "the last line number already seen"},
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "follow", "in": "query", "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
                     "description": "0: the lines there are now, then the stream closes (default 1: until the run "
                                    "ends)"},
                ],
                "responses": {"200": {"description": "events `log` (data: LogLine; id: its seq), `progress` "
                                                     "(data: Progress), and a last `status` (data: StatusEvent) "
                                                     "when the run is final",
                                      "content": {"text/event-stream": {"schema": _sse_event()}}},
                              **_errors(401, 404, 405, 422, 503)}}},
            "/api/tunix/runs/{run_id}/cancel": {"post": {
                "operationId": "cancelRun",
                "parameters": [_RUN_ID],
                "responses": {"200": _json(_RUN), "202": _json(_RUN), **_errors(401, 404, 405, 409, 503)}}},
            "/api/tunix/runs/{run_id}/resume": {"post": {
                "operationId": "resumeRun",
                "parameters": [_RUN_ID],
                "responses": {"202": _json(_RUN), **_errors(401, 404, 405, 409, 503)}}},
            "/api/tunix/sweeps": {
                "post": {
                    "operationId": "submitSweep",
                    "summary": f"Submit a sweep: a grid and/or random search over a run request, up to "
                               f"{sweep_spec.MAX_TRIALS} trials, each an async run; all valid and created, or none.",
                    "requestBody": {"required": True,
                                    "content": {"application/json": {"schema": _ref("SweepSpec")}}},
                    "responses": {"202": _json(_ref("SweepCreated"), links={
                        "GetSweep": {"operationId": "getSweep",
                                     "parameters": {"sweep_id": "$response.body#/sweep_id"}},
                        "CancelSweep": {"operationId": "cancelSweep",
                                        "parameters": {"sweep_id": "$response.body#/sweep_id"}},
                        "ResumeSweep": {"operationId": "resumeSweep",
                                        "parameters": {"sweep_id": "$response.body#/sweep_id"}},
                        "GetSweepImportance": {"operationId": "getSweepImportance",
                                               "parameters": {"sweep_id": "$response.body#/sweep_id"}}}),
                                  **_errors(400, 401, 405, 413, 415, 422, 429, 503),
                                  "403": _json(_ERROR, f"forbidden: a viewer, or a priority above PRIORITY_CEILING "
                                                       f"from a member; limit_exceeded: the space makes more than "
                                                       f"{sweep_spec.MAX_TRIALS} trials")}},
                "get": {
                    "operationId": "listSweeps",
                    "summary": "Sweeps, newest first, their trials counted by status.",
                    "parameters": list_params[:2],
                    "responses": {"200": _json(_ref("SweepPage")), **_errors(401, 405, 422, 503)}}},
            "/api/tunix/sweeps/{sweep_id}": {"get": {
                "operationId": "getSweep",
                "summary": "A sweep: counts by status, the best trial by its metric, every trial with its "
                           "parameters and latest loss.",
                "parameters": [_SWEEP_ID], "responses": {"200": _json(_ref("SweepDetail")),
                                                         **_errors(401, 404, 405, 503)}}},
            "/api/tunix/sweeps/{sweep_id}/series": {"get": {
                "operationId": "getSweepSeries",
                "summary": "Every trial's curve of one metric (default: the training loss), downsampled so "
                           "that each bucket's first, lowest, highest and last points stay, in one answer; "
                           "from_step and to_step narrow it to a range (a zoom), whole when it has at most "
                           "points steps.",
                "parameters": [_SWEEP_ID, {"name": "points", "in": "query",
                                           "schema": {"type": "integer", "minimum": 2,
                                                      "maximum": MAX_SERIES_POINTS}},
                               {"name": "metric", "in": "query",
                                "description": "loss, eval_loss, learning_rate, grad_norm or a method's own",
                                "schema": {"type": "string", "pattern": METRIC_NAME, "default": "loss"}},
                               *_STEP_RANGE],
                "responses": {"200": _json(_ref("SeriesList")), **_errors(401, 404, 405, 422, 503)}}},
            "/api/tunix/sweeps/{sweep_id}/importance": {"get": {
                "operationId": "getSweepImportance",
                "summary": "Each swept parameter's importance for the sweep's metric over its completed trials, "
                           "strongest first: |Spearman rank correlation| (a categorical parameter's: the "
                           "correlation ratio of the metric's ranks), its p-value, and its share of the sum.",
                "parameters": [_SWEEP_ID], "responses": {"200": _json(_ref("SweepImportance")),
                                                         **_errors(401, 404, 405, 503)}}},
            "/api/tunix/sweeps/{sweep_id}/trials.csv": {"get": {
                "operationId": "exportSweepTrials",
                "summary": "The trials as CSV: run_id, each swept parameter, status, step, loss, eval_loss (and "
                           "the sweep's method metric when it ranks on one).",
                "parameters": [_SWEEP_ID], "responses": {"200": _csv("one trial a row, in the order they were made"),
                                                         **_errors(401, 404, 405, 503)}}},
            "/api/tunix/sweeps/{sweep_id}/cancel": {"post": {
                "operationId": "cancelSweep",
                "summary": "Stop every trial still in the system's hands.",
                "parameters": [_SWEEP_ID], "responses": {"202": _json(_ref("SweepDetail")),
                                                         **_errors(401, 404, 405, 503)}}},
            "/api/tunix/sweeps/{sweep_id}/resume": {"post": {
                "operationId": "resumeSweep",
                "summary": "Queue every failed, cancelled or timed-out trial again.",
                "parameters": [_SWEEP_ID], "responses": {"202": _json(_ref("SweepDetail")),
                                                         **_errors(401, 404, 405, 503)}}},
            **samples.openapi_paths(_ref, _json, _errors, _RUN_ID),
            **exports.openapi_paths(_ref, _json, _errors, _RUN_ID),
            **run_artifacts.openapi_paths(_ref, _json, _errors, _RUN_ID),
            **users.openapi_paths(_ref, _json, _errors),
            "/api/tunix/workers": {"get": {
                "operationId": "getFleet",
                "summary": "The fleet: hosts, worker processes (alive or lost), the runs they hold, the queues.",
                "responses": {"200": _json(_ref("Fleet")), **_errors(401, 405, 503)}}},
            "/api/tunix/datasets": {"get": {
                "operationId": "listDatasets",
                "summary": "Built-in, shipped, $DATA_DIR/datasets and artifact-store (datasets/<key>.jsonl) datasets.",
                "responses": {"200": _json(_ref("DatasetList")), **_errors(401, 405)}}},
            "/api/tunix/models": {"get": {
                "operationId": "listModels",
                "responses": {"200": _json(_ref("ModelList")), **_errors(401, 405)}}},
            "/healthz": {"get": {"operationId": "healthz",
                                 "responses": {"200": _json(_ref("Health")), **_errors(405)}}},
            "/readyz": {"get": {"operationId": "readyz",
                                "responses": {"200": _json(_ref("Health")), **_errors(405, 503)}}},
        }),
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())


#: The page's own files and Swagger UI's: nothing from elsewhere.
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _swagger_ui_dir():
    import swagger_ui  # swagger-ui-py: Swagger UI 5's files (OpenAPI 3.1), served as they are

    return os.path.join(os.path.dirname(swagger_ui.__file__), "static")


@bp.get("/docs")
def docs():
    """The API document, readable: Swagger UI from the installed package."""
    return render_template("docs.html"), 200, {"Content-Security-Policy": DOCS_CSP,
                                               "X-Content-Type-Options": "nosniff"}


@bp.get("/docs/swagger-ui/<path:filename>")
def swagger_ui(filename):
    return send_from_directory(_swagger_ui_dir(), filename, max_age=3600)
