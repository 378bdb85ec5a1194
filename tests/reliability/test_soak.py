"""A seeded chaos soak: steady submits while random faults hit the fleet.

Each fault test of this tier passes on its own; a fleet fails with many
faults at once while work keeps arriving.  Here, for ``SOAK_S`` seconds:

* a client submits a dry run every ``SUBMIT_EVERY_S`` and an identical tiny
  training every ``TRAINING_EVERY_S``, each with its own ``Idempotency-Key``,
  retrying on any error (no answer, 503) with the same key, as a sweep
  script should;
* a seeded schedule of faults hits it: SIGKILL of a worker process (dramatiq
  then stops its launch, SIGTERMing the sibling process, whose runs are
  handed back; a supervisor thread starts a new launch, as ``make run`` and
  compose do), SIGSTOP of a worker process with everything under it (a
  frozen host) for 1-9 s, PostgreSQL stopped for 1-4 s, the artifact store
  (a real S3 server: checkpoints go through it) stopped for 1-6 s or
  answering 403 (its credentials turned wrong) for 1-5 s, the database
  read-only (a demoted primary) for 1-8 s, slow-body clients trickling
  requests for 2-6 s, a worker host's scratch disk full for 2-6 s (a tmpfs,
  when this machine may mount one), and, when the fleet runs on two hosts
  in network namespaces (as root, as in CI), one host's link cut for 2-9 s.

Then the faults stop and the fleet drains.  The invariants: every
acknowledged key is exactly one run; every run ends final; every identical
training that completed ended at the same loss; no answer was a 500; no run
had more attempts than its budget, and a run failed only for that reason.
The seed and the schedule are printed; ``SOAK_SEED=<seed>`` replays the
schedule (process ids and timings differ, so not the exact interleaving).

``make test-all`` runs a short soak (``SOAK_S``, default 45 s) and a long
one (``SOAK_LONG_S``, 240 s); ``make soak`` the long one alone.
"""

import contextlib
import dataclasses
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import requests

from hosts import Hosts, launch_on, require_netns
from s3server import S3Server
from tmpfs import fill, try_mount
from support import DRY, Launch, connect, free_port, start_api
from reliability_support import FINAL, Stopwatch, training, wait_all_final
from tasks.migrate import migrate
from workers.pgembed import EmbeddedPostgres

pytestmark = pytest.mark.training

SEED = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(2**31))
MAX_ATTEMPTS = 3
FLEET_ENV = dict(HEARTBEAT_TIMEOUT_S=5, REAPER_INTERVAL_S=1, ORPHAN_AGE_S=5, TRAIN_CONCURRENCY=1,
                 MAX_ATTEMPTS=MAX_ATTEMPTS, DB_POOL_WAIT_S=5, BODY_READ_TIMEOUT_S=2)
SLOW_CLIENTS = 8
LAUNCHES = 2
SUBMIT_EVERY_S = 0.25
TRAINING_EVERY_S = 6.0
#: The identical training: checkpoints every 10 steps, so a recovered attempt resumes.
SOAK_TRAINING = training(max_steps=80, checkpoint_every_steps=10, seed=424242)
#: How long the fleet may take to drain once the faults stop.
DRAIN_S = 300


@dataclasses.dataclass
class Fault:
    at_s: float
    kind: str  # "kill" | "freeze" | "pg_restart"
    pick: int  # which live worker process (index, modulo their number)
    length_s: float = 0.0

    def __str__(self):
        length = f" {self.length_s:.1f}s" if self.length_s else ""
        return f"{self.at_s:6.1f}s {self.kind}{length} (#{self.pick})"


#: Fault kinds and their weights; ``cut`` only on a fleet in namespaces.
KINDS = {"kill": 5, "freeze": 3, "pg_restart": 2, "store_outage": 2, "cut": 2, "read_only": 2, "slow_clients": 1,
         "store_forbidden": 1, "disk_full": 1}
