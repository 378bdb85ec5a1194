"""Helpers the tiers share: databases, processes, the API over HTTP, metrics.

Fixtures in ``tests/conftest.py`` build on these; tests import them as
``from support import ...`` (pytest puts ``tests/`` on the path).
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from urllib.parse import urlparse

import psycopg2
import requests
from prometheus_client.parser import text_string_to_metric_families

from workers import processes
from workers.processes import START_TIMEOUT_S, STOP_GRACE_S, free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: Every DATA_DIR handed to a process this session (see ``_no_process_left_behind``).
DATA_DIRS = []

#: The smallest valid request: a dry run of the tiny model on the synthetic set.
DRY = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


def with_dbname(url, name):
    return urlparse(url)._replace(path="/" + name).geturl()


def connect(url):
    from tasks import db

    conn = db.connect(url)
    conn.autocommit = True
    return conn


def scalar(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def count_runs(conn):
    return scalar(conn, "SELECT count(*) FROM tunix_runs")


def truncate(conn):
    """Empty the registry and the broker's queue (the tables tests count)."""
    with conn.cursor() as cur:
        cur.execute("TRUNCATE tunix_sweeps, tunix_runs, dramatiq.queue, tunix_tokens, tunix_users CASCADE")


def wait_for(predicate, timeout, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout}s")
        time.sleep(interval)


def metric_samples(text):
    """``{(name, frozenset(labels.items())): value}`` of a Prometheus text page."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples, name, **labels):
    """The value of one sample (0 when absent: a counter not yet incremented)."""
    wanted = {k: str(v) for k, v in labels.items()}
    return sum(v for (n, ls), v in samples.items() if n == name and wanted.items() <= dict(ls).items())



# --------------------------------------------------------------------------
# PostgreSQL


class Databases:
    """Creates databases on one server: clones of a migrated template, or blank ones."""

    def __init__(self, server_url):
        self.server_url = server_url
        self.prefix = f"tunix_test_{uuid.uuid4().hex[:8]}"
        self.created = []
        self._template = None
        self._admin = connect(server_url)

    def _create(self, name, template=None):
        with self._admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.created.append(name)
        return with_dbname(self.server_url, name)

    @property
    def template(self):
        """The migrated template's name (migrated on first use)."""
        if self._template is None:
            from tasks.migrate import migrate

            name = f"{self.prefix}_template"
            migrate(self._create(name))
            self._template = name
        return self._template

    def create(self, migrated=True):
        """A new database's URL: a clone of the migrated template, or blank."""
        name = f"{self.prefix}_{len(self.created)}"
        return self._create(name, template=self.template if migrated else None)

    def drop_all(self):
        with self._admin.cursor() as cur:
            for name in reversed(self.created):
                with contextlib.suppress(psycopg2.Error):
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.close()

    def close(self):
        self._admin.close()


# --------------------------------------------------------------------------
# Processes


def _stop_group(proc, grace=STOP_GRACE_S):
    """SIGTERM the group leader (it stops its children), SIGKILL the group after ``grace``."""
    processes.stop_group(proc, grace)


def _log_tail(path, lines=40):
    return processes.log_tail(path, lines)


def _wait_http(url, proc, log_path, timeout=START_TIMEOUT_S):
    processes.wait_http(url, proc, log_path, timeout)


