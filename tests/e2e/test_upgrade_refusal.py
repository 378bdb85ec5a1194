"""Two versions and one schema: a process started on a database that newer
code migrated further refuses to start and says why (``tasks/migrate.py``):
a worker launch and `make run` exit 2, the API will not start while the
database answers, and a running API's ``/readyz`` stays 200 naming the
migration.  With ``AUTO_MIGRATE=0`` a worker launch migrates nothing and
names what is pending."""

import os
import subprocess
import sys

import pytest
import requests

from tasks.sql import migrations
from workers import processes

from support import ROOT, connect, free_port, process_env, scalar, start_api

NEWER = "9999_from_a_newer_version"


def ahead(url):
    """Record on ``url`` a migration this code does not know, as newer code would."""
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tunix_schema_migrations (version, name, checksum) VALUES (9999, %s, 'x')", (NEWER,))
    conn.close()


def run(cmd, url, data_dir, **env):
    """``cmd`` to its end with the environment a service gets; (status, output)."""
    done = subprocess.run(cmd, env=process_env(url, data_dir, **env), cwd=str(ROOT), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=90)
    return done.returncode, done.stdout


@pytest.mark.parametrize("auto_migrate", ["1", "0"])
def test_a_worker_launch_on_a_database_ahead_of_its_code_exits_2_and_says_why(databases, tmp_path, auto_migrate):
    # Given a database that a newer version migrated further
    url = databases.create()
    ahead(url)
    # When a worker launch starts on it, with AUTO_MIGRATE on or off
    code, output = run(processes.workers_command(), url, tmp_path, WORKERS=1, WORKER_THREADS=1,
                       METRICS_PORT=free_port(), METRICS_ADDR="127.0.0.1", AUTO_MIGRATE=auto_migrate)
    # Then it exits 2, saying which migration and what to do, and started no worker process
    assert code == 2, output
    assert (f"database has migration {NEWER} that this code does not know: upgrade this worker "
            f"(code knows up to {migrations()[-1].name})") in output
    assert "starting" not in output


def test_a_worker_launch_without_auto_migrate_applies_nothing_and_names_the_pending_migrations(databases, tmp_path):
    # Given a database one migration behind this code
    url = databases.create()
    last = migrations()[-1]
    conn = connect(url)
    scalar(conn, "DELETE FROM tunix_schema_migrations WHERE version = %s RETURNING version", (last.version,))
    # When a worker launch starts with AUTO_MIGRATE=0
    code, output = run(processes.workers_command(), url, tmp_path, WORKERS=1, WORKER_THREADS=1,
                       METRICS_PORT=free_port(), METRICS_ADDR="127.0.0.1", AUTO_MIGRATE="0")
    # Then it exits 2 naming it, and the migration is still pending
    assert code == 2, output
    assert f"migrations not applied: {last.name}" in output
    assert scalar(conn, "SELECT count(*) FROM tunix_schema_migrations WHERE version = %s", (last.version,)) == 0
    conn.close()


def test_make_run_on_a_database_ahead_of_its_code_exits_2_and_says_why(databases, tmp_path):
    url = databases.create()
    ahead(url)
    code, output = run([sys.executable, "-m", "workers.stack"], url, tmp_path, PORT=free_port(),
                       METRICS_PORT=free_port())
    assert code == 2, output
    assert f"database has migration {NEWER} that this code does not know: upgrade this checkout" in output


def test_a_running_api_stays_ready_once_the_database_is_ahead_and_a_new_one_refuses_to_start(
        databases, tmp_path, log_dir):
    # Given an API serving a current database
    url = databases.create()
    api = start_api(url, tmp_path, log_dir, threads=4)
    try:
        assert requests.get(api.url + "/readyz", timeout=10).status_code == 200
        # When a newer version migrates the database further (a rolling upgrade's hook)
        ahead(url)
        # Then it keeps serving until it is replaced: ready, and saying why it should be
        response = requests.get(api.url + "/readyz", timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["migrations"] == "ahead"
        assert f"database has migration {NEWER} that this code does not know: upgrade this API" in body["warning"]
        assert requests.get(api.url + "/healthz", timeout=10).status_code == 200
    finally:
        api.stop()
    # And an API started on that database refuses to start, saying why
    code, output = run(processes.api_command(free_port(), 2), url, tmp_path)
    assert code != 0
    assert f"refusing to start: database has migration {NEWER} that this code does not know" in output


def test_an_api_whose_database_does_not_answer_starts_unready_rather_than_refusing(tmp_path, log_dir):
    # Given no server where DATABASE_URL points
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    # When the API starts
    api = processes.start_api(process_env(url, tmp_path), os.path.join(log_dir, "api-no-database.log"), threads=4,
                              wait=False)
    try:
        # Then it serves: alive, and not ready because of the database
        processes.api_ready(api, path="/healthz")
        response = requests.get(api.url + "/readyz", timeout=10)
        assert response.status_code == 503
        assert "database unavailable" in response.json()["error"]["message"]
    finally:
        api.stop()