#: Each worker host's scratch (``$DATA_DIR/runs``) is a tmpfs of this size
#: when this machine may mount one (root), so a fault can fill it.
SCRATCH_KB = 256 * 1024


def schedule(seed, duration_s, kinds=tuple(KINDS)):
    """The faults of one soak, from its seed (and the kinds the fleet allows) alone."""
    rng = random.Random(seed)
    faults, t = [], rng.uniform(2, 4)
    while t < duration_s:
        kind = rng.choices(list(kinds), weights=[KINDS[k] for k in kinds])[0]
        length = {"kill": 0.0, "freeze": rng.uniform(1, 9), "pg_restart": rng.uniform(1, 4),
                  "store_outage": rng.uniform(1, 6), "cut": rng.uniform(2, 9), "read_only": rng.uniform(1, 8),
                  "slow_clients": rng.uniform(2, 6), "store_forbidden": rng.uniform(1, 5),
                  "disk_full": rng.uniform(2, 6)}[kind]
        faults.append(Fault(round(t, 1), kind, rng.randrange(1000), round(length, 1)))
        t += length + rng.uniform(3, 7)
    return faults


class Soak:
    def __init__(self, topology, log_dir):
        self.topology, self.log_dir = topology, log_dir
        self.server, self.url = topology.pg, topology.url
        self.launches = []
        self.log_paths = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        #: key -> run id, for every acknowledged submit.
        self.acked = {}
        self.training_keys = set()
        self.answers = {}  # status code (None: no answer) -> count
        self.retries = 0
        self.restarted = 0
        self.done = []  # (fault, what happened)
        self.frozen = set()
        self.slow_answers = []  # first line of each slow client's answer

    # ---------------------------------------------------------------- fleet

    def start_launch(self, slot):
        launch = self.topology.launch(slot, self.log_dir)
        launch.slot = slot
        with self.lock:
            self.launches.append(launch)
            self.log_paths.append(launch.log_path)
        return launch

    def supervise(self):
        """Start a new launch for each one that exited (what `make run` does)."""
        while not self.stop.wait(0.5):
            with self.lock:
                dead = [launch for launch in self.launches if launch.proc.poll() is not None]
                self.launches = [launch for launch in self.launches if launch not in dead]
            for launch in dead:
                launch.stop()
                while not self.stop.is_set():
                    try:
                        self.start_launch(launch.slot)
                        self.restarted += 1
                        break
                    except RuntimeError:  # the database may be down, the link cut: try again
                        self.stop.wait(1)

    def worker_pids(self):
        """The live dramatiq worker processes (their ids are in tunix_workers)."""
        try:
            conn = connect(self.url)
        except Exception:  # noqa: BLE001 - the database may be down
            return []
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pid FROM tunix_workers WHERE heartbeat_at > clock_timestamp() - interval '5 s' "
                            "ORDER BY worker_id")
                return [pid for (pid,) in cur.fetchall() if os.path.exists(f"/proc/{pid}")]
        finally:
            conn.close()

    # ---------------------------------------------------------------- client

    def submit_until_acked(self, body, key):
        delay = 0.2
        while True:
            try:
                response = requests.post(f"{self.api_url}/api/tunix/run", params={"mode": "async"}, json=body,
                                         headers={"Idempotency-Key": key}, timeout=15)
                status = response.status_code
            except requests.RequestException:
                response, status = None, None
            with self.lock:
                self.answers[status] = self.answers.get(status, 0) + 1
            if status in (200, 201, 202):
                self.acked[key] = response.json()["run_id"]
                return
            if status is not None and status not in (503,):
                raise AssertionError(f"submit answered {status}: {response.text[:500]}")
            self.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def client(self, duration_s):
        clock, next_training, i = Stopwatch(), 1.0, 0
        while clock() < duration_s:
            if clock() >= next_training:
                next_training += TRAINING_EVERY_S
                key = f"soak-train-{uuid.uuid4()}"
                self.training_keys.add(key)
                self.submit_until_acked(SOAK_TRAINING, key)
            i += 1
            self.submit_until_acked(dict(DRY, seed=i), f"soak-dry-{uuid.uuid4()}")
            time.sleep(SUBMIT_EVERY_S)

    # ---------------------------------------------------------------- faults

    def inject(self, faults):
        clock = Stopwatch()
        for fault in faults:
            if self.stop.wait(max(0.0, fault.at_s - clock())):
                return
            pids = self.worker_pids()
            if fault.kind == "pg_restart":
                self.server.stop()
                self.stop.wait(fault.length_s)
                self.server.start()
                self.done.append((fault, "restarted"))
            elif fault.kind == "store_outage":
                self.topology.store.stop(kill=fault.pick % 2 == 0)
                self.stop.wait(fault.length_s)
                self.topology.store.start()
                self.done.append((fault, "store restarted"))
            elif fault.kind == "disk_full":
                ballast = self.topology.scratch[fault.pick % len(self.topology.scratch)] / "ballast"
                try:
                    fill(ballast)
                    self.stop.wait(fault.length_s)
                finally:
                    ballast.unlink(missing_ok=True)
                self.done.append((fault, f"{ballast.parent} full"))
            elif fault.kind == "store_forbidden":
                self.topology.store.stop()
                self.topology.store.start(refuse=True)
                self.stop.wait(fault.length_s)
                self.topology.store.stop()
                self.topology.store.start()
                self.done.append((fault, "store refused our key"))
            elif fault.kind == "read_only":
                set_read_only(self.url, True)
                self.stop.wait(fault.length_s)
                set_read_only(self.url, False)
                self.done.append((fault, "read-only"))
            elif fault.kind == "slow_clients":
                trickles = [threading.Thread(target=self.trickle, args=(fault.length_s,), daemon=True)
                            for _ in range(SLOW_CLIENTS)]
                for t in trickles:
                    t.start()
                for t in trickles:
                    t.join(fault.length_s + 30)
                self.done.append((fault, f"{SLOW_CLIENTS} slow bodies"))
            elif fault.kind == "cut":
                name = self.topology.cut(fault.pick)
                self.stop.wait(fault.length_s)
                self.topology.restore(name)
                self.done.append((fault, f"{name}'s link cut"))
            elif not pids:
                self.done.append((fault, "no live worker process"))
            elif fault.kind == "kill":
                pid = pids[fault.pick % len(pids)]
                _signal_tree(pid, signal.SIGKILL)
                self.done.append((fault, f"pid {pid}"))
            else:
                pid = pids[fault.pick % len(pids)]
                tree = _signal_tree(pid, signal.SIGSTOP)
                self.frozen.update(tree)
                self.stop.wait(fault.length_s)
                _signal_tree(pid, signal.SIGCONT, tree)
                self.frozen.difference_update(tree)
                self.done.append((fault, f"pid {pid} and {len(tree) - 1} below it"))

    def trickle(self, length_s):
        """A submit whose body comes a byte every 0.25 s for ``length_s``, then
        stalls: the API must answer 408 at its deadline, never hold a slot."""
        host, port = self.api_url.split("//")[1].split(":")
        answer = b""
        try:
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                sock.sendall(b"POST /api/tunix/run?mode=async HTTP/1.1\r\nHost: soak\r\nContent-Type: "
                             b"application/json\r\nContent-Length: 100000\r\n\r\n{")
                sock.settimeout(0.25)
                clock = Stopwatch()
                while b"\r\n" not in answer:
                    if clock() < length_s:
                        with contextlib.suppress(OSError):
                            sock.sendall(b" ")
                    try:
                        chunk = sock.recv(4096)
                    except socket.timeout:
                        if clock() > length_s + 30:
                            break
                        continue
                    if not chunk:
                        break
                    answer += chunk
        except OSError as exc:
            answer = repr(exc).encode()
        with self.lock:
            self.slow_answers.append(answer.split(b"\r\n", 1)[0].decode(errors="replace"))

    def worker_log_lines(self, run_id, context=3):
        """What the launches logged around ``run_id``, for a failure message."""
        out = []
        for path in self.log_paths:
            lines = open(path, errors="replace").read().splitlines()
            for i, line in enumerate(lines):
                if str(run_id) in line:
                    out.append(f"--- {os.path.basename(path)}:{i}")
                    out.extend(lines[max(0, i - context):i + context + 1])
        return "\n".join(out)

    def thaw_all(self):
        for pid in list(self.frozen):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def set_read_only(url, on):
    """Every session's next transaction read-only (or writable again): the
    superuser's own session is kept writable to undo it."""
    try:
        conn = connect(url)
    except Exception:  # noqa: BLE001 - the database may be down for another fault; it was not made read-only
        return
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET default_transaction_read_only = off")
            cur.execute("ALTER SYSTEM " + ("SET default_transaction_read_only = on" if on
                                           else "RESET default_transaction_read_only"))
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()


