"""`make run`: the whole system in one command, ``python -m workers.stack``.

1. PostgreSQL: ``DATABASE_URL`` when set, else an embedded server in
   ``$DATA_DIR/pg`` (kept between runs); the children get its URL.
2. The migrations (``AUTO_MIGRATE``); a database this checkout cannot work
   on (a migration it does not know, a changed migration file, or pending
   ones with ``AUTO_MIGRATE=0``) ends it with status 2 and the reason.
3. The API under gunicorn (one gthread process, ``API_THREADS`` threads) on ``PORT``.
4. One worker launch, ``python -m workers`` (``WORKERS`` x ``WORKER_THREADS``,
   metrics on ``METRICS_PORT``).
5. Supervision: dramatiq stops the whole launch when one of its processes
   dies, so a launch (or the API) that exits is logged and started again,
   with a back-off that grows while it keeps failing.
6. A banner once ``GET /readyz`` answers 200; it says how the API is
   guarded (``auth_lines``): open (no users, no ``API_TOKEN``: anyone who
   can reach ``PORT`` may use it, so it listens on 127.0.0.1 only),
   ``API_TOKEN`` alone, or users (then on every interface), and the
   ``tunix-admin`` command that makes a user or a token.
7. Ctrl-C (SIGINT), SIGTERM or SIGHUP: SIGTERM to each child (each leads its
   own process group), SIGKILL to whatever is left after ``STOP_GRACE_S``,
   then the embedded PostgreSQL is stopped and this exits 0.  A second
   Ctrl-C skips the grace period.
"""

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

import psutil

from tasks import log_format
from tasks.settings import settings_at_start

from . import processes

logger = logging.getLogger("tunix.stack")

#: Seconds a child gets to exit after SIGTERM (dramatiq gives running dry
#: runs 30 s to finish) before SIGKILL.
#: Restart back-off: first delay, cap, and the uptime after which it resets.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_AFTER_S = 60.0
#: How often the supervisor looks at its children.
TICK_S = 0.2

PR_SET_PDEATHSIG = 1

#: Where the API listens once it is guarded (users, or ``API_TOKEN``): every
#: interface, as in docker-compose and ``make api`` (other hosts' browsers and
#: CLIs reach it).  An open installation listens on ``LOOPBACK`` only: with
#: no token asked, nobody but this machine's users may use it.
API_HOST = "0.0.0.0"
LOOPBACK = "127.0.0.1"


