"""``python -m bench load``: a team's load on one API, against the peer a
team would build instead.

    python -m bench load [--clients 1,16,64] [--seconds 8] [--quick]

Ours: concurrent clients submit async dry runs as fast as they are answered
while 2 worker processes drain them (gunicorn as ``make run`` starts it: one
process, ``API_THREADS`` 256, ``DB_POOL_MAX`` 16), at 1, 16 and 64 clients by
default.  Each client is a closed loop on one keep-alive connection
(http.client); each level submits for 2 s of warm-up, then ``--seconds``
measured.  Per level: accepted/s (202 answers in the measured seconds over
those seconds), submit p50/p99/max, every non-2xx answer, completed/s end to
end (runs completed over first submit to last completion, warm-up included,
after the backlog drained), the API's pool waits; and what a dry run costs
the database (writing transactions and NOTIFYs per run).  A no-op Flask
submit under the same gunicorn and clients (``bench/noop_api.py``) gives the
ceiling the WSGI stack alone sets on this machine.

The peer, in the same invocation right after ours, on a fresh database of its
own on the same PostgreSQL server (``bench/celery_peer.py``, its code
``bench/peer_app.py``): Flask + Celery on its own Redis + a PostgreSQL run
registry doing what our async dry run does (the submit validates the body,
INSERTs a pending row with a durable commit and calls ``.delay(run_id)``; the
task marks it running, then completed, two more durable commits), under the
same gunicorn shape, 2 Celery prefork processes, the same clients and the
same figures (completed/s: rows completed over first ``created_at`` to last
``updated_at``).  Its pool is psycopg2's of 16 that raises when empty, so
past 16 requests at once some answers are 500s: they count as non-2xx, not
accepted.  Skipped, loudly, when ``redis-server``, celery or redis is missing.

The closing table: per level, each side's accepted / completed per s and
non-2xx, and ours ÷ the peer's; then single-client submit latency p50 / p99
on both sides and the ratio (below 1: ours is faster).  Issue #20's aims:
completed/s >= 1.0x the peer's at 1, 16 and 64 clients, single-client submit
latency <= the peer's.  #20 tried it by hand on 2 shared cores: at 1 / 16 /
64 clients ours completed 307 / 242 / 248 per s, the peer 462 / 292 / 224
(and 2,699 answers of 500 at 64).

The whole run takes about 2.5 minutes; ``--quick`` (a smoke run) about 1,
or 1.7 with ``--seconds 10``: 4 s per level and no tiny training's costs or
no-op ceiling.  The two sides run one after the other, so a shared machine's
load falls on them unevenly: on 2 cores shared with other jobs (load average
5 to 10) three runs gave ours ÷ peer completed/s of 0.64 / 1.07 / 0.45 at 1
client and 1.03 / 1.34 / 2.03 at 64.  Compare figures from one run only,
and rerun before reading a ratio near 1.
"""

import argparse
import collections
import http.client as http_client
import json
import re
import threading
import time

import requests

from . import celery_peer, procs
from .procs import fetch as _fetch
from .procs import truncate as _truncate

BODY = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}
CLIENTS = (1, 16, 64)
#: Seconds each level is measured for, after its warm-up.
LEVEL_S = 8
#: ... with ``--quick``.
QUICK_S = 4
#: Seconds each level submits before it is measured (clients connect, the
#: API's pool fills); what happens then is reported apart.
WARMUP_S = 2
#: Channels a run's commits could notify (the enqueue's is the only one left).
CHANNELS = ("dramatiq.tunix-dry.enqueue", "dramatiq.tunix-train.enqueue", "dramatiq.tunix-dry.ack",
            "dramatiq.tunix-train.ack", "tunix_run_status", "tunix_run_activity")


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def _scrape(base):
    text = requests.get(base + "/metrics", timeout=30).text

    def value(name):
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    return {"waits": value("tunix_db_pool_wait_seconds_count"), "wait_s": value("tunix_db_pool_wait_seconds_sum"),
            "slow_waits": value("tunix_db_pool_wait_seconds_count") - value(
                'tunix_db_pool_wait_seconds_bucket{le="0.01"}'),
            "timeouts": value("tunix_db_pool_timeouts_total")}


