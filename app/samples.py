"""Samples: see what a checkpoint does.

``POST /api/tunix/runs/{run_id}/samples`` asks for completions of a few
prompts from one of the run's recorded checkpoints (``step``; null: the
latest); ``POST /api/tunix/models/{model_id}/samples`` from a base model, no
run needed.  Both answer **202** at once with the pending sample
(``Location: /api/tunix/samples/{sample_id}``): the row and its message on
the ``tunix-samples`` queue are written in one statement
(``registry.submit_sample``), and a worker generates (``workers/sampling``),
never this process.  A run with no recorded checkpoint, or a step that is
not recorded, is a **409** ``no_checkpoint`` listing the recorded steps;
nothing is written then.
"""

import uuid

from flask import Blueprint, jsonify

from tasks import actors, catalog, registry
from tasks.errors import RunNotFound
from tasks.sample_spec import BaseSampleRequest, SampleList, SampleRequest

from .checkpoint_requests import accepted, get_row, recorded_step, run_rows, ts, validated
from .db import close_db, get_db
from .errors import ApiError
from .parse import parse_run_id

bp = Blueprint("samples", __name__, url_prefix="/api/tunix")


def sample_json(row):
    return {"sample_id": str(row["id"]), "status": row["status"],
            "run_id": str(row["run_id"]) if row["run_id"] else None, "model_id": row["model_id"],
            "step": row["step"], "params": row["params"], "outputs": row["outputs"], "error": row["error"],
            "worker_id": row["worker_id"], "timings": row["timings"], "created_at": ts(row["created_at"]),
            "started_at": ts(row["started_at"]), "finished_at": ts(row["finished_at"])}


def _request(schema=SampleRequest):
    """The validated body, or the 422 naming each bad field."""
    return validated(schema)


def _submit(run_id, model_id, step, request):
    sample_id = uuid.uuid4()
    try:
        row = registry.submit_sample(get_db(), sample_id=sample_id, run_id=run_id, model_id=model_id, step=step,
                                     params=request.resolved(), message=actors.sample_outbox_row(sample_id))
    finally:
        close_db()
    return accepted(sample_json(row), "samples.get_sample", sample_id=sample_id)


@bp.post("/runs/<run_id:run_id>/samples")
def sample_run(run_id):
    """Sample the run's checkpoint of ``step`` (null: its latest, resolved
    now and stored, so the request can be repeated)."""
    run_id = parse_run_id(run_id)
    request = _request()
    conn = get_db()
    run = registry.get_status(conn, run_id)
    if run is None:
        raise RunNotFound(run_id)
    step = recorded_step(conn, run_id, run, request.step, "a sample")
    model_id = registry.get_run(conn, run_id)["model_id"]
    return _submit(run_id, model_id, step, request)


@bp.post("/models/<model_id>/samples")
def sample_model(model_id):
    """Sample a base model: a real preset's weights; a tiny model random,
    initialised from the request's seed (what a run of that seed starts from)."""
    if catalog.get_model(model_id) is None:
        raise ApiError(404, "model_not_found", f"unknown model {model_id!r}; known models: "
                                               f"{', '.join(catalog.models())}")
    return _submit(None, model_id, None, _request(BaseSampleRequest))


@bp.get("/samples/<sample_id>")
def get_sample(sample_id):
    return jsonify(sample_json(get_row(registry.get_sample, sample_id, "sample_not_found", "sample")))


@bp.get("/runs/<run_id:run_id>/samples")
def list_samples(run_id):
    """The run's sample requests, newest first (the latest 100)."""
    return run_rows(run_id, registry.list_run_samples, sample_json)


# ---------------------------------------------------------------- OpenAPI


def openapi_schemas():
    """``SampleRequest``, ``Sample``, ``SampleList`` (and what they use)."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema([(SampleList, "serialization")], ref_template="#/components/schemas/{model}")
    schemas = dict(top["$defs"])
    schemas["SampleRequest"] = SampleRequest.model_json_schema()
    schemas["BaseSampleRequest"] = BaseSampleRequest.model_json_schema()
    return schemas


def openapi_paths(ref, json_answer, errors, run_id_param):
    """The four operations, in the document's own helpers' terms."""
    from tasks.models import MODELS

    body = {"required": True, "content": {"application/json": {"schema": ref("SampleRequest")}}}
    base_body = {"required": True, "content": {"application/json": {"schema": ref("BaseSampleRequest")}}}
    sample = json_answer(ref("Sample"))
    accepted = dict(json_answer(ref("Sample"), "accepted: pending until a worker generates it"),
                    headers={"Location": {"schema": {"type": "string"}}},
                    links={"GetSample": {"operationId": "getSample",
                                         "parameters": {"sample_id": "$response.body#/sample_id"}}})
    model_param = {"name": "model_id", "in": "path", "required": True,
                   "schema": {"type": "string", "enum": list(MODELS)}}
    sample_param = {"name": "sample_id", "in": "path", "required": True,
                    "schema": {"type": "string", "format": "uuid"}}
    return {
        "/api/tunix/runs/{run_id}/samples": {
            "post": {"operationId": "sampleRun",
                     "summary": "Generate from one of the run's recorded checkpoints (step null: its latest); "
                                "409 no_checkpoint when it has none at that step.",
                     "parameters": [run_id_param], "requestBody": body,
                     "responses": {"202": accepted, **errors(400, 401, 404, 405, 409, 413, 415, 422, 503)}},
            "get": {"operationId": "listRunSamples", "summary": "The run's samples, newest first.",
                    "parameters": [run_id_param],
                    "responses": {"200": json_answer(ref("SampleList")), **errors(401, 404, 405, 503)}}},
        "/api/tunix/models/{model_id}/samples": {
            "post": {"operationId": "sampleModel",
                     "summary": "Generate from a base model (a tiny one is random, initialised from the seed).",
                     "parameters": [model_param], "requestBody": base_body,
                     "responses": {"202": accepted, **errors(400, 401, 404, 405, 413, 415, 422, 503)}}},
        "/api/tunix/samples/{sample_id}": {
            "get": {"operationId": "getSample", "summary": "A sample: its status, outputs or error.",
                    "parameters": [sample_param], "responses": {"200": sample, **errors(401, 404, 405, 503)}}},
    }