def _die_with_parent():  # pragma: no cover  (runs in the child between fork and exec)
    """In the child: get SIGTERM if the supervisor dies, even by SIGKILL, so no
    service outlives ``make run``.  Linux only; elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """One supervised service: a command run as the leader of its own process group."""

    def __init__(self, name, cmd, env):
        self.name = name
        self.cmd = cmd
        self.env = env
        self.proc = None
        self.started_at = 0.0
        self.backoff = BACKOFF_FIRST_S
        self.restart_at = None
        self.restarts = 0

    def start(self):
        self.proc = processes.spawn(self.cmd, self.env, stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        self.started_at = time.monotonic()
        self.restart_at = None
        logger.info("started %s (pid %d): %s", self.name, self.proc.pid, " ".join(self.cmd))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def descendants(self):
        """Every live process below the leader, those in other sessions (trainings) included."""
        if not self.running():
            return []
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.proc.pid).children(recursive=True)
        return []

    def check(self, now):
        """Notice an unexpected exit and restart after the back-off; True if it (re)started."""
        if self.proc is None:
            return False
        if self.restart_at is None:
            code = self.proc.poll()
            if code is None:
                return False
            uptime = now - self.started_at
            if uptime >= BACKOFF_RESET_AFTER_S:
                self.backoff = BACKOFF_FIRST_S
            logger.error("%s exited unexpectedly with status %s after %.1fs; restarting in %.0fs",
                         self.name, code, uptime, self.backoff)
            self.kill()  # what the dead leader left in its group
            self.restart_at = now + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)
            return False
        if now >= self.restart_at:
            self.restarts += 1
            self.start()
            return True
        return False

    def terminate(self):
        """SIGTERM the leader (gunicorn and the launch stop their own children)."""
        self.restart_at = None
        if self.proc is not None:
            processes.terminate(self.proc)

    def kill(self):
        """SIGKILL whatever is left of the group."""
        if self.proc is not None:
            processes.kill_group(self.proc)


class Stack:
    def __init__(self, settings):
        self.settings = settings
        self.embedded = None
        self.children = []
        self.stopping = False
        self.hurry = False

    # ------------------------------------------------------------ signals

    def _on_signal(self, signum, frame):
        if self.stopping:
            logger.warning("second %s: killing everything now", signal.Signals(signum).name)
            self.hurry = True
        else:
            logger.info("%s received: stopping", signal.Signals(signum).name)
        self.stopping = True

    def install_signal_handlers(self):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # ---------------------------------------------------------------- run

    def child_env(self, url):
        # The children's environment, built from this one (not a read of a
        # setting): what the launch resolved, passed on by variable name.
        return processes.child_env(url, self.settings.data_dir, PORT=self.settings.port,
                                   METRICS_PORT=self.settings.metrics_port, PYTHONUNBUFFERED=1)

    def commands(self, host=API_HOST):
        s = self.settings
        # A sync submit holds its thread up to SYNC_TIMEOUT_S: gunicorn must not kill it first.
        api = processes.api_command(s.port, s.api_threads, host=host, timeout_s=int(s.sync_timeout_s) + 60,
                                    graceful_timeout_s=20)
        return {"api": api, "workers": processes.workers_command()}

    def run(self):
        from tasks.migrate import LockTimeout, MigrationsPending, SchemaMismatch, ensure_schema

        from .pgembed import resolve_database_url

        self.install_signal_handlers()
        os.makedirs(self.settings.data_dir, exist_ok=True)
        try:
            url, self.embedded = resolve_database_url(self.settings)
            if self.stopping:
                return 0
            try:
                applied = ensure_schema(url, self.settings.auto_migrate, who="this checkout")
            except (SchemaMismatch, MigrationsPending, LockTimeout) as exc:
                logger.error("refusing to start: %s", exc)
                return 1 if isinstance(exc, LockTimeout) else 2
            logger.info("database migrated (%d migration(s) applied)", len(applied))
            env = self.child_env(url)
            self.host = API_HOST if self.settings.api_token or self._users(url) else LOOPBACK
            self.children = [Child(name, cmd, env) for name, cmd in self.commands(self.host).items()]
            for child in self.children:
                if not self.stopping:
                    child.start()
            self.supervise(url)
            return 0
        finally:
            self.shutdown()

    def supervise(self, url):
        ready = bannered = False
        api = self.children[0]
        waited_since = time.monotonic()
        warned = False
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                if child.check(now) and child is api:
                    ready, waited_since = False, now
            if not ready and api.running():
                ready = self.ready()
                if ready:
                    if not bannered:
                        bannered = True
                        self.banner(url)
                    else:
                        logger.info("the API answers again on port %d", self.settings.port)
                elif not warned and now - waited_since > 120:
                    warned = True
                    logger.warning("GET /readyz still does not answer 200 after 120s")
            time.sleep(TICK_S)

    def ready(self):
        return processes.answers(f"http://127.0.0.1:{self.settings.port}/readyz", timeout=2)

    def banner(self, url):
        s = self.settings
        if self.embedded is not None:
            db_line = f"embedded PostgreSQL 16 in {self.embedded.data_dir} ({url})"
        else:
            db_line = f"DATABASE_URL {_redact(url)}"
        lines = [
            "Tunix RT is up",
            f"  API         http://127.0.0.1:{s.port}   (try GET /api/tunix/models)",
            f"  API metrics http://127.0.0.1:{s.port}/metrics",
            f"  workers     {s.workers} process(es) x {s.worker_threads} threads; "
            f"metrics http://127.0.0.1:{s.metrics_port}/metrics",
            f"  database    {db_line}",
            f"  data        {s.data_dir}",
            *self.auth_lines(url),
            "  Ctrl-C stops everything.",
        ]
        width = max(len(line) for line in lines) + 2
        text = "\n".join(["=" * width, *lines, "=" * width])
        if s.log_format == "json":
            logger.info("\n".join(lines))  # one record: every line of the output is a JSON object
        else:
            print(text, flush=True)

    @staticmethod
    def _users(url):
        """Whether the installation has a user; None when the database did not answer."""
        try:
            from tasks import db, registry

            with contextlib.closing(db.connect(url, application_name="tunix-stack")) as conn:
                return registry.any_users(conn)
        except Exception as exc:  # the banner must not stop the stack
            logger.warning("could not tell whether users exist: %s", exc)
            return None

    def auth_lines(self, url):
        """The banner's lines on who may use the API, read from the database now."""
        s = self.settings
        # tunix-admin reads DATABASE_URL; an embedded server's URL is only known here.
        admin = _admin_command(url if self.embedded is not None else None)
        users = self._users(url)
        if users is None:
            return [f"  auth        unknown (the database did not answer); users: {admin} users"]
        if users:
            lines = ["  auth        ON: users exist, so every /api/ call needs `Authorization: Bearer <token>`",
                     "              (the console asks for one); a new token for a user:",
                     f"                {admin} token NAME"]
            if s.api_token:
                lines.append("              API_TOKEN still acts as an admin with no name: unset it once people "
                             "have their tokens")
            return lines
        if s.api_token:
            reads = "reads too (API_TOKEN_READS)" if s.api_token_reads else "reads are open"
            head = f"  auth        API_TOKEN alone: changes need it, {reads}; no users yet"
        else:
            where = "this machine only" if self.host == LOOPBACK else "every interface"
            head = (f"  auth        OPEN MODE: no users, anyone on this machine can use the API without a token; "
                    f"bound to {self.host} ({where})")
        return [head, "              make a user (auth is on from the first one; restart to listen on every "
                      "interface):", f"                {admin} create-user NAME"]

    def shutdown(self):
        """Stop every child and the embedded database; idempotent."""
        self.stopping = True
        started = [c for c in self.children if c.proc is not None]
        if started:
            logger.info("stopping %s", ", ".join(c.name for c in started))
        # Remember every process now: trainings run in sessions of their own.
        leftovers = [p for c in started for p in c.descendants()]
        for child in started:
            child.terminate()
        grace_s = self.settings.stop_grace_s
        deadline = time.monotonic() + grace_s
        while any(c.running() for c in started) and not self.hurry and time.monotonic() < deadline:
            time.sleep(0.1)
        for child in started:
            if child.running():
                logger.warning("%s did not stop within %.0fs: SIGKILL", child.name, grace_s)
            child.kill()
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    logger.warning("killing leftover process %d (%s)", proc.pid, proc.name())
                    proc.kill()
        psutil.wait_procs(leftovers, timeout=5)
        if self.embedded is not None:
            logger.info("stopping the embedded PostgreSQL")
            self.embedded.stop()
            self.embedded = None
        logger.info("stopped")


def _admin_command(url=None):
    """How to run ``tunix-admin`` from here: this environment's script (a path
    relative to the working directory when under it), with ``DATABASE_URL``
    in front when it is not in the environment already."""
    script = os.path.join(os.path.dirname(sys.executable), "tunix-admin")
    if not os.path.exists(script):
        script = "tunix-admin"
    else:
        relative = os.path.relpath(script)
        script = relative if not relative.startswith("..") else script
    return f"DATABASE_URL='{url}' {script}" if url else script


def _redact(url):
    parts = urlparse(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def main():
    settings = settings_at_start()
    log_format.configure(settings.log_format, settings.hostname)
    try:
        return Stack(settings).run()
    except Exception:
        logger.exception("make run failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
