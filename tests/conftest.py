"""Fixtures shared by every tier (helpers live in ``tests/support.py``).

* A real PostgreSQL: the server in ``DATABASE_URL`` when set, otherwise an
  embedded one (``workers.pgembed``) the session starts and stops itself.  A
  template database is migrated once; each session database (and any test
  that needs its own) is cloned from it, and all are dropped at the end.
* Real processes for the end-to-end tier: the API under gunicorn and worker
  launches (``python -m workers``), each in its own process group, stopped
  with SIGTERM (so coverage data is written) and SIGKILL as a fallback.  At
  the end of the session any process still carrying one of the session's
  ``DATA_DIR`` values is killed and reported: none may be left behind.

Every fixture that costs a process or a database is lazy, so the unit tier
starts neither.
"""

import collections
import concurrent.futures
import contextlib
import os
import pathlib
import shutil
import signal
import tempfile
import warnings

import pytest

from support import DATA_DIRS, DRY, ApiClient, Databases, Launch, connect, start_api, truncate

# --------------------------------------------------------------------------
# JAX's compilation cache

#: The session's compilation cache, when this session made it (removed at its end).
_JAX_CACHE = []


def pytest_configure(config):  # noqa: ARG001 - pytest's hook signature
    """One JAX compilation cache for every training the session starts, set
    before any process is: trainings inherit it (``workers/runner.py`` only
    defaults it to ``DATA_DIR/jax-cache``), so a tiny model's programs are
    compiled once per session, not once per ``DATA_DIR`` (tests on a stack
    of their own, the hosts of the multi-host tier).  A tiny training: 13 s
    with an empty cache, 5-6 s with a warm one (24 llama3-tiny steps, here).
    A ``JAX_COMPILATION_CACHE_DIR`` of the developer's own is kept."""
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        _JAX_CACHE.append(tempfile.mkdtemp(prefix="tunix-jax-cache-"))
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _JAX_CACHE[0]


def pytest_unconfigure(config):  # noqa: ARG001
    for path in _JAX_CACHE:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------
# PostgreSQL


#: A session's PostgreSQL server: its URL, and whether the session made it
#: (an embedded server is deleted whole at the end).
PgServer = collections.namedtuple("PgServer", "url embedded")


@pytest.fixture(scope="session")
def pg_server():
    """The PostgreSQL server: ``DATABASE_URL``'s, else an embedded one (``PgServer``)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield PgServer(url, embedded=False)
        return
    from workers.pgembed import EmbeddedPostgres

    root = tempfile.mkdtemp(prefix="tunix-pg-")
    server = EmbeddedPostgres(os.path.join(root, "pg"))
    url = server.start()
    try:
        yield PgServer(url, embedded=True)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def databases(pg_server):
    """Creates databases on the server; drops them all at the end when the
    server is ``DATABASE_URL``'s.  An embedded server is deleted whole, and a
    ``DROP DATABASE`` waits for a checkpoint (~0.85 s each here)."""
    dbs = Databases(pg_server.url)
    yield dbs
    if pg_server.embedded:
        dbs.close()
    else:
        dbs.drop_all()


@pytest.fixture(scope="session")
def database_url(databases):
    """The end-to-end tier's database (API and worker launch), cloned from the template."""
    return databases.create()


@pytest.fixture
def db_conn(database_url):
    """An autocommit connection to the session database."""
    conn = connect(database_url)
    yield conn
    conn.close()


@pytest.fixture
def clean_db(db_conn):
    """The session database with no runs and no queued messages."""
    truncate(db_conn)
    return db_conn


# --------------------------------------------------------------------------
# Processes


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """The session's DATA_DIR, with one operator dataset in it."""
    path = tmp_path_factory.mktemp("data")
    (path / "datasets").mkdir()
    (path / "datasets" / "ops-set.jsonl").write_text(
        '{"prompt": "2 + 2 =", "completion": "4"}\n{"prompt": "3 + 3 =", "completion": "6"}\n')
    return path


@pytest.fixture(scope="session")
def live_api(database_url, data_dir, log_dir):
    """Base URL of the session's API process (gunicorn, SYNC_TIMEOUT_S=30)."""
    process = start_api(database_url, data_dir, log_dir, SYNC_TIMEOUT_S=30)
    yield process.url
    process.stop()


#: Every worker launch the session started, oldest first.
_STARTED = []


@pytest.fixture(scope="session")
def _launches(databases):  # noqa: ARG001 - see the docstring
    """The session's launches, stopped at its end before its databases are
    dropped: a launch whose database was gone took its whole grace (15 s)
    and a SIGKILL to stop."""
    yield _STARTED
    _stop_all(_STARTED)


def _stop_all(launches):
    """Stopped side by side: each takes ~3 s to exit (dramatiq's shutdown), and
    a module may have started several."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(launches))) as pool:
        list(pool.map(lambda launch: launch.stop(), launches))


@pytest.fixture(scope="module", autouse=True)
def _stop_the_modules_launches():
    """Launches a test module started are stopped when the module ends (the
    session's shared one excepted): each holds a dozen connections.  (No
    fixture asked for: a module without launches needs no database.)"""
    before = len(_STARTED)
    yield
    _stop_all([launch for launch in _STARTED[before:] if not getattr(launch, "shared", False)])


@pytest.fixture(scope="session")
def worker_launch(_launches, database_url, data_dir, log_dir):
    """Factory: ``worker_launch(workers=2, threads=8, url=None, **env)`` starts
    ``python -m workers`` and returns the ``Launch`` once its metrics port
    answers.  A launch is stopped by ``.stop()``, else at the end of the test
    module that started it."""

    def start(workers=2, threads=8, url=None, **env):
        launch = Launch(url or database_url, data_dir, log_dir, workers=workers, threads=threads, **env)
        _launches.append(launch)
        return launch

    return start


@pytest.fixture(scope="session")
def workers(worker_launch):
    """The session's worker launch: 2 processes serving the session database."""
    launch = worker_launch(workers=2, threads=8)
    launch.shared = True
    return launch


@pytest.fixture(scope="session", autouse=True)
def _no_process_left_behind():
    yield
    leftovers = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if pid == os.getpid():
            continue
        try:
            environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(f"DATA_DIR={d}".encode() in environ for d in DATA_DIRS):
            leftovers.append(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    if leftovers:
        warnings.warn(f"killed processes the tests left behind: {leftovers}")


# --------------------------------------------------------------------------
# HTTP


@pytest.fixture(scope="session")
def api(live_api):
    """The session's API as an ``ApiClient``."""
    return ApiClient(live_api)


@pytest.fixture
def submit(api):
    """``submit(body, mode="async")``: POST /api/tunix/run; the ``requests`` response."""
    return api.submit


@pytest.fixture
def dry_body():
    """A fresh copy of the smallest valid request (a dry run)."""
    return dict(DRY)
