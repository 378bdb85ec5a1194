"""The web console: ``/`` (submit, live history), ``/runs/<id>`` (one run),
``/sweeps``, ``/sweeps/new`` (launch one) and ``/sweeps/<id>`` (trials,
curves, scatter, parallel coordinates, importance), ``/compare``
(runs side by side) and ``/fleet`` (hosts, worker processes, queues).

Every page is the same HTML shell; plain ES modules under ``/static/``
render them from the public API, so there is no build step and nothing the
console can do that a ``curl`` cannot.  The shell carries the submit schema
(``RunSpec``'s JSON schema, the one place fields, defaults and limits
live) and the lifecycle's status sets, so the form and the badges follow the
API when it changes.
"""

import uuid

from flask import Blueprint, current_app, render_template, request

from tasks import lifecycle
from tasks.run_spec import MODES, RunSpec

bp = Blueprint("console", __name__)

#: The shell only loads its own files; the API is same-origin.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def bootstrap():
    """What the client needs before its first request."""
    settings = current_app.config["SETTINGS"]
    return {
        "schema": RunSpec.model_json_schema(),
        # The statuses in the lifecycle's order (the order the console shows
        # them in), each by its name (``STATUS.FAILED`` in the modules), and
        # the sets the console decides by: it spells no status itself.
        "statuses": list(lifecycle.ALL),
        "names": {s.name: s.value for s in lifecycle.RunStatus},
        "meaning": {s.value: text for s, text in lifecycle.MEANING.items()},
        **{name: sorted(s.value for s in statuses) for name, statuses in (
            ("final", lifecycle.FINAL), ("active", lifecycle.ACTIVE), ("waiting", lifecycle.WAITING),
            ("cancellable", lifecycle.CANCELLABLE), ("resumable", lifecycle.RESUMABLE))},
        "modes": list(MODES),
        "limits": {"run_time_limit_s": settings.run_time_limit_s,
                   "default_time_limit_s": settings.default_time_limit_s},
        "sync_timeout_s": current_app.config.get("SYNC_TIMEOUT_S"),
    }


def _shell(status=200):
    html = render_template("console.html", bootstrap=bootstrap())
    return html, status, {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }


@bp.get("/")
def index():
    return _shell()


@bp.get("/fleet")
def fleet_page():
    return _shell()


@bp.get("/sweeps")
@bp.get("/sweeps/new")
@bp.get("/compare")
def sweeps_page():
    return _shell()


def _shell_for(raw_id):
    # A malformed id cannot name a run or a sweep: the page says so, with a
    # 404.  A well-formed one is looked up by the page itself (the API
    # answers 404).
    try:
        uuid.UUID(raw_id)
    except ValueError:
        return _shell(404)
    return _shell()


@bp.get("/sweeps/<sweep_id>")
def sweep_page(sweep_id):
    return _shell_for(sweep_id)


@bp.get("/runs/<run_id>")
def run_page(run_id):
    return _shell_for(run_id)


@bp.after_app_request
def _revalidate_static(response):
    # The modules import each other by plain relative URLs, so they must
    # never be served stale after a deploy: browsers revalidate each (a 304
    # from the ETag) instead of guessing a lifetime.
    if request.endpoint == "static":
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
    return response
