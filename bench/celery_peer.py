"""Start the peer of ``python -m bench load``: Flask + Celery on Redis + a
PostgreSQL run registry (its code: ``bench/peer_app.py``), on this machine.

A database of its own on our PostgreSQL server, a Redis server of its own
(the machine's ``redis-server`` on a free port, nothing on disk), the Flask
app under the API's gunicorn shape (1 process, 256 threads, the same
``gunicorn.conf.py``) and a Celery worker of 2 prefork processes, as our side
runs 2 worker processes.

    python -m bench.celery_peer [--clients 1,16,64] [--seconds N]
                                   # the peer's levels alone (bench/load.py)
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from tasks import db

from . import procs
from .procs import ROOT


def available():
    """Why the peer cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server not found (Debian package redis-server)"
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[bench]')"
    return None


@contextlib.contextmanager
def database(url):
    """A fresh database beside ``url``'s with the peer's one table."""
    from .peer_app import SCHEMA

    name = f"tunix_peer_{uuid.uuid4().hex[:8]}"
    admin = db.connect(url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    peer_url = procs._with_dbname(url, name)
    conn = db.connect(peer_url)
    with conn, conn.cursor() as cur:
        cur.execute(SCHEMA)
    conn.close()
    try:
        yield peer_url
    finally:
        with contextlib.suppress(Exception):
            admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@contextlib.contextmanager
def redis_server():
    import redis

    port = procs.free_port()
    workdir = tempfile.mkdtemp(prefix="tunix-peer-redis-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def celery_worker(broker, db_url, processes=2):
    """``celery worker`` with ``processes`` prefork processes; its log in a
    file, whose tail ``log()`` returns when something goes wrong."""
    from .peer_app import BROKER_ENV

    log = tempfile.NamedTemporaryFile(prefix="tunix-peer-celery-", suffix=".log", delete=False)
    env = dict(os.environ, DATABASE_URL=db_url, PYTHONPATH=ROOT, **{BROKER_ENV: broker})
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.peer_app", "worker",
                             "--concurrency", str(processes), "--pool", "prefork", "--loglevel", "warning",
                             "--without-gossip", "--without-mingle", "--without-heartbeat"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def tail():
        with open(log.name, errors="replace") as f:
            return f.read()[-2000:]

    try:
        yield tail
    finally:
        procs._stop(proc)
        log.close()
        os.unlink(log.name)


@contextlib.contextmanager
def peer(url, data_dir, processes=2, threads=256):
    """The whole peer, warm: yields (API base URL, its database's URL).
    Ready once a few runs went through submit, Redis, Celery and back."""
    with database(url) as db_url, redis_server() as broker, \
            celery_worker(broker, db_url, processes) as worker_log, \
            procs.api(db_url, data_dir, threads=threads, app=f"bench.peer_app:create_app({broker!r})",
                      ready=("/api/tunix/run", 405)) as base:
        import requests

        with requests.Session() as http:
            for _ in range(50):
                r = http.post(base + "/api/tunix/run?mode=async", json={"dataset_key": "synthetic",
                                                                       "model_id": "llama3-tiny"})
                assert r.status_code == 202, r.text
        deadline = time.monotonic() + 60
        while procs.fetch(db_url, "SELECT count(*) FROM peer_runs WHERE status = 'completed'")[0][0] < 50:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the peer's Celery worker completed no run in 60 s; its log:\n{worker_log()}")
            time.sleep(0.2)
        truncate(db_url)
        yield base, db_url


def truncate(db_url):
    procs.truncate(db_url, "TRUNCATE peer_runs")


def main(argv):
    from . import load

    args = load.parse_args(argv)
    why = available()
    if why:
        print(f"!!! Celery + Redis peer SKIPPED: {why}")
        return 0
    with procs.database() as url:
        rows = load.peer_levels(url, tempfile.mkdtemp(prefix="tunix-bench-data-"), args.clients, args.seconds)
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
