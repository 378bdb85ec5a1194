"""`make run` end to end: ``python -m workers.stack`` started as a user would,
with its own DATA_DIR (and its own embedded PostgreSQL unless DATABASE_URL is
set), driven over HTTP, crashed in part, and stopped with Ctrl-C; and the
embedded PostgreSQL it relies on (``workers.pgembed``): reuse of a cluster,
recovery from a killed server, the CLI."""

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180
DRY = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the stack exited ({proc.returncode}) while waiting for {what}:\n{tail(log)}")
        with contextlib.suppress(requests.RequestException):
            value = predicate()
            if value:
                return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s:\n{tail(log)}")


def tail(log, lines=80):
    if log is None:
        return ""
    return "\n".join(pathlib.Path(log).read_text(errors="replace").splitlines()[-lines:])


def postmaster(pgdata):
    """The embedded server's postmaster and its children, or []."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        master = psutil.Process(pid)
        return [master, *master.children(recursive=True)]
    except (OSError, ValueError, IndexError, psutil.Error):
        return []


def cmdlines(procs):
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            out.append(" ".join(proc.cmdline()))
    return out


def dramatiq_workers(stack):
    """The dramatiq worker processes (children of dramatiq's main process)."""
    found = []
    for proc in stack.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "dramatiq" in " ".join(proc.cmdline()) and "dramatiq" in " ".join(proc.parent().cmdline()):
                found.append(proc)
    return found


def run_to_completion(base, timeout=60):
    response = requests.post(base + "/api/tunix/run", params={"mode": "async"}, json=DRY, timeout=30)
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    status_url = f"{base}/api/tunix/runs/{run_id}/status"
    wait_until(lambda: requests.get(status_url, timeout=10).json()["status"] == "completed", timeout,
               f"run {run_id} completed")
    return run_id


@pytest.fixture
def stack_env(request):
    """Environment of the stack: free ports, a fresh DATA_DIR, and a blank
    database on DATABASE_URL's server when it is set (the stack migrates
    it), else no DATABASE_URL at all (the stack starts PostgreSQL itself).

    DATA_DIR is not under pytest's tmp_path: as root the embedded server runs
    as another user, and pytest takes the group/other bits off its
    /tmp/pytest-of-<user> folder at each session's start."""
    data_dir = tempfile.mkdtemp(prefix="tunix-stack-")
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(PORT=str(free_port()), METRICS_PORT=str(free_port()), DATA_DIR=data_dir,
               WORKERS="2", WORKER_THREADS="4", API_THREADS="8", STOP_GRACE_S="30",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = request.getfixturevalue("databases").create(migrated=False)
    else:
        env.pop("DATABASE_URL", None)
    yield env
    shutil.rmtree(data_dir, ignore_errors=True)


def test_make_run_starts_serves_restarts_and_stops_everything(stack_env, tmp_path):
    log = tmp_path / "stack.log"
    base = f"http://127.0.0.1:{stack_env['PORT']}"
    pgdata = pathlib.Path(stack_env["DATA_DIR"]) / "pg"
    embedded = "DATABASE_URL" not in stack_env
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "workers.stack"], cwd=str(ROOT), env=stack_env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    stack = psutil.Process(proc.pid)
    seen = []
    try:
        wait_until(lambda: requests.get(base + "/readyz", timeout=2).status_code == 200, START_TIMEOUT_S,
                   "GET /readyz 200", proc, log)
        banner = wait_until(lambda: "Tunix RT is up" in log.read_text(errors="replace") and log.read_text(),
                            30, "the banner", proc, log)
        assert f":{stack_env['PORT']}" in banner and f":{stack_env['METRICS_PORT']}/metrics" in banner
        assert ("embedded PostgreSQL" in banner) == embedded
        if embedded:
            assert (pgdata / "PG_VERSION").exists()

        # One async dry run, submitted over HTTP and executed by the fleet.
        run_to_completion(base)
        metrics = requests.get(f"http://127.0.0.1:{stack_env['METRICS_PORT']}/metrics", timeout=10)
        assert metrics.status_code == 200

        # A dramatiq process dies: dramatiq stops the launch, the stack starts a new one.
        victims = wait_until(lambda: dramatiq_workers(stack), 60, "dramatiq worker processes", proc, log)
        seen += stack.children(recursive=True)
        victims[0].kill()
        wait_until(lambda: "workers exited unexpectedly" in log.read_text(errors="replace"), 60,
                   "the launch's exit noticed", proc, log)
        wait_until(lambda: len(dramatiq_workers(stack)) == 2 and victims[0] not in dramatiq_workers(stack), 90,
                   "a new worker launch", proc, log)
        run_to_completion(base, timeout=90)

        # Ctrl-C: everything stops, the embedded database included, and the exit status is 0.
        seen += stack.children(recursive=True) + postmaster(pgdata)
        names = " | ".join(cmdlines(seen))
        assert "gunicorn" in names and "dramatiq" in names, names
        if embedded:
            assert "postgres" in names, names
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the stack did not stop within 120s after SIGINT:\n{tail(log)}")
        assert code == 0, tail(log)
        _, alive = psutil.wait_procs(seen, timeout=10)
        assert not alive, f"left running: {cmdlines(alive)}\n{tail(log)}"
        if embedded:
            assert not (pgdata / "postmaster.pid").exists()
        with pytest.raises(requests.ConnectionError):
            requests.get(base + "/healthz", timeout=2)
        text = log.read_text(errors="replace")
        assert "stopped" in text.splitlines()[-1], tail(log)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for leftover in seen:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        if embedded and pgdata.exists():
            from workers.pgembed import EmbeddedPostgres

            EmbeddedPostgres(pgdata).stop()


# --------------------------------------------------------------------------
# The embedded PostgreSQL `make run` uses (workers/pgembed.py)


def _pgembed_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "workers.pgembed", *args], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=300)


