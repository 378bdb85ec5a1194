"""Starting and stopping the system's processes: the one harness behind
``make run`` (``workers.stack``), the tests (``tests/support.py``), the
browser tests (``tests/browser/conftest.py``) and the benchmarks
(``bench/procs.py``).

Every service runs as the leader of its own process group (a new session),
so one signal reaches whatever it started; a stop is SIGTERM, a grace period,
then SIGKILL to the whole group.
"""

import contextlib
import http.client
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Seconds a process gets to exit after SIGTERM before SIGKILL.
STOP_GRACE_S = 15
#: Seconds a started process gets to answer on its port.
START_TIMEOUT_S = 60
#: The API's WSGI application, as gunicorn names it.
APP = "app:create_app()"


def free_port():
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(database_url, data_dir, **extra):
    """A service's environment: this one, with its database and data folder,
    this repository importable, and ``extra`` (as strings)."""
    env = dict(os.environ, DATABASE_URL=database_url, DATA_DIR=str(data_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    # The API keeps its own metrics registry; a worker launch sets its own folder.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def api_command(port, threads, *, host="127.0.0.1", timeout_s=None, graceful_timeout_s=None,
                control_socket=False, log_level=None, app=APP):
    """The API as in production: gunicorn, one gthread process of ``threads`` threads.
    Flags left at None keep gunicorn's defaults."""
    cmd = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1",
           "--threads", str(threads), "--bind", f"{host}:{port}"]
    if timeout_s is not None:
        cmd += ["--timeout", str(timeout_s)]
    if graceful_timeout_s is not None:
        cmd += ["--graceful-timeout", str(graceful_timeout_s)]
    if log_level is not None:
        cmd += ["--log-level", log_level]
    if not control_socket:
        cmd.append("--no-control-socket")
    return [*cmd, app]


def workers_command():
    """One worker launch (sized by ``WORKERS`` and ``WORKER_THREADS`` in its environment)."""
    return [sys.executable, "-m", "workers"]


def spawn(cmd, env, output=None, **popen):
    """``cmd`` in the repository root as the leader of a new process group,
    its stdout and stderr to ``output`` (a file, DEVNULL; None inherits)."""
    stderr = subprocess.STDOUT if output is not None else None
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=output, stderr=stderr, start_new_session=True, **popen)


def log_tail(path, lines=60):
    """The last ``lines`` lines of a log file ("" when there is none)."""
    if path is None:
        return ""
    try:
        return "\n".join(pathlib.Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def answers(url, ok=200, timeout=1):
    """Whether ``GET url`` answers with status ``ok`` now (the standard
    library's client: ``make run`` runs without the test extras)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == ok
    except urllib.error.HTTPError as error:
        error.close()
        return error.code == ok
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return False


def wait_http(url, proc=None, log_path=None, timeout=START_TIMEOUT_S, ok=200, name="process"):
    """Return once ``GET url`` answers ``ok``; raise (with the log's tail) when
    ``proc`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before {url} answered:\n"
                               f"{log_tail(log_path)}")
        if answers(url, ok):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name}: {url} did not answer within {timeout}s:\n{log_tail(log_path)}")


def terminate(proc, group=False):
    """SIGTERM the leader (gunicorn, dramatiq and celery stop their own
    children), or with ``group`` every process of its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)


def kill_group(proc):
    """SIGKILL whatever is left of the group (the leader included) and reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def stop_group(proc, grace=STOP_GRACE_S, group=False):
    """SIGTERM (see ``terminate``), up to ``grace`` seconds to exit, then SIGKILL to the group.
    SIGTERM first: gunicorn and dramatiq exit cleanly (and save coverage)."""
    if proc.poll() is None:
        terminate(proc, group)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    kill_group(proc)


class Service:
    """A command run as the leader of its own process group, its output
    appended to ``log_path`` (None: inherited; ``subprocess.DEVNULL``: dropped)."""

    def __init__(self, cmd, env, log_path=None, name="process", grace=STOP_GRACE_S, term_group=False, **popen):
        self.name = name
        self.log_path = log_path if isinstance(log_path, (str, os.PathLike)) else None
        self.grace = grace
        self.term_group = term_group
        self._log = open(log_path, "ab") if self.log_path is not None else None
        self._stopped = False
        self.proc = spawn(cmd, env, self._log if self._log is not None else log_path, **popen)

    @property
    def pid(self):
        return self.proc.pid

    def log(self, lines=200):
        return log_tail(self.log_path, lines)

    def wait_http(self, url, timeout=START_TIMEOUT_S, ok=200):
        wait_http(url, self.proc, self.log_path, timeout, ok, self.name)

    def stop(self):
        """Stop the process group (once; later calls just answer the exit status)."""
        if not self._stopped:
            self._stopped = True
            stop_group(self.proc, self.grace, self.term_group)
            if self._log is not None:
                self._log.close()
        return self.proc.returncode


def start_api(env, log_path=None, threads=16, port=None, wait=True, term_group=False, **flags):
    """The API (``api_command``'s ``flags``) on ``port``, else a free one, as a
    ``Service`` with ``.url``; once ``/readyz`` answers 200 unless ``wait`` is false."""
    port = port or free_port()
    api = Service(api_command(port, threads, **flags), env, log_path, name="API", term_group=term_group)
    api.url = f"http://127.0.0.1:{port}"
    if wait:
        api_ready(api)
    return api


def api_ready(api, path="/readyz", ok=200, timeout=START_TIMEOUT_S):
    """Wait for ``api`` to answer; stop it and raise when it does not."""
    try:
        api.wait_http(api.url + path, timeout, ok)
    except BaseException:
        api.stop()
        raise


def start_workers(env, log_path=None, metrics_port=None, wait=True, term_group=False):
    """One worker launch, its metrics on ``metrics_port`` (else a free one), as a
    ``Service`` with ``.metrics_url``; once they answer unless ``wait`` is false."""
    metrics_port = int(metrics_port or free_port())
    launch = Service(workers_command(), dict(env, METRICS_PORT=str(metrics_port)), log_path, name="worker launch",
                     term_group=term_group)
    launch.metrics_port = metrics_port
    launch.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    if wait:
        try:
            launch.wait_http(launch.metrics_url)
        except BaseException:
            launch.stop()
            raise
    return launch
