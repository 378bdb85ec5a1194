"""What this installation can run."""

from dataclasses import asdict

from flask import Blueprint, jsonify

from tasks import catalog

bp = Blueprint("catalog", __name__, url_prefix="/api/tunix")


@bp.get("/datasets")
def list_datasets():
    data = []
    for ds in catalog.datasets().values():
        item = {"key": ds.key, "kind": ds.kind, "description": ds.description}
        data.append(item)
    return jsonify(data=data)


@bp.get("/models")
def list_models():
    return jsonify(data=[asdict(spec) for spec in catalog.models().values()])