def _one_level(base, clients, seconds, warmup=WARMUP_S):
    """``clients`` threads submit for ``warmup + seconds``; answers to
    requests sent in the first ``warmup`` seconds (connections opened, the
    pool filled) are counted apart.  Returns (latencies, codes, seconds,
    warm-up answers over 1 s, warm-up non-2xx)."""
    start = time.monotonic() + 0.5
    measured_from, stop = start + warmup, start + warmup + seconds
    latencies, codes, lock = [], collections.Counter(), threading.Lock()
    warm = collections.Counter()

    host, port = base.rsplit("/", 1)[-1].split(":")
    body = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}

    def client():
        # http.client, one keep-alive connection per client: requests costs
        # the client ~4x the CPU per call, taken from the server's 2 cores.
        http = http_client.HTTPConnection(host, int(port), timeout=60)
        mine, my_codes, my_warm = [], collections.Counter(), collections.Counter()
        time.sleep(max(0.0, start - time.monotonic()))
        while True:
            t = time.monotonic()
            if t >= stop:
                break
            try:
                http.request("POST", "/api/tunix/run?mode=async", body=body, headers=headers)
                response = http.getresponse()
                response.read()
                status = response.status
            except (OSError, http_client.HTTPException):
                http.close()
                status = "error"
            took = time.monotonic() - t
            if t < measured_from:
                my_warm["over_1s"] += took > 1.0
                my_warm["non_2xx"] += status != 202
                continue
            mine.append(took)
            my_codes[status] += 1
        http.close()
        with lock:
            latencies.extend(mine)
            codes.update(my_codes)
            warm.update(my_warm)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return latencies, codes, seconds, warm["over_1s"], warm["non_2xx"]


def _wait_drained(url, timeout=600, table="tunix_runs"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (left,), = _fetch(url, f"SELECT count(*) FROM {table} WHERE status IN ('pending', 'running')")
        if left == 0:
            return True
        time.sleep(0.2)
    return False


def _next_xid(url):
    # The next transaction id to be assigned: only writing transactions take one.
    return _fetch(url, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")[0][0]


class NotifyCounter:
    """LISTENs on every channel a run's commits could notify and counts."""

    def __init__(self, url):
        from tasks import db

        self.conn = db.connect(url)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            for channel in CHANNELS:
                cur.execute(f'LISTEN "{channel}"')
        self.counts = collections.Counter()

    def drain(self):
        # One poll() reads what one socket read brings: loop until quiet.
        import select

        while select.select([self.conn], [], [], 0.3)[0]:
            self.conn.poll()
            while self.conn.notifies:
                self.counts[self.conn.notifies.pop(0).channel] += 1

    def close(self):
        self.conn.close()


def _costs(url, base, http, n=200):
    """Writing transactions and NOTIFYs one dry run costs, end to end."""
    counter = NotifyCounter(url)
    try:
        time.sleep(1)
        x0, t0 = _next_xid(url), time.monotonic()
        time.sleep(2)  # the idle rate: worker and run heartbeats, the reaper
        idle_rate = (_next_xid(url) - x0 - 1) / (time.monotonic() - t0)
        counter.drain()
        counter.counts.clear()
        x0, t0 = _next_xid(url), time.monotonic()
        for _ in range(n):
            assert http.post(base + "/api/tunix/run?mode=async", json=BODY).status_code == 202
        _wait_drained(url)
        xids = _next_xid(url) - x0 - 1 - idle_rate * (time.monotonic() - t0)
        time.sleep(0.2)
        counter.drain()
        return xids / n, sum(counter.counts.values()) / n, dict(counter.counts)
    finally:
        counter.close()


TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 200,
            "batch_size": 4, "max_seq_length": 32, "seed": 7, "checkpoint_every_steps": 100}


def _training_costs(url, base, http):
    """Writing transactions and NOTIFYs per step of a real tiny training,
    from its claim to its end (idle rate subtracted)."""
    counter = NotifyCounter(url)
    try:
        x0, t0 = _next_xid(url), time.monotonic()
        time.sleep(2)
        idle_rate = (_next_xid(url) - x0 - 1) / (time.monotonic() - t0)
        counter.drain()
        counter.counts.clear()
        x0, t0 = _next_xid(url), time.monotonic()
        run = http.post(base + "/api/tunix/run?mode=sync", json=TRAINING, timeout=600).json()
        assert run["status"] == "completed", run
        seconds = time.monotonic() - t0
        xids = _next_xid(url) - x0 - 1 - idle_rate * seconds
        time.sleep(0.2)
        counter.drain()
        steps = TRAINING["max_steps"]
        return xids / steps, sum(counter.counts.values()), dict(counter.counts), seconds, xids / seconds
    finally:
        counter.close()


def _http_ceiling(url, data_dir, clients, seconds):
    """accepted/s per level of a no-op Flask submit under the same gunicorn
    and clients (``bench/noop_api.py``): what the WSGI stack alone allows."""
    with procs.api(url, data_dir, threads=256, app="bench.noop_api:app", ready=("/api/tunix/run", 405)) as base:
        return {n: _one_level(base, n, seconds)[1].get(202, 0) / seconds for n in clients}


def _counts(text):
    counts = tuple(int(c) for c in text.split(",") if c.strip())
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"client counts are whole numbers >= 1, comma-separated: {text!r}")
    return counts


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=_counts, default=CLIENTS, metavar="N,N,...",
                        help=f"client counts, one level each (default {','.join(map(str, CLIENTS))})")
    parser.add_argument("--seconds", type=float, metavar="S",
                        help=f"seconds measured per level, after {WARMUP_S} s of warm-up (default {LEVEL_S}; "
                             f"{QUICK_S} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: shorter levels, no tiny training's costs or no-op ceiling")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = QUICK_S if args.quick else LEVEL_S
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def peer_levels(url, data_dir, clients, seconds):
    """The peer's rows, measured as ours are (``bench/celery_peer.py``)."""
    rows = []
    with celery_peer.peer(url, data_dir) as (base, db_url):
        for n in clients:
            celery_peer.truncate(db_url)
            latencies, codes, elapsed, warm_slow, warm_bad = _one_level(base, n, seconds)
            drained = _wait_drained(db_url, table="peer_runs")
            (first, last, completed), = _fetch(
                db_url, "SELECT min(created_at), max(updated_at) FILTER (WHERE status = 'completed'), "
                        "count(*) FILTER (WHERE status = 'completed') FROM peer_runs")
            span = (last - first).total_seconds() if completed else float("nan")
            rows.append(dict(clients=n, accepted_s=codes.get(202, 0) / elapsed, completed_s=completed / span,
                             p50=_pct(latencies, 50), p99=_pct(latencies, 99), drained=drained,
                             non_2xx={k: v for k, v in codes.items() if k != 202}, warm_bad=warm_bad))
    return rows


