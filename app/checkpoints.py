"""A run's checkpoints: list them, download one as a .tar.gz.

Checkpoints live in ``$DATA_DIR/runs/<run_id>/checkpoints/<step>/`` (orbax's
layout), written by the training.  Paths come only from a parsed run id and
an integer step, and are checked to resolve inside the run's folder, so no
request can reach a file outside it.
"""

import datetime
import pathlib
import tarfile
import tempfile

from flask import Blueprint, current_app, jsonify, send_file

from tasks import registry
from tasks.errors import RunNotFound

from .db import get_db
from .errors import ApiError
from .runs import parse_run_id

bp = Blueprint("checkpoints", __name__, url_prefix="/api/tunix")


def _run_dir(run_id):
    if registry.get_status(get_db(), run_id) is None:
        raise RunNotFound(run_id)
    root = pathlib.Path(current_app.config["SETTINGS"].runs_dir).resolve()
    return root / str(run_id)


def _inside(path, parent):
    resolved = path.resolve()
    return resolved == parent.resolve() or parent.resolve() in resolved.parents


def checkpoints(run_dir):
    """``{step: folder}`` of the run's complete checkpoints."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return {}
    found = {}
    for child in folder.iterdir():
        # orbax writes into a temporary name and renames when complete.
        if child.is_dir() and child.name.isdigit() and _inside(child, run_dir):
            found[int(child.name)] = child
    return dict(sorted(found.items()))


def _size(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@bp.get("/runs/<run_id>/checkpoints")
def list_checkpoints(run_id):
    run_id = parse_run_id(run_id)
    data = []
    for step, path in checkpoints(_run_dir(run_id)).items():
        created = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
        data.append({"step": step, "size_bytes": _size(path), "created_at": created.isoformat(),
                     "download": f"/api/tunix/runs/{run_id}/checkpoints/{step}"})
    return jsonify(data=data)


@bp.get("/runs/<run_id>/checkpoints/<int:step>")
def download_checkpoint(run_id, step):
    run_id = parse_run_id(run_id)
    path = checkpoints(_run_dir(run_id)).get(step)
    if path is None:
        raise ApiError(404, "checkpoint_not_found", f"run {run_id} has no checkpoint at step {step}")
    archive = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        # Links are not followed out of the run's folder.
        tar.add(path, arcname=f"checkpoint-{step}", filter=lambda info: None if info.issym() or info.islnk() else info)
    archive.seek(0)
    return send_file(archive, mimetype="application/gzip", as_attachment=True,
                     download_name=f"{run_id}-step-{step}.tar.gz")
