"""Users, tokens, who am I, and the audit trail (issue #21).

- ``GET /api/tunix/me``: who the request's token acts as, and the
  installation's mode.
- ``GET/POST /api/tunix/users``, ``PATCH /api/tunix/users/{name}``: admins
  list, make (with a first token, shown once), change a role, disable or
  enable users.  The last enabled admin cannot be demoted or disabled (409).
- ``GET/POST /api/tunix/tokens``, ``DELETE /api/tunix/tokens/{id}``: any
  user lists, makes and revokes their own tokens; an admin anyone's.  A token
  appears in clear once, in the answer that made it.
- ``GET /api/tunix/audit``: admins read the trail (``app/audit.py`` writes it).
"""

import datetime
import re
import uuid

from flask import Blueprint, current_app, jsonify, request

from tasks import registry
from tasks.user_spec import NAME_PATTERN, AuditEntry, Me, Token, TokenRequest, User, UserRequest, UserUpdate

from . import audit
from .auth import any_users, caller, require_admin
from .checkpoint_requests import parse_id, ts, validated
from .db import get_db, transaction
from .errors import ApiError
from .parse import int_arg

bp = Blueprint("users", __name__, url_prefix="/api/tunix")
#: The largest audit entry id ``?before_id=`` takes (the document says it too:
#: a plain schemathesis run sent 1.9e25 and counted the 422 against us).
MAX_AUDIT_ID = 2**62


def token_json(row, token=None):
    return Token(token_id=str(row["id"]), user=row["user_name"], label=row["label"], prefix=row["prefix"],
                 created_at=ts(row["created_at"]), created_by=row["created_by"], expires_at=ts(row["expires_at"]),
                 revoked_at=ts(row["revoked_at"]), last_used_at=ts(row["last_used_at"]),
                 token=token).model_dump()


def user_json(row):
    return User(name=row["name"], role=row["role"], created_at=ts(row["created_at"]), created_by=row["created_by"],
                disabled_at=ts(row["disabled_at"]), live_tokens=row.get("live_tokens")).model_dump()


@bp.get("/me")
def me():
    who = caller()
    mode = "users" if current_app.config["USERS_AUTH"] and any_users() else ("token" if current_app.config["SETTINGS"].api_token else "open")
    return jsonify(Me(name=who.name, role=who.role, via=who.via,
                      token_id=str(who.token_id) if who.token_id else None, auth=mode).model_dump())


# -- users ---------------------------------------------------------------

@bp.get("/users")
def list_users():
    require_admin("listing users")
    return jsonify({"data": [user_json(r) for r in registry.list_users(get_db())]})


@bp.post("/users")
def create_user():
    who = require_admin("making a user")
    if who.via == "open":
        # Anyone could make themselves an admin of an open installation.
        raise ApiError(403, "forbidden", "this installation has no users yet: make the first admin on the server "
                                         "(tunix-admin create-user NAME), then use its token")
    body = validated(UserRequest)
    with transaction() as conn:
        row = registry.create_user(conn, body.name, body.role, created_by=who.name)
        if row is None:
            raise ApiError(409, "user_exists", f"a user named {body.name!r} exists; names are never reused")
        expires = TokenRequest(expires_in_days=body.token_expires_in_days).expires_at()
        token, token_row = registry.create_token(conn, body.name, label="first", created_by=who.name,
                                                 expires_at=expires)
    return jsonify({"user": user_json(row), "token": token_json(token_row, token)}), 201


def _enabled_admins(conn):
    return [u["name"] for u in registry.list_users(conn) if u["role"] == "admin" and u["disabled_at"] is None]


@bp.patch("/users/<name>")
def update_user(name):
    require_admin("changing a user")
    body = validated(UserUpdate)
    with transaction() as conn:
        current = registry.get_user(conn, name)
        if current is None:
            raise ApiError(404, "user_not_found", f"no user {name!r}")
        losing_admin = current["role"] == "admin" and current["disabled_at"] is None and (
            (body.role is not None and body.role != "admin") or body.disabled)
        if losing_admin and _enabled_admins(conn) == [name]:
            raise ApiError(409, "last_admin", f"{name!r} is the last enabled admin: make another admin first")
        row = registry.update_user(conn, name, role=body.role, disabled=body.disabled)
    return jsonify(user_json(row))


# -- tokens --------------------------------------------------------------

def _own_or_admin(user_name, what):
    who = caller()
    if who.name is not None and user_name == who.name:
        return who
    if who.is_admin:
        return who
    raise ApiError(403, "forbidden", f"{what}: the token belongs to {user_name!r}; a {who.role} manages only "
                                     "their own")


