"""Between a worker and its training: no training outlives its worker.

    python -m workers.lifeline [--grace SECONDS] [--parent PID] -- COMMAND [ARG...]

The worker runs each training under this small supervisor (standard library
only, a few MB, nothing to import that could block).  First thing, the
lifeline asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``, Linux) and checks that its parent is still ``PID``
(default: the parent it started with); if it is not (the worker died while
the lifeline started), nothing is started.  Then it starts ``COMMAND`` with
``PR_SET_PDEATHSIG = SIGKILL``: however the lifeline ends, even SIGKILLed,
the kernel kills the training at once.  The training inherits the
lifeline's stdin, stdout and stderr (nothing is copied), its working
directory, environment and process group.

The lifeline stops the training when

* it gets SIGTERM (the worker's cancel or time limit, dramatiq stopping the
  worker, or the kernel's ``PR_SET_PDEATHSIG`` when the worker dies), or
* its parent is gone (checked every ``CHECK_PARENT_S``: a backstop for a
  death signal that could not be set),

and it always stops it the same way: SIGTERM to the training (which
checkpoints its last step and exits 143 if it can), then SIGKILL once
``--grace`` seconds (default ``GRACE_S``) have passed, whatever the training
is doing: importing, compiling, stepping, saving, or stuck in a futex where
its Python signal handler never runs.  A checkpoint cut short by the SIGKILL
is never final (orbax renames a save into place when it is complete), so the
next attempt resumes from the last complete one.

SIGINT is passed on to the training as it is (no deadline).

Exit status: the training's own; 128 + N when it died of signal N (143 after
SIGTERM, 137 after SIGKILL), as a shell reports it, so the worker reads the
same codes as without the lifeline; 127 when ``COMMAND`` cannot be started; 2
for bad usage.
"""

import ctypes
import os
import select
import signal
import subprocess
import sys
import time

#: Seconds the training gets after SIGTERM before SIGKILL (the worker passes its KILL_GRACE_S).
GRACE_S = 10.0
#: How often the lifeline checks that its parent is still there.
CHECK_PARENT_S = 0.5
#: prctl option: a signal for the child when its parent thread dies (Linux).
PR_SET_PDEATHSIG = 1

USAGE = "usage: python -m workers.lifeline [--grace SECONDS] [--parent PID] -- COMMAND [ARG...]\n"


def _say(line):
    """One line on stderr (the run's log, while a worker reads it); never fails."""
    try:
        sys.stderr.write(f"lifeline: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover  (not Linux)
        return None


def _killed_with_me(lifeline_pid):
    """``preexec_fn`` of the training: in the child, before exec."""
    prctl = _prctl()  # looked up here, not in the forked child

    def preexec():  # pragma: no cover  (runs in the child between fork and exec)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # The lifeline died between the fork and the prctl: no signal will come.
        if os.getppid() != lifeline_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def exit_status(returncode):
    """A ``Popen.returncode`` as a shell reports it (a signal N is 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


class Lifeline:
    def __init__(self, cmd, grace_s=GRACE_S, parent=None):
        self.cmd, self.grace_s = cmd, grace_s
        self.parent = os.getppid() if parent is None else parent
        self.child = None
        self.reason = None  # why the training is being stopped
        self.kill_at = None  # monotonic time of the SIGKILL
        self._terminated = False

    # Signals (handlers run in the main thread, between two bytecodes; the
    # main thread only ever waits in select or sleep, so they run at once)

    def on_sigterm(self, signum, frame):
        self.stop("SIGTERM")

    def on_sigint(self, signum, frame):
        child = self.child
        if child is not None:
            child.send_signal(signal.SIGINT)

    def stop(self, reason):
        """SIGTERM the training now (once), SIGKILL it ``grace_s`` later."""
        if self.reason is None:
            self.reason = reason
            self.kill_at = time.monotonic() + self.grace_s
        self._terminate()

    def _terminate(self):
        # A stop asked for before the child existed is carried out as soon as it does.
        child = self.child
        if child is not None and self.reason is not None and not self._terminated:
            self._terminated = True
            child.send_signal(signal.SIGTERM)

    # The run

    def run(self):
        """Start the training, wait for it, return its exit status."""
        signal.signal(signal.SIGTERM, self.on_sigterm)
        signal.signal(signal.SIGINT, self.on_sigint)
        prctl = _prctl()
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != self.parent:
            _say(f"parent {self.parent} is gone: the training is not started")
            return exit_status(-signal.SIGTERM)
        if self.reason is not None:
            return exit_status(-signal.SIGTERM)  # stopped before anything started
        try:
            self.child = subprocess.Popen(self.cmd, preexec_fn=_killed_with_me(os.getpid()))
        except OSError as exc:
            sys.stderr.write(f"error: lifeline: cannot start {self.cmd[0]!r}: {exc}\n")
            return 127
        self._terminate()
        return exit_status(self._wait())

    def _wait(self):
        child = self.child
        try:
            exited = os.pidfd_open(child.pid)
        except (AttributeError, OSError):  # pragma: no cover  (Linux < 5.3)
            exited = None
        next_check = time.monotonic() + CHECK_PARENT_S
        try:
            while True:
                now = time.monotonic()
                timeout = max(0.0, min(next_check, self.kill_at or next_check) - now)
                if exited is not None:
                    select.select([exited], [], [], timeout)
                    returncode = child.poll()
                else:  # pragma: no cover
                    try:
                        returncode = child.wait(timeout)
                    except subprocess.TimeoutExpired:
                        returncode = None
                if returncode is not None:
                    return returncode
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + CHECK_PARENT_S
                    if self.reason is None and os.getppid() != self.parent:
                        self.stop(f"parent {self.parent} is gone")
                if self.kill_at is not None and now >= self.kill_at:
                    _say(f"the training (pid {child.pid}) was still running {self.grace_s:g}s after "
                         f"{self.reason}: SIGKILL")
                    child.kill()
                    return child.wait()
        finally:
            if exited is not None:
                os.close(exited)


def parse(argv):
    """``(grace_s, parent, cmd)`` from the command line; raises ValueError."""
    if "--" not in argv:
        raise ValueError("no '--' before the command")
    split = argv.index("--")
    options, cmd = argv[:split], argv[split + 1:]
    values = {"--grace": GRACE_S, "--parent": None}
    while options:
        if options[0] not in values or len(options) < 2:
            raise ValueError(f"unknown option or missing value: {options[0]}")
        values[options[0]] = float(options[1]) if options[0] == "--grace" else int(options[1])
        options = options[2:]
    grace_s, parent = values["--grace"], values["--parent"]
    if not cmd or grace_s < 0:
        raise ValueError("no command" if not cmd else "a negative grace")
    return grace_s, parent, cmd


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        grace_s, parent, cmd = parse(argv)
    except ValueError as exc:
        sys.stderr.write(f"error: lifeline: {exc}\n{USAGE}")
        return 2
    return Lifeline(cmd, grace_s, parent).run()


if __name__ == "__main__":
    sys.exit(main())
