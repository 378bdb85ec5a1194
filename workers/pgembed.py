"""An embedded PostgreSQL for `make run` and the tests when ``DATABASE_URL`` is unset.

The server binaries come from the ``pgserver`` wheel (PostgreSQL 16, no
network access needed); the cluster lives in one folder and listens on a Unix
socket only (no TCP port to collide with).  We drive ``initdb``/``pg_ctl``
ourselves rather than through ``pgserver.PostgresServer``, whose handle
bookkeeping stops the server at interpreter exit, trusts any live process
behind a leftover ``postmaster.pid`` and gives ``pg_ctl`` only 10 seconds.

* ``start()`` initialises the folder on first use, reuses a server already
  running on it (say, left by a killed ``make run``), clears a stale
  ``postmaster.pid`` and returns the URL.  Safe against concurrent callers.
* ``stop()`` stops the server on the folder (fast shutdown; SIGKILL as a last
  resort), whoever started it.
* As root, PostgreSQL refuses to run: the cluster belongs to a system user
  (``pgserver``, created if missing, as the pgserver package does).
* ``listen=("10.77.0.1",), trust=("10.77.0.0/24",)`` also listen on TCP on
  those addresses (``port``, 5432 unless given, names the socket too) with
  password-less access from those networks; ``tcp_url(host)`` is the URL to
  hand to processes on other hosts (the multi-host tests use this).

CLI (``--data-dir`` is ``DATA_DIR``; the cluster is ``DATA_DIR/pg``)::

    python -m workers.pgembed start [--data-dir DIR]   # prints the URL
    python -m workers.pgembed url   [--data-dir DIR]   # the URL, exit 1 if not running
    python -m workers.pgembed stop  [--data-dir DIR]
"""

import argparse
import contextlib
import fcntl
import hashlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote

from tasks.settings import settings_at_start

logger = logging.getLogger("tunix.pgembed")

#: The database superuser ``initdb`` creates (trust authentication).
SUPERUSER = "postgres"
#: System user owning the cluster when we run as root (postgres refuses root).
ROOT_RUN_AS = "pgserver"
#: Sockets are named ``.s.PGSQL.<port>``; the port only names the socket.
SOCKET_PORT = 5432
#: Longest Unix socket path the kernel accepts (sun_path is 108 bytes).
MAX_SOCKET_PATH = 103
#: Connections the API, the workers and the tests may hold together.
MAX_CONNECTIONS = 300
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def _bin(name):
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR at import
        warnings.simplefilter("ignore")
        import pgserver._commands as commands  # the wheel's bundled PostgreSQL

    return str(commands.POSTGRES_BIN_PATH / name)