def _descendants(pid):
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                ppid = int(open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _signal_tree(pid, sig, tree=None):
    tree = tree or _descendants(pid)
    for p in tree:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    return tree


def stuck_report(conn, s):
    """Each run not final: its row, its message, who holds the message's lock, what the launches logged."""
    from workers.reaper import message_lock_key

    out = []
    with conn.cursor() as cur:
        cur.execute("SELECT r.id::text, r.status, r.dry_run, r.attempts, r.max_attempts, r.worker_id, r.updated_at, "
                    "q.queue_name, q.state, q.mtime FROM tunix_runs r LEFT JOIN dramatiq.queue q "
                    "ON q.message_id = r.id WHERE r.status NOT IN ('completed', 'failed', 'cancelled', 'timeout')")
        for row in cur.fetchall():
            key = message_lock_key(row[7], row[0]) if row[7] else None
            cur.execute("SELECT l.pid, a.application_name, a.state, a.backend_start FROM pg_locks l "
                        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                        "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s", (key,))
            out.append(f"stuck {row}\n  lock held by {cur.fetchall()}\n{s.worker_log_lines(row[0], context=1)}")
        cur.execute("SELECT worker_id, pid, heartbeat_at FROM tunix_workers ORDER BY worker_id")
        out.append(f"workers: {cur.fetchall()}")
    return "\n".join(out)


def logs_of(url, run_id):
    """The run's stored log, for a failure message."""
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT seq, stream, line FROM tunix_run_logs WHERE run_id = %s ORDER BY seq", (run_id,))
            return "\n".join(f"{seq} {stream} {line}" for seq, stream, line in cur.fetchall()[-40:])
    finally:
        conn.close()


class Topology:
    """PostgreSQL, the S3 store and two worker launch slots.  On two hosts in
    network namespaces when this machine allows it (root: a host's link can
    be cut), else all on this host."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.root = tempfile.mkdtemp(prefix="tunix-soak-")
        self.why_single = require_netns()
        self.net = None if self.why_single else Hosts()
        ip = self.net.gateway if self.net else "127.0.0.1"
        self.hosts = [self.net.add(name) for name in ("worker-a", "worker-b")] if self.net else []
        if self.net:
            self.pg = EmbeddedPostgres(os.path.join(self.root, "pg"), listen=(ip,), trust=(self.net.cidr,),
                                       port=free_port())
            self.pg.start()
            self.url = self.pg.tcp_url()
        else:
            self.pg = EmbeddedPostgres(os.path.join(self.root, "pg"))
            self.url = self.pg.start()
        migrate(self.url)
        self.scratch = []
        for folder in ([h.data_dir for h in self.hosts] if self.net else [pathlib.Path(data_dir)]):
            runs = pathlib.Path(folder) / "runs"
            if try_mount(runs, SCRATCH_KB):
                self.scratch.append(runs)
        self.store = S3Server(os.path.join(self.root, "s3"), ip=ip)
        self.store.start()
        self.env = dict(FLEET_ENV, ARTIFACTS_URL=self.store.url("soak"), STORE_PATIENCE_S=30, **self.store.env)

    @property
    def kinds(self):
        return tuple(k for k in KINDS if (self.net or k != "cut") and (self.scratch or k != "disk_full"))

    def launch(self, slot, log_dir):
        if self.net:
            host = self.hosts[slot]
            return launch_on(host, self.url, log_dir, workers=2, threads=2, metrics_port=free_port(), **self.env)
        return Launch(self.url, self.data_dir, log_dir, workers=2, threads=2, **self.env)

    def cut(self, pick):
        name = self.hosts[pick % len(self.hosts)].name
        self.net.cut(name)
        return name

    def restore(self, name):
        self.net.restore(name)

    def restore_all(self):
        for host in self.hosts:
            if self.net.is_cut(host.name):
                self.net.restore(host.name)

    def close(self):
        for runs in self.scratch:
            subprocess.run(["umount", "-l", str(runs)], check=False)
        self.store.stop(kill=True)
        self.pg.stop()
        if self.net:
            self.net.teardown()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def topology(data_dir):
    topology = Topology(data_dir)
    yield topology
    topology.close()


def soak(topology, data_dir, log_dir, report, duration_s):
    server, url = topology.pg, topology.url
    faults = schedule(SEED, duration_s, topology.kinds)
    where = (f"2 hosts in network namespaces ({', '.join(h.name for h in topology.hosts)})" if topology.net
             else f"one host (no link cuts: {topology.why_single})")
    print(f"soak seed {SEED} (replay: SOAK_SEED={SEED}), {duration_s}s on {where}, schedule:\n"
          + "\n".join(map(str, faults)))
    s = Soak(topology, log_dir)
    api = start_api(url, data_dir, log_dir, threads=32, **topology.env)
    s.api_url = api.url
    threads = []
    try:
        for slot in range(LAUNCHES):
            s.start_launch(slot)
        threads = [threading.Thread(target=s.supervise, daemon=True),
                   threading.Thread(target=s.inject, args=(faults,), daemon=True)]
        for t in threads:
            t.start()
        # When work arrives steadily while the faults hit
        s.client(duration_s)
        s.stop.set()
        for t in threads:
            t.join(30)
        s.thaw_all()
        if topology.net:
            topology.restore_all()
        if not server.is_running():
            server.start()
        set_read_only(url, False)
        if not topology.store.is_running():
            topology.store.start()
        s.stop.clear()
        supervisor = threading.Thread(target=s.supervise, daemon=True)
        supervisor.start()
        # Then the fleet drains: every run ends final
        conn = connect(url)
        drain = Stopwatch()
        try:
            c = wait_all_final(conn, timeout=DRAIN_S, interval=0.5)
        except AssertionError:
            print(stuck_report(conn, s))
            raise
        drain_s = drain()
        with conn.cursor() as cur:
            cur.execute("SELECT idempotency_key, id::text, status, attempts, max_attempts, result, error "
                        "FROM tunix_runs")
            rows = {key: dict(zip(("id", "status", "attempts", "max_attempts", "result", "error"), rest))
                    for key, *rest in cur.fetchall()}
        conn.close()
        kinds = {}
        for fault, _ in s.done:
            kinds[fault.kind] = kinds.get(fault.kind, 0) + 1
        # And every acknowledged key is exactly one run, and there is no other
        assert set(rows) == set(s.acked), (len(rows), len(s.acked))
        assert all(rows[key]["id"] == run_id for key, run_id in s.acked.items())
        assert {r["status"] for r in rows.values()} <= FINAL
        # And no answer was a 500 (503s were retried)
        assert not any(status is not None and status >= 500 and status != 503 for status in s.answers), s.answers
        # And no run had more attempts than its budget; one failed only for having had them
        for key, row in rows.items():
            assert row["attempts"] <= row["max_attempts"], (key, row)
            if row["status"] == "failed":
                if row["error"]["type"] == "StoreForbidden" and "store_forbidden" in kinds:
                    continue  # the store refused our key: failed at once, by design
                if row["error"]["type"] == "DiskFull" and "disk_full" in kinds:
                    continue  # its host's scratch was full: failed at once, by design
                if not (row["error"]["type"] == "WorkerLost" and row["attempts"] == row["max_attempts"]):
                    print(f"run {row}:\n{logs_of(url, row['id'])}\nworker logs:\n{s.worker_log_lines(row['id'])}")
                    raise AssertionError(f"{key}: failed with {row['error']['type']}, expected only WorkerLost "
                                         "with its attempts used")
            elif row["status"] != "completed":
                print(f"run {row}:\n{logs_of(url, row['id'])}\nworker logs:\n{s.worker_log_lines(row['id'])}")
                raise AssertionError(f"{key}: {row['status']}, expected completed or failed (WorkerLost)")
        # And every slow body was answered 408 at its deadline, nothing else
        assert all(line.startswith("HTTP/1.1 408") for line in s.slow_answers), s.slow_answers
        # And every identical training that completed ended at the same loss
        losses = {round(rows[key]["result"]["final_loss"], 4) for key in s.training_keys
                  if rows[key]["status"] == "completed"}
        assert len(losses) <= 1, losses
        trainings = [rows[key] for key in s.training_keys]
        by_status = c["by_status"]
        report(f"soak seed {SEED}, {duration_s}s on {where}: {kinds.get('kill', 0)} SIGKILLs, "
               f"{kinds.get('freeze', 0)} freezes, {kinds.get('pg_restart', 0)} PostgreSQL restarts, "
               f"{kinds.get('store_outage', 0)} store outages, {kinds.get('read_only', 0)} read-only windows, "
               f"{kinds.get('store_forbidden', 0)} store key refusals "
               f"({sum(r['status'] == 'failed' and r['error']['type'] == 'StoreForbidden' for r in rows.values())} "
               f"runs failed StoreForbidden), {kinds.get('disk_full', 0)} full scratch disks "
               f"({sum(r['status'] == 'failed' and r['error']['type'] == 'DiskFull' for r in rows.values())} "
               f"runs failed DiskFull), {kinds.get('slow_clients', 0)} bursts of slow bodies ({len(s.slow_answers)} answered 408), "
               f"{kinds.get('cut', 0)} link cuts, "
               f"{s.restarted} launches restarted; "
               f"{len(s.acked)} submits acknowledged ({s.retries} retries; answers {s.answers}); runs "
               f"{by_status}; 0 lost, 0 duplicated, 0 stuck (drained in {drain_s:.0f}s); "
               f"{len(trainings)} identical trainings: "
               f"{sum(t['status'] == 'completed' for t in trainings)} completed at loss {sorted(losses)}, "
               f"attempts {sorted(t['attempts'] for t in trainings)}; max attempts of any run "
               f"{max(r['attempts'] for r in rows.values())} (budget {MAX_ATTEMPTS} + hand-backs)")
    finally:
        s.stop.set()
        s.thaw_all()
        if topology.net:
            topology.restore_all()
        for launch in list(s.launches):
            launch.stop()
        api.stop()


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_a_short_seeded_soak_loses_duplicates_and_strands_nothing(topology, data_dir, log_dir, report):
    soak(topology, data_dir, log_dir, report, float(os.environ.get("SOAK_S", 45)))


@pytest.mark.slow
def test_a_long_seeded_soak_loses_duplicates_and_strands_nothing(topology, data_dir, log_dir, report):
    soak(topology, data_dir, log_dir, report, float(os.environ.get("SOAK_LONG_S", 240)))
