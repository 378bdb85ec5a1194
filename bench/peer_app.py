"""The peer's code: what a team would build instead of this platform.

Flask + Celery on Redis + a PostgreSQL run registry, doing what our async dry
run does.  The submit validates a small JSON body, INSERTs a pending run with
a durable commit and calls ``.delay(run_id)``; the Celery task marks the run
running, then completed, each its own durable commit.  Written as the common
recipe writes it: psycopg2's ``ThreadedConnectionPool`` of 16 connections (our
``DB_POOL_MAX``) in the API, one connection per Celery process, Celery's
defaults otherwise.  When more requests than 16 want a connection at once the
pool raises ``PoolError`` and the answer is a **500**, as it would be there.

``python -m bench load`` serves it with the API's gunicorn settings
(``bench.peer_app:create_app('redis://…')``, ``DATABASE_URL`` the peer's own
database) and runs ``celery -A bench.peer_app worker`` with 2 prefork
processes (``bench/celery_peer.py``).
"""

import os
import uuid

import psycopg2
import psycopg2.pool
from celery import Celery
from flask import Flask, jsonify, request
from psycopg2.extras import Json

#: The peer's registry, in a database of its own (``bench/celery_peer.py``
#: creates it).
SCHEMA = """
CREATE TABLE peer_runs (
    id uuid PRIMARY KEY,
    status text NOT NULL,
    config jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

#: Where the worker's broker is; ``create_app`` sets it for the API.
BROKER_ENV = "CELERY_PEER_BROKER"

celery = Celery("tunix_peer", broker=os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"))
# No result backend: the registry row is the result, as ours is.
celery.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                   broker_connection_retry_on_startup=True)

_conn = None


def _worker_connection():
    # One per Celery process, opened after the fork (a connection inherited
    # across fork would be shared by the children).
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg2.connect(os.environ["DATABASE_URL"], application_name="tunix-peer-worker")
    return _conn


def _set_status(run_id, status):
    conn = _worker_connection()
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE peer_runs SET status = %s, updated_at = clock_timestamp() WHERE id = %s",
                    (status, run_id))


@celery.task(name="peer.dry_run")
def dry_run(run_id):
    _set_status(run_id, "running")
    _set_status(run_id, "completed")


def create_app(broker):
    celery.conf.broker_url = broker
    pool = psycopg2.pool.ThreadedConnectionPool(1, 16, os.environ["DATABASE_URL"],
                                                application_name="tunix-peer-api")
    app = Flask(__name__)

    @app.errorhandler(psycopg2.pool.PoolError)
    def pool_exhausted(exc):
        # Still the 500 Flask would answer, without a traceback logged per
        # answer: the bench counts them and its output stays readable.
        return jsonify(error=str(exc)), 500

    @app.post("/api/tunix/run")
    def submit():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) and body[k]
                                                 for k in ("dataset_key", "model_id")):
            return jsonify(error="dataset_key and model_id are required strings"), 400
        run_id = str(uuid.uuid4())
        conn = pool.getconn()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("INSERT INTO peer_runs (id, status, config) VALUES (%s, 'pending', %s)",
                            (run_id, Json(body)))
        finally:
            pool.putconn(conn)
        dry_run.delay(run_id)
        return jsonify(run_id=run_id, status="pending"), 202

    return app
