"""PostgreSQL connections: one bounded pool per process.

The broker (dramatiq-pg), the registry and the API share it, so a process
never holds more than ``maxconn`` connections whatever its thread count.

A thread holds at most one connection of the pool at a time: a thread that
holds one and asks for another gets ``NestedConnection`` at once.  Measured
before this rule: a submit held its request's connection while the broker's
enqueue asked the same pool for a second, and 32 concurrent submits on a
pool of 16 waited for each other until the pool's time-out (110 time-outs
in 3 minutes, 0.6 accepted submits/s).  With one connection per thread, any
pool size serves any number of threads: they only wait their turn.
"""

import contextlib
import logging
import sys
import threading
import time
from collections import Counter
from urllib.parse import parse_qsl, urlparse

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
from psycopg2.pool import PoolError, ThreadedConnectionPool

from .errors import DatabaseUnavailable, Overloaded

logger = logging.getLogger(__name__)

#: Seconds a thread waits for a free connection before giving up, unless the
#: pool is made with another (``DB_POOL_WAIT_S``).
POOL_WAIT_S = 30

#: The server answers but will not write: a read-only or demoted primary, a
#: failover under way (SQLSTATE 25006).  psycopg2 raises it as an
#: ``InternalError``, which is no disconnect; before it was one, 8 s of
#: ``default_transaction_read_only`` under steady submits answered 38 valid
#: submits 500, and a worker's final write was not retried (the training
#: would have stayed ``running`` and been trained again).
READ_ONLY = psycopg2.errors.ReadOnlySqlTransaction

#: A statement past ``statement_timeout`` (``DB_STATEMENT_TIMEOUT_S``): an
#: ``OperationalError``, so an outage like the others (503, retried).
STATEMENT_TIMEOUT = psycopg2.errors.QueryCanceled

#: Errors that mean "the server or the link is gone, or cannot write now",
#: not "the query is wrong": the call is an outage (503, retried patiently)
#: and the connection is dropped, with the pool's idle ones (after a
#: failover they all lead to the old primary).
DISCONNECTS = (psycopg2.OperationalError, psycopg2.InterfaceError, READ_ONLY)

#: What a write that must outlive a short outage waits out
#: (``retrying.patiently(fn, patience_s, db.UNAVAILABLE)``): the server gone,
#: or no connection of the pool free in time.
UNAVAILABLE = (DatabaseUnavailable, Overloaded)

psycopg2.extras.register_uuid()


class NestedConnection(RuntimeError):
    """A thread that holds a connection of a pool asked it for another: a
    programming error, which under load would deadlock (see module doc)."""