def test_embedded_postgres_reuses_its_cluster_and_survives_a_killed_server():
    import psycopg2

    from tasks import db
    from workers.pgembed import EmbeddedPostgres

    root = pathlib.Path(tempfile.mkdtemp(prefix="tunix-pgt-"))
    pgdata = root / "pg"
    server = EmbeddedPostgres(pgdata)
    try:
        url = server.start()
        assert url == server.url and server.is_running()
        # Both psycopg2 and our URL splitting accept the URL.
        psycopg2.connect(url).close()
        with db.connect(url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        conn.close()
        # A second start (another process would do the same) reuses the running server.
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        assert EmbeddedPostgres(pgdata).start() == url
        assert int((pgdata / "postmaster.pid").read_text().split()[0]) == pid

        # A killed server leaves a stale postmaster.pid: the next start clears it.
        os.kill(pid, signal.SIGKILL)
        psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=10)
        assert (pgdata / "postmaster.pid").exists() and not server.is_running()
        assert server.start() == url
        with db.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT x FROM kept")
            assert cur.fetchone() == (7,)
        conn.close()
        server.stop()
        assert not server.is_running() and not (pgdata / "postmaster.pid").exists()

        # A postmaster.pid naming a live process that is no postgres (a recycled pid).
        with subprocess.Popen(["sleep", "60"]) as sleeper:
            lines = [str(sleeper.pid), str(pgdata), "1700000000", "5432", str(pgdata), "", "  1  2", "ready"]
            (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
            with server:  # start ... stop
                assert server.is_running()
            sleeper.kill()
        assert not server.is_running()
        server.stop()  # stopping a stopped server is a no-op
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_pgembed_cli_and_a_socket_path_too_long_for_the_cluster_folder():
    root = pathlib.Path(tempfile.mkdtemp(prefix="tunix-pgt-"))
    data_dir = root / ("d" * 100)  # DATA_DIR/pg/.s.PGSQL.5432 would not fit in sun_path
    try:
        assert _pgembed_cli("status", "--data-dir", str(data_dir)).returncode == 1
        started = _pgembed_cli("start", "--data-dir", str(data_dir))
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert url.startswith("postgresql://postgres@/postgres?host=/tmp/tunix-pg-"), url
        shown = _pgembed_cli("url", "--data-dir", str(data_dir))
        assert (shown.returncode, shown.stdout.strip()) == (0, url)
        from tasks import db

        db.connect(url).close()
        assert _pgembed_cli("status", "--pgdata", str(data_dir / "pg")).stdout.strip() == "running"
        stopped = _pgembed_cli("stop", "--data-dir", str(data_dir))
        assert stopped.returncode == 0, stopped.stderr
        assert _pgembed_cli("status", "--data-dir", str(data_dir)).stdout.strip() == "stopped"
        assert not os.path.exists(url.split("host=", 1)[1])  # the short socket folder is removed
    finally:
        _pgembed_cli("stop", "--data-dir", str(data_dir))
        shutil.rmtree(root, ignore_errors=True)


def test_resolve_database_url():
    from tasks.settings import Settings
    from workers.pgembed import resolve_database_url

    given = Settings(database_url="postgresql://someone@db.example:5432/tunix", data_dir="/nonexistent")
    assert resolve_database_url(given) == ("postgresql://someone@db.example:5432/tunix", None)

    root = tempfile.mkdtemp(prefix="tunix-pgt-")
    url, handle = resolve_database_url(Settings(database_url="", data_dir=root))
    try:
        assert handle is not None and handle.data_dir == pathlib.Path(root, "pg")
        from tasks import db

        db.connect(url).close()
    finally:
        handle.stop()
        shutil.rmtree(root, ignore_errors=True)
