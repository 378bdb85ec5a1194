"""``python -m bench.submit_profile``: where one async submit's time goes.

    python -m bench.submit_profile [--n 2000] [--reps 3] [--profile] [--sql] [--peer]
    python -m bench.submit_profile --http [--workers | --peer] [--seconds 5] [--statements]

In-process (the default): builds the app (``app.create_app()``) on a fresh,
migrated database of ``DATABASE_URL``'s server (dropped at the end), then
POSTs ``bench/load.py``'s body to ``/api/tunix/run?mode=async`` through
Flask's test client ``--n`` times per repetition and prints each
repetition's per-submit mean and their median.  ``--sql`` lists the SQL
statements one submit runs on the request's connection (and their time),
``--profile`` prints cProfile's top functions over one repetition,
``--peer`` times ``bench/peer_app.py``'s submit the same way first (needs
Redis on 127.0.0.1:6379, its db 15: the keys it makes there are deleted after; its database is made and
dropped too).  No worker runs: the messages stay queued.  Seconds, not
minutes.

``--http``: one client on one keep-alive connection for ``--seconds``, as
``python -m bench load`` at 1 client, through gunicorn as the bench starts
it (``--workers``: with 2 worker processes draining; ``--peer``: the peer,
with its Redis and 2 Celery processes, instead): p50 / p99, and the CPU spent
per submit by the API process, the workers, PostgreSQL's processes, the
client and the whole machine (``/proc/stat``).  ``--statements``: the
server's execution and planning time per submit by statement, from
``pg_stat_statements``, which the server must preload (a private one:
``initdb``, then ``pg_ctl -o "-p 5433 -c
shared_preload_libraries=pg_stat_statements -c
pg_stat_statements.track_planning=on" start``, and ``DATABASE_URL`` at
it).  About 20 s.
"""

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import tempfile
import time
import uuid
from urllib.parse import urlparse

import psycopg2

from .load import BODY

PATH = "/api/tunix/run?mode=async"
HEADERS = {"Content-Type": "application/json"}


@contextlib.contextmanager
def _database(server_url, schema=None):
    name = f"tunix_prof_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    url = urlparse(server_url)._replace(path="/" + name).geturl()
    try:
        if schema is None:
            from tasks import migrate
            migrate.migrate(url)
        else:
            conn = psycopg2.connect(url)
            with conn, conn.cursor() as cur:
                cur.execute(schema)
            conn.close()
        yield url
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _timed(client, n, body, expect):
    t = time.perf_counter()
    for _ in range(n):
        response = client.post(PATH, data=body, headers=HEADERS)
        if response.status_code != expect:
            raise SystemExit(f"unexpected answer {response.status_code}: {response.get_data(as_text=True)}")
    return (time.perf_counter() - t) / n


def _reps(client, args, expect):
    body = json.dumps(BODY)
    _timed(client, 200, body, expect)  # warm: pool, caches, imports
    means = [_timed(client, args.n, body, expect) for _ in range(args.reps)]
    print(f"  per submit (ms), {args.reps} x {args.n}: " + " / ".join(f"{m * 1000:.3f}" for m in means)
          + f"; median {statistics.median(means) * 1000:.3f}")
    return client, body


def _profile(client, body, n, expect):
    prof = cProfile.Profile()
    prof.enable()
    _timed(client, n, body, expect)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    stats.print_stats(45)
    out.write("\n--- by own time ---\n")
    stats.sort_stats("tottime").print_stats(30)
    print(out.getvalue())


class _Traced:
    """A cursor that logs each statement's text and time."""

    def __init__(self, cur, log):
        self._cur, self._log = cur, log

    def __getattr__(self, name):
        return getattr(self._cur, name)

    def __iter__(self):
        return iter(self._cur)

    def __enter__(self):
        self._cur.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cur.__exit__(*exc)

    def _timed(self, fn, query, *a):
        t = time.perf_counter()
        try:
            return fn(query, *a)
        finally:
            text = query.decode() if isinstance(query, bytes) else str(query)
            self._log.append((" ".join(text.split())[:170], time.perf_counter() - t))

    def execute(self, query, *a):
        return self._timed(self._cur.execute, query, *a)

    def executemany(self, query, *a):
        return self._timed(self._cur.executemany, query, *a)