@bp.get("/tokens")
def list_tokens():
    """The caller's tokens; an admin's ``?user=NAME`` (or ``?user=*``: everyone's).
    A caller with no name (an open installation, ``API_TOKEN``: admins) gets everyone's."""
    who = caller()
    user = request.args.get("user")
    if user is None:
        user = who.name or "*"
    if user != "*" and not re.match(NAME_PATTERN, user):
        raise ApiError(422, "validation_error", "user must be a user's name or *",
                       [{"field": "user", "message": f"not a user's name: {user[:70]!r}"}])
    if user != who.name:
        require_admin("listing another user's tokens")
    rows = registry.list_tokens(get_db(), None if user == "*" else user)
    return jsonify({"data": [token_json(r) for r in rows]})


@bp.post("/tokens")
def create_token():
    who = caller()
    body = validated(TokenRequest)
    user = body.user or who.name
    if user is None:
        # Valid as sent, but this caller is nobody a token could be for.
        raise ApiError(409, "no_user", "the request has no user to make a token for (an open installation or "
                                       "API_TOKEN): name one in 'user'")
    _own_or_admin(user, "making a token")
    with transaction() as conn:
        target = registry.get_user(conn, user)
        if target is None:
            raise ApiError(404, "user_not_found", f"no user {user!r}")
        if target["disabled_at"] is not None:
            raise ApiError(409, "user_disabled", f"user {user!r} is disabled")
        token, row = registry.create_token(conn, user, label=body.label, created_by=who.name,
                                           expires_at=body.expires_at())
    return jsonify(token_json(row, token)), 201


@bp.delete("/tokens/<token_id>")
def revoke_token(token_id):
    conn = get_db()
    row = registry.get_token(conn, parse_id(token_id, "token_not_found", "token"))
    if row is None:
        raise ApiError(404, "token_not_found", f"no token {token_id!r}")
    _own_or_admin(row["user_name"], "revoking a token")
    return jsonify(token_json(registry.revoke_token(conn, row["id"])))


# -- audit ---------------------------------------------------------------

def _time_arg(name):
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = datetime.datetime.fromisoformat(raw)
        # In UTC: PostgreSQL refuses some offsets Python accepts (+22:17).
        return (value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)).astimezone(
            datetime.timezone.utc)
    except (ValueError, OverflowError):
        raise ApiError(422, "validation_error", f"{name} must be an ISO 8601 time",
                       [{"field": name, "message": f"not an ISO 8601 time in range: {raw!r}"}]) from None


def _text_arg(name, max_length=200):
    """Query argument ``name``: text without NUL (PostgreSQL's text cannot hold one), or the 422."""
    raw = request.args.get(name)
    if raw is not None and ("\x00" in raw or len(raw) > max_length):
        raise ApiError(422, "validation_error", f"{name} must be text of at most {max_length} characters",
                       [{"field": name, "message": "a NUL character or too long"}])
    return raw


def audit_json(row):
    return AuditEntry(id=row["id"], at=ts(row["at"]), user=row["user_name"], role=row["role"],
                      token_id=str(row["token_id"]) if row["token_id"] else None, action=row["action"],
                      method=row["method"], path=row["path"], run_ids=[str(r) for r in row["run_ids"] or []],
                      status=row["status"], remote_addr=row["remote_addr"], detail=row["detail"]).model_dump()


@bp.get("/audit")
def list_audit():
    """The trail, newest first: ``?user=``, ``?action=``, ``?run_id=``,
    ``?since=``/``?until=`` (ISO 8601), ``?limit=`` (1-1000), and
    ``?before_id=`` for the next page (the last entry's id)."""
    require_admin("reading the audit trail")
    audit.writer().flush()  # what this process was given is in the trail before it is read
    run_id = request.args.get("run_id")
    if run_id is not None:
        try:
            run_id = uuid.UUID(run_id)
        except ValueError:
            raise ApiError(422, "validation_error", "run_id must be a run's id",
                           [{"field": "run_id", "message": f"not a UUID: {run_id!r}"}]) from None
    rows = registry.list_audit(
        get_db(), user_name=_text_arg("user"), action=_text_arg("action"),
        run_id=run_id,
        since=_time_arg("since"), until=_time_arg("until"),
        before_id=int_arg("before_id", None, 1, MAX_AUDIT_ID), limit=int_arg("limit", 100, 1, 1000))
    return jsonify({"data": [audit_json(r) for r in rows],
                    "next_before_id": rows[-1]["id"] if rows else None})



