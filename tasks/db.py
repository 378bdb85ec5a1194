"""PostgreSQL connections: one bounded pool per process.

The broker (dramatiq-pg), the registry and the API share it, so a process
never holds more than ``maxconn`` connections whatever its thread count.
"""

import contextlib
import logging
import threading
import time
from urllib.parse import parse_qsl, urlparse

import psycopg2
import psycopg2.extras
from psycopg2.pool import PoolError, ThreadedConnectionPool

from .errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

#: Seconds a thread waits for a free connection before giving up.
POOL_WAIT_S = 30

#: Errors that mean "the server or the link is gone", not "the query is wrong".
DISCONNECTS = (psycopg2.OperationalError, psycopg2.InterfaceError)

psycopg2.extras.register_uuid()


class BlockingPool(ThreadedConnectionPool):
    """A pool whose ``getconn`` waits for a free connection.

    psycopg2's pool raises ``PoolError`` at once when all ``maxconn``
    connections are out: measured with dramatiq-pg, more worker threads than
    connections made acks fail and left messages stuck in ``consumed``.
    Here a thread waits its turn instead.
    """

    def __init__(self, minconn, maxconn, *args, **kwargs):
        super().__init__(minconn, maxconn, *args, **kwargs)
        self._slots = threading.BoundedSemaphore(maxconn)
        self._held = {}

    def getconn(self, key=None):
        if not self._slots.acquire(timeout=POOL_WAIT_S):
            raise PoolError(f"no free connection within {POOL_WAIT_S}s (maxconn={self.maxconn})")
        try:
            conn = super().getconn(key)
        except BaseException:
            self._slots.release()
            raise
        self._held[id(conn)] = True
        return conn

    def putconn(self, conn, key=None, close=False):
        # Broken connections are dropped, not handed to the next thread.
        broken = close or bool(conn.closed)
        try:
            super().putconn(conn, key=key, close=broken)
        finally:
            if self._held.pop(id(conn), None):
                self._slots.release()
        if broken:
            self.discard_idle()

    def set_application_name(self, name):
        """Name the connections opened from now on (``pg_stat_activity``):
        the reaper recognises a silent worker's sessions by it."""
        self._kwargs["application_name"] = name[:63]  # PostgreSQL truncates to 63 bytes

    def discard_idle(self):
        """Close every idle connection: after one broke (a server restart,
        a failover) the others are most likely broken too, and each would
        fail one request before being noticed."""
        with self._lock:
            idle, self._pool = self._pool, []
        for conn in idle:
            try:
                conn.close()
            except Exception:
                pass


def connect_kwargs(url):
    """psycopg2 keyword arguments for ``url``; query parameters become keywords."""
    parts = urlparse(url)
    kwargs = dict(parse_qsl(parts.query))
    kwargs["dsn"] = parts._replace(query="").geturl()
    # Dead servers are noticed in seconds, not after TCP's default hours.
    kwargs.setdefault("connect_timeout", "5")
    kwargs.setdefault("keepalives", "1")
    kwargs.setdefault("keepalives_idle", "5")
    kwargs.setdefault("keepalives_interval", "2")
    kwargs.setdefault("keepalives_count", "2")
    return kwargs


def make_pool(url, maxconn, application_name="tunix-rt"):
    kwargs = connect_kwargs(url)
    kwargs.setdefault("application_name", application_name)
    pool = BlockingPool(0, maxconn, **kwargs)
    # dramatiq-pg's pool_sanitizer reads this after a disconnect.
    pool.minconn = maxconn
    return pool


def connect(url, **extra):
    kwargs = connect_kwargs(url)
    kwargs.update(extra)
    return psycopg2.connect(**kwargs)


@contextlib.contextmanager
def connection(pool):
    """A pooled connection for one transaction; committed on success.

    Raises:
      DatabaseUnavailable: when the server cannot be reached.
    """
    try:
        conn = pool.getconn()
    except (PoolError, *DISCONNECTS) as exc:
        raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
    try:
        with conn:
            yield conn
    except DISCONNECTS as exc:
        pool.putconn(conn, close=True)
        raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
    except BaseException:
        pool.putconn(conn)
        raise
    else:
        pool.putconn(conn)


def patiently(fn, patience_s, first_delay_s=0.25, max_delay_s=5.0):
    """``fn()``, tried again while the database is unavailable, for up to
    ``patience_s`` seconds (exponential back-off); then its last error.

    For writes that must not be lost to a short outage: a worker's final
    status, the last lines of a training's log.
    """
    deadline = time.monotonic() + patience_s
    delay = first_delay_s
    while True:
        try:
            return fn()
        except DatabaseUnavailable:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("database unavailable; trying again in %.2fs", delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)


def ping(pool):
    with connection(pool) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
