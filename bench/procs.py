"""Start the system's processes for a benchmark: a database, the API, a
worker launch, each a real process as in production."""

import contextlib
import os
import subprocess
import tempfile
import uuid

import psycopg2

from tasks import db, migrate
from workers.processes import ROOT, free_port  # noqa: F401  (the other benchmarks use them from here)
from workers.processes import api_ready, child_env, start_api, start_workers, stop_group


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
    return child_env(url, data_dir, **extra)


def _stop(proc, grace=15):
    """SIGTERM to the whole group, SIGKILL to it after ``grace``."""
    stop_group(proc, grace, group=True)


@contextlib.contextmanager
def api(url, data_dir, threads=16, app="app:create_app()", ready=("/readyz", 200)):
    """gunicorn as ``make run`` starts it, serving ``app``; ready once
    ``ready``'s path answers its code."""
    server = start_api(_env(url, data_dir, API_THREADS=threads), threads=threads, wait=False, term_group=True,
                       control_socket=True, log_level="warning", app=app)
    try:
        api_ready(server, *ready)
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def workers(url, data_dir, processes=2, threads=8, **extra):
    launch = start_workers(_env(url, data_dir, WORKERS=processes, WORKER_THREADS=threads, **extra),
                           subprocess.DEVNULL, term_group=True)
    try:
        yield launch.metrics_url
    finally:
        launch.stop()
