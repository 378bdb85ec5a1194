"""The ops signals of issue 22 without services: the registry gauges' cache
(``/metrics`` reads PostgreSQL at most once per ``METRICS_CACHE_S``, the
count over every finished run far less often), the ``queue`` label of the
queue gauges, and ``tunix_build_info``."""

import platform

from prometheus_client import CollectorRegistry, generate_latest

from app.observability import FINAL_COUNTS_EVERY, CachedGauges
from support import metric, metric_samples
from tasks import metrics


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def gauges(in_state, queues=()):
    return {"in_state": dict(in_state), "oldest_pending_age_s": None, "workers_alive": 1, "queues": list(queues)}


def test_the_registry_is_read_once_per_cache_period_and_the_finished_counts_far_less_often():
    # Given a reader that counts its reads and whether it counted the finished runs
    reads = []
    state = {"pending": 1, "completed": 7}

    def read(finals):
        reads.append(finals)
        return gauges({k: v for k, v in state.items() if finals or k != "completed"})

    clock = Clock()
    cached = CachedGauges(read, 5, clock=clock)
    # When it is scraped 100 times within the period
    for _ in range(100):
        assert cached()["in_state"] == {"pending": 1, "completed": 7}
    # Then PostgreSQL was read once, finished runs included
    assert reads == [True]
    # And after the period, once more, without the finished runs (the last count kept)
    state.update(pending=2, completed=9)
    clock.now += 5
    assert cached()["in_state"] == {"pending": 2, "completed": 7}
    assert reads == [True, False]
    # until FINAL_COUNTS_EVERY periods have passed since they were counted
    clock.now += 5 * FINAL_COUNTS_EVERY
    assert cached()["in_state"] == {"pending": 2, "completed": 9}
    assert reads == [True, False, True]


def test_a_cache_of_zero_reads_everything_on_every_scrape_and_a_failed_read_is_not_kept():
    reads = []
    fail = [True]

    def read(finals):
        reads.append(finals)
        if fail[0]:
            raise RuntimeError("database unavailable")
        return gauges({"completed": len(reads)})

    cached = CachedGauges(read, 0, clock=Clock())
    # Given a failed first read; When scraped again; Then it is read again (nothing cached)
    try:
        cached()
    except RuntimeError:
        pass
    fail[0] = False
    assert cached()["in_state"] == {"completed": 2}
    assert cached()["in_state"] == {"completed": 3}
    assert reads == [True, True, True]


def test_the_queue_gauges_carry_the_queue_and_show_known_queues_while_empty():
    # Given the registry's rows: one queue with work, another known one empty
    rows = [{"queue_name": "tunix-train", "depth": 4, "in_flight": 1, "oldest_pending_age_s": 9.5}]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.FleetCollector(lambda: gauges({"pending": 4}, rows), queues=("tunix-dry", "tunix-train")))
    # When scraped
    samples = metric_samples(generate_latest(registry).decode())
    # Then each queue gauge has one series per queue
    assert metric(samples, "tunix_queue_depth", queue="tunix-train") == 4
    assert metric(samples, "tunix_queue_in_flight", queue="tunix-train") == 1
    assert metric(samples, "tunix_queue_oldest_pending_age_seconds", queue="tunix-train") == 9.5
    for name in ("tunix_queue_depth", "tunix_queue_in_flight", "tunix_queue_oldest_pending_age_seconds"):
        assert ((name, frozenset({("queue", "tunix-dry")})) in samples), name
        assert metric(samples, name, queue="tunix-dry") == 0
        assert all(dict(labels).keys() == {"queue"} for (n, labels) in samples if n == name)
    assert metric(samples, "tunix_runs_in_state", status="pending") == 4


def test_build_info_names_the_version_python_and_commit(monkeypatch):
    # Given no commit passed at build
    monkeypatch.delenv("GIT_COMMIT", raising=False)
    version, python, commit = metrics.build_labels()
    # Then it is "unknown", the version is the package's, python this interpreter's
    assert commit == "unknown" and python == platform.python_version() and version != "unknown"
    # and the image build's GIT_COMMIT is shown when set
    monkeypatch.setenv("GIT_COMMIT", "0123456789abcdef")
    assert metrics.build_labels()[2] == "0123456789abcdef"
    # And the gauge is exported, 1
    from prometheus_client import REGISTRY

    samples = metric_samples(generate_latest(REGISTRY).decode())
    assert metric(samples, "tunix_build_info", version=version, python=python) == 1
