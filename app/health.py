"""Liveness, readiness, and the schema check at the API's start."""

import logging

import psycopg2
from flask import Blueprint, jsonify

from tasks import db, migrate
from tasks.errors import DatabaseUnavailable

from .db import get_db
from .errors import error_response

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

#: Seconds the start check waits for the database to answer before it lets
#: the API start anyway (``/readyz`` then tells).
START_CHECK_CONNECT_S = 3


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when the database answers, no applied migration's file changed,
    and every migration is applied.

    A database *ahead* of this API (a newer release migrated it) leaves a
    running API ready, saying so: during a rolling upgrade the chart's hook
    migrates first, and migrations only add (expand, then contract in a
    later release), so the old pods serve until the new ones are ready;
    unready at once, every old pod would leave the Service together.  An API
    started on such a database refuses to start (``check_schema_at_start``).
    """
    try:
        found = migrate.state(get_db())
    except DatabaseUnavailable as exc:
        return error_response(503, "not_ready", f"database unavailable: {exc}")
    if found.changed:
        return error_response(503, "not_ready", "; ".join(found.problems("this API")))
    if found.pending:
        return error_response(503, "not_ready", f"migrations not applied: {', '.join(found.pending)}")
    if found.unknown:
        return jsonify(status="ready", migrations="ahead", warning="; ".join(found.problems("this API")))
    return jsonify(status="ready")


def check_schema_at_start(url):
    """Refuse to start (``migrate.SchemaMismatch``) on a database that holds a
    migration this code does not know, or a changed one.

    Only when the database answers: one that is down or still starting must
    not make the API crash-loop; it starts, unready, and ``/readyz`` says
    why until the database is back.  Pending migrations do not stop it
    either (``/readyz`` is 503 until they are applied).
    """
    if not url:
        return
    try:
        conn = db.connect(url, application_name="tunix-rt-api-start", connect_timeout=START_CHECK_CONNECT_S)
    except psycopg2.Error as exc:
        logger.warning("schema not checked at start, the database does not answer (/readyz tells): %s",
                       str(exc).strip())
        return
    try:
        found = migrate.state(conn)
    except psycopg2.Error as exc:
        logger.warning("schema not checked at start: %s", str(exc).strip())
        return
    finally:
        conn.close()
    if found.conflicts:
        error = migrate.SchemaMismatch(found, "this API")
        logger.error("refusing to start: %s", error)
        raise error
