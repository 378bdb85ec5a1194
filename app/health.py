"""Liveness and readiness."""

from flask import Blueprint, jsonify

from tasks import migrate
from tasks.errors import DatabaseUnavailable

from .db import get_db
from .errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when the database answers and every migration is applied."""
    try:
        missing = migrate.pending(get_db())
    except DatabaseUnavailable as exc:
        return error_response(503, "not_ready", f"database unavailable: {exc}")
    if missing:
        return error_response(503, "not_ready", f"migrations not applied: {', '.join(missing)}")
    return jsonify(status="ready")