def _ratio(a, b):
    return a / b if b else float("nan")


def _side(r):
    errors = sum(r["non_2xx"].values())
    cell = f"{r['accepted_s']:.0f} / {r['completed_s']:.0f}, {errors} non-2xx"
    if errors:
        cell += f" {r['non_2xx']}"
    return cell if r["drained"] else cell + ", NOT drained in 600 s"


def print_against_peer(ours, peer):
    """The closing table: each level on both sides, and the ratios."""
    print("ours against the peer (Flask + Celery on Redis + PostgreSQL registry, bench/peer_app.py), same clients, "
          "same run:")
    print("| clients | ours accepted / completed per s | peer accepted / completed per s | "
          "ours ÷ peer accepted / completed |")
    print("|---|---|---|---|")
    for o, p in zip(ours, peer):
        print(f"| {o['clients']} | {_side(o)} | {_side(p)} | "
              f"{_ratio(o['accepted_s'], p['accepted_s']):.2f} / {_ratio(o['completed_s'], p['completed_s']):.2f} |")
    o, p = ours[0], peer[0]
    who = "single-client" if o["clients"] == 1 else f"{o['clients']}-client"
    print(f"{who} submit latency p50 / p99: ours {o['p50'] * 1000:.1f} / {o['p99'] * 1000:.1f} ms, peer "
          f"{p['p50'] * 1000:.1f} / {p['p99'] * 1000:.1f} ms; ours ÷ peer {_ratio(o['p50'], p['p50']):.2f} / "
          f"{_ratio(o['p99'], p['p99']):.2f}")
    behind = [o["clients"] for o, p in zip(ours, peer) if not o["completed_s"] >= p["completed_s"]]
    print(f"#20's aims: completed/s >= 1.0x the peer's at every level: "
          f"{'met' if not behind else 'NOT met with ' + ', '.join(map(str, behind)) + ' client(s)'}; "
          f"{who} submit p50 <= the peer's: {'met' if o['p50'] <= p['p50'] else 'NOT met'}")


def _ceiling_cell(r):
    return f"{r['ceiling']:.0f} ({r['accepted_s'] / r['ceiling']:.2f})" if r["ceiling"] else "- (--quick)"


