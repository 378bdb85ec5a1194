"""What a hostile or unlucky request meets before it costs the API anything:
nesting past a depth, a statement past ``DB_STATEMENT_TIMEOUT_S``, a
database that answers read-only.  The app in this process, on the
integration database, with the pool the broker makes in production."""

import json

import psycopg2
import pytest

import app.db as app_db
from app import create_app
from app.parse import MAX_JSON_DEPTH
from tasks import db
from tasks.broker import make_broker
from tasks.settings import Settings

from support import count_runs

BODY = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


@pytest.fixture
def broker_pool(registry_url, tmp_path):
    settings = Settings(database_url=registry_url, data_dir=str(tmp_path), db_statement_timeout_s=0.3)
    broker = make_broker(settings)
    yield settings, broker.pool
    broker.pool.closeall()
    broker.consumer_pool.closeall()


@pytest.fixture
def client(broker_pool, monkeypatch):
    settings, pool = broker_pool
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.setattr(app_db, "get_pool", lambda: pool)
    return create_app({"SETTINGS": settings, "SYNC_TIMEOUT_S": 5}).test_client()


def nested(depth):
    """A submit body nested exactly ``depth`` levels (objects in objects)."""
    inner = {"a": 1}
    for _ in range(depth - 2):
        inner = {"a": inner}
    return dict(BODY, config=inner)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 5000 + "1" + "}" * 5000,
                                  json.dumps(nested(MAX_JSON_DEPTH + 1))])
def test_json_nested_past_the_depth_is_a_400_that_writes_nothing(conn, client, text):
    response = client.post("/api/tunix/run?mode=async", data=text, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] == "json_too_deep" and str(MAX_JSON_DEPTH) in error["message"]
    assert count_runs(conn) == 0


def test_json_at_the_depth_is_parsed_as_usual(conn, client):
    # At the limit the body is parsed, and refused for its fields, not its shape
    response = client.post("/api/tunix/run?mode=async", data=json.dumps(nested(MAX_JSON_DEPTH)),
                           content_type="application/json")
    assert response.status_code == 422, response.get_data(as_text=True)[:300]


def test_a_statement_past_the_timeout_is_a_503_with_retry_after_and_the_next_request_works(conn, client):
    # Given a run whose row another session holds locked
    run_id = client.post("/api/tunix/run?mode=async", json=BODY).get_json()["run_id"]
    holder = psycopg2.connect(conn.dsn)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM tunix_runs WHERE id = %s FOR UPDATE", (run_id,))
        # When a request's statement waits on it past DB_STATEMENT_TIMEOUT_S (0.3 s)
        response = client.patch(f"/api/tunix/runs/{run_id}", json={"notes": "blocked"})
        # Then it is a 503 that says why, with Retry-After, not a request hanging
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == "database_timeout"
        assert response.headers["Retry-After"]
    finally:
        holder.rollback()
        holder.close()
    # And once the lock is gone the same request succeeds
    response = client.patch(f"/api/tunix/runs/{run_id}", json={"notes": "unblocked"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert client.get(f"/api/tunix/runs/{run_id}").get_json()["notes"] == "unblocked"


def test_a_read_only_database_is_a_503_that_writes_nothing_and_its_connection_is_dropped(conn, client,
                                                                                          broker_pool, monkeypatch):
    _, pool = broker_pool
    # Given pooled connections that the server answers read-only (a demoted primary)
    real_getconn = pool.getconn
    given = []

    def read_only_getconn(*args, **kwargs):
        c = real_getconn(*args, **kwargs)
        if not given:
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute("SET default_transaction_read_only = on")
            c.autocommit = False
        given.append(c)
        return c

    monkeypatch.setattr(pool, "getconn", read_only_getconn)
    # When a run is submitted on it
    response = client.post("/api/tunix/run?mode=async", json=BODY)
    # Then the answer is a 503 naming the cause, with Retry-After; nothing is written
    assert response.status_code == 503, response.get_data(as_text=True)
    assert "read-only" in response.get_json()["error"]["message"] and response.headers["Retry-After"]
    assert count_runs(conn) == 0
    # And that connection was dropped, not handed to the next request, which succeeds
    assert given[0].closed
    response = client.post("/api/tunix/run?mode=async", json=BODY)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert given[-1] is not given[0] and count_runs(conn) == 1


def test_every_pooled_connection_carries_the_statement_timeout(broker_pool):
    _, pool = broker_pool
    with db.connection(pool) as c, c.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] == "300ms"


def test_a_refused_token_never_takes_an_api_slot(make_client, settings, monkeypatch):
    from app import request_slots

    # Given one API slot, counted as it is taken, and an API_TOKEN
    taken = []
    slots = request_slots.FairSlots(1)
    real_acquire = slots.acquire

    def acquire(timeout):
        taken.append(timeout)
        return real_acquire(timeout)

    monkeypatch.setattr(slots, "acquire", acquire)
    monkeypatch.setattr(request_slots, "_get_slots", lambda: slots)
    client = make_client(SETTINGS=settings.replace(api_token="tnx_operator", api_active=1))
    # When 20 submits come with no token or a wrong one
    for headers in ({}, {"Authorization": "Bearer wrong"}) * 10:
        assert client.post("/api/tunix/run?mode=async", json=BODY, headers=headers).status_code == 401
    # Then none took the slot (an anonymous flood cannot starve the API); a good token's submit does
    assert taken == []
    good = client.post("/api/tunix/run?mode=async", json=BODY, headers={"Authorization": "Bearer tnx_operator"})
    assert good.status_code == 202 and len(taken) == 1
