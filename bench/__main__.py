"""Benchmarks: `make bench` (python -m bench).  Prints figures; asserts nothing.

On a shared, noisy machine compare figures from one run, not across runs.

    python -m bench                 # everything
    python -m bench submit pickup   # some of it
    python -m bench store           # the artifact store's cost (bench/store.py)
    python -m bench sweep           # what admission costs (bench/sweep.py)
    python -m bench load [--clients 1,16,64] [--seconds S] [--quick]
                                    # ours against Flask + Celery on Redis + PostgreSQL
                                    # (bench/load.py; --quick: a smoke run)
    python -m bench training-tiny   # platform overhead on a tiny model's training
    python -m bench retention [--runs N] [--seconds S]
                                    # the API's p99 with and without retention pruning, over
                                    # a registry of N finished runs (bench/retention.py):
                                    # only when named (1,000,000 by default)
    python -m bench training [--steps N] [--quick]
                                    # the real model, full and LoRA (bench/training.py):
                                    # only when named (12 GB, ~12 min)
"""

import importlib
import statistics
import sys
import tempfile
import time

import requests

from tasks.artifacts import Scratch

from . import procs
from .procs import fetch as _fetch
from .procs import truncate as _truncate

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


TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 200,
            "batch_size": 4, "max_seq_length": 32, "learning_rate": 0.01, "seed": 7, "checkpoint_every_steps": 50}


def _rss_mb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def _pids(pattern):
    import subprocess as sp

    out = sp.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def bench_training_tiny(url, data_dir, repeats=3):
    """Platform overhead on a real tiny training, and worker memory."""
    import json
    import os
    import pathlib
    import subprocess as sp

    _truncate(url)
    with procs.workers(url, data_dir, processes=1), procs.api(url, data_dir) as base, \
            requests.Session() as http:
        time.sleep(2)
        workers_idle = _rss_mb(_pids("dramatiq workers.boot"))
        # Warm the compilation cache once, as a steady-state platform would have it.
        http.post(base + "/api/tunix/run?mode=sync", json=TRAINING)
        import threading

        platform, peak = [], [0.0]
        sampling = threading.Event()

        def sample():  # training memory, 5 times a second, off the timed path
            while not sampling.wait(0.2):
                peak[0] = max(peak[0], _rss_mb(_pids("workers.training")))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for _ in range(repeats):
            t = time.perf_counter()
            run = http.post(base + "/api/tunix/run?mode=sync", json=TRAINING).json()
            platform.append(time.perf_counter() - t)
            assert run["status"] == "completed", run
            rid = run["run_id"]
        sampling.set()
        peak_training = peak[0]
        workers_busy = _rss_mb(_pids("dramatiq workers.boot"))
        config = json.loads(Scratch(pathlib.Path(data_dir) / "runs", rid, attempt=1).job.read_text())
    direct = []
    for i in range(repeats):
        folder = Scratch.at(tempfile.mkdtemp(prefix="tunix-direct-"))
        job = dict(config, run=dict(config["run"], run_dir=str(folder.path)))
        folder.job.write_text(json.dumps(job))
        env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(data_dir, "jax-cache"),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
        t = time.perf_counter()
        sp.run([sys.executable, "-m", "workers.training", str(folder.job)], check=True,
               stdout=sp.DEVNULL, stderr=sp.DEVNULL, env=env, cwd=procs.ROOT)
        direct.append(time.perf_counter() - t)
    p, d = statistics.median(platform), statistics.median(direct)
    print(f"real tiny training ({TRAINING['max_steps']} steps, warm compile cache, median of {repeats}): "
          f"through the platform {p:.2f} s, directly {d:.2f} s -> overhead ratio {p / d:.3f}")
    print(f"worker launch memory (dramatiq main + 1 worker process, RSS): idle {workers_idle:.0f} MB, after trainings "
          f"{workers_busy:.0f} MB; training subprocess peak {peak_training:.0f} MB")


