"""The integration tier: real PostgreSQL, no API or worker process.

It gets its own database, apart from the end-to-end tier's (whose worker
launch and reaper act on every pending run and queued message they see).
"""

import pytest

import app.db as app_db
from app import create_app
from tasks import db
from tasks.settings import Settings

from support import connect, truncate


@pytest.fixture(scope="session")
def registry_url(databases):
    """A migrated database for the integration tier."""
    return databases.create()


@pytest.fixture
def conn(registry_url):
    """An autocommit connection to an empty registry (no runs, no messages)."""
    conn = connect(registry_url)
    truncate(conn)
    yield conn
    conn.close()


@pytest.fixture
def pool(registry_url):
    """A small blocking pool on the integration database."""
    pool = db.make_pool(registry_url, 8)
    yield pool
    pool.closeall()


@pytest.fixture
def consumer_pool(registry_url):
    """A pool for consumers, which keep two connections each (tasks/broker.py)."""
    pool = db.make_pool(registry_url, 6, exclusive=False)
    yield pool
    pool.closeall()


@pytest.fixture
def tx(registry_url):
    """A connection to an empty registry, for tests that commit their own
    transactions (``with tx:``), as the API and the workers do."""
    conn = db.connect(registry_url)
    conn.autocommit = True
    truncate(conn)
    conn.autocommit = False
    yield conn
    conn.close()


@pytest.fixture
def settings(registry_url, tmp_path):
    """The settings of an app on the integration database."""
    return Settings(database_url=registry_url, data_dir=str(tmp_path))


@pytest.fixture
def make_client(settings, pool, monkeypatch):
    """Factory: ``make_client(**config)`` is the app in this process (Flask's
    test client) on the integration database, open (no ``API_TOKEN``)."""
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.setattr(app_db, "get_pool", lambda: pool)

    def make(**config):
        return create_app({"SETTINGS": settings, **config}).test_client()

    return make