def _is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir`` (the PGDATA folder itself)."""

    def __init__(self, data_dir, *, max_connections=MAX_CONNECTIONS, listen=(), trust=(), port=SOCKET_PORT):
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.max_connections = max_connections
        #: TCP addresses to listen on besides the Unix socket (none by default).
        self.listen = tuple(listen)
        #: Networks (CIDR) whose TCP clients connect without a password.
        self.trust = tuple(trust)
        self.port = int(port)
        self.log_path = self.data_dir / "postmaster.log"
        self.run_as = ROOT_RUN_AS if _is_root() else None
        self._lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"

    # ------------------------------------------------------------------ API

    @property
    def url(self):
        """The server's URL (Unix socket): ``postgresql://postgres@/postgres?host=<socket dir>``."""
        running = self._postmaster()
        socket_dir = running["socket_dir"] if running and running.get("socket_dir") else self._socket_dir()
        port = "" if self.port == SOCKET_PORT else f"&port={self.port}"
        return f"postgresql://{SUPERUSER}@/{SUPERUSER}?host={quote(str(socket_dir), safe='/')}{port}"

    def tcp_url(self, host=None):
        """The URL over TCP to ``host`` (the first ``listen`` address by default)."""
        host = host or (self.listen[0] if self.listen else "127.0.0.1")
        return f"postgresql://{SUPERUSER}@{host}:{self.port}/{SUPERUSER}"

    def start(self):
        """Start (or adopt) the server; return its URL once it accepts connections."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._prepare()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._trust_networks()
            if self._running_pid() is not None:
                logger.info("reusing the PostgreSQL server already running on %s", self.data_dir)
            else:
                self._start_server()
            self._wait_ready()
        return self.url

    def stop(self):
        """Stop the server on ``data_dir``; nothing happens when none runs."""
        if not self.data_dir.exists():
            return
        with self._locked():
            pid = self._running_pid()
            if pid is None:
                return
            try:
                self._run([_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                           "-t", str(STOP_TIMEOUT_S), "stop"], timeout=STOP_TIMEOUT_S + 10)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                logger.warning("pg_ctl stop failed (%s); killing the postmaster %d", exc, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)
                if not _wait_gone(pid, 10):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 30)
            socket_dir = self._socket_dir()
            if socket_dir != self.data_dir:  # our own short folder under /tmp
                shutil.rmtree(socket_dir, ignore_errors=True)
            logger.info("stopped the PostgreSQL server on %s", self.data_dir)

    def is_running(self):
        return self._running_pid() is not None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _locked(self):
        """Serialise start/stop between processes (two `make run`s, parallel tests)."""
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _run(self, cmd, timeout=None):
        kwargs = {}
        if self.run_as:
            kwargs["user"] = self.run_as
        # cwd: the server user must be able to enter it (root's cwd may be /root).
        return subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd="/", **kwargs)

    def _prepare(self):
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if not self.run_as:
            return
        import pwd

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(self.run_as)
        # The server user must traverse the folders above the cluster and read the binaries.
        ensure_prefix_permissions(self.data_dir)
        entry = pwd.getpwnam(self.run_as)
        if self.data_dir.stat().st_uid != entry.pw_uid:
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        socket_dir = self._socket_dir()
        if socket_dir != self.data_dir:
            socket_dir.mkdir(parents=True, exist_ok=True)
            os.chown(socket_dir, entry.pw_uid, entry.pw_gid)

    def _initdb(self):
        logger.info("initialising a PostgreSQL cluster in %s", self.data_dir)
        try:
            self._run([_bin("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                       "--encoding=UTF8", "--locale=C", "--no-instructions"], timeout=300)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed in {self.data_dir}:\n{exc.stdout}") from exc

    def _trust_networks(self):
        """Lines of pg_hba.conf for ``trust`` (appended once; read at start)."""
        hba = self.data_dir / "pg_hba.conf"
        text = hba.read_text()
        lines = [f"host all all {cidr} trust" for cidr in self.trust]
        missing = [line for line in lines if line not in text.splitlines()]
        if missing:
            with open(hba, "a") as f:
                f.write("".join(line + "\n" for line in missing))

    def _socket_dir(self):
        """The cluster folder when its socket path fits, else a short one under /tmp."""
        if len(str(self.data_dir / f".s.PGSQL.{self.port}")) <= MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"tunix-pg-{digest}"

    def _postmaster(self):
        """``postmaster.pid`` as a dict, or None when absent or unreadable."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            info = {"pid": int(lines[0])}
        except (OSError, ValueError, IndexError):
            return None
        if len(lines) > 4 and lines[4].strip():
            info["socket_dir"] = lines[4].strip()
        info["status"] = lines[7].strip() if len(lines) > 7 else ""
        return info

    def _running_pid(self):
        """The postmaster's pid if one is really running on this cluster."""
        info = self._postmaster()
        if info is None:
            return None
        pid = info["pid"]
        if _pid_runs_postgres(pid, self.data_dir):
            return pid
        return None

    def _clear_stale(self):
        """Remove lock files left by a postmaster that no longer runs.

        PostgreSQL checks them itself, but a recycled pid (owned by a live,
        unrelated process of the same user) would make it refuse to start."""
        info = self._postmaster()
        if info is None:
            return
        logger.warning("removing the stale postmaster.pid of a dead server (pid %d) in %s", info["pid"], self.data_dir)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()
        socket_dir = Path(info.get("socket_dir") or self._socket_dir())
        with contextlib.suppress(FileNotFoundError):
            (socket_dir / f".s.PGSQL.{self.port}.lock").unlink()

    def _start_server(self):
        socket_dir = self._socket_dir()
        options = " ".join([
            "-c", shlex.quote("listen_addresses=" + ",".join(self.listen)) if self.listen else "listen_addresses=''",
            "-c", f"max_connections={int(self.max_connections)}",
            "-k", shlex.quote(str(socket_dir)),
            "-p", str(self.port),
        ])
        cmd = [_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options,
               "-w", "-t", str(START_TIMEOUT_S), "start"]
        last = None
        # A few tries: after a crash, the dead server's children may still hold
        # its shared memory for a moment ("pre-existing shared memory block").
        for attempt in range(4):
            self._clear_stale()
            try:
                self._run(cmd, timeout=START_TIMEOUT_S + 30)
                logger.info("started PostgreSQL on %s (socket in %s)", self.data_dir, socket_dir)
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                last = exc
                logger.warning("pg_ctl start failed (try %d): %s", attempt + 1, getattr(exc, "stdout", exc))
                time.sleep(1 + 2 * attempt)
        raise RuntimeError(f"could not start PostgreSQL in {self.data_dir}: {last}\n{self._log_tail()}")

    def _wait_ready(self, timeout=START_TIMEOUT_S):
        import psycopg2

        from tasks import db

        deadline = time.monotonic() + timeout
        while True:
            try:
                db.connect(self.url, connect_timeout="3").close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL in {self.data_dir} does not accept connections: {exc}\n"
                                       f"{self._log_tail()}") from exc
                time.sleep(0.2)

    def _log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _pid_runs_postgres(pid, data_dir):
    """Whether ``pid`` is alive and is the postmaster of ``data_dir`` (not a recycled pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's (the server user when we are not root)
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return True  # no procfs (macOS): trust the live pid
    try:
        exe = os.path.basename(proc.joinpath("cmdline").read_bytes().split(b"\0")[0].decode(errors="replace"))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    if not exe.startswith("postgres"):
        return False
    try:
        # The postmaster's working directory is its data directory.
        return os.path.realpath(os.readlink(proc / "cwd")) == os.path.realpath(data_dir)
    except OSError:
        return True


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        time.sleep(0.1)
    return False


def resolve_database_url(settings):
    """``(url, handle)``: ``DATABASE_URL`` and None when it is set, else an
    embedded server started in ``$DATA_DIR/pg`` and its handle (the caller
    stops it)."""
    if settings.database_url:
        return settings.database_url, None
    server = EmbeddedPostgres(os.path.join(settings.data_dir, "pg"))
    return server.start(), server


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workers.pgembed", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "url", "status"])
    parser.add_argument("--data-dir", default=None,
                        help="DATA_DIR; the cluster is DATA_DIR/pg (default: $DATA_DIR or ./var)")
    parser.add_argument("--pgdata", help="the cluster folder itself (overrides --data-dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    server = EmbeddedPostgres(args.pgdata or os.path.join(
        os.path.abspath(args.data_dir or settings_at_start().data_dir), "pg"))
    if args.command == "start":
        print(server.start())
    elif args.command == "stop":
        server.stop()
    else:
        running = server.is_running()
        print(server.url if args.command == "url" else ("running" if running else "stopped"))
        return 0 if running else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