def first_admin(database_url, name="root"):
    """Make the installation's first admin as an operator does (``tunix-admin
    create-user``, on the server side) and return their token, which the
    command prints alone on stdout.  Auth is on from then on."""
    made = subprocess.run([sys.executable, "-m", "tasks.users_admin", "create-user", name, "--role", "admin"],
                          cwd=str(ROOT), env=dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token and "\n" not in token and token not in made.stderr
    return token


def process_env(database_url, data_dir, **extra):
    env = processes.child_env(database_url, data_dir)
    # Open API: tests that want a token set it themselves.
    env.pop("API_TOKEN", None)
    env.pop("API_TOKEN_READS", None)
    # Tests compare a scrape with the registry at once: no cached gauges
    # (tests/unit/test_ops_metrics.py tests the cache).
    env["METRICS_CACHE_S"] = "0"
    env.update({k: str(v) for k, v in extra.items()})
    DATA_DIRS.append(str(data_dir))
    return env


#: A service started in its own process group, logging to a file (``Process(cmd, env, log_path)``).
Process = processes.Service


def start_api(database_url, data_dir, log_dir, threads=16, port=None, **env):
    """The API as in production: gunicorn, one gthread process (on ``port``,
    to start it again where its clients look, else a free one)."""
    port = port or free_port()
    env.setdefault("SYNC_TIMEOUT_S", 30)
    env.setdefault("API_THREADS", threads)  # the API sizes its waiting slots by it
    return processes.start_api(process_env(database_url, data_dir, **env), os.path.join(log_dir, f"api-{port}.log"),
                               threads=threads, port=port, graceful_timeout_s=10)


class Launch(Process):
    """One worker launch (``python -m workers``) and its metrics endpoint."""

    def __init__(self, database_url, data_dir, log_dir, workers=2, threads=8, **env):
        # A caller may pin the port (say, to restart a launch on the same one).
        self.metrics_port = int(env.pop("METRICS_PORT", None) or free_port())
        env.setdefault("METRICS_ADDR", "127.0.0.1")
        env = process_env(database_url, data_dir, WORKERS=workers, WORKER_THREADS=threads,
                          METRICS_PORT=self.metrics_port, **env)
        super().__init__(processes.workers_command(), env, os.path.join(log_dir, f"workers-{self.metrics_port}.log"))
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            self.wait_http(self.metrics_url)
        except BaseException:
            self.stop()
            raise

    def metrics(self):
        return metric_samples(requests.get(self.metrics_url, timeout=5).text)


# --------------------------------------------------------------------------
# HTTP


class ApiClient:
    """The live API over HTTP, with the few moves every e2e test makes."""

    def __init__(self, base):
        self.base = base
        self.http = requests.Session()

    def url(self, path):
        return self.base + path

    def submit(self, body=None, mode="async", *, data=None, headers=None, params=None):
        params = dict(params or {})
        if mode is not None:
            params["mode"] = mode
        if data is not None:
            return self.http.post(self.url("/api/tunix/run"), params=params, data=data, headers=headers, timeout=60)
        return self.http.post(self.url("/api/tunix/run"), params=params, json=body, timeout=60)

    def get(self, path, **params):
        return self.http.get(self.url(path), params=params, timeout=30)

    def run(self, run_id):
        response = self.get(f"/api/tunix/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_final(self, run_id, timeout=60):
        from tasks import lifecycle

        final = {s.value for s in lifecycle.FINAL}
        return wait_for(lambda: (lambda r: r if r["status"] in final else None)(self.run(run_id)), timeout,
                        message=f"run {run_id} final")

    def metrics(self):
        return metric_samples(self.get("/metrics").text)


def alive(pid):
    """Whether ``pid`` runs (a zombie is dead)."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def scratch(data_dir, run_id, attempt=1):
    """A run attempt's scratch folder under a host's ``DATA_DIR``
    (``tasks.artifacts.Scratch``, the one place that names it)."""
    from tasks.artifacts import Scratch

    return Scratch(pathlib.Path(data_dir) / "runs", run_id, attempt)


def pids_with(fragment):
    """Live processes whose command line contains ``fragment``."""
    needle = fragment.encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = pathlib.Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and alive(int(name)):
            found.append(int(name))
    return found


def freeze_training(run_id, timeout=30):
    """SIGSTOP the training subprocess of ``run_id`` (found by the run id in
    its command line) and return its pids: the worker keeps holding the run
    and beating for it, and the training spends no CPU.  A frozen training
    cannot act on SIGTERM: SIGKILL it (``kill_pids``) before stopping its
    launch, or the launch waits for its own SIGKILL."""
    pids = wait_for(lambda: pids_with(str(run_id)), timeout, message=f"the training of {run_id}")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def kill_pids(pids):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def one_line_error(result):
    """The one ``error: ...`` line a failed ``tunix`` command printed (no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
