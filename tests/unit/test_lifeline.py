"""``python -m workers.lifeline``: the supervisor between a worker and its training.

Real processes, no training: small Python children that exit, ignore
SIGTERM or wait, so every case takes well under a second or two.
"""

import contextlib
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from support import alive
from workers import lifeline

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))

#: A child that runs the code in argv[2]; the code calls ``ready()`` (which
#: writes the child's pid to the file named in argv[1]) once its signal
#: handlers are in place.
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    def ready():
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    exec(sys.argv[2])
""")


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.01)


def start(tmp_path, code, grace=1.0, via=None, **popen):
    """The lifeline running CHILD with ``code``; returns (lifeline Popen, child pid)."""
    pid_file = tmp_path / "child.pid"
    cmd = [sys.executable, "-m", "workers.lifeline", "--grace", str(grace), "--",
           sys.executable, "-c", CHILD, str(pid_file), code]
    proc = subprocess.Popen((via or []) + cmd, cwd=ROOT, env=ENV, **popen)
    wait_until(pid_file.exists, 30, "the child's pid file")
    return proc, int(pid_file.read_text())


def test_exit_status_of_the_command_is_passed_on(tmp_path):
    proc, child = start(tmp_path, "ready(); sys.exit(3)")
    assert proc.wait(30) == 3


def test_stdout_and_stderr_are_the_command_s_own(tmp_path):
    proc, _ = start(tmp_path, "ready(); print('@@tunix {}'); print('oops', file=sys.stderr)", stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out == "@@tunix {}\n" and err == "oops\n"


def test_sigterm_is_forwarded_and_a_graceful_exit_is_kept(tmp_path):
    # A training-like child: SIGTERM sets a flag, it "checkpoints" and exits 143.
    code = ("signal.signal(signal.SIGTERM, lambda *a: (print('saved', flush=True), os._exit(143)))\n"
            "ready(); time.sleep(60)")
    proc, child = start(tmp_path, code, grace=10, stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143
    assert time.monotonic() - t0 < 5
    assert proc.stdout.read() == "saved\n"
    assert not alive(child)


def test_a_child_dead_of_a_signal_reads_as_128_plus_the_signal(tmp_path):
    proc, child = start(tmp_path, "ready(); time.sleep(60)")  # default SIGTERM action: dies of it
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM


def test_sigint_is_passed_on_as_it_is(tmp_path):
    code = "ready()\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    sys.exit(130)"
    proc, child = start(tmp_path, code, grace=0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130


def test_a_child_that_ignores_sigterm_is_sigkilled_after_the_grace(tmp_path):
    code = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nready(); time.sleep(60)"
    proc, child = start(tmp_path, code, grace=0.5, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGKILL
    assert 0.5 <= time.monotonic() - t0 < 5
    assert not alive(child)
    assert "still running 0.5s after SIGTERM: SIGKILL" in proc.stderr.read()


def test_a_child_blocked_in_c_with_sigterm_pending_is_sigkilled_after_the_grace(tmp_path):
    # The orphans: a Python handler that only runs between bytecodes,
    # and a main thread that never gets back to them (blocked on a lock forever).
    code = ("import threading\nsignal.signal(signal.SIGTERM, lambda *a: None)\n"
            "lock = threading.Lock(); lock.acquire(); ready(); lock.acquire()")
    proc, child = start(tmp_path, code, grace=0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGKILL
    assert not alive(child)


def test_a_killed_lifeline_takes_its_child_with_it_at_once(tmp_path):
    code = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nready(); time.sleep(60)"
    proc, child = start(tmp_path, code)
    proc.kill()
    proc.wait(30)
    wait_until(lambda: not alive(child), 2, "the child's death (PR_SET_PDEATHSIG = SIGKILL)")


def test_a_lifeline_whose_parent_dies_stops_its_child(tmp_path):
    # sh runs the lifeline as a child of its own and is then SIGKILLed: the
    # kernel's death signal (PR_SET_PDEATHSIG, set by the lifeline) stops it.
    pid_file = tmp_path / "child.pid"
    code = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nready(); time.sleep(60)"
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "workers.lifeline", "--grace", "0.5", "--",
                                     sys.executable, "-c", CHILD, str(pid_file), code])
    shell = subprocess.Popen(["sh", "-c", f"{cmd}; echo never"], cwd=ROOT, env=ENV, start_new_session=True)
    wait_until(pid_file.exists, 30, "the child's pid file")
    child = int(pid_file.read_text())
    t0 = time.monotonic()
    shell.kill()
    shell.wait(30)
    try:
        wait_until(lambda: not alive(child), 5, "the child's death")
        wait_until(lambda: not group_alive(shell.pid), 5, "the lifeline's exit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    # the lifeline's grace (0.5 s) then SIGKILL, not the default 10 s: within a
    # few seconds even on a loaded machine under coverage (measured 2.5 s there)
    assert time.monotonic() - t0 < 8


def test_the_parent_check_is_a_backstop_for_a_missed_death_signal(monkeypatch):
    # In this process, without any death signal (no prctl): the parent the
    # lifeline watches "goes away" 0.2 s after the start; the child is stopped.
    monkeypatch.setattr(lifeline, "_prctl", lambda: None)
    monkeypatch.setattr(lifeline, "CHECK_PARENT_S", 0.05)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    life = lifeline.Lifeline([sys.executable, "-c", "import time; time.sleep(30)"], grace_s=5)
    timer = threading.Timer(0.2, lambda: setattr(life, "parent", -1))
    timer.start()
    t0 = time.monotonic()
    try:
        assert life.run() == 128 + signal.SIGTERM
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    assert life.reason.startswith("parent -1 is gone")
    assert time.monotonic() - t0 < 5


def test_a_lifeline_whose_parent_is_already_gone_starts_nothing(tmp_path):
    # The worker died while the lifeline's interpreter started: ``--parent`` is not its parent.
    marker = tmp_path / "started"
    proc = subprocess.run([sys.executable, "-m", "workers.lifeline", "--parent", "1", "--",
                           "sh", "-c", f"touch {marker}"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "parent 1 is gone: the training is not started" in proc.stderr
    assert not marker.exists()


def test_a_command_that_cannot_start_exits_127():
    proc = subprocess.run([sys.executable, "-m", "workers.lifeline", "--", "/nonexistent/trainer"], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 127
    assert proc.stderr.startswith("error: lifeline: cannot start '/nonexistent/trainer'")


@pytest.mark.parametrize("argv", [[], ["sleep", "1"], ["--grace", "x", "--", "true"], ["--grace", "-1", "--", "true"],
                                  ["--", ], ["--wat", "--", "true"],
                                  ["--grace", "--", "true"], ["--parent", "x", "--", "true"]])
def test_bad_usage_exits_2(argv):
    assert lifeline.main(argv) == 2


def test_parse():
    assert lifeline.parse(["--", "a", "--", "b"]) == (lifeline.GRACE_S, None, ["a", "--", "b"])
    assert lifeline.parse(["--grace", "2.5", "--", "a"]) == (2.5, None, ["a"])
    assert lifeline.parse(["--parent", "7", "--grace", "1", "--", "a"]) == (1.0, 7, ["a"])
    assert lifeline.exit_status(-9) == 137 and lifeline.exit_status(143) == 143 and lifeline.exit_status(0) == 0
