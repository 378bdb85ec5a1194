"""Who is calling: users and their tokens, or the open modes of old.

An installation with a user (``tunix-admin create-user``, migration 0021)
authenticates every ``/api/`` request: ``Authorization: Bearer <token>``
names a live token of an enabled user, who acts with their role:

- ``viewer`` reads; ``member`` also submits and moves their own runs;
  ``admin`` acts on every run and manages users and tokens;
- any role manages its own tokens (``app/users.py``).

``API_TOKEN``, when set, still works there, as an admin with no name (the
runs it submits have no owner): the upgrade path of an installation that
used it alone.  Without a user, nothing changes from before: with
``API_TOKEN`` mutating requests need it (reads too with
``API_TOKEN_READS``); without it the API is open.

Liveness, readiness, metrics and the schema stay open for probes and
Prometheus, and so do the console's page and static files (the page asks for
the token and sends it with each call); ``METRICS_AUTH`` closes ``/metrics``
to all but ``API_TOKEN`` and live users' tokens (what a scraper is given).
A token is read from the header only: never from a URL, and never logged.
"""

import dataclasses
import hmac
import threading
import time

from flask import current_app, g, request

from tasks import registry

from .db import get_db
from .errors import ApiError

#: Paths that never need a token.
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
#: POSTs that only read (their body is a query too long for a URL): reads.
READING_POSTS = ("/api/tunix/runs/series",)
#: Seconds the answer to "has this installation a user?" is kept: the first
#: user turns authentication on within this long, at no cost per request.
USERS_CHECK_S = 1.0


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who makes the request: a user (``name``), or nobody in particular
    (``name`` None: an open installation, or ``API_TOKEN``)."""

    name: str | None
    role: str
    token_id: object = None
    via: str = "token"

    @property
    def is_admin(self):
        return self.role == "admin"

    def may_act_on(self, owner):
        """Whether this caller may move a run or sweep owned by ``owner``."""
        return self.is_admin or (self.name is not None and owner == self.name)

    @property
    def moves_only(self):
        """``may_act_on`` for many runs at once, as a filter the bulk moves
        apply in SQL: the owner this caller's bulk move is narrowed to (its
        own name: a member), or None (every run: an admin)."""
        if self.is_admin:
            return None
        assert self.name is not None, "every non-admin caller is a named user"
        return self.name


#: An open installation's caller, and ``API_TOKEN``'s: everything, as before users.
NOBODY = Caller(None, "admin", via="open")
API_TOKEN = Caller(None, "admin", via="API_TOKEN")

_users_lock = threading.Lock()


def any_users():
    """Whether the installation has a user (kept ``USERS_CHECK_S``, per app)."""
    seen = current_app.extensions.setdefault("tunix_users", {"checked": None, "any": False})
    now = time.monotonic()
    if seen["checked"] is not None and now - seen["checked"] <= USERS_CHECK_S:
        return seen["any"]
    # One thread reads it again while the others go on with the answer they
    # have: a refresh that waits for a busy pool must not hold every request
    # behind it (measured: a storm of 32 submits on a 1-connection pool then
    # answered its 503s one pool wait after another, up to 2.8 s).  Only the
    # first read, with no answer yet, is waited for.
    if not _users_lock.acquire(blocking=seen["checked"] is None):
        return seen["any"]
    try:
        if seen["checked"] is None or now - seen["checked"] > USERS_CHECK_S:
            seen["any"] = registry.any_users(get_db())
            seen["checked"] = now
    finally:
        _users_lock.release()
    return seen["any"]


def _bearer():
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _matches(given, token):
    # Constant-time: the comparison's duration says nothing about the token.
    return bool(token) and given is not None and hmac.compare_digest(given.encode(), token.encode())


def _unauthorized(message="a valid 'Authorization: Bearer <token>' header is required"):
    return ApiError(401, "unauthorized", message)


def _check():
    g.caller = NOBODY
    settings = current_app.config["SETTINGS"]
    if request.path == "/metrics" and settings.metrics_auth:
        # API_TOKEN or any live user's token (a scraper's), whatever its role.
        g.caller = _token_caller(settings, _bearer(), "/metrics needs 'Authorization: Bearer <token>' "
                                 "(METRICS_AUTH): API_TOKEN or a live token of an enabled user")
        return None
    if request.path in OPEN_PATHS or not request.path.startswith("/api/"):
        return None
    reading = request.method not in MUTATING or request.path in READING_POSTS
    given = _bearer()
    if current_app.config["USERS_AUTH"] and any_users():
        g.caller = _token_caller(settings, given, "a valid 'Authorization: Bearer <token>' header is required: a "
                                 "live token of an enabled user (tunix login; an admin makes users and tokens)")
        if not reading and g.caller.role == "viewer" and not request.path.startswith("/api/tunix/tokens"):
            raise ApiError(403, "forbidden", f"user {g.caller.name!r} is a viewer: viewers only read")
        return None
    if not settings.api_token or (reading and not settings.api_token_reads):
        return None
    if not _matches(given, settings.api_token):
        raise _unauthorized()
    g.caller = API_TOKEN
    return None


def _token_caller(settings, given, refusal):
    """Whom ``given`` (a bearer token or None) names: ``API_TOKEN``'s admin,
    or a live token's enabled user; 401 with ``refusal`` otherwise."""
    if _matches(given, settings.api_token):
        return API_TOKEN
    user = registry.token_user(get_db(), given) if given else None
    if user is None:
        raise _unauthorized(refusal)
    return Caller(user["name"], user["role"], user["token_id"])


