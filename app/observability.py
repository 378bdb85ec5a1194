"""HTTP metrics and the API process' ``/metrics``.

The API's endpoint shows what this process recorded: submits
(``tunix_runs_total{status="pending"}``), its registry writes and its HTTP
traffic.  Runs finishing are recorded by the workers and served by each
worker launch on ``METRICS_PORT``; nothing here repeats them.
"""

import re
import time

from flask import Blueprint, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from tasks import db

from .db import get_pool

bp = Blueprint("observability", __name__)

HTTP_REQUESTS = Counter(
    "tunix_http_requests_total",
    "API requests by endpoint (the route pattern), method and status code.",
    ("endpoint", "method", "status"),
)
HTTP_LATENCY = Histogram(
    "tunix_http_request_duration_seconds",
    "API request latency by endpoint (the route pattern) and method.",
    ("endpoint", "method"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


_fleet = {}


def _fleet_registry(app):
    """A registry for this process' own series plus the fleet gauges, read
    from PostgreSQL on each scrape (a failed read answers 503)."""
    if "registry" not in _fleet:
        from tasks import registry as runs_registry
        from tasks.metrics import FleetCollector

        timeout = app.config["SETTINGS"].heartbeat_timeout_s

        def read():
            with db.connection(get_pool()) as conn:
                return runs_registry.fleet_gauges(conn, timeout)

        fleet = CollectorRegistry(auto_describe=False)
        fleet.register(FleetCollector(read))
        _fleet["registry"] = fleet
    return _fleet["registry"]


@bp.get("/metrics")
def metrics():
    body = generate_latest(REGISTRY) + generate_latest(_fleet_registry(current_app))
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _start():
    g.started = time.perf_counter()


def _record(response):
    # The route pattern, never the raw path: a run id must not become a
    # label.  Without its converters (`<run_id:run_id>` is `<run_id>`): a
    # label names the route, not how it parses.
    endpoint = _CONVERTER.sub(r"<\1>", request.url_rule.rule) if request.url_rule is not None else "unmatched"
    HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    started = g.get("started")
    if started is not None:
        HTTP_LATENCY.labels(endpoint, request.method).observe(time.perf_counter() - started)
    return response


def init_app(app):
    app.before_request(_start)
    app.after_request(_record)
    app.register_blueprint(bp)
