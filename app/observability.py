"""HTTP metrics and the API process' ``/metrics``.

The API's endpoint shows what this process recorded: submits
(``tunix_runs_total{status="pending"}``), its registry writes and its HTTP
traffic.  Runs finishing are recorded by the workers and served by each
worker launch on ``METRICS_PORT``; nothing here repeats them.

The registry gauges (``tasks.metrics.FleetCollector``) are read from
PostgreSQL at most once per ``METRICS_CACHE_S`` per process, whoever
scrapes and how often: the runs not final, the queues' live messages and
the workers' heartbeats (all bounded by what is in flight); the count over
every finished run only once per ``FINAL_COUNTS_EVERY`` of those periods.
"""

import re
import threading
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


#: The finished runs' counts are read once per this many cache periods
#: (``METRICS_CACHE_S``): a count over every finished run, which grows with
#: the registry while the rest stays bounded.
FINAL_COUNTS_EVERY = 30


class CachedGauges:
    """``read(finals)`` at most once per ``cache_s`` (one reader at a time;
    the others wait for its answer), with ``finals`` true once per
    ``FINAL_COUNTS_EVERY`` periods: the finished runs' counts last read are
    kept meanwhile.  A failed read raises (the scrape answers 503) and is
    tried again on the next scrape."""

    def __init__(self, read, cache_s, clock=time.monotonic):
        self.read, self.cache_s, self.clock = read, cache_s, clock
        self._lock = threading.Lock()
        self._value, self._at = None, None
        self._finals, self._finals_at = {}, None

    def __call__(self):
        from tasks.lifecycle import FINAL

        with self._lock:
            now = self.clock()
            if self._value is not None and now - self._at < self.cache_s:
                return self._value
            finals = self._finals_at is None or now - self._finals_at >= self.cache_s * FINAL_COUNTS_EVERY
            data = self.read(finals)
            final_names = {status.value for status in FINAL}
            if finals:
                self._finals = {k: v for k, v in data["in_state"].items() if k in final_names}
                self._finals_at = now
            else:
                data["in_state"] = dict(data["in_state"], **self._finals)
            self._value, self._at = data, now
            return data


def _fleet_registry(app):
    """A registry for this process' own series plus the fleet gauges, read
    from PostgreSQL through ``CachedGauges`` (a failed read answers 503);
    one per app, so its cache never answers for another app's database."""
    fleet = app.extensions.get("tunix_fleet_metrics")
    if fleet is None:
        from tasks import registry as runs_registry
        from tasks.broker import DRY_QUEUE, TRAIN_QUEUE
        from tasks.metrics import FleetCollector

        settings = app.config["SETTINGS"]
        timeout = settings.heartbeat_timeout_s

        def read(finals):
            with db.connection(get_pool()) as conn:
                return runs_registry.fleet_gauges(conn, timeout, finals=finals)

        fleet = CollectorRegistry(auto_describe=False)
        fleet.register(FleetCollector(CachedGauges(read, settings.metrics_cache_s), queues=(DRY_QUEUE, TRAIN_QUEUE)))
        app.extensions["tunix_fleet_metrics"] = fleet
    return fleet


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