class _Tracer:
    """While ``on``: each statement of ``tasks.db.Connection``'s cursors, and
    each commit, with its time."""

    def __init__(self):
        self.log = []
        self.on = False

    def install(self):
        from tasks import db as tdb

        tracer = self
        real_cursor, real_commit = tdb.Connection.cursor, tdb.Connection.commit

        def cursor(conn, *a, **kw):
            cur = real_cursor(conn, *a, **kw)
            return _Traced(cur, tracer.log) if tracer.on else cur

        def commit(conn):
            t = time.perf_counter()
            try:
                return real_commit(conn)
            finally:
                if tracer.on:
                    tracer.log.append(("COMMIT", time.perf_counter() - t))

        tdb.Connection.cursor, tdb.Connection.commit = cursor, commit


def _sql(client, body, tracer, expect):
    tracer.log.clear()
    tracer.on = True
    t = time.perf_counter()
    response = client.post(PATH, data=body, headers=HEADERS)
    total = time.perf_counter() - t
    tracer.on = False
    assert response.status_code == expect, response.status_code
    print(f"  SQL of one submit ({len(tracer.log)} round trips, {sum(s for _, s in tracer.log) * 1000:.3f} ms "
          f"of {total * 1000:.3f} ms):")
    for text, seconds in tracer.log:
        print(f"    {seconds * 1000:7.3f} ms  {text}")


def _ours(server, args):
    tracer = _Tracer()
    with _database(server) as url, tempfile.TemporaryDirectory(prefix="tunix-prof-") as data_dir:
        os.environ.update(DATABASE_URL=url, DATA_DIR=data_dir)
        if args.sql:
            tracer.install()
        from app import create_app

        app = create_app()
        client = app.test_client()
        print("ours (app.create_app(), Flask test client):")
        client, body = _reps(client, args, 202)
        if args.sql:
            _sql(client, body, tracer, 202)
        if args.profile:
            _profile(client, body, args.n, 202)
        # The audit rows are written before the database is dropped.
        app.extensions["tunix_audit"].flush()


def _peer(server, args):
    from . import peer_app

    with _database(server, schema=peer_app.SCHEMA) as url:
        os.environ["DATABASE_URL"] = url
        app = peer_app.create_app("redis://127.0.0.1:6379/15")
        client = app.test_client()
        print("peer (bench/peer_app.py, Flask test client, Redis db 15):")
        import redis

        broker = redis.Redis.from_url("redis://127.0.0.1:6379/15")
        before = set(broker.keys())
        try:
            client, body = _reps(client, args, 202)
            if args.profile:
                _profile(client, body, args.n, 202)
        finally:
            made = set(broker.keys()) - before  # the queue this made, nothing else
            if made:
                broker.delete(*made)


def _http(server, args):
    """One client on one keep-alive connection, as ``bench/load.py``'s at 1
    client, against gunicorn as the bench starts it (with ``--workers``, 2
    worker processes draining; with ``--peer``, the peer and its 2 Celery
    processes instead)."""
    import http.client as http_client

    from . import procs
    from .load import _pct

    @contextlib.contextmanager
    def ours():
        with _database(server) as url, tempfile.TemporaryDirectory(prefix="tunix-prof-") as data_dir, \
                (procs.workers(url, data_dir, processes=2) if args.workers else contextlib.nullcontext()), \
                procs.api(url, data_dir, threads=256) as base:
            yield base

    @contextlib.contextmanager
    def peer():
        from . import celery_peer

        with tempfile.TemporaryDirectory(prefix="tunix-prof-") as data_dir, \
                celery_peer.peer(server, data_dir) as (base, _):
            yield base

    with (peer() if args.peer else ours()) as base:
        host, port = base.rsplit("/", 1)[-1].split(":")
        api = _listener(int(port))
        http = http_client.HTTPConnection(host, int(port), timeout=60)
        body = json.dumps(BODY).encode()
        latencies = []
        stop = time.monotonic() + 1 + args.seconds
        warm_until = time.monotonic() + 1
        while True:
            t = time.monotonic()
            if t >= stop:
                break
            http.request("POST", PATH, body=body, headers=HEADERS)
            response = http.getresponse()
            response.read()
            if response.status != 202:
                raise SystemExit(f"unexpected answer {response.status}")
            if t >= warm_until:
                if not latencies:
                    if args.statements:
                        _statements(server, reset=True)
                    api_cpu, others_cpu, pg_cpu, own_cpu, all_cpu = (
                        _cpu(api), _others_cpu(api), _postgres_cpu(), time.process_time(), _machine_cpu())
                latencies.append(time.monotonic() - t)
        api_cpu, others_cpu = _cpu(api) - api_cpu, _others_cpu(api) - others_cpu
        pg_cpu, own_cpu, all_cpu = _postgres_cpu() - pg_cpu, time.process_time() - own_cpu, _machine_cpu() - all_cpu
        http.close()
        print(f"{'peer' if args.peer else 'ours'}: gunicorn (1 process x 256 threads"
              f"{', 2 worker processes' if args.workers or args.peer else ', no worker'}), "
              f"1 client, {args.seconds:g} s: {len(latencies)} submits, p50 {_pct(latencies, 50) * 1000:.2f} ms, "
              f"p99 {_pct(latencies, 99) * 1000:.2f} ms; the API process' CPU {api_cpu / len(latencies) * 1000:.2f} ms "
              f"per submit, its workers' {others_cpu / len(latencies) * 1000:.2f} ms, PostgreSQL's "
              f"{pg_cpu / len(latencies) * 1000:.2f} ms, the client's {own_cpu / len(latencies) * 1000:.2f} ms, "
              f"the whole machine's {all_cpu / len(latencies) * 1000:.2f} ms")
        if args.statements:
            print("PostgreSQL per submit, by statement (pg_stat_statements; ms of execution + planning):")
            for calls, exec_ms, plan_ms, query in _statements(server):
                if calls >= len(latencies) / 10:
                    print(f"  {calls / len(latencies):5.2f} calls  {exec_ms / len(latencies):.3f} + "
                          f"{plan_ms / len(latencies):.3f} ms  {query}")


