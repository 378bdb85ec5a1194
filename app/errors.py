"""Every error leaves the API as ``{"error": {"code", "message", "fields"}}``."""

import logging

from flask import jsonify
from werkzeug.exceptions import HTTPException

from tasks import db
from tasks.errors import (
    DatabaseUnavailable,
    InvalidTransition,
    ObjectMissing,
    Overloaded,
    RunNotFound,
    SweepNotFound,
    StoreForbidden,
    StoreUnavailable,
    TunixError,
)

logger = logging.getLogger(__name__)

#: Status code of each error the platform raises on purpose.
STATUS = {
    RunNotFound: 404,
    SweepNotFound: 404,
    InvalidTransition: 409,
    DatabaseUnavailable: 503,
    Overloaded: 503,
    StoreUnavailable: 503,
    # The store refused the API's credentials: no retry mends that (no Retry-After).
    StoreForbidden: 502,
    ObjectMissing: 404,
}

#: Seconds a client is asked to wait after a 503: a busy pool frees within
#: a second; a database outage lasts longer.
RETRY_AFTER_S = {"overloaded": "1"}
#: ... after a 429 (a user's queued runs over ``USER_MAX_QUEUED``): runs
#: start within minutes, not seconds.
QUOTA_RETRY_AFTER_S = "60"


class ApiError(Exception):
    """An error a view answers with directly."""

    def __init__(self, status, code, message, fields=None, extra=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []
        self.extra = extra or {}


def error_response(status, code, message, fields=None, /, **extra):
    # Positional-only: `extra` may hold a key named `status` (InvalidTransition).
    body = {"error": {"code": code, "message": message, "fields": fields or []}}
    body["error"].update(extra)
    response = jsonify(body)
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_S.get(code, "5")
    if status == 429:
        response.headers["Retry-After"] = QUOTA_RETRY_AFTER_S
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="tunix-rt"'
    return response


def _api_error(exc):
    return error_response(exc.status, exc.code, exc.message, exc.fields, **exc.extra)


def _tunix_error(exc):
    status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)
    extra = {}
    if isinstance(exc, InvalidTransition):
        extra = {"status": exc.current}
    if status >= 500:
        logger.error("%s: %s", type(exc).__name__, exc)
    return error_response(status, exc.code, str(exc), **extra)


def _http_error(exc):
    code = (exc.name or "error").lower().replace(" ", "_")
    response = error_response(exc.code or 500, code, exc.description or exc.name)
    # Werkzeug's own headers of the error: a 405's Allow (RFC 9110 requires it).
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _db_error(exc):
    # A handled error reaches teardown as no error: the connection must be
    # marked here, or a read-only one (which psycopg2 leaves open) would go
    # back to the pool and fail the next request too.
    from .db import discard_db

    discard_db()
    if isinstance(exc, db.STATEMENT_TIMEOUT):
        logger.error("statement past DB_STATEMENT_TIMEOUT_S: %s", exc)
        return error_response(503, "database_timeout", "the database took too long on this request "
                              "(DB_STATEMENT_TIMEOUT_S); retry later, or ask for less")
    if isinstance(exc, db.READ_ONLY):
        logger.error("database refuses writes (read-only: a failover?): %s", exc)
        return error_response(503, DatabaseUnavailable.code, "database is read-only (a failover?); retry later")
    logger.error("database unavailable: %s", exc)
    return error_response(503, DatabaseUnavailable.code, "database unavailable; retry later")


def _unexpected(exc):
    logger.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; see the API log")


def init_app(app):
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(TunixError, _tunix_error)
    app.register_error_handler(HTTPException, _http_error)
    for cls in db.DISCONNECTS:
        app.register_error_handler(cls, _db_error)
    app.register_error_handler(Exception, _unexpected)
