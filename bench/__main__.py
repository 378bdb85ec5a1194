"""Benchmarks: `make bench` (python -m bench).  Prints figures; asserts nothing.

On a shared, noisy machine compare figures from one run, not across runs.

    python -m bench                 # everything
    python -m bench submit pickup   # some of it
"""

import statistics
import sys
import tempfile
import time

import requests

from tasks import db

from . import procs

BODY = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def bench_submit(url, data_dir, n=1000):
    """Async submit latency, measured by the client, with no worker running."""
    with procs.api(url, data_dir) as base, requests.Session() as http:
        latencies = []
        for _ in range(n):
            t = time.perf_counter()
            r = http.post(base + "/api/tunix/run?mode=async", json=BODY)
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 202, r.text
    print(f"async submit latency ({n} sequential submits): p50 {ms(pct(latencies, 50))}  "
          f"p99 {ms(pct(latencies, 99))}  mean {ms(statistics.mean(latencies))}")


def _truncate(url):
    conn = db.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE tunix_runs; TRUNCATE dramatiq.queue")
    conn.close()


def _fetch(url, sql, *args):
    conn = db.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    conn.close()
    return rows


def bench_pickup(url, data_dir, n=200):
    """Idle pickup: submit one run to idle workers, submit -> running (registry clocks)."""
    _truncate(url)
    with procs.workers(url, data_dir), procs.api(url, data_dir) as base, requests.Session() as http:
        time.sleep(2)  # consumers listening
        for _ in range(n):
            r = http.post(base + "/api/tunix/run?mode=sync", json=BODY)
            assert r.json()["status"] == "completed", r.text
        waits = [row[0] for row in _fetch(
            url, "SELECT extract(epoch FROM started_at - created_at) FROM tunix_runs")]
        round_trip = []
        for _ in range(50):
            t = time.perf_counter()
            http.post(base + "/api/tunix/run?mode=sync", json=BODY)
            round_trip.append(time.perf_counter() - t)
    print(f"idle pickup latency, submit -> running ({n} runs): p50 {ms(pct(waits, 50))}  p99 {ms(pct(waits, 99))}")
    print(f"sync dry run round trip over HTTP (50 runs): p50 {ms(pct(round_trip, 50))}  p99 {ms(pct(round_trip, 99))}")


def bench_drain(url, data_dir, n=2000, processes=2):
    """Queue n dry runs with no worker, then start a launch and drain them."""
    _truncate(url)
    with procs.api(url, data_dir) as base, requests.Session() as http:
        for _ in range(n):
            assert http.post(base + "/api/tunix/run?mode=async", json=BODY).status_code == 202
    with procs.workers(url, data_dir, processes=processes):
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            (done,), = _fetch(url, "SELECT count(*) FROM tunix_runs WHERE status IN ('completed', 'failed')")
            if done == n:
                break
            time.sleep(0.5)
    (first, last, completed, executions), = _fetch(
        url, "SELECT min(started_at), max(completed_at), count(*) FILTER (WHERE status = 'completed'), "
             "sum(attempts) FROM tunix_runs")
    span = (last - first).total_seconds()
    print(f"drain of {n} queued dry runs, {processes} worker processes: {completed} completed, "
          f"{executions} executions, {span:.2f} s from first claim to last finish -> {completed / span:.0f} runs/s")


BENCHES = {"submit": bench_submit, "pickup": bench_pickup, "drain": bench_drain}


def main(argv):
    names = argv or list(BENCHES)
    with procs.database() as url:
        data_dir = tempfile.mkdtemp(prefix="tunix-bench-data-")
        for name in names:
            BENCHES[name](url, data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
