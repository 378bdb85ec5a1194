"""No training outlives its worker (issue 11).

A worker process (the dramatiq process that claimed a training) is killed
outright (SIGKILL) at each phase of its training's life: the imports, the
compilation, a step, a checkpoint save, and a sweep of moments right after
the claim.  Within ``GONE_BOUND_S`` no process of that run may remain: not the
training (``python -m workers.train``/``workers.training``) and not the
lifeline that supervises it (``python -m workers.lifeline``); both carry the
run's ``<run_id>/training.json`` in their command line, which is how they are
found in /proc.

The upload phase: every launch here uploads checkpoints to a store that
accepts connections and never answers (``Blackhole``), so from the first
finalised step on, the worker's uploader (``workers/checkpoint_sync.py``)
sits in an upload in flight; the "upload" case kills the worker once the
store has taken such a connection.

One database and one API for the module; worker launches of one process and
one training slot each, started ahead (``Spares``): a SIGKILLed worker ends its
whole launch (dramatiq stops a launch when one of its processes dies).
``MAX_ATTEMPTS=1``: the reaper of a surviving launch ends the run failed
(``WorkerLost``) instead of running it again, so no new training of the run
appears while the test looks for leftovers.
"""

import contextlib
import os
import pathlib
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from support import ApiClient, connect, start_api
from tasks.artifacts import Scratch
from reliability_support import (
    Stopwatch,
    in_parallel,
    module_of,
    run_processes,
    step_of,
    training,
    training_pids,
    wait_row,
    worker_pid,
)

pytestmark = pytest.mark.training

#: Seconds after the worker's death by which every process of its run must be gone.
GONE_BOUND_S = 15
#: Launches kept ready: one takes the next training while the last victim's replacement starts.
SPARES = 2
LAUNCH_ENV = dict(HEARTBEAT_TIMEOUT_S=5, REAPER_INTERVAL_S=1, TRAIN_CONCURRENCY=1, MAX_ATTEMPTS=1)
#: Moments (seconds after the claim) of the sweep: the start-up, where the issue's orphans were made.
SWEEP_S = (0.0, 0.3, 1.0, 2.0)
#: Repetitions of the slow sweep (``ORPHAN_SWEEP_REPEAT`` overrides).
SLOW_SWEEP_REPEAT = int(os.environ.get("ORPHAN_SWEEP_REPEAT", "3"))
SLOW_SWEEP_S = (0.0, 0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)


