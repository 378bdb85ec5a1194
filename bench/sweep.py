"""Sweeps (``python -m bench sweep``): what admission costs (an admission pass
and a training submit, with few runs waiting and with 1,000 deferred trials
more), and what early stopping saves (a 50-trial sweep of tiny trainings,
wall time with and without the median rule, on one launch of 2 processes).

A pass here is what a worker makes each time it takes a training: lock,
count the queue, rank the deferred runs, admit one.  Figures from one run
only: compare the two rows, not runs on different days.
"""

import statistics
import time
import uuid

import requests

from tasks import admission, db, registry

from . import procs
from .procs import truncate

TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 5, "seed": 1}


def _sweeps(conn, n_sweeps, trials):
    for s in range(n_sweeps):
        rows = [dict(run_id=uuid.uuid4(), mode="async", dry_run=False, dataset_key="synthetic",
                     model_id="llama3-tiny", config=dict(TRAINING, seed=i), params={"seed": i})
                for i in range(trials)]
        with conn:
            registry.insert_sweep(conn, sweep_id=uuid.uuid4(), name=f"bench {s}", spec={}, metric="loss",
                                  duplicates=0, trials=rows)


def _passes(conn, n):
    """``n`` admission passes, each followed by a worker taking what it
    admitted; seconds per pass."""
    seconds = []
    for _ in range(n):
        t = time.perf_counter()
        with conn:
            admission.admit(conn)
        seconds.append(time.perf_counter() - t)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM tunix_runs WHERE status = 'pending' AND NOT dry_run")
            for (run_id,) in cur.fetchall():
                registry.claim(conn, run_id, "bench:1")
    return seconds


def _submits(base, n):
    seconds = []
    with requests.Session() as http:
        for i in range(n):
            t = time.perf_counter()
            r = http.post(base + "/api/tunix/run?mode=async", json=dict(TRAINING, seed=10_000 + i))
            seconds.append(time.perf_counter() - t)
            assert r.status_code == 202, r.text
    return seconds


def _ms(values):
    values = sorted(values)
    return (f"p50 {statistics.median(values) * 1000:.2f} ms, "
            f"p99 {values[int(0.99 * (len(values) - 1))] * 1000:.2f} ms")


def _sweep_wall(base, http, url, trials, rule):
    """Wall seconds from submit to the last trial's end, and the sweep's detail."""
    lrs = [10 ** (-2 - 5 * i / (trials // 2 - 1)) for i in range(trials // 2)]  # 1e-2 down to 1e-7
    body = {"name": f"bench {rule}", "base": dict(TRAINING, max_steps=150, batch_size=4, max_seq_length=32),
            "grid": {"learning_rate": lrs, "seed": [1, 2]},
            "early_stopping": {"rule": rule, "min_steps": 20} if rule else None}
    t = time.perf_counter()
    sweep_id = http.post(base + "/api/tunix/sweeps", json=body, timeout=60).json()["sweep_id"]
    while True:
        detail = http.get(f"{base}/api/tunix/sweeps/{sweep_id}", timeout=30).json()
        if detail["status"] == "finished":
            return time.perf_counter() - t, detail
        time.sleep(1)


def bench_early_stopping(url, data_dir, trials=50):
    truncate(url)
    walls = {}
    with procs.workers(url, data_dir, processes=2), procs.api(url, data_dir) as base, requests.Session() as http:
        time.sleep(2)
        # Warm the compilation cache, as a steady-state platform has it.
        http.post(base + "/api/tunix/run?mode=sync", json=dict(TRAINING, max_steps=150, batch_size=4,
                                                               max_seq_length=32), timeout=600)
        for rule in (None, "median"):
            walls[rule] = _sweep_wall(base, http, url, trials, rule)
    (plain, _), (early, detail) = walls[None], walls["median"]
    print(f"{trials}-trial sweep of tiny trainings (150 steps, learning rates 1e-2 to 1e-7 x 2 seeds, 2 worker "
          f"processes): without early stopping {plain:.0f} s, median rule {early:.0f} s -> ratio {early / plain:.2f}; "
          f"{detail['early_stopped']} trials stopped, {detail['steps_saved']} steps saved, best loss "
          f"{detail['best']['loss'] if detail['best'] else None}")


def bench_series(url, data_dir, trials=200, steps=1000, repeats=10):
    """A 200-trial sweep page's curves: one request for every trial's series."""
    truncate(url)
    conn = db.connect(url)
    try:
        _sweeps(conn, 1, trials)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM tunix_sweeps")
            (sweep_id,), = cur.fetchall()
            cur.execute("INSERT INTO tunix_run_metrics (run_id, step, loss, attempt) "
                        "SELECT r.id, s, 10.0 / s, 1 FROM tunix_runs r, generate_series(1, %s) s", (steps,))
    finally:
        conn.close()
    with procs.api(url, data_dir) as base, requests.Session() as http:
        seconds, size = [], 0
        for _ in range(repeats):
            t = time.perf_counter()
            r = http.get(f"{base}/api/tunix/sweeps/{sweep_id}/series", params={"points": 200})
            seconds.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
            size = len(r.content)
    print(f"series of a {trials}-trial sweep ({steps} steps each, 200 points per curve, one request, "
          f"{size / 1e6:.1f} MB): {_ms(seconds)}")


def bench_sweep(url, data_dir, passes=200, submits=200):
    bench_admission(url, data_dir, passes, submits)
    bench_series(url, data_dir)
    bench_early_stopping(url, data_dir)


def bench_admission(url, data_dir, passes=200, submits=200):
    conn = db.connect(url)
    try:
        figures = {}
        for more in (0, 1000):
            truncate(url)
            _sweeps(conn, 1, passes)
            if more:
                _sweeps(conn, 2, more // 2)
            figures[more] = _passes(conn, passes)
        print(f"admission pass (one training admitted, with its message, and taken; {passes} passes): "
              f"{passes} deferred trials {_ms(figures[0])}; {passes + 1000:,} in 3 sweeps {_ms(figures[1000])} "
              f"-> ratio of medians {statistics.median(figures[1000]) / statistics.median(figures[0]):.2f}")
        submit = {}
        with procs.api(url, data_dir) as base:
            for deferred in (0, 1000):
                truncate(url)
                if deferred:
                    _sweeps(conn, 2, deferred // 2)
                submit[deferred] = _submits(base, submits)
        print(f"training submit over HTTP ({submits} sequential, no worker: each after the first is deferred and "
              f"followed by an admission pass): no sweep waiting {_ms(submit[0])}; 1,000 deferred trials "
              f"{_ms(submit[1000])} -> ratio of medians "
              f"{statistics.median(submit[1000]) / statistics.median(submit[0]):.2f}")
    finally:
        conn.close()
