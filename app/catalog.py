"""What this installation can run."""

from dataclasses import asdict

from flask import Blueprint, current_app, jsonify

from tasks import catalog

bp = Blueprint("catalog", __name__, url_prefix="/api/tunix")


@bp.get("/datasets")
def list_datasets():
    """Built-in, shipped, ``$DATA_DIR/datasets`` and artifact-store datasets
    (``tasks/catalog.py``): ``key``, ``kind``, ``description``, ``origin``,
    and ``size`` (and a store object's ``etag``) where known.  An
    unreachable store leaves its last known datasets listed."""
    return jsonify(data=[ds.listing() for ds in catalog.datasets(current_app.config["SETTINGS"]).values()])


@bp.get("/models")
def list_models():
    return jsonify(data=[asdict(spec) for spec in catalog.models().values()])
