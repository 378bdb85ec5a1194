"""Exports: take the model away.

``POST /api/tunix/runs/{run_id}/exports`` (``{"step": N | null}``) asks for
one of the run's recorded checkpoints (null: the latest, resolved now) as a
standalone folder: a LoRA run's adapters merged into the base, Hugging Face
``safetensors`` names, ``config.json``, the tokenizer and
``tunix_export.json``, tarred into the artifact store with its sha256.  It
answers **202** at once with the pending export (``Location:
/api/tunix/exports/{export_id}``): the row and its message on the
``tunix-samples`` queue are written in one statement
(``registry.submit_export``), and a worker exports (``workers/exporting``).
A run with no recorded checkpoint, or a step that is not recorded, is a
**409** ``no_checkpoint`` listing the recorded steps; a run whose model
family has no exporter is a **409** ``export_unsupported`` (every catalog
family has one, gemma3, llama3 and qwen3: ``EXPORT_FAMILIES``; the check
guards a family added without one); nothing is written then.
``GET /api/tunix/exports/{export_id}/download`` streams the tar
(``X-Export-SHA256``), as a checkpoint's download does.  Asking again for a
step whose export is pending, running or completed (not deleted)
makes nothing and answers **200** with that one (``"reused": true``), and
``DELETE /api/tunix/exports/{export_id}`` removes a final export's tar and
stamps ``deleted_at`` (its download then a **410** ``export_deleted``;
pending or running: **409** ``export_busy``).
"""

import uuid

from flask import Blueprint, Response, current_app, jsonify, stream_with_context, url_for

from tasks import actors, registry
from tasks.artifacts import get_store, read_chunks
from tasks.errors import ObjectMissing, RunNotFound
from tasks.export_spec import EXPORT_FAMILIES, EXPORT_FINAL, ExportList, ExportRequest
from tasks.jobs import JobStatus
from tasks.models import get_model

from .checkpoint_requests import accepted, get_row, recorded_step, run_rows, ts, validated
from .db import close_db, get_db
from .errors import ApiError
from .parse import parse_run_id

bp = Blueprint("exports", __name__, url_prefix="/api/tunix")


def export_json(row):
    completed = row["status"] == JobStatus.COMPLETED and row["deleted_at"] is None
    return {"export_id": str(row["id"]), "status": row["status"], "run_id": str(row["run_id"]),
            "model_id": row["model_id"], "step": row["step"], "size_bytes": row["size_bytes"],
            "sha256": row["sha256"], "uri": row["uri"],
            "download": f"/api/tunix/exports/{row['id']}/download" if completed else None,
            "manifest": row["manifest"], "error": row["error"], "worker_id": row["worker_id"],
            "timings": row["timings"], "created_at": ts(row["created_at"]), "started_at": ts(row["started_at"]),
            "finished_at": ts(row["finished_at"]), "deleted_at": ts(row["deleted_at"])}


def _request():
    """The validated body, or the 422 naming each bad field."""
    return validated(ExportRequest)


@bp.post("/runs/<run_id:run_id>/exports")
def export_run(run_id):
    run_id = parse_run_id(run_id)
    request = _request()
    conn = get_db()
    run = registry.get_status(conn, run_id)
    if run is None:
        raise RunNotFound(run_id)
    model_id = registry.get_run(conn, run_id)["model_id"]
    spec = get_model(model_id)
    if spec is None or spec.family not in EXPORT_FAMILIES:
        raise ApiError(409, "export_unsupported",
                       f"run {run_id} trains {model_id!r} (family {spec.family if spec else 'unknown'}): "
                       f"export supports {', '.join(EXPORT_FAMILIES)} models")
    step = recorded_step(conn, run_id, run, request.step, "an export")
    export_id = uuid.uuid4()
    try:
        # One statement: a live export of the step (pending, running, completed) is answered, nothing written.
        row = registry.submit_export(conn, export_id=export_id, run_id=run_id, model_id=model_id, step=step,
                                     message=actors.export_outbox_row(export_id))
    finally:
        close_db()
    if row["reused"]:
        return jsonify(dict(export_json(row), reused=True)), 200, {
            "Location": url_for("exports.get_export", export_id=str(row["id"]))}
    return accepted(dict(export_json(row), reused=False), "exports.get_export", export_id=export_id)


def _export(raw):
    return get_row(registry.get_export, raw, "export_not_found", "export")


@bp.get("/exports/<export_id>")
def get_export(export_id):
    return jsonify(export_json(_export(export_id)))


@bp.get("/runs/<run_id:run_id>/exports")
def list_exports(run_id):
    """The run's exports, newest first (the latest 100)."""
    return run_rows(run_id, registry.list_run_exports, export_json)


@bp.delete("/exports/<export_id>")
def delete_export(export_id):
    """Remove a final export's tar from the store, then stamp the row
    ``deleted_at`` (kept: its history).  The object goes first, so a store
    that is down (503) leaves the export as it was; a missing object counts
    as removed, so a DELETE again answers 200 and the same row (and removes a
    tar left behind, as migration 0020 left its duplicates').  A pending or
    running export is a 409 ``export_busy``: a worker may still write its tar."""
    row = _export(export_id)
    if row["status"] not in EXPORT_FINAL:
        raise ApiError(409, "export_busy", f"export {export_id} is {row['status']}; only a completed or failed "
                                           "export can be deleted", extra={"status": row["status"]})
    # The store call may wait on an outage (seconds): the connection goes back meanwhile.
    close_db()
    if row["object_key"] is not None:
        get_store(current_app.config["SETTINGS"]).delete(row["object_key"])
    deleted = registry.delete_export(get_db(), row["id"])
    if deleted is None:  # its run was deleted meanwhile, and its exports with it
        raise ApiError(404, "export_not_found", f"no export {export_id!r}")
    return jsonify(export_json(deleted))


