"""A run's checkpoints: list the recorded ones, download one as a tar.

Only recorded steps exist (``tunix_checkpoints``: a worker records a step
once it is in the artifact store, ``workers/checkpoint_sync.py``).  A
download streams the object from the store (``tasks/artifacts.py``), so the
API needs no disk shared with the workers, and holds one chunk in memory.
The object is exactly what was recorded: its ``X-Checkpoint-SHA256`` header
and the listing's ``sha256`` let a client check it.
"""

from flask import Blueprint, Response, current_app, jsonify, stream_with_context

from tasks import registry
from tasks.artifacts import get_store, read_chunks
from tasks.errors import ObjectMissing, RunNotFound

from .db import close_db, get_db
from .errors import ApiError
from .parse import parse_run_id

bp = Blueprint("checkpoints", __name__, url_prefix="/api/tunix")


def _listed(run_id, row):
    return {"step": row["step"], "attempt": row["attempt"], "size_bytes": row["size_bytes"], "sha256": row["sha256"],
            "loss": row["loss"], "created_at": row["created_at"].isoformat(), "uri": row["uri"],
            "download": f"/api/tunix/runs/{run_id}/checkpoints/{row['step']}"}


@bp.get("/runs/<run_id:run_id>/checkpoints")
def list_checkpoints(run_id):
    run_id = parse_run_id(run_id)
    conn = get_db()
    if registry.get_status(conn, run_id) is None:
        raise RunNotFound(run_id)
    return jsonify(data=[_listed(run_id, row) for row in registry.list_checkpoints(conn, run_id)])


@bp.get("/runs/<run_id:run_id>/checkpoints/<int:step>")
def download_checkpoint(run_id, step):
    run_id = parse_run_id(run_id)
    conn = get_db()
    if registry.get_status(conn, run_id) is None:
        raise RunNotFound(run_id)
    row = registry.get_checkpoint(conn, run_id, step)
    # The stream may outlast a short request: the connection goes back now.
    close_db()
    if row is None:
        raise ApiError(404, "checkpoint_not_found", f"run {run_id} has no recorded checkpoint at step {step}")
    store = get_store(current_app.config["SETTINGS"])
    try:
        source = store.open(row["object_key"])
    except ObjectMissing:
        # Deleted by retention between the read and now.
        raise ApiError(404, "checkpoint_not_found", f"run {run_id} has no recorded checkpoint at step {step}") \
            from None

    headers = {"Content-Length": str(row["size_bytes"]), "X-Checkpoint-SHA256": row["sha256"],
               "Content-Disposition": f'attachment; filename="{run_id}-step-{step}.tar"'}
    return Response(stream_with_context(read_chunks(source)), mimetype="application/x-tar", headers=headers)
