"""``GET /api/tunix/workers``: the fleet as ops see it.

Every host and worker process with its heartbeat age and whether it is
alive (a beat younger than ``HEARTBEAT_TIMEOUT_S``, the same test the
reaper and ``tunix_workers_alive`` use) or lost, the runs each holds, and
per queue its depth, what its consumers hold and how long its oldest
pending run has waited.  Two indexed queries (``fleet_workers``,
``fleet_queues`` in ``tasks/sql/fleet.sql``); the answer's shape is the
pydantic model ``Fleet``, which ``app/openapi.py`` publishes.

Not here yet: whether the artifact store is reachable from the API (it
does not exist yet); nothing stands in for it.
"""

import datetime
from collections import defaultdict
from typing import Literal

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, Field

from tasks import registry
from tasks.broker import DRY_QUEUE, TRAIN_QUEUE
from tasks.lifecycle import RunStatus

from .db import get_db

bp = Blueprint("fleet", __name__, url_prefix="/api/tunix")

#: A lost worker stays listed this long after its last beat (longer while it
#: still holds a run), so a crash is seen on the page for a while and then
#: the list is the fleet again.  Workers that stop cleanly leave at once.
LOST_WINDOW_S = 3600

#: The queues in the order the page shows them: what runs on each.
QUEUES = ((DRY_QUEUE, "dry"), (TRAIN_QUEUE, "train"))


class HeldRun(BaseModel):
    """A run a worker process holds now (``running`` or ``cancel_requested``)."""

    run_id: str
    status: str
    mode: str
    dry_run: bool
    dataset_key: str
    model_id: str
    attempts: int
    step: int | None = Field(description="the training's latest step; null before its first (and for dry runs)")
    total_steps: int | None
    loss: float | None
    started_at: str | None
    heartbeat_age_s: float | None = Field(description="seconds since the worker last beat for this run")


class WorkerProcess(BaseModel):
    """One worker process (one dramatiq process of a worker launch)."""

    worker_id: str = Field(description="host:pid, as in a run's worker_id")
    hostname: str
    pid: int | None
    started_at: str | None = Field(description="its first heartbeat")
    heartbeat_age_s: float | None = Field(description="seconds since its last heartbeat; null when it has no row")
    state: Literal["alive", "lost"] = Field(description="lost: no heartbeat for HEARTBEAT_TIMEOUT_S")
    runs: list[HeldRun]


class Host(BaseModel):
    hostname: str
    alive: int
    lost: int
    workers: list[WorkerProcess]


class QueueStats(BaseModel):
    queue: str
    kind: Literal["dry", "train"]
    depth: int = Field(description="messages waiting whose run is pending")
    deferred: int = Field(0, description="runs of this queue waiting for admission: no message yet "
                                         "(tasks/admission.py)")
    in_flight: int = Field(description="messages a consumer holds (prefetched or executing)")
    running: int = Field(description="runs of this queue a worker holds now")
    oldest_pending_age_s: float | None = Field(description="how long its longest-waiting pending run has waited")


class FleetTotals(BaseModel):
    hosts: int
    workers: int
    alive: int
    lost: int
    runs_held: int
    depth: int
    deferred: int = 0
    in_flight: int


class Fleet(BaseModel):
    """``GET /api/tunix/workers``."""

    generated_at: str
    heartbeat_timeout_s: float
    lost_window_s: float
    hosts: list[Host]
    queues: list[QueueStats]
    totals: FleetTotals


def _ts(value):
    return value.isoformat() if value is not None else None


def _held_run(row):
    progress = row["progress"] or {}
    number = (int, float)
    return HeldRun(
        run_id=str(row["run_id"]), status=row["run_status"], mode=row["mode"], dry_run=row["dry_run"],
        dataset_key=row["dataset_key"], model_id=row["model_id"], attempts=row["attempts"],
        step=progress.get("step") if isinstance(progress.get("step"), int) else None,
        total_steps=progress.get("total_steps") if isinstance(progress.get("total_steps"), int) else None,
        loss=float(progress["loss"]) if isinstance(progress.get("loss"), number) else None,
        started_at=_ts(row["run_started_at"]), heartbeat_age_s=row["run_heartbeat_age_s"])


def build(data, heartbeat_timeout_s, now=None):
    """The ``Fleet`` from ``registry.fleet``'s rows."""
    workers = {}
    for row in data["workers"]:
        worker = workers.get(row["worker_id"])
        if worker is None:
            age = row["heartbeat_age_s"]
            hostname = row["hostname"] or row["worker_id"].rpartition(":")[0] or row["worker_id"]
            worker = workers[row["worker_id"]] = WorkerProcess(
                worker_id=row["worker_id"], hostname=hostname, pid=row["pid"], started_at=_ts(row["started_at"]),
                heartbeat_age_s=age, state="alive" if age is not None and age < heartbeat_timeout_s else "lost",
                runs=[])
        if row["run_id"] is not None:
            worker.runs.append(_held_run(row))
    by_host = defaultdict(list)
    for worker in workers.values():
        by_host[worker.hostname].append(worker)
    hosts = []
    for hostname in sorted(by_host):
        procs = sorted(by_host[hostname], key=lambda w: (w.pid is None, w.pid or 0, w.worker_id))
        alive = sum(w.state == "alive" for w in procs)
        hosts.append(Host(hostname=hostname, alive=alive, lost=len(procs) - alive, workers=procs))

    held = [run for w in workers.values() for run in w.runs]
    seen = {row["queue_name"]: row for row in data["queues"]}
    queues = []
    for name, kind in QUEUES:
        row = seen.get(name) or {}
        queues.append(QueueStats(
            queue=name, kind=kind, depth=row.get("depth") or 0, in_flight=row.get("in_flight") or 0,
            deferred=data.get(RunStatus.DEFERRED.value, {}).get(kind == "dry", 0),
            running=sum(run.dry_run == (kind == "dry") for run in held),
            oldest_pending_age_s=row.get("oldest_pending_age_s")))
    alive = sum(h.alive for h in hosts)
    totals = FleetTotals(hosts=len(hosts), workers=len(workers), alive=alive, lost=len(workers) - alive,
                         runs_held=len(held), depth=sum(q.depth for q in queues),
                         deferred=sum(q.deferred for q in queues),
                         in_flight=sum(q.in_flight for q in queues))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return Fleet(generated_at=now.isoformat(), heartbeat_timeout_s=heartbeat_timeout_s,
                 lost_window_s=LOST_WINDOW_S, hosts=hosts, queues=queues, totals=totals)


@bp.get("/workers")
def list_workers():
    timeout = current_app.config["SETTINGS"].heartbeat_timeout_s
    data = registry.fleet(get_db(), LOST_WINDOW_S)
    return jsonify(build(data, timeout).model_dump(mode="json"))


def openapi_schemas():
    """The models above as OpenAPI components (``app/openapi.py``); the
    answer's schema is ``#/components/schemas/Fleet``."""
    schema = Fleet.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = schema.pop("$defs", {})
    schemas["Fleet"] = schema
    return schemas