@bp.get("/exports/<export_id>/download")
def download_export(export_id):
    """The export's tar, streamed from the store (one chunk in memory)."""
    row = _export(export_id)
    # The stream may outlast a short request: the connection goes back now.
    close_db()
    if row["deleted_at"] is not None:
        raise ApiError(410, "export_deleted", f"export {export_id} was deleted at {ts(row['deleted_at'])}: its tar is "
                                              f"gone from the store; ask for the export of run {row['run_id']} step "
                                              f"{row['step']} again", extra={"deleted_at": ts(row["deleted_at"])})
    if row["status"] != JobStatus.COMPLETED:
        raise ApiError(409, "export_not_ready", f"export {export_id} is {row['status']}; its tar exists once it "
                                                "is completed", extra={"status": row["status"]})
    store = get_store(current_app.config["SETTINGS"])
    try:
        source = store.open(row["object_key"])
    except ObjectMissing:
        raise ApiError(404, "export_not_found", f"export {export_id}: its tar is no longer in the store") from None

    name = (row["manifest"] or {}).get("folder") or f"{row['run_id']}-step{row['step']}"
    headers = {"Content-Length": str(row["size_bytes"]), "X-Export-SHA256": row["sha256"],
               "Content-Disposition": f'attachment; filename="{name}.tar"'}
    return Response(stream_with_context(read_chunks(source)), mimetype="application/x-tar", headers=headers)


# ---------------------------------------------------------------- OpenAPI


def openapi_schemas():
    """``ExportRequest``, ``Export``, ``ExportList``."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema([(ExportList, "serialization")], ref_template="#/components/schemas/{model}")
    schemas = dict(top["$defs"])
    schemas["ExportRequest"] = ExportRequest.model_json_schema()
    return schemas


def openapi_paths(ref, json_answer, errors, run_id_param):
    body = {"required": True, "content": {"application/json": {"schema": ref("ExportRequest")}}}
    links = {"GetExport": {"operationId": "getExport", "parameters": {"export_id": "$response.body#/export_id"}}}
    accepted = dict(json_answer(ref("Export"), "accepted: pending until a worker exports it"),
                    headers={"Location": {"schema": {"type": "string"}}}, links=links)
    reused = dict(json_answer(ref("Export"), "reused: the run's step has a live export (pending, running or "
                                             "completed, not deleted); it is the answer (reused: true), nothing "
                                             "new is made"),
                  headers={"Location": {"schema": {"type": "string"}}}, links=links)
    gone = {"410": json_answer(ref("Error"), "export_deleted: the export was deleted, its tar is gone")}
    export_param = {"name": "export_id", "in": "path", "required": True,
                    "schema": {"type": "string", "format": "uuid"}}
    tar = {"description": "the export's tar (a folder: model.safetensors, config.json, the tokenizer, "
                          "tunix_export.json); its sha256 in X-Export-SHA256",
           "headers": {"X-Export-SHA256": {"schema": {"type": "string"}}},
           "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}
    return {
        "/api/tunix/runs/{run_id}/exports": {
            "post": {"operationId": "exportRun",
                     "summary": "Export one of the run's recorded checkpoints (step null: its latest) as a "
                                "standalone folder (LoRA merged, HF safetensors names, config.json, tokenizer), "
                                "tarred with its sha256; 409 no_checkpoint, 409 export_unsupported.",
                     "parameters": [run_id_param], "requestBody": body,
                     "responses": {"200": reused, "202": accepted,
                                   **errors(400, 401, 404, 405, 409, 413, 415, 422, 503)}},
            "get": {"operationId": "listRunExports", "summary": "The run's exports, newest first.",
                    "parameters": [run_id_param],
                    "responses": {"200": json_answer(ref("ExportList")), **errors(401, 404, 405, 503)}}},
        "/api/tunix/exports/{export_id}": {
            "get": {"operationId": "getExport", "summary": "An export: its status, tar (size, sha256) or error.",
                    "parameters": [export_param], "responses": {"200": json_answer(ref("Export")),
                                                                **errors(401, 404, 405, 503)}},
            "delete": {"operationId": "deleteExport",
                       "summary": "Remove a completed (or failed) export's tar from the store and mark it deleted "
                                  "(deleted_at; the row stays); again: 200, the same; 409 export_busy while "
                                  "pending or running; 503 when the store is down (nothing changed).",
                       "parameters": [export_param],
                       "responses": {"200": json_answer(ref("Export"), "deleted (or deleted already)"),
                                     **errors(401, 404, 405, 409, 503)}}},
        "/api/tunix/exports/{export_id}/download": {
            "get": {"operationId": "downloadExport",
                    "summary": "Stream the completed export's tar; 409 before, 410 once deleted.",
                    "parameters": [export_param],
                    "responses": {"200": tar, **errors(401, 404, 405, 409, 503), **gone}}},
    }
