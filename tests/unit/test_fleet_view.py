"""The fleet view's shape (``app/fleet.py``), its OpenAPI entry and the JSON
log format (``tasks/log_format.py``): no services."""

import datetime
import io
import json
import logging
import uuid

import pytest

from app import create_app
from app.fleet import Fleet, build
from tasks import log_format

NOW = datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)


def row(worker_id, age, run_id=None, hostname="h1", **run):
    pid = int(worker_id.rsplit(":", 1)[1])
    return dict(worker_id=worker_id, hostname=hostname if age is not None else None,
                pid=pid if age is not None else None, started_at=NOW if age is not None else None,
                heartbeat_age_s=age, run_id=run_id, run_status=run.get("status", "running"),
                mode="async", dry_run=run.get("dry_run", False), dataset_key="synthetic", model_id="llama3-tiny",
                attempts=1, progress=run.get("progress"), run_started_at=NOW, run_heartbeat_age_s=0.4)


def test_workers_are_grouped_by_host_alive_or_lost_by_the_timeout_with_their_runs():
    # Given an alive worker holding two runs, a silent one, one on another host, and a held run with no worker row
    a, b = uuid.uuid4(), uuid.uuid4()
    orphan = uuid.uuid4()
    data = {"workers": [
        row("h1:10", 1.0, a, progress={"step": 3, "total_steps": 20, "loss": 1.5}),
        row("h1:10", 1.0, b, dry_run=True),
        row("h1:11", 30.0),
        row("h2:5", 29.9, hostname="h2"),
        row("gone-host:7", None, orphan),
    ], "queues": [{"queue_name": "tunix-train", "depth": 4, "in_flight": 1, "oldest_pending_age_s": 9.5}],
        "deferred": {False: 7}}
    # When the fleet is built with a 30 s timeout
    fleet = build(data, 30, now=NOW)
    # Then hosts are sorted, each process is alive below the timeout and lost at it
    assert [h.hostname for h in fleet.hosts] == ["gone-host", "h1", "h2"]
    h1 = fleet.hosts[1]
    assert [(w.pid, w.state) for w in h1.workers] == [(10, "alive"), (11, "lost")]
    assert (h1.alive, h1.lost) == (1, 1)
    assert fleet.hosts[2].workers[0].state == "alive"
    # and the runs stay with their worker, progress flattened
    runs = h1.workers[0].runs
    assert [r.run_id for r in runs] == [str(a), str(b)]
    assert (runs[0].step, runs[0].total_steps, runs[0].loss) == (3, 20, 1.5)
    assert runs[1].step is None and runs[1].dry_run
    # and a run whose worker has no row shows under a lost entry named after its worker_id
    [ghost] = fleet.hosts[0].workers
    assert (ghost.worker_id, ghost.pid, ghost.state, ghost.heartbeat_age_s) == ("gone-host:7", None, "lost", None)
    # and both queues are always there, zero when empty; running counts the held runs per kind
    queues = {q.kind: q for q in fleet.queues}
    assert (queues["train"].depth, queues["train"].in_flight, queues["train"].running) == (4, 1, 2)
    assert (queues["dry"].depth, queues["dry"].running, queues["dry"].oldest_pending_age_s) == (0, 1, None)
    assert fleet.totals.model_dump() == dict(hosts=3, workers=4, alive=2, lost=2, runs_held=3, depth=4, deferred=7,
                                             in_flight=1)
    assert sorted((q.kind, q.deferred) for q in fleet.queues) == [("dry", 0), ("train", 7)]


def test_the_openapi_document_describes_the_endpoint_with_the_pydantic_schema():
    doc = create_app({"TESTING": True}).test_client().get("/openapi.json").get_json()
    op = doc["paths"]["/api/tunix/workers"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Fleet"}
    assert {"401", "503"} <= op["responses"].keys()
    schemas = doc["components"]["schemas"]
    assert schemas["Fleet"]["properties"]["hosts"]["items"] == {"$ref": "#/components/schemas/Host"}
    assert {"Host", "WorkerProcess", "HeldRun", "QueueStats", "FleetTotals"} <= schemas.keys()
    # and every $ref in it resolves
    text = json.dumps(doc)
    for name in set(part.split('"')[0] for part in text.split("#/components/schemas/")[1:]):
        assert name in schemas, name
    assert Fleet.model_json_schema()["title"] == "Fleet"


def test_the_fleet_page_is_the_console_shell_with_a_nav_link():
    response = create_app({"TESTING": True}).test_client().get("/fleet")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert '<a href="/fleet" data-nav>Fleet</a>' in response.get_data(as_text=True)


def _record(logger, message, **extra):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log_format.use_json([handler], host="host-a", current_run_id=lambda: extra.pop("run_id", None))
    log = logging.getLogger(logger)
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.error(message, exc_info=extra.get("exc", False))
    finally:
        log.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_timestamp_level_logger_message_host_pid_and_the_run():
    [record] = _record("tunix.test", "hello", run_id="r-1", exc=True)
    assert list(record)[0] == "timestamp"
    assert record["level"] == "ERROR" and record["logger"] == "tunix.test" and record["message"] == "hello"
    assert record["host"] == "host-a" and isinstance(record["pid"], int) and record["run_id"] == "r-1"
    assert "RuntimeError: boom" in record["exception"]


def test_a_json_line_outside_a_run_has_no_run_id():
    [record] = _record("tunix.test2", "idle")
    assert "run_id" not in record and "exception" not in record


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        log_format.check("xml")
    assert log_format.check("json") == "json"
