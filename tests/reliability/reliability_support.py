"""Helpers of the reliability tier: counting runs, finding and killing processes."""

import contextlib
import os
import pathlib
import signal
import threading
import time

from support import pids_with, scalar, wait_for
from tasks import lifecycle

FINAL = {s.value for s in lifecycle.FINAL}

#: A real tiny training (llama3-tiny on the synthetic set, ~30 ms a step on
#: 2 cores): long enough to be caught and killed mid-way.
TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "learning_rate": 0.01,
            "batch_size": 4, "max_seq_length": 32, "max_steps": 400, "seed": 20240611, "device": "cpu",
            "checkpoint_every_steps": 20}


def training(**overrides):
    return dict(TRAINING, **overrides)


# --------------------------------------------------------------------------
# The registry, read directly (an autocommit connection)


def run_row(conn, run_id):
    """``{status, attempts, worker_id, progress, result, error}`` of a run, None when absent."""
    with conn.cursor() as cur:
        cur.execute("SELECT status, attempts, worker_id, progress, result, error FROM tunix_runs WHERE id = %s",
                    (str(run_id),))
        row = cur.fetchone()
    if row is None:
        return None
    return dict(zip(("status", "attempts", "worker_id", "progress", "result", "error"), row))


def wait_row(conn, run_id, predicate, timeout, message, interval=0.05):
    """Poll the run's row until ``predicate(row)``; returns that row."""
    return wait_for(lambda: (lambda r: r if r is not None and predicate(r) else None)(run_row(conn, run_id)),
                    timeout, interval=interval, message=f"run {run_id}: {message}")


def step_of(row):
    return (row.get("progress") or {}).get("step") or 0


def census(conn):
    """``{"rows", "final", "attempts", "by_status": {status: n}}`` of the whole registry."""
    with conn.cursor() as cur:
        cur.execute("SELECT status, count(*), coalesce(sum(attempts), 0) FROM tunix_runs GROUP BY status")
        rows = cur.fetchall()
    by_status = {status: n for status, n, _ in rows}
    return {"rows": sum(by_status.values()), "final": sum(n for s, n in by_status.items() if s in FINAL),
            "attempts": sum(int(a) for _, _, a in rows), "by_status": by_status}


def wait_all_final(conn, timeout, expected_rows=None, interval=0.2):
    """Wait until every run is in a final status (and, if given, there are
    ``expected_rows`` of them); returns the census."""

    def done():
        c = census(conn)
        if c["final"] == c["rows"] and (expected_rows is None or c["rows"] == expected_rows):
            return c
        return None

    try:
        return wait_for(done, timeout, interval=interval, message="every run final")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {census(conn)}") from None


def ids_in_registry(conn, ids):
    """How many of ``ids`` have a row."""
    return scalar(conn, "SELECT count(*) FROM tunix_runs WHERE id = ANY(%s::uuid[])", (list(map(str, ids)),))


# --------------------------------------------------------------------------
# Processes


def pgid_of(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def module_of(pid):
    """The module a ``python -m MODULE`` process runs (its first ``-m``), else ''."""
    try:
        argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return ""
    return next((argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-m"), "")


def run_processes(run_id):
    """Live processes of a run: its training and the lifeline that supervises
    it (``python -m workers.lifeline -- python -m workers.training JOB``):
    both name the job file in the run's scratch folder, whatever the attempt."""
    return pids_with(f"{run_id}/")


def training_pids(run_id):
    """The run's training processes themselves (not their lifelines)."""
    return [pid for pid in run_processes(run_id) if module_of(pid).startswith("workers.train")]


def kill_group(pid, sig=signal.SIGKILL):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def worker_pid(worker_id):
    """The pid in a ``tunix_runs.worker_id`` (``host:pid``)."""
    return int(str(worker_id).rsplit(":", 1)[1])


def in_parallel(*calls):
    """Run the callables in threads; their results in order (the first error re-raised)."""
    results, errors = [None] * len(calls), []

    def run(i, call):
        try:
            results[i] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class Stopwatch:
    def __init__(self):
        self.t0 = time.monotonic()

    def __call__(self):
        return time.monotonic() - self.t0