# ---------------------------------------------------------------- OpenAPI


def openapi_schemas():
    """The users, tokens and audit answers and requests."""
    from pydantic.json_schema import models_json_schema

    models = [(m, "serialization") for m in (User, Token, Me, AuditEntry)]
    models += [(m, "validation") for m in (UserRequest, UserUpdate, TokenRequest)]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas = dict(top["$defs"])
    schemas["UserList"] = {"type": "object", "required": ["data"],
                           "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}}}
    schemas["TokenList"] = {"type": "object", "required": ["data"],
                            "properties": {"data": {"type": "array",
                                                    "items": {"$ref": "#/components/schemas/Token"}}}}
    schemas["UserCreated"] = {"type": "object", "required": ["user", "token"],
                              "properties": {"user": {"$ref": "#/components/schemas/User"},
                                             "token": {"$ref": "#/components/schemas/Token"}}}
    schemas["AuditPage"] = {"type": "object", "required": ["data", "next_before_id"],
                            "properties": {"data": {"type": "array",
                                                    "items": {"$ref": "#/components/schemas/AuditEntry"}},
                                           "next_before_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}
    return schemas


def openapi_paths(ref, json_answer, errors):
    def body(name):
        return {"required": True, "content": {"application/json": {"schema": ref(name)}}}

    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    token_param = {"name": "token_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    text = {"type": "string", "maxLength": 200, "pattern": "^[^\\x00]*$"}
    query = [{"name": n, "in": "query", "schema": s} for n, s in (
        ("user", text), ("action", text),
        ("run_id", {"type": "string", "format": "uuid"}), ("since", {"type": "string", "format": "date-time"}),
        ("until", {"type": "string", "format": "date-time"}),
        ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ("before_id", {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_ID}))]
    return {
        "/api/tunix/me": {"get": {
            "operationId": "whoAmI", "summary": "Who the request's token acts as, and the installation's mode.",
            "responses": {"200": json_answer(ref("Me")), **errors(401, 405, 503)}}},
        "/api/tunix/users": {
            "get": {"operationId": "listUsers", "summary": "Every user (admins only).",
                    "responses": {"200": json_answer(ref("UserList")), **errors(401, 403, 405, 503)}},
            "post": {"operationId": "createUser",
                     "summary": "A new user and their first token, shown once (admins only); 409 user_exists.",
                     "requestBody": body("UserRequest"),
                     "responses": {"201": json_answer(ref("UserCreated"), "made"),
                                   **errors(400, 401, 403, 405, 409, 413, 415, 422, 503)}}},
        "/api/tunix/users/{name}": {"patch": {
            "operationId": "updateUser",
            "summary": "Change a role, disable or enable a user (admins only); 409 last_admin.",
            "parameters": [name_param], "requestBody": body("UserUpdate"),
            "responses": {"200": json_answer(ref("User")), **errors(400, 401, 403, 404, 405, 409, 413, 415, 422,
                                                                     503)}}},
        "/api/tunix/tokens": {
            "get": {"operationId": "listTokens",
                    "summary": "The caller's tokens; an admin's ?user=NAME (or *) anyone's. Never a token itself.",
                    "parameters": [{"name": "user", "in": "query",
                                    "schema": {"type": "string",
                                               "pattern": "^(" + NAME_PATTERN[1:-1] + "|\\*)$"}}],
                    "responses": {"200": json_answer(ref("TokenList")), **errors(401, 403, 405, 422, 503)}},
            "post": {"operationId": "createToken",
                     "summary": "A new token for the caller (an admin: for anyone), shown once in this answer.",
                     "requestBody": body("TokenRequest"),
                     "responses": {"201": json_answer(ref("Token"), "made"),
                                   **errors(400, 401, 403, 404, 405, 409, 413, 415, 422, 503)}}},
        "/api/tunix/tokens/{token_id}": {"delete": {
            "operationId": "revokeToken", "summary": "Revoke a token at once (own, or an admin's any).",
            "parameters": [token_param],
            "responses": {"200": json_answer(ref("Token")), **errors(401, 403, 404, 405, 503)}}},
        "/api/tunix/audit": {"get": {
            "operationId": "listAudit", "summary": "The audit trail, newest first (admins only).",
            "parameters": query,
            "responses": {"200": json_answer(ref("AuditPage")), **errors(401, 403, 405, 422, 503)}}},
    }
