"""The peer for ``python -m bench load``: Celery + Redis on the same no-op
workload, on this machine, in the same run.

A Redis server of its own (the machine's ``redis-server`` binary, on a free
port, nothing kept on disk) and a Celery worker with 2 prefork processes, as
our side runs 2 worker processes.  Its task is a no-op that counts itself in
Redis, so the drain is timed from the first execution to the last.

    python -m bench.celery_peer      # prints its figures alone
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

from celery import Celery

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Redis URL of the peer's server; set for the worker by ``peer()``.
BROKER_URL = os.environ.get("CELERY_PEER_BROKER", "redis://127.0.0.1:6379/15")

app = Celery("tunix_peer", broker=BROKER_URL)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)

COUNTER = "tunix-peer:done"


@app.task(name="noop")
def noop(i):
    import redis

    client = getattr(noop, "_redis", None)
    if client is None:
        client = noop._redis = redis.Redis.from_url(BROKER_URL)
    client.incr(COUNTER)


def available():
    """Why the peer cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server not found (Debian package redis-server)"
    return None


@contextlib.contextmanager
def redis_server():
    import redis

    from .procs import free_port

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="tunix-peer-redis-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    try:
        yield url, client
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def celery_worker(url, processes=2):
    env = dict(os.environ, CELERY_PEER_BROKER=url, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.celery_peer", "worker",
                             "--concurrency", str(processes), "--pool", "prefork", "--loglevel", "warning",
                             "--without-gossip", "--without-mingle", "--without-heartbeat"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(n=5000, processes=2):
    """``{"enqueue_per_s", "drain_per_s"}``: n tasks sent from one thread with
    no worker running, then drained by a worker of ``processes`` processes."""
    with redis_server() as (url, client):
        app.conf.broker_url = url
        global BROKER_URL
        BROKER_URL = url
        with app.connection_for_write() as conn:
            producer = app.amqp.Producer(conn)
            noop.apply_async((0,), producer=producer)  # warm the connection
            started = time.perf_counter()
            for i in range(n):
                noop.apply_async((i,), producer=producer)
            enqueue_s = time.perf_counter() - started
        total = n + 1
        with celery_worker(url, processes):
            deadline = time.monotonic() + 300
            first = None
            while time.monotonic() < deadline:
                done = int(client.get(COUNTER) or 0)
                if first is None and done:
                    first = (time.perf_counter(), done)
                if done >= total:
                    break
                time.sleep(0.005)
            last = time.perf_counter()
        drained = done - first[1]
        return {"enqueue_per_s": n / enqueue_s, "drain_per_s": drained / (last - first[0]), "tasks": done}


def main():
    why = available()
    if why:
        print(f"!!! Celery + Redis peer SKIPPED: {why}")
        return 0
    figures = measure()
    print(f"Celery + Redis: enqueue {figures['enqueue_per_s']:.0f}/s from one thread; "
          f"drain {figures['drain_per_s']:.0f}/s with 2 processes ({figures['tasks']} tasks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
