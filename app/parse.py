"""What every blueprint parses the same way: a JSON body, a run id in the
path, paging arguments.  Each answers the right 4xx (``ApiError``)."""

import json
import uuid

from flask import request
from werkzeug.routing import BaseConverter

from tasks.errors import RunNotFound

from .errors import ApiError

#: Highest ``offset`` a listing accepts (the document says so too).
MAX_OFFSET = 10**9
#: Most rows one page of a listing holds.
MAX_LIMIT = 100
#: Deepest nesting a JSON body may have: a run spec is 4 levels deep, a
#: sweep's 6.  Python's parser gives up (RecursionError) some thousands deep.
MAX_JSON_DEPTH = 32
TOO_DEEP = object()


class RunIdConverter(BaseConverter):
    """``<run_id:...>``: any path segment but ``batch``, ``cancel``,
    ``resume`` and ``series``, its siblings (``POST /runs/batch``, the bulk
    moves, many runs' curves), so each
    is one resource whose ``Allow`` lists its own methods, not also a run's GET.  Not a UUID check: a
    malformed id stays a JSON 404 naming the run (``parse_run_id``)."""

    regex = r"(?!(?:batch|cancel|resume|series)(?![^/]))[^/]+"


def parse_run_id(raw):
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise RunNotFound(raw) from None


def json_body():
    """The request's JSON object, or the right 4xx."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)")
    try:
        # Not request.get_json: it answers None both for a malformed body and
        # for a valid `null`, which is a 422 (valid JSON, not an object).
        body = json.loads(request.get_data(cache=True))
    except ValueError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    except RecursionError:  # some thousands of brackets deep: was a 500
        body = TOO_DEEP
    if body is TOO_DEEP or _deeper_than(body, MAX_JSON_DEPTH):
        raise ApiError(400, "json_too_deep", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(body, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object",
                       [{"field": "body", "message": "expected an object"}])
    return body


def _deeper_than(value, limit):
    """Whether ``value`` nests more than ``limit`` levels (without recursion)."""
    todo = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        if depth > limit:
            return True
        todo.extend((child, depth + 1) for child in node)
    return False


def int_arg(name, default, low, high):
    """Query argument ``name`` as an integer from ``low`` to ``high``."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ApiError(422, "validation_error", f"{name} must be an integer from {low} to {high}",
                       [{"field": name, "message": f"expected an integer from {low} to {high}"}])
    return value


def page():
    """``(limit, offset)`` of a listing request."""
    return int_arg("limit", 20, 1, MAX_LIMIT), int_arg("offset", 0, 0, MAX_OFFSET)


def pagination(limit, offset, count, total):
    """A listing's ``pagination`` object for a page of ``count`` rows."""
    next_offset = offset + count if offset + count < total else None
    return {"limit": limit, "offset": offset, "next_offset": next_offset, "total": total}
