"""What the API does when the broker cannot take a committed run: the app
in this process (Flask's test client), the registry in real PostgreSQL."""

import pytest

import app.db as app_db
from app import create_app
from tasks import actors, registry
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
def broken_broker(monkeypatch):
    def publish(run_id, dry_run):
        raise ConnectionError("broker down")

    monkeypatch.setattr(actors, "publish", publish)


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_run_that_cannot_be_published_is_failed_not_left_pending(conn, client, broken_broker, mode):
    # Given a broker that refuses every message
    # When a run is submitted
    response = client.post(f"/api/tunix/run?mode={mode}", json=BODY)
    # Then the API answers 503 publish_failed, asking to retry later
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    error = response.get_json()["error"]
    assert error["code"] == "publish_failed"
    assert "broker down" in error["message"]
    # And the committed run is failed with the reason, never left pending without a message
    rows, total = registry.list_runs(conn, limit=10, offset=0)
    assert total == 1
    assert rows[0]["status"] == "failed"
    assert rows[0]["mode"] == mode
    assert rows[0]["error"]["type"] == "PublishFailed"
    assert "broker down" in rows[0]["error"]["message"]


def test_a_published_async_run_is_pending_with_its_message_queued(conn, client, monkeypatch):
    # Given a broker that accepts messages (recorded here instead of sent)
    sent = []
    monkeypatch.setattr(actors, "publish", lambda run_id, dry_run: sent.append((run_id, dry_run)))
    # When a run is submitted
    response = client.post("/api/tunix/run?mode=async", json=BODY)
    # Then it is pending, published once under its own id
    assert response.status_code == 202
    run = response.get_json()
    assert run["status"] == "pending"
    assert [(str(r), d) for r, d in sent] == [(run["run_id"], True)]
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
