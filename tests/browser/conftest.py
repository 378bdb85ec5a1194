"""The web console in a real browser, against a live system.

* Browser: Debian's Chromium (``/usr/bin/chromium``, or ``$CHROMIUM``) driven
  by the Python ``playwright`` package; no browser is ever downloaded
  (``playwright install`` is not used).  Without Chromium or playwright every
  test here is skipped with a loud reason, a warning and a banner at the end
  of the run: never silently.
* System: real processes, as in production.  A fresh database
  ``tunix_ui_<random>`` on the server in ``DATABASE_URL`` (or on an embedded
  PostgreSQL started for the session when it is unset), migrated; the API
  under gunicorn (gthread); one worker launch (``python -m workers``,
  ``WORKERS=1``).  All are stopped (SIGTERM, then SIGKILL) and the database
  dropped at the end.
"""

import contextlib
import os
import pathlib
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from urllib.parse import urlparse

import pytest
import requests

from workers import processes

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
START_TIMEOUT_S = 90

_SKIP_REASON = None


def browser_missing():
    """Why the browser tests cannot run here, or None."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"Chromium not found at {CHROMIUM}: install the Debian packages "
                "`chromium chromium-driver` (make test does when apt works) or set CHROMIUM")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package `playwright` is not installed (pip install -e '.[test]')"
    return None


def _banner(reason):
    line = "!" * 78
    return f"{line}\n!! BROWSER TESTS SKIPPED: {reason}\n{line}"


def pytest_collection_modifyitems(config, items):
    global _SKIP_REASON
    ours = [item for item in items if item.get_closest_marker("browser") is not None]
    if not ours:
        return
    reason = browser_missing()
    if reason is None:
        return
    _SKIP_REASON = reason
    marker = pytest.mark.skip(reason=f"BROWSER TESTS SKIPPED: {reason}")
    for item in ours:
        item.add_marker(marker)
    warnings.warn(f"BROWSER TESTS SKIPPED ({len(ours)} tests): {reason}", UserWarning, stacklevel=1)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(_banner(reason), red=True, bold=True)
    else:
        print(_banner(reason), file=sys.stderr)


def pytest_terminal_summary(terminalreporter):
    if _SKIP_REASON:
        terminalreporter.write_line(_banner(_SKIP_REASON), red=True, bold=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --------------------------------------------------------------------------
# Processes


def _tail(path, lines=60):
    return processes.log_tail(path, lines)


def start_api(env, log_path, threads=64, wait=True):
    """The API as in production: gunicorn, one gthread process.  Returns (service, base URL)."""
    api = processes.start_api(env, log_path, threads=threads, graceful_timeout_s=5, wait=False)
    if wait:
        processes.api_ready(api, timeout=START_TIMEOUT_S)
    return api, api.url


class LiveSystem:
    def __init__(self, base_url, database_url, data_dir, api, workers, env):
        self.env = env
        self.base_url = base_url
        self.database_url = database_url
        self.data_dir = data_dir
        self.api = api
        self.workers = workers
        self.http = requests.Session()

    def url(self, path):
        return self.base_url + path

    def submit(self, body, mode="async"):
        response = self.http.post(self.url("/api/tunix/run"), params={"mode": mode}, json=body, timeout=60)
        assert response.status_code in (200, 202), response.text
        return response.json()

    def run(self, run_id):
        response = self.http.get(self.url(f"/api/tunix/runs/{run_id}"), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def runs(self, **params):
        response = self.http.get(self.url("/api/tunix/runs"), params=params, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_status(self, run_id, statuses, timeout=60):
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} is {run['status']}, not {statuses}, after {timeout}s")
            time.sleep(0.1)

    def logs(self):
        return (f"--- API log ---\n{_tail(self.api.log_path)}\n"
                f"--- worker log ---\n{_tail(self.workers.log_path)}")


def _admin_connect(url):
    from tasks import db

    conn = db.connect(url)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def live_system(tmp_path_factory):
    """The whole platform as real processes, on a database of its own."""
    if browser_missing():
        pytest.skip(f"BROWSER TESTS SKIPPED: {browser_missing()}")
    from tasks.migrate import migrate

    root = tmp_path_factory.mktemp("console")
    embedded = None
    pg_root = None
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        from workers.pgembed import EmbeddedPostgres

        # Short path: PostgreSQL's Unix socket path is limited to ~100 bytes.
        pg_root = tempfile.mkdtemp(prefix="tunix-ui-pg-")
        embedded = EmbeddedPostgres(os.path.join(pg_root, "data"))
        server_url = embedded.start()

    name = f"tunix_ui_{uuid.uuid4().hex[:10]}"
    admin = _admin_connect(server_url)
    services = []
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        database_url = urlparse(server_url)._replace(path="/" + name).geturl()
        migrate(database_url)

        data_dir = root / "data"
        data_dir.mkdir()
        env = processes.child_env(database_url, data_dir, SYNC_TIMEOUT_S=60)
        # JAX's compilation cache outlives the session (it is keyed by the
        # computation and the versions): a second `make test` skips the
        # first training's compile.
        env.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / "var" / "jax-cache-browser-tests"))
        env.pop("API_TOKEN", None)
        env.pop("API_TOKEN_READS", None)

        api, base = start_api(env, str(root / "api.log"), wait=False)
        services.append(api)
        workers = processes.start_workers(dict(env, WORKERS="1", METRICS_ADDR="127.0.0.1"),
                                          str(root / "workers.log"), wait=False)
        services.append(workers)
        api.wait_http(base + "/readyz", START_TIMEOUT_S)
        workers.wait_http(workers.metrics_url, START_TIMEOUT_S)
        yield LiveSystem(base, database_url, data_dir, api, workers, env)
    finally:
        for service in reversed(services):
            service.stop()
        with contextlib.suppress(Exception):
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(pg_root, ignore_errors=True)


# --------------------------------------------------------------------------
# Browser


@pytest.fixture(scope="session")
def chromium():
    reason = browser_missing()
    if reason:
        pytest.skip(f"BROWSER TESTS SKIPPED: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(request, chromium, live_system, tmp_path):
    """A fresh browser context on the live console; fails the test on any
    uncaught page error; saves a screenshot and the service logs on failure."""
    context = chromium.new_context(base_url=live_system.base_url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    errors = []
    console = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    yield pg
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        shot = tmp_path / "failure.png"
        with contextlib.suppress(Exception):
            pg.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}\nbrowser console:\n" + "\n".join(console[-50:]))
        print(live_system.logs())
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def extra_api(live_system, tmp_path):
    """Factory: ``extra_api(**env)`` starts one more API process on the live
    system's database with extra environment (say ``API_TOKEN``); returns its
    base URL.  Stopped at the end of the test."""
    started = []

    def start(**extra):
        env = dict(live_system.env, **{k: str(v) for k, v in extra.items()})
        api, base = start_api(env, str(tmp_path / f"api-{len(started)}.log"), threads=16)
        started.append(api)
        return base

    yield start
    for api in started:
        api.stop()


#: A training that finishes in a few seconds on a laptop CPU.
QUICK_TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 30,
                  "batch_size": 4, "max_seq_length": 32, "learning_rate": 0.01}


@pytest.fixture
def quick_training():
    return dict(QUICK_TRAINING)


@pytest.fixture
def shots(tmp_path):
    """Where a test's screenshots go: $SCREENSHOT_DIR (to look at them) or the test's own folder."""
    return pathlib.Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)


@pytest.fixture
def finished_sweep(live_system):
    """Factory: ``finished_sweep(body)`` submits a sweep of dry trials, waits
    for it to finish, and records trial i a training loss falling to 1 + i
    over steps 1..300, as a worker writes them; ``(sweep_id, run ids)``."""
    from support import connect, wait_for

    def make(body):
        response = live_system.http.post(live_system.url("/api/tunix/sweeps"), json=body, timeout=60)
        assert response.status_code == 202, response.text
        sweep = response.json()
        ids = [r["run_id"] for r in sweep["runs"]]
        wait_for(lambda: live_system.http.get(live_system.url(f"/api/tunix/sweeps/{sweep['sweep_id']}"), timeout=10)
                 .json()["status"] == "finished", 60, message="dry trials done")
        conn = connect(live_system.database_url)
        try:
            with conn.cursor() as cur:
                for i, run_id in enumerate(ids):
                    cur.execute("INSERT INTO tunix_run_metrics (run_id, step, loss, attempt) "
                                "SELECT %s, s, %s + 5.0 / s, 1 FROM generate_series(1, 300) s", (run_id, 1 + i))
        finally:
            conn.close()
        return sweep["sweep_id"], ids

    return make