def _listener(port):
    """The process serving ``port``: gunicorn's worker, not its arbiter."""
    import psutil

    serving = [p for p in psutil.Process().children(recursive=True)
               if any(c.laddr and c.laddr.port == port for c in p.net_connections("tcp"))]
    pids = {p.pid for p in serving}
    workers = [p for p in serving if p.ppid() in pids]
    return (workers or serving)[0]


def _cpu(process):
    times = process.cpu_times()
    return times.user + times.system


def _statements(server, reset=False):
    """``pg_stat_statements`` of the whole server: reset it, or its rows
    (calls, execution ms, planning ms, the query's start), most time first."""
    conn = psycopg2.connect(server)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            try:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                if reset:
                    cur.execute("SELECT pg_stat_statements_reset()")
                    return None
                cur.execute("SELECT calls, total_exec_time, total_plan_time,"
                            " left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
                            " FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 15")
                return cur.fetchall()
            except psycopg2.Error as exc:
                raise SystemExit(f"--statements needs pg_stat_statements loaded by the server "
                                 f"(shared_preload_libraries=pg_stat_statements): {exc}".strip()) from None
    finally:
        conn.close()


def _postgres_cpu():
    """CPU of every PostgreSQL server process on this machine (its backends, WAL writer, checkpointer)."""
    import psutil

    return _total_cpu(psutil.process_iter(["name"]), lambda p: p.info["name"] == "postgres")


def _total_cpu(processes, keep):
    """The CPU of those of ``processes`` that ``keep`` keeps, less those gone meanwhile."""
    import psutil

    total = 0.0
    for p in processes:
        try:
            if keep(p):
                total += _cpu(p)
        except psutil.NoSuchProcess:
            pass
    return total


def _machine_cpu():
    """Busy CPU seconds of the whole machine (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _others_cpu(api):
    """CPU of this process' other descendants (the workers; not the API's arbiter, not Redis)."""
    import psutil

    return _total_cpu(psutil.Process().children(recursive=True),
                      lambda p: p.pid != api.pid and p.pid != api.ppid() and "redis" not in p.name())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sql", action="store_true")
    parser.add_argument("--peer", action="store_true")
    parser.add_argument("--http", action="store_true", help="through gunicorn and a socket instead (no other figure)")
    parser.add_argument("--workers", action="store_true", help="with --http: 2 worker processes draining")
    parser.add_argument("--statements", action="store_true",
                        help="with --http: the server's time by statement (pg_stat_statements must be preloaded)")
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args(argv)
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    if args.http:
        return _http(server, args)
    if args.peer:
        _peer(server, args)
        os.environ["DATABASE_URL"] = server
    _ours(server, args)


if __name__ == "__main__":
    main()