class Connection(psycopg2.extensions.connection):
    """A connection that can defer work until its transaction commits.

    ``after_commit(fn)`` runs ``fn`` once the transaction it was called in
    commits (at once in autocommit mode: the statement before it has), and
    never if it rolls back: a counter of status changes
    (``tunix_runs_total``) then counts what the registry holds, not a write
    an outage undid and ``patiently`` made again.  ``with conn:`` calls these
    ``commit``/``rollback`` too.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._after_commit = []
        #: Names of the queries this session has prepared (``tasks.sql.cursor.fetch_one_prepared``).
        self.prepared = set()

    def after_commit(self, fn):
        if self.autocommit:
            fn()
        else:
            self._after_commit.append(fn)

    def commit(self):
        super().commit()
        done, self._after_commit = self._after_commit, []
        for fn in done:
            try:
                fn()
            except Exception:  # the commit stands; a callback's failure must not undo its answer
                logger.exception("after-commit callback %r failed", fn)

    def rollback(self):
        self._after_commit = []
        super().rollback()


def after_commit(conn, fn):
    """``conn.after_commit(fn)``; a plain psycopg2 connection (a test's, a
    tool's) runs ``fn`` at once."""
    if isinstance(conn, Connection):
        conn.after_commit(fn)
    else:
        fn()


class PoolTimeout(PoolError):
    """No connection became free within the pool's wait."""


def _callers(depth=6):
    """Where a connection was taken, cheaply (a few microseconds): for the
    NestedConnection message."""
    frame, names = sys._getframe(2), []
    while frame is not None and len(names) < depth:
        names.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return " < ".join(names)


class BlockingPool(ThreadedConnectionPool):
    """A pool whose ``getconn`` waits, a bounded time, for a free connection.

    psycopg2's pool raises ``PoolError`` at once when all ``maxconn``
    connections are out: measured with dramatiq-pg, more worker threads than
    connections made acks fail and left messages stuck in ``consumed``.
    Here a thread waits its turn instead, up to ``wait_s``; then
    ``PoolTimeout`` (the API answers 503 with ``Retry-After``).

    ``exclusive``: a thread may hold one connection at a time (module doc).
    Only the consumers' pool, whose threads each keep two connections for
    good, is made without it.
    """

    def __init__(self, minconn, maxconn, *args, wait_s=POOL_WAIT_S, exclusive=True, **kwargs):
        super().__init__(minconn, maxconn, *args, **kwargs)
        self.wait_s = wait_s
        self.exclusive = exclusive
        self._slots = threading.BoundedSemaphore(maxconn)
        #: id(conn) -> the thread that took it.
        self._held = {}
        #: thread ident -> connections it holds, and where it took the last.
        self._holders = Counter()
        self._where = {}
        self._held_lock = threading.Lock()

    def getconn(self, key=None):
        me = threading.get_ident()
        if self.exclusive and self._holders.get(me):
            raise NestedConnection("this thread already holds a connection of this pool (taken in "
                                   f"{self._where.get(me)}); asking for a second one deadlocks under load")
        from .metrics import POOL_TIMEOUTS, POOL_WAIT

        start = time.perf_counter()
        if not self._slots.acquire(timeout=self.wait_s):
            POOL_TIMEOUTS.inc()
            raise PoolTimeout(f"no free connection within {self.wait_s}s (maxconn={self.maxconn})")
        POOL_WAIT.observe(time.perf_counter() - start)
        try:
            conn = super().getconn(key)
        except BaseException:
            self._slots.release()
            raise
        with self._held_lock:
            self._held[id(conn)] = me
            self._holders[me] += 1
            self._where[me] = _callers()
        return conn

    def putconn(self, conn, key=None, close=False):
        # Broken connections are dropped, not handed to the next thread.
        broken = close or bool(conn.closed)
        if isinstance(conn, Connection):
            conn._after_commit = []  # nothing committed them: the next holder must not run them
        # The books first: once psycopg2 has the connection back another
        # thread may take it at once, and a pop after that took the other
        # thread's entry (measured: under 64 clients a thread was left
        # "holding" a connection it had given back, and every later request
        # on it failed; before the per-thread count, a slot was lost instead).
        with self._held_lock:
            holder = self._held.pop(id(conn), None)
            if holder is not None:
                self._holders[holder] -= 1
                if not self._holders[holder]:
                    del self._holders[holder]
                    self._where.pop(holder, None)
        try:
            super().putconn(conn, key=key, close=broken)
        finally:
            if holder is not None:
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


def make_pool(url, maxconn, application_name="tunix-rt", wait_s=POOL_WAIT_S, exclusive=True, options=None):
    kwargs = connect_kwargs(url)
    kwargs.setdefault("application_name", application_name)
    kwargs.setdefault("connection_factory", Connection)
    if options:
        kwargs["options"] = " ".join(filter(None, [kwargs.get("options"), options]))
    pool = BlockingPool(0, maxconn, wait_s=wait_s, exclusive=exclusive, **kwargs)
    # dramatiq-pg's pool_sanitizer reads this after a disconnect.
    pool.minconn = maxconn
    return pool


def connect(url, **extra):
    kwargs = connect_kwargs(url)
    kwargs.setdefault("connection_factory", Connection)
    kwargs.update(extra)
    return psycopg2.connect(**kwargs)


@contextlib.contextmanager
def connection(pool):
    """A pooled connection for one transaction; committed on success.

    Raises:
      Overloaded: no connection of the pool became free in time.
      DatabaseUnavailable: when the server cannot be reached.
    """
    conn = getconn(pool)
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


@contextlib.contextmanager
def autocommit(pool):
    """A pooled connection on which each statement commits as it runs: for
    work that is one writing statement (a claim), without the BEGIN and
    COMMIT round trips of ``connection``.  Same errors as ``connection``."""
    conn = getconn(pool)
    close = False
    try:
        conn.autocommit = True
        yield conn
    except DISCONNECTS as exc:
        close = True
        raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
    finally:
        if not close and not conn.closed:
            conn.autocommit = False  # the pool's other users expect transactions
        pool.putconn(conn, close=close)


def getconn(pool):
    """``pool.getconn()``, its failures as the platform's errors.

    Raises:
      Overloaded: no connection of the pool became free in time.
      DatabaseUnavailable: when the server cannot be reached.
    """
    try:
        return pool.getconn()
    except PoolTimeout as exc:
        raise Overloaded(f"server busy: {exc}") from exc
    except (PoolError, *DISCONNECTS) as exc:
        raise DatabaseUnavailable(f"database unavailable: {exc}") from exc


def ping(pool):
    with connection(pool) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
