"""A submit writes its run and its message in one transaction: the app in
this process (Flask's test client), the registry in real PostgreSQL."""

import pytest

import app.db as app_db
from app import create_app
from tasks import actors
from tasks.settings import Settings

from support import count_runs

BODY = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


@pytest.fixture
def client(registry_url, pool, monkeypatch):
    monkeypatch.delenv("API_TOKEN", raising=False)
    # The request connections come from this test's pool, on the integration database.
    monkeypatch.setattr(app_db, "get_pool", lambda: pool)
    app = create_app({"SETTINGS": Settings(database_url=registry_url), "SYNC_TIMEOUT_S": 5})
    yield app.test_client()
    waiter = app.extensions.get("tunix_waiter")
    if waiter is not None:
        waiter.stop()


@pytest.fixture
def broken_outbox(monkeypatch):
    # A message the queue refuses (its queue_name is NOT NULL).
    real = actors.outbox_rows
    monkeypatch.setattr(actors, "outbox_rows", lambda runs: [(None, mid, m) for _, mid, m in real(runs)])


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_run_whose_message_cannot_be_written_is_not_written_either(conn, client, broken_outbox, mode):
    # Given a message the database refuses
    # When a run is submitted
    response = client.post(f"/api/tunix/run?mode={mode}", json=BODY)
    # Then the API answers with an error
    assert response.status_code == 500, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "internal_error"
    # And the run was not written either: never pending without a message
    assert count_runs(conn) == 0


def test_a_submitted_run_is_pending_with_its_message_queued_in_the_same_commit(conn, client):
    # When a run is submitted
    response = client.post("/api/tunix/run?mode=async", json=BODY)
    # Then it is pending, and its message (id = run id) is queued
    assert response.status_code == 202
    run = response.get_json()
    assert run["status"] == "pending"
    with conn.cursor() as cur:
        cur.execute("SELECT queue_name, state::text, xmin::text = (SELECT xmin::text FROM tunix_runs WHERE id = %s) "
                    "FROM dramatiq.queue WHERE message_id = %s", (run["run_id"], run["run_id"]))
        # ... written by the run's own transaction (same xmin)
        assert cur.fetchall() == [("tunix-dry", "queued", True)]
    conn.rollback()
    assert count_runs(conn) == 1


def in_process_app(url, pool, monkeypatch):
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.setattr(app_db, "get_pool", lambda: pool)
    return create_app({"SETTINGS": Settings(database_url=url)}).test_client()


def test_readiness_is_503_until_every_migration_is_applied(databases, monkeypatch):
    from tasks import db, migrate

    # Given an API on a database nobody has migrated
    url = databases.create(migrated=False)
    pool = db.make_pool(url, 2)
    client = in_process_app(url, pool, monkeypatch)
    try:
        # When readiness is asked
        response = client.get("/readyz")
        # Then it is 503 naming the missing migrations, while liveness is fine
        assert response.status_code == 503
        error = response.get_json()["error"]
        assert error["code"] == "not_ready" and "0001_dramatiq_queue" in error["message"]
        assert client.get("/healthz").status_code == 200
        # When the database is migrated
        migrate.migrate(url)
        # Then it is ready
        assert client.get("/readyz").get_json() == {"status": "ready"}
    finally:
        pool.closeall()


def test_an_unreachable_database_is_503_in_the_error_shape(monkeypatch):
    from tasks import db

    from support import free_port

    # Given an API whose database does not answer
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    pool = db.make_pool(url, 2)
    client = in_process_app(url, pool, monkeypatch)
    # When runs are listed, submitted, or readiness asked
    for response in (client.get("/api/tunix/runs"), client.post("/api/tunix/run?mode=async", json=BODY),
                     client.get("/readyz")):
        # Then each answers 503 with the error shape and a Retry-After
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.headers["Retry-After"]
        error = response.get_json()["error"]
        assert error["code"] in ("database_unavailable", "not_ready")
        assert error["message"]