def bench_streams(url, data_dir, streams=200, probes=200):
    """Concurrent SSE log streams on one API process, and what they cost
    other requests."""
    import threading

    _truncate(url)
    with procs.api(url, data_dir, threads=256) as base, requests.Session() as http:
        rid = http.post(base + "/api/tunix/run?mode=async", json=BODY).json()["run_id"]

        def probe():
            lat = []
            for _ in range(probes):
                t = time.perf_counter()
                http.get(f"{base}/api/tunix/runs/{rid}/status").raise_for_status()
                lat.append(time.perf_counter() - t)
            return lat

        before = probe()
        opened, stop, sessions = [], threading.Event(), []

        def hold():
            s = requests.Session()
            sessions.append(s)
            r = s.get(f"{base}/api/tunix/runs/{rid}/logs", stream=True, timeout=120)
            opened.append(r.status_code)
            stop.wait()
            r.close()

        threads = [threading.Thread(target=hold, daemon=True) for _ in range(streams)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 60
        while len(opened) < streams and time.monotonic() < deadline:
            time.sleep(0.1)
        during = probe()
        extra = requests.get(f"{base}/api/tunix/runs/{rid}/logs", stream=True, timeout=10)
        stop.set()
        for th in threads:
            th.join(10)
    ok = sum(1 for c in opened if c == 200)
    print(f"SSE: {ok}/{streams} concurrent log streams open on one API process (256 threads); "
          f"one more -> HTTP {extra.status_code}")
    print(f"status request latency: p50 {ms(pct(before, 50))} / p99 {ms(pct(before, 99))} with no stream, "
          f"p50 {ms(pct(during, 50))} / p99 {ms(pct(during, 99))} with {ok} streams open")


def _queue_batch(base, http, n):
    for start in range(0, n, 1000):
        runs = [BODY] * min(1000, n - start)
        assert http.post(base + "/api/tunix/runs/batch", json={"runs": runs}).status_code == 202


def _drain_rate(url, data_dir, n, processes, **env):
    _truncate(url)
    with procs.api(url, data_dir) as base, requests.Session() as http:
        _queue_batch(base, http, n)
    with procs.workers(url, data_dir, processes=processes, threads=4, **env) as metrics_url:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            (done,), = _fetch(url, "SELECT count(*) FROM tunix_runs WHERE status = 'completed'")
            if done == n:
                break
            time.sleep(0.5)
        scrape = []
        for _ in range(20):
            t = time.perf_counter()
            requests.get(metrics_url, timeout=10).raise_for_status()
            scrape.append(time.perf_counter() - t)
    (first, last), = _fetch(url, "SELECT min(started_at), max(completed_at) FROM tunix_runs")
    return n / (last - first).total_seconds(), scrape


def bench_metrics(url, data_dir, n=10_000, processes=8, ab_runs=3000, ab_rounds=3):
    """Scrape time of each endpoint with 8 worker processes after 10,000 runs,
    and what recording metrics costs per run: drains with metrics on and off,
    alternated so that the machine's noise falls on both alike."""
    rate, scrape = _drain_rate(url, data_dir, n, processes)
    with procs.api(url, data_dir) as base:
        api_scrape = []
        for _ in range(20):
            t = time.perf_counter()
            requests.get(base + "/metrics", timeout=10).raise_for_status()
            api_scrape.append(time.perf_counter() - t)
    print(f"metrics scrape after {n} runs ({rate:.0f} runs/s), {processes} worker processes: worker launch "
          f"endpoint p50 {ms(pct(scrape, 50))} max {ms(max(scrape))}; API endpoint (with registry gauges) "
          f"p50 {ms(pct(api_scrape, 50))} max {ms(max(api_scrape))}")
    on, off = [], []
    for _ in range(ab_rounds):
        on.append(_drain_rate(url, data_dir, ab_runs, 2)[0])
        off.append(_drain_rate(url, data_dir, ab_runs, 2, TUNIX_METRICS="0")[0])
    print(f"drains of {ab_runs} dry runs, 2 worker processes, alternated: metrics on "
          f"{', '.join(f'{r:.0f}' for r in on)} runs/s; off {', '.join(f'{r:.0f}' for r in off)} runs/s "
          f"-> on/off ratio of medians {statistics.median(on) / statistics.median(off):.3f}")


def bench_load(url, data_dir, flags=()):
    from .load import bench_load as run, parse_args

    run(url, data_dir, parse_args(list(flags)))


def bench_store(url, data_dir):
    from .store import bench_store as run

    run(url, data_dir)


def bench_sweep(url, data_dir):
    from .sweep import bench_sweep as run

    run(url, data_dir)


def bench_retention(url, data_dir, flags=()):
    from .retention import bench_retention as run, parse_args

    run(url, data_dir, parse_args(list(flags)))


def bench_training(url, data_dir, flags=()):
    from .training import bench_training as run, parse_args

    run(url, data_dir, parse_args(list(flags)))


BENCHES = {"submit": bench_submit, "pickup": bench_pickup, "drain": bench_drain, "load": bench_load,
           "training-tiny": bench_training_tiny, "streams": bench_streams, "metrics": bench_metrics, "store": bench_store,
           "sweep": bench_sweep}


#: Run only when named: the real model (bench/training.py).
NAMED_ONLY = {"training": bench_training, "retention": bench_retention}

#: The benches that take ``--flags``, and the module that parses them.
FLAG_PARSERS = {"load": "bench.load", "training": "bench.training", "retention": "bench.retention"}


def main(argv):
    """``argv``: bench names (all but ``NAMED_ONLY`` when none), then
    ``--flags`` for the one named bench of ``FLAG_PARSERS``."""
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, flags = argv[:split] or list(BENCHES), argv[split:]
    unknown = [n for n in names if n not in BENCHES and n not in NAMED_ONLY]
    if unknown:
        sys.stderr.write(f"unknown bench(es): {', '.join(unknown)}; known: "
                         f"{', '.join([*BENCHES, *NAMED_ONLY])}\n")
        return 2
    takers = [n for n in names if n in FLAG_PARSERS]
    if flags and len(takers) != 1:
        sys.stderr.write(f"{' '.join(flags)}: flags go to exactly one named bench of "
                         f"{', '.join(FLAG_PARSERS)}\n")
        return 2
    for name in takers:  # a bad flag stops here, before any process starts
        importlib.import_module(FLAG_PARSERS[name]).parse_args(flags)
    with procs.database() as url:
        data_dir = tempfile.mkdtemp(prefix="tunix-bench-data-")
        for name in names:
            run = NAMED_ONLY.get(name) or BENCHES[name]
            if name in FLAG_PARSERS:
                run(url, data_dir, flags)
            else:
                run(url, data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
