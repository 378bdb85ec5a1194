"""Optional bearer-token authentication.

With ``API_TOKEN`` set, every mutating request needs
``Authorization: Bearer <token>`` (401 otherwise); with ``API_TOKEN_READS=1 (or true, yes, on)``
reads need it too.  Liveness, readiness and metrics stay open for probes and
Prometheus, and so do the console's page and static files (the page asks for
the token and sends it with each call).
"""

import hmac

from flask import current_app, request

from .errors import ApiError

#: Paths that never need a token.
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
#: POSTs that only read (their body is a query too long for a URL): reads.
READING_POSTS = ("/api/tunix/runs/series",)


def _check():
    settings = current_app.config["SETTINGS"]
    token = settings.api_token
    if not token or request.path in OPEN_PATHS or not request.path.startswith("/api/"):
        return None
    reading = request.method not in MUTATING or request.path in READING_POSTS
    if reading and not settings.api_token_reads:
        return None
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    # Constant-time: the comparison's duration says nothing about the token.
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' header is required")
    return None


def init_app(app):
    app.before_request(_check)