def caller():
    """The request's ``Caller``."""
    return g.get("caller", NOBODY)


def require_admin(what):
    """403 unless the caller is an admin."""
    who = caller()
    if not who.is_admin:
        raise ApiError(403, "forbidden", f"{what} needs an admin; user {who.name!r} is a {who.role}")
    return who


def require_may_act_on(what, owner):
    """403 unless the caller may move ``what`` (``"run <id>"``, ``"sweep
    <id>"``), owned by ``owner``; the error names the owner."""
    who = caller()
    if not who.may_act_on(owner):
        whose = f"belongs to {owner!r}" if owner is not None else "has no owner (submitted with no user)"
        raise ApiError(403, "forbidden", f"{what} {whose}; a member moves only their own",
                       extra={"owner": owner})
    return who


def require_priority(priorities):
    """403 unless the caller is an admin or every priority of ``priorities``
    (``{field: priority}``) is at most ``PRIORITY_CEILING``."""
    ceiling = current_app.config["SETTINGS"].priority_ceiling
    over = {field: p for field, p in priorities.items() if p is not None and p > ceiling}
    who = caller()
    if over and not who.is_admin:
        raise ApiError(403, "forbidden", f"priority above {ceiling} (PRIORITY_CEILING) needs an admin; user "
                       f"{who.name!r} is a {who.role}",
                       [{"field": field, "message": f"{p} is above the ceiling {ceiling}"}
                        for field, p in over.items()],
                       extra={"ceiling": ceiling})
    return who


def require_queue_room(n):
    """429 ``quota_exceeded`` (with Retry-After) when ``n`` more runs would
    take the caller past ``USER_MAX_QUEUED`` waiting runs; nothing is written
    then.  Users only: runs with no owner have no quota.  Two submits of one
    user at the same instant may both pass (the count is read, not locked):
    the limit is a fair-use bound, not an invariant."""
    limit = current_app.config["SETTINGS"].user_max_queued
    who = caller()
    if not limit or who.name is None:
        return
    waiting = registry.user_waiting_runs(get_db(), who.name)
    if waiting + n > limit:
        raise ApiError(429, "quota_exceeded",
                       f"user {who.name!r} has {waiting} of {limit} runs waiting (USER_MAX_QUEUED); "
                       f"{n} more would pass it: wait for some to start, or cancel some",
                       extra={"limit": limit, "waiting": waiting, "asked": n})


def init_app(app):
    app.before_request(_check)
