"""Retention (``python -m bench retention [--runs N] [--seconds S]``): what a
pruning pass costs the API.  A registry of ``--runs`` finished runs, all
finished 60 days ago, is generated in SQL (``generate_series``), a fraction
of them with log lines and per-step metrics; the API (gunicorn, as ``make
run`` starts it) then takes submits and status reads from a few client
threads for ``--seconds`` without pruning, ``--seconds`` with reapers'
retention (``RETENTION_DAYS=30``) running pass after pass (no pause
between passes: the worst case; a reaper waits ``REAPER_INTERVAL_S``), and
``--seconds`` without again.  It prints each phase's p50 and p99 for both
requests and the ratio of the pruning phase's p99 to the quiet phases'
(aim: at most 1.2), and what the pruning deleted.  Figures from one run
only; compare its rows, not runs on different machines.
"""

import argparse
import os
import random
import threading
import time

import requests

from tasks import db
from tasks.settings import Settings
from workers.reaper import Reaper

from . import procs

BODY = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}
RUNS, SECONDS, CLIENTS, FRACTION, LINES, STEPS = 1_000_000, 20.0, 4, 0.02, 50, 50

GENERATE = """
INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config, attempts,
                        created_at, started_at, completed_at, updated_at)
SELECT gen_random_uuid(), (ARRAY['completed', 'failed', 'cancelled', 'timeout'])[1 + s %% 4], 'async', true,
       'synthetic', 'llama3-tiny', '{"dataset_key": "synthetic", "model_id": "llama3-tiny"}', 1,
       t - interval '1 minute', t - interval '50 seconds', t, t
FROM generate_series(1, %(runs)s) s,
     LATERAL (SELECT clock_timestamp() - interval '60 days' - make_interval(secs => s) AS t) x;
"""
ACTIVITY = """
WITH sampled AS (SELECT id FROM tunix_runs TABLESAMPLE BERNOULLI (%(percent)s))
, logs AS (
    INSERT INTO tunix_run_logs (run_id, seq, stream, line)
    SELECT id, n, 'stdout', 'step ' || n || ': loss 0.123 lr 1e-4 and a line of the usual length'
    FROM sampled, generate_series(1, %(lines)s) n
)
INSERT INTO tunix_run_metrics (run_id, step, loss, learning_rate, grad_norm, attempt)
SELECT id, n, 1.0 / n, 1e-4, 0.5, 1 FROM sampled, generate_series(1, %(steps)s) n;
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench retention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"finished runs generated (default {RUNS:,})")
    parser.add_argument("--seconds", type=float, default=SECONDS, help=f"seconds per phase (default {SECONDS:g})")
    parser.add_argument("--clients", type=int, default=CLIENTS, help=f"client threads (default {CLIENTS})")
    parser.add_argument("--fraction", type=float, default=FRACTION,
                        help=f"share of runs with {LINES} log lines and {STEPS} metrics rows (default {FRACTION})")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0 or args.clients < 1 or not 0 <= args.fraction <= 1:
        parser.error("--runs, --seconds and --clients must be positive, --fraction in [0, 1]")
    return args


def _execute(url, sql, **params):
    conn = db.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount
    finally:
        conn.close()


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def _phase(base, seconds, clients, run_ids):
    """``(submit latencies, status latencies)`` of ``clients`` threads, each
    alternating an async submit and a status read for ``seconds``."""
    submits, statuses, lock = [], [], threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        mine_s, mine_r = [], []
        with requests.Session() as http:
            while time.monotonic() < deadline:
                t = time.perf_counter()
                r = http.post(base + "/api/tunix/run?mode=async", json=BODY)
                mine_s.append(time.perf_counter() - t)
                assert r.status_code == 202, r.text
                run_ids.append(r.json()["run_id"])
                t = time.perf_counter()
                r = http.get(f"{base}/api/tunix/runs/{random.choice(run_ids)}/status")
                mine_r.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
        with lock:
            submits.extend(mine_s)
            statuses.extend(mine_r)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return submits, statuses


def _counts(url):
    rows = procs.fetch(url, "SELECT (SELECT count(*) FROM tunix_run_logs), (SELECT count(*) FROM tunix_run_metrics), "
                            "(SELECT count(*) FROM tunix_runs WHERE pruned_at IS NOT NULL)")
    return rows[0]


def bench_retention(url, data_dir, args):
    procs.truncate(url)
    t = time.perf_counter()
    _execute(url, GENERATE, runs=args.runs)
    _execute(url, ACTIVITY, percent=args.fraction * 100, lines=LINES, steps=STEPS)
    _execute(url, "ANALYZE")
    logs, metrics, _ = _counts(url)
    print(f"retention: generated {args.runs:,} finished runs (60 days old), {logs:,} log lines and {metrics:,} "
          f"metrics rows in {time.perf_counter() - t:.1f} s")
    run_ids = [str(r) for (r,) in procs.fetch(url, "SELECT id FROM tunix_runs ORDER BY random() LIMIT 1000")]
    settings = Settings(database_url=url, data_dir=data_dir, retention_days=30)
    pool = db.make_pool(url, 4)
    stop, passes = threading.Event(), [0]

    def prune():
        reaper = Reaper(pool, settings)
        while not stop.is_set():
            reaper.prune()
            passes[0] += 1

    results = {}
    os.environ["ACCESS_LOG"] = "0"  # the API's children inherit it: no line per request on the terminal
    try:
        with procs.api(url, data_dir) as base:
            _phase(base, min(3.0, args.seconds), args.clients, run_ids)  # warm-up
            results["quiet"] = _phase(base, args.seconds, args.clients, run_ids)
            pruner = threading.Thread(target=prune, daemon=True)
            before = _counts(url)
            pruner.start()
            results["pruning"] = _phase(base, args.seconds, args.clients, run_ids)
            stop.set()
            pruner.join()
            after = _counts(url)
            results["quiet again"] = _phase(base, args.seconds, args.clients, run_ids)
    finally:
        pool.closeall()
    for name, (submits, statuses) in results.items():
        print(f"  {name:12s} submit p50 {_pct(submits, 50) * 1e3:6.1f} ms  p99 {_pct(submits, 99) * 1e3:6.1f} ms "
              f"({len(submits)})   status p50 {_pct(statuses, 50) * 1e3:6.1f} ms  "
              f"p99 {_pct(statuses, 99) * 1e3:6.1f} ms ({len(statuses)})")
    for i, what in enumerate(("submit", "status")):
        quiet = _pct(results["quiet"][i] + results["quiet again"][i], 99)
        busy = _pct(results["pruning"][i], 99)
        print(f"  {what} p99 while pruning / without (both quiet phases' requests): {busy / quiet:.2f}")
    print(f"  pruning phase: {passes[0]} passes back to back deleted {before[0] - after[0]:,} log lines and "
          f"{before[1] - after[1]:,} metrics rows, stamped {after[2] - before[2]:,} runs pruned "
          f"({(after[2] - before[2]) / args.seconds:,.0f} runs/s)")
