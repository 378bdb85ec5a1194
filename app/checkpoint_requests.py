"""What the samples and the exports endpoints share (``app/samples.py``,
``app/exports.py``): requests for a job on one of a run's recorded
checkpoints, answered 202 at once and done by a worker.
"""

import uuid

from flask import jsonify, url_for

from tasks import registry
from tasks.errors import RunNotFound
from tasks.run_spec import ValidationError, field_errors

from .db import get_db
from .errors import ApiError
from .parse import json_body, parse_run_id


def ts(value):
    return value.isoformat() if value is not None else None


def validated(schema):
    """The body validated by ``schema``, or the 422 naming each bad field."""
    try:
        return schema.model_validate(json_body())
    except ValidationError as exc:
        fields = field_errors(exc)
        raise ApiError(422, "validation_error", f"{len(fields)} invalid field(s)", fields) from None


def recorded_step(conn, run_id, run, step, needs):
    """``step`` (None: the run's latest recorded one, resolved now and stored,
    so the request can be repeated), or the 409 ``no_checkpoint`` listing the
    recorded steps; ``needs``: "a sample", "an export"."""
    recorded = [row["step"] for row in registry.list_checkpoints(conn, run_id)]
    step = step if step is not None else (max(recorded) if recorded else None)
    if step is None or step not in recorded:
        what = "has no recorded checkpoint" if not recorded else f"has no recorded checkpoint at step {step}"
        raise ApiError(409, "no_checkpoint", f"run {run_id} {what} (status {run['status']}); {needs} needs one",
                       [{"field": "step", "message": f"recorded steps: {sorted(recorded)}"}] if recorded else None,
                       extra={"recorded_steps": sorted(recorded), "status": run["status"]})
    return step


def accepted(body, endpoint, **ids):
    """The 202 answer: the pending row and ``Location`` its GET."""
    return jsonify(body), 202, {"Location": url_for(endpoint, **{k: str(v) for k, v in ids.items()})}


def parse_id(raw, code, noun):
    """``raw`` as a UUID, or the 404 ``code`` (``no <noun> 'raw'``)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, code, f"no {noun} {raw!r}") from None


def get_row(get, raw, code, noun):
    """The row ``get(conn, id)`` finds for the id ``raw``, or the 404 ``code``."""
    row = get(get_db(), parse_id(raw, code, noun))
    if row is None:
        raise ApiError(404, code, f"no {noun} {raw!r}")
    return row


def run_rows(run_id, list_rows, to_json):
    """``{"data": [...]}``: the run's rows (``list_rows(conn, run_id)``), or
    the 404 of an unknown run."""
    run_id = parse_run_id(run_id)
    conn = get_db()
    if registry.get_status(conn, run_id) is None:
        raise RunNotFound(run_id)
    return jsonify(data=[to_json(row) for row in list_rows(conn, run_id)])