def bench_load(url, data_dir, args=None):
    args = args or parse_args([])
    clients, seconds = args.clients, args.seconds
    why = celery_peer.available()
    if why:
        print(f"!!! Celery + Redis peer SKIPPED: {why}; no ratio printed")
    ceiling = None if args.quick else _http_ceiling(url, data_dir, clients, seconds)
    _truncate(url)
    rows = []
    with procs.workers(url, data_dir, processes=2), procs.api(url, data_dir, threads=256) as base, \
            requests.Session() as http:
        time.sleep(2)  # consumers listening
        commits, notifies, channels = _costs(url, base, http)
        if not args.quick:
            http.post(base + "/api/tunix/run?mode=sync", json=TRAINING, timeout=600)  # warm the compile cache
            t_commits, t_notifies, t_channels, t_seconds, t_rate = _training_costs(url, base, http)
        for n in clients:
            _truncate(url)
            before = _scrape(base)
            latencies, codes, elapsed, warm_slow, warm_bad = _one_level(base, n, seconds)
            drained = _wait_drained(url)
            after = _scrape(base)
            (first, last, completed, executions), = _fetch(
                url, "SELECT min(created_at), max(completed_at), count(*) FILTER (WHERE status = 'completed'), "
                     "coalesce(sum(attempts), 0) FROM tunix_runs")
            accepted = codes.get(202, 0)
            span = (last - first).total_seconds() if completed else float("nan")
            rows.append(dict(clients=n, accepted=accepted, accepted_s=accepted / elapsed, warm_slow=warm_slow,
                             warm_bad=warm_bad,
                             p50=_pct(latencies, 50), p99=_pct(latencies, 99), max=max(latencies),
                             over_1s=sum(1 for x in latencies if x > 1.0),
                             non_2xx={k: v for k, v in codes.items() if k != 202},
                             completed=completed, executions=executions, completed_s=completed / span,
                             drained=drained, ceiling=ceiling[n] if ceiling else None,
                             pool_waits_over_10ms=after["slow_waits"] - before["slow_waits"],
                             pool_wait_s=after["wait_s"] - before["wait_s"],
                             pool_timeouts=after["timeouts"] - before["timeouts"]))
    print(f"load: async dry-run submits, {WARMUP_S} s of warm-up then {seconds} s measured per level, 2 worker "
          f"processes draining, gunicorn 1 process x 256 threads, DB_POOL_MAX 16, API_ACTIVE 32")
    print("| clients | accepted/s | submit p50 / p99 / max | answers > 1 s | non-2xx | warm-up: > 1 s, non-2xx "
          "| completed/s end to end | runs completed / executions | pool waits > 10 ms (total wait) | pool time-outs "
          "| no-op Flask accepted/s (ours / it) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['accepted_s']:.0f} | {r['p50'] * 1000:.0f} / {r['p99'] * 1000:.0f} / "
              f"{r['max'] * 1000:.0f} ms | {r['over_1s']} | {sum(r['non_2xx'].values())} {r['non_2xx'] or ''} | "
              f"{r['warm_slow']}, {r['warm_bad']} | "
              f"{r['completed_s']:.0f} | {r['completed']} / {r['executions']} | "
              f"{r['pool_waits_over_10ms']:.0f} ({r['pool_wait_s']:.1f} s) | {r['pool_timeouts']:.0f} | "
              f"{_ceiling_cell(r)} |")
    at = {r["clients"]: r["accepted_s"] for r in rows}
    if 16 in at:
        print(f"accepted/s at 16 clients: {at[16]:.0f} ({at[16] / 86:.1f}x the 86/s the issue measured before)"
              + "".join(f"; at {n}: {at[n]:.0f}" for n in (64, 256) if n in at))
    print(f"one dry run costs {commits:.2f} writing transactions and {notifies:.2f} NOTIFYs "
          f"(by channel per 200 runs: {channels})")
    if not args.quick:
        print(f"one {TRAINING['max_steps']}-step tiny training ({t_seconds:.1f} s, submit to end) costs "
              f"{t_commits:.2f} writing transactions per step ({t_rate:.1f}/s: progress flushes and heartbeats are "
              f"timed, not per step) and {t_notifies} NOTIFYs in all ({t_channels})")
    if why:
        print(f"!!! Celery + Redis peer SKIPPED: {why}; no ratio printed")
        return
    try:
        peer = peer_levels(url, data_dir, clients, seconds)
    except Exception as exc:  # ours above stays printed
        print(f"!!! Celery + Redis peer FAILED: {type(exc).__name__}: {exc}")
        return
    print_against_peer(rows, peer)