class Blackhole:
    """A TCP server that accepts connections, reads what comes and never
    answers: an S3 endpoint whose every upload hangs in flight."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn):
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    @property
    def env(self):
        return {"ARTIFACTS_URL": "s3://tunix/orphans", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}",
                "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def close(self):
        self.sock.close()
        for conn in self._held:
            conn.close()


class Spares:
    """Worker launches waiting for a training (one process, one slot each)."""

    def __init__(self, url, start, env=None):
        self.url, self._start, self.env = url, start, dict(LAUNCH_ENV, **(env or {}))
        self.launches = []
        self._refill = None

    def ready(self, n=SPARES):
        if self._refill is not None:
            self._refill.join()
            self._refill = None
        self._fill(n)

    def _fill(self, n=SPARES):
        self.launches = [launch for launch in self.launches if launch.proc.poll() is None]
        missing = n - len(self.launches)
        if missing > 0:
            self.launches += in_parallel(
                *[lambda: self._start(workers=1, threads=2, url=self.url, **self.env)] * missing)

    def refill_in_background(self):
        """Replace the launch a kill just ended while the test watches its run."""

        def refill():
            # The victim's launch takes a moment to notice its dead process.
            time.sleep(1)
            self._fill()

        self._refill = threading.Thread(target=refill, daemon=True)
        self._refill.start()

    def stop(self):
        if self._refill is not None:
            self._refill.join()
        for launch in self.launches:
            launch.stop()


@pytest.fixture(scope="module")
def stack(databases, data_dir, log_dir, worker_launch):
    url = databases.create()
    api = start_api(url, data_dir, log_dir)
    conn = connect(url)
    store = Blackhole()
    spares = Spares(url, worker_launch, env=store.env)
    spares.store = store
    yield ApiClient(api.url), conn, spares, pathlib.Path(data_dir) / "runs"
    spares.stop()
    api.stop()
    conn.close()
    store.close()


# --------------------------------------------------------------------------
# Processes of a run, from /proc


def describe(pid):
    """``pid module ppid=P state=S wchan=W cpu=Xs rss=MB`` of a live process."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        wchan = pathlib.Path(f"/proc/{pid}/wchan").read_text() or "-"
    except OSError:
        return f"{pid} (gone)"
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(stat[11]) + int(stat[12])) / ticks
    rss_mb = int(stat[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return f"{pid} {module_of(pid)} ppid={stat[1]} state={stat[0]} wchan={wchan} cpu={cpu_s:.1f}s rss={rss_mb:.0f}MB"


# --------------------------------------------------------------------------
# Kill moments: each waits for its phase, then returns a few words about it


def poll(predicate, timeout, what, interval=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not seen within {timeout}s")


def checkpoint_entries(run_dir):
    try:
        return os.listdir(Scratch.at(run_dir).checkpoints)
    except OSError:
        return None


def at_imports(case):
    # As soon as the training process exists: the interpreter starting, then
    # numpy, JAX, flax, orbax and tunix (~6 s on 2 cores).
    poll(lambda: training_pids(case.run_id), 60, "the training process")
    return "training process just started"


def at_compilation(case):
    # The trainer is built (its checkpoint manager made checkpoints/, the
    # start event is out) and no step is saved (none before
    # checkpoint_every_steps): XLA compiles the train step (~3-4 s; this case's
    # shapes are its own, so the compilation cache cannot skip it).
    poll(lambda: checkpoint_entries(case.run_dir) == [], 120, "checkpoints/ created, no step saved")
    return "trainer built, first step compiling"


def at_step(case):
    row = wait_row(case.conn, case.run_id, lambda r: step_of(r) >= 3, 120, "step 3", interval=0.01)
    case.step_seen = step_of(row)
    return f"training, step {case.step_seen} reported"


def at_checkpoint_save(case):
    # A periodic save in flight: orbax writes ``<step>.orbax-checkpoint-tmp``
    # and renames it when complete (~0.3 s).
    def saving():
        entries = checkpoint_entries(case.run_dir) or []
        return [e for e in entries if e.endswith("orbax-checkpoint-tmp") and int(e.split(".")[0]) >= 10]

    entry = poll(saving, 120, "a checkpoint save of step >= 10")[0]
    return f"saving {entry}"


def at_upload(case):
    # A step finalised and its upload in flight: the store took the
    # connection and will never answer (it would time out after 30 s).
    before = case.store.accepted
    poll(lambda: case.store.accepted > before, 120, "an upload to the store", interval=0.01)
    return f"upload in flight ({case.store.accepted - before} connection(s) to the store hanging)"


def after_claim(seconds):
    def moment(case):
        time.sleep(max(0.0, seconds - case.since_claim()))
        return f"{seconds:.1f}s after the claim"

    moment.__name__ = f"after_claim_{seconds}"
    return moment


@dataclass
class Case:
    run_id: str
    conn: object
    run_dir: pathlib.Path
    since_claim: Stopwatch
    store: object = None
    step_seen: int = 0
    # Filled by the kill
    phase: str = ""
    killed_at_s: float = 0.0
    tree: list = field(default_factory=list)
    gone_s: float = None
    left: list = field(default_factory=list)

    @property
    def orphaned(self):
        return bool(self.left)

    def line(self):
        head = f"SIGKILL worker {self.killed_at_s:.2f}s after the claim ({self.phase}; {' + '.join(self.tree)})"
        if self.orphaned:
            return f"{head}: ORPHANED, still alive {GONE_BOUND_S}s later: {'; '.join(self.left)}"
        return f"{head}: every process of the run gone after {self.gone_s:.2f}s"


def kill_worker(stack, moment, **overrides):
    """Submit a training, SIGKILL its worker process at ``moment``, watch its processes go.

    Whatever is left after ``GONE_BOUND_S`` is described in the case, then killed."""
    client, conn, spares, runs_dir = stack
    spares.ready()
    response = client.submit(training(checkpoint_every_steps=10, **overrides), mode="async")
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    row = wait_row(conn, run_id, lambda r: r["status"] == "running", 60, "claimed", interval=0.005)
    case = Case(run_id, conn, Scratch(runs_dir, run_id, attempt=1).path, Stopwatch(), store=spares.store)
    worker = worker_pid(row["worker_id"])
    case.phase = moment(case)
    case.killed_at_s = case.since_claim()
    case.tree = [module_of(pid) for pid in sorted(run_processes(run_id), key=lambda p: p != worker)] or ["none yet"]
    os.kill(worker, signal.SIGKILL)
    spares.refill_in_background()
    since_kill = Stopwatch()
    while run_processes(run_id) and since_kill() < GONE_BOUND_S:
        time.sleep(0.02)
    case.gone_s = since_kill()
    left = run_processes(run_id)
    case.left = [describe(pid) for pid in left]
    for pid in left:  # the test leaves nothing behind either way
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return case


def frozen_at_step(case):
    # A training that cannot act on SIGTERM whatever it does: frozen (SIGSTOP,
    # as a swap storm or a debugger would), a stand-in for the issue's
    # trainers stuck in a futex whose Python handler never ran.  Only SIGKILL
    # ends it.
    at_step(case)
    for pid in training_pids(case.run_id):
        os.kill(pid, signal.SIGSTOP)
    return f"training frozen (SIGSTOP) at step {case.step_seen}"


def saved_steps(case):
    return sorted(int(e) for e in (checkpoint_entries(case.run_dir) or []) if e.isdigit())


# --------------------------------------------------------------------------
# The phases


PHASES = {
    "imports": (at_imports, {}),
    "compilation": (at_compilation, {"batch_size": 3, "max_seq_length": 40}),
    "step": (at_step, {}),
    "checkpoint_save": (at_checkpoint_save, {}),
    "frozen": (frozen_at_step, {}),
    "upload": (at_upload, {}),
}


# Two phases in `make test` (before the training's Python started, and mid-step);
# the other four in `make test-all`.
@pytest.mark.parametrize("phase", [phase if phase in ("imports", "step") else pytest.param(phase, marks=pytest.mark.slow)
                                   for phase in PHASES])
def test_a_training_whose_worker_is_killed_is_gone_within_seconds(stack, report, phase):
    moment, overrides = PHASES[phase]
    # Given a training at its <phase>, when its worker process is SIGKILLed
    case = kill_worker(stack, moment, **overrides)
    report(f"{phase}: {case.line()}")
    # Then no process of the run remains within GONE_BOUND_S
    assert not case.orphaned, case.line()
    # And a training that had trained checkpointed its last step on the way out
    # (the graceful path: the lifeline forwards SIGTERM before any SIGKILL)
    if phase == "step":
        assert saved_steps(case) and saved_steps(case)[-1] >= case.step_seen, (saved_steps(case), case.step_seen)


def test_a_sweep_of_kills_during_start_up_leaves_no_training(stack, report):
    cases = [kill_worker(stack, after_claim(s)) for s in SWEEP_S]
    for case in cases:
        report(case.line())
    orphans = [case for case in cases if case.orphaned]
    report(f"start-up sweep: {len(orphans)} of {len(cases)} kills left a process of the run alive "
           f"{GONE_BOUND_S}s later")
    assert not orphans, [case.line() for case in orphans]


@pytest.mark.slow
def test_a_long_sweep_of_kills_during_start_up_leaves_no_training(stack, report):
    cases = [kill_worker(stack, after_claim(s)) for _ in range(SLOW_SWEEP_REPEAT) for s in SLOW_SWEEP_S]
    for case in cases:
        report(case.line())
    orphans = [case for case in cases if case.orphaned]
    worst = max((case.gone_s for case in cases if not case.orphaned), default=0.0)
    report(f"long start-up sweep ({SLOW_SWEEP_REPEAT} x {SLOW_SWEEP_S}): {len(orphans)} of {len(cases)} kills "
           f"left a process of the run alive {GONE_BOUND_S}s later; the others were gone within {worst:.1f}s")
    assert not orphans, [case.line() for case in orphans]
