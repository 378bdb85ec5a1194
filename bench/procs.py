"""Start the system's processes for a benchmark: a database, the API, a
worker launch, each a real process as in production."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg2
import requests

from tasks import db, migrate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def database():
    """A fresh, migrated database on DATABASE_URL's server, else an embedded one."""
    server_url = os.environ.get("DATABASE_URL")
    embedded = None
    if not server_url:
        from workers.pgembed import EmbeddedPostgres

        embedded = EmbeddedPostgres(os.path.join(tempfile.mkdtemp(prefix="tunix-bench-"), "pg"))
        server_url = embedded.start()
    name = f"tunix_bench_{uuid.uuid4().hex[:8]}"
    admin = db.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    url = _with_dbname(server_url, name)
    migrate.migrate(url)
    try:
        yield url
    finally:
        with contextlib.suppress(psycopg2.Error):
            admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()
        if embedded is not None:
            embedded.stop()


def truncate(url, statement="TRUNCATE tunix_sweeps, tunix_runs CASCADE; TRUNCATE dramatiq.queue"):
    """Empty the registry and the queue between benchmarks (or, with
    ``statement``, the tables it names: the peer's)."""
    conn = db.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def fetch(url, sql, *args):
    """The rows of one query, on a connection of its own."""
    conn = db.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def _with_dbname(url, name):
    from urllib.parse import urlparse

    parts = urlparse(url)
    return parts._replace(path="/" + name).geturl()


def _env(url, data_dir, **extra):
    env = dict(os.environ, DATABASE_URL=url, DATA_DIR=data_dir, PYTHONPATH=ROOT)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _stop(proc, grace=15):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_http(url, timeout=60, ok=200):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == ok:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def api(url, data_dir, threads=16, app="app:create_app()", ready=("/readyz", 200)):
    """gunicorn as ``make run`` starts it, serving ``app``; ready once
    ``ready``'s path answers its code."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1", "--threads", str(threads),
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", app],
        cwd=ROOT, env=_env(url, data_dir, API_THREADS=threads), start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + ready[0], ok=ready[1])
        yield base
    finally:
        _stop(proc)


@contextlib.contextmanager
def workers(url, data_dir, processes=2, threads=8, **extra):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "workers"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(url, data_dir, WORKERS=processes, WORKER_THREADS=threads, METRICS_PORT=port,
                                     **extra))
    try:
        _wait_http(f"http://127.0.0.1:{port}/metrics")
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        _stop(proc)
