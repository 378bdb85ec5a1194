"""``GET /openapi.json``: the API described for clients and for the fuzzing
pass (schemathesis).  The request schema comes from ``RunSpec`` itself, so
the document cannot drift from the validator."""

from flask import Blueprint, jsonify

from tasks import lifecycle
from tasks.run_spec import MODES, RunSpec

from . import fleet

bp = Blueprint("openapi", __name__)

_ERROR = {"$ref": "#/components/schemas/Error"}
_RUN = {"$ref": "#/components/schemas/Run"}


def _json(schema, description="OK"):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes):
    text = {400: "malformed JSON", 401: "missing or wrong bearer token", 404: "unknown run",
            409: "not allowed in the run's status", 413: "body over 1 MiB", 415: "not JSON",
            422: "invalid fields",
            503: "database unavailable, or overloaded (no pooled connection within DB_POOL_WAIT_S); see Retry-After"}
    return {str(code): _json(_ERROR, text[code]) for code in codes}


_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}


def document():
    run_spec = RunSpec.model_json_schema()
    statuses = list(lifecycle.ALL)
    nullable_obj = {"type": ["object", "null"]}
    run = {
        "type": "object",
        "properties": {
            "run_id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": statuses},
            "mode": {"type": "string", "enum": list(MODES)},
            "dry_run": {"type": "boolean"},
            "dataset_key": {"type": "string"},
            "model_id": {"type": "string"},
            "config": {"type": "object"},
            "attempts": {"type": "integer", "description": "executions begun (claims)"},
            "max_attempts": {"type": ["integer", "null"],
                             "description": "the run's attempts budget, set at its first claim"},
            "error": nullable_obj,
            "result": nullable_obj,
            "progress": nullable_obj,
            "queued_at": {"type": "string"},
        },
        "required": ["run_id", "status", "mode", "config", "attempts"],
    }
    error = {
        "type": "object",
        "properties": {"error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "fields": {"type": "array", "items": {"type": "object"}}},
            "required": ["code", "message", "fields"]}},
        "required": ["error"],
    }
    list_params = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": statuses}},
        {"name": "mode", "in": "query", "schema": {"type": "string", "enum": list(MODES)}},
        {"name": "dataset_key", "in": "query", "schema": {"type": "string"}},
        {"name": "model_id", "in": "query", "schema": {"type": "string"}},
    ]
    body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunSpec"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tunix RT", "version": "0.1.0",
                 "description": "Submit, watch, stop and resume Tunix training runs."},
        "components": {
            "schemas": {"RunSpec": run_spec, "Run": run, "Error": error, **fleet.openapi_schemas()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/api/tunix/run": {"post": {
                "summary": "Submit a run (sync waits for it; async answers at once).",
                "parameters": [
                    {"name": "mode", "in": "query", "schema": {"type": "string", "enum": list(MODES)}},
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255}},
                ],
                "requestBody": body,
                "responses": {"200": _json(_RUN), "202": _json(_RUN),
                              **_errors(400, 401, 409, 413, 415, 422, 503)}}},
            "/api/tunix/runs/batch": {"post": {
                "summary": "Submit up to 1000 async runs at once.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"runs": {"type": "array", "minItems": 1, "maxItems": 1000,
                                                              "items": {"$ref": "#/components/schemas/RunSpec"}}},
                    "required": ["runs"], "additionalProperties": False}}}},
                "responses": {"202": _json({"type": "object"}), **_errors(400, 401, 413, 415, 422, 503)}}},
            "/api/tunix/runs": {"get": {
                "summary": "Run history, newest first.", "parameters": list_params,
                "responses": {"200": _json({"type": "object"}), **_errors(422, 503)}}},
            "/api/tunix/runs/{run_id}": {"get": {
                "parameters": [_RUN_ID], "responses": {"200": _json(_RUN), **_errors(404, 503)}}},
            "/api/tunix/runs/{run_id}/status": {"get": {
                "parameters": [_RUN_ID], "responses": {"200": _json({"type": "object"}), **_errors(404, 503)}}},
            "/api/tunix/runs/{run_id}/metrics": {"get": {
                "parameters": [_RUN_ID], "responses": {"200": _json({"type": "object"}), **_errors(404, 503)}}},
            "/api/tunix/runs/{run_id}/checkpoints": {"get": {
                "parameters": [_RUN_ID], "responses": {"200": _json({"type": "object"}), **_errors(404, 503)}}},
            "/api/tunix/runs/{run_id}/checkpoints/{step}": {"get": {
                "summary": "One checkpoint as a .tar.gz.",
                "parameters": [_RUN_ID, {"name": "step", "in": "path", "required": True,
                                         "schema": {"type": "integer", "minimum": 0}}],
                "responses": {"200": {"description": "the checkpoint folder, gzipped tar",
                                      "content": {"application/gzip": {"schema": {"type": "string",
                                                                                  "format": "binary"}}}},
                              **_errors(404, 503)}}},
            "/api/tunix/runs/{run_id}/logs": {"get": {
                "summary": "The run's log and progress, live (Server-Sent Events) until it ends.",
                "parameters": [
                    _RUN_ID,
                    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0},
                     "description": "the last line number already seen"},
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "follow", "in": "query", "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
                     "description": "0: the lines there are now, then the stream closes (default 1: until the run ends)"},
                ],
                "responses": {"200": {"description": "events `log` (id = line number), `progress`, "
                                                     "and a last `status` when the run is final",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              **_errors(404, 422, 503)}}},
            "/api/tunix/runs/{run_id}/cancel": {"post": {
                "parameters": [_RUN_ID],
                "responses": {"200": _json(_RUN), "202": _json(_RUN), **_errors(401, 404, 409, 503)}}},
            "/api/tunix/runs/{run_id}/resume": {"post": {
                "parameters": [_RUN_ID],
                "responses": {"202": _json(_RUN), **_errors(401, 404, 409, 503)}}},
            "/api/tunix/workers": {"get": {
                "summary": "The fleet: hosts, worker processes (alive or lost), the runs they hold, the queues.",
                "responses": {"200": _json({"$ref": "#/components/schemas/Fleet"}), **_errors(401, 503)}}},
            "/api/tunix/datasets": {"get": {
                "summary": "Built-in, shipped, $DATA_DIR/datasets and artifact-store (datasets/<key>.jsonl) datasets.",
                "responses": {"200": _json({"type": "object", "properties": {"data": {"type": "array", "items": {
                    "type": "object", "required": ["key", "kind", "description", "origin"], "properties": {
                        "key": {"type": "string"}, "kind": {"enum": ["synthetic", "jsonl"]},
                        "description": {"type": "string"},
                        "origin": {"enum": ["builtin", "shipped", "operator", "store"]},
                        "size": {"type": "integer"}, "etag": {"type": "string"}}}}}})}}},
            "/api/tunix/models": {"get": {"responses": {"200": _json({"type": "object"})}}},
            "/healthz": {"get": {"responses": {"200": _json({"type": "object"})}}},
            "/readyz": {"get": {"responses": {"200": _json({"type": "object"}), **_errors(503)}}},
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
