"""``tasks.db.BlockingPool``: more threads than connections wait, never fail."""

import threading
import time

import pytest
from psycopg2.pool import PoolError, ThreadedConnectionPool

from tasks import db
from tasks.errors import DatabaseUnavailable, Overloaded

from support import free_port

THREADS = 32
MAXCONN = 4
ROUNDS = 5


def hammer(pool, threads=THREADS, rounds=ROUNDS):
    """Every thread borrows a connection `rounds` times; returns (errors, peak concurrent)."""
    errors, lock = [], threading.Lock()
    state = {"out": 0, "peak": 0}
    barrier = threading.Barrier(threads)

    def work():
        barrier.wait()
        for _ in range(rounds):
            try:
                conn = pool.getconn()
            except Exception as exc:  # noqa: BLE001 - collected and asserted on
                errors.append(exc)
                continue
            with lock:
                state["out"] += 1
                state["peak"] = max(state["peak"], state["out"])
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_sleep(0.005)")
                conn.rollback()
            finally:
                with lock:
                    state["out"] -= 1
                pool.putconn(conn)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    return errors, state["peak"]


def test_thirty_two_threads_on_four_connections_all_get_one_in_turn(registry_url):
    # Given a blocking pool of 4 connections
    pool = db.make_pool(registry_url, MAXCONN)
    try:
        # When 32 threads borrow connections as fast as they can
        errors, peak = hammer(pool)
        # Then none fails, and never more than 4 are out at once
        assert errors == []
        assert peak <= MAXCONN
        assert len(pool._used) == 0
    finally:
        pool.closeall()


def test_psycopg2s_own_pool_fails_under_the_same_load(registry_url):
    # Given psycopg2's pool with the same bound (what BlockingPool fixes)
    pool = ThreadedConnectionPool(0, MAXCONN, **db.connect_kwargs(registry_url))
    try:
        # When the same 32 threads hammer it
        errors, _ = hammer(pool)
        # Then some of them get PoolError at once
        assert errors and all(isinstance(e, PoolError) for e in errors)
    finally:
        pool.closeall()


def held_elsewhere(pool):
    """Take a connection of ``pool`` in another thread; returns (conn, give_back())."""
    box = []
    t = threading.Thread(target=lambda: box.append(pool.getconn()))
    t.start()
    t.join(10)
    return box[0], lambda: pool.putconn(box[0])


def test_a_thread_gives_up_after_the_pool_wait_as_overloaded(registry_url):
    # Given a pool whose one connection another thread holds, and a short wait
    pool = db.make_pool(registry_url, 1, wait_s=0.2)
    _, give_back = held_elsewhere(pool)
    try:
        # When this thread asks for one
        started = time.monotonic()
        with pytest.raises(PoolError, match="no free connection"):
            pool.getconn()
        # Then it waited, then failed
        assert 0.15 < time.monotonic() - started < 5
        # And `connection()` turns that into Overloaded (503, retry soon), not an outage
        with pytest.raises(Overloaded):
            with db.connection(pool):
                pass
    finally:
        give_back()
        pool.closeall()


def test_a_thread_that_holds_a_connection_is_refused_a_second_at_once(registry_url):
    # Given a pool with free connections, and a thread holding one of them
    pool = db.make_pool(registry_url, 4, wait_s=30)
    held = pool.getconn()
    try:
        # When the same thread asks for another
        started = time.monotonic()
        with pytest.raises(db.NestedConnection):
            with db.connection(pool):
                pass
        # Then it is refused at once (under load this is the deadlock of
        # every request holding one connection and waiting for a second)
        assert time.monotonic() - started < 1
        # And once it gave its connection back, it may take one again
        pool.putconn(held)
        held = None
        with db.connection(pool) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        if held is not None:
            pool.putconn(held)
        pool.closeall()


def test_a_pool_of_one_serves_many_threads_that_each_take_one_connection(registry_url):
    # Given a pool of one connection and 16 threads using it in turn
    pool = db.make_pool(registry_url, 1, wait_s=30)
    try:
        errors, peak = hammer(pool, threads=16, rounds=5)
        # Then none fails and never more than one is out
        assert errors == [] and peak == 1
    finally:
        pool.closeall()


def test_a_connection_taken_the_moment_it_is_given_back_leaves_both_threads_books_right(registry_url,
                                                                                       monkeypatch):
    # Given a pool of two, and another thread that takes the connection the
    # instant psycopg2's pool has it back (before putconn has returned): it
    # has a free slot of its own, and psycopg2 hands it the idle connection
    pool = db.make_pool(registry_url, 2, wait_s=2)
    taken = []
    real_putconn = ThreadedConnectionPool.putconn

    def putconn_then_someone_takes_it(self, conn, key=None, close=False):
        real_putconn(self, conn, key, close)
        if not taken:
            t = threading.Thread(target=lambda: taken.append(pool.getconn()))
            t.start()
            t.join(5)

    monkeypatch.setattr(ThreadedConnectionPool, "putconn", putconn_then_someone_takes_it)
    try:
        # When this thread gives its connection back, and the other thread later too
        mine = pool.getconn()
        pool.putconn(mine)
        assert taken and taken[0] is mine, "the other thread did not get the same connection"
        pool.putconn(taken[0])
        # Then nobody is left holding anything, and the slot is free
        assert dict(pool._holders) == {} and pool._held == {}
        with db.connection(pool) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        pool.closeall()


def test_the_consumers_pool_lets_a_thread_keep_two(registry_url):
    # Given a pool made for consumers (each keeps a consume and a listen connection)
    pool = db.make_pool(registry_url, 2, exclusive=False)
    try:
        first, second = pool.getconn(), pool.getconn()
        assert first is not second
        pool.putconn(first)
        pool.putconn(second)
    finally:
        pool.closeall()


def test_a_broken_connection_is_dropped_and_its_slot_freed(registry_url):
    # Given a pool of one whose connection dies while out
    pool = db.make_pool(registry_url, 1)
    try:
        conn = pool.getconn()
        conn.close()
        # When it is given back
        pool.putconn(conn)
        # Then the next borrower gets a fresh, working connection at once
        fresh = pool.getconn()
        assert fresh is not conn and not fresh.closed
        with fresh.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        pool.putconn(fresh)
    finally:
        pool.closeall()


def test_a_disconnect_inside_a_transaction_is_database_unavailable_and_frees_the_slot(registry_url):
    # Given a pool of one
    pool = db.make_pool(registry_url, 1)
    try:
        # When the server ends the session mid-transaction
        with pytest.raises(DatabaseUnavailable):
            with db.connection(pool) as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        # Then the slot is free again and the next transaction works
        with db.connection(pool) as conn, conn.cursor() as cur:
            cur.execute("SELECT 2")
            assert cur.fetchone() == (2,)
    finally:
        pool.closeall()


def test_a_read_only_answer_is_database_unavailable_and_drops_the_pools_connections(registry_url):
    # Given a pool of two whose connections are both open, one of them on a
    # server that has turned read-only (a demoted primary)
    pool = db.make_pool(registry_url, 2)
    try:
        # (a thread holds one connection at a time: another opens the idle one)
        opened = []
        thread = threading.Thread(target=lambda: opened.append(pool.getconn()))
        thread.start()
        thread.join()
        pool.putconn(opened[0])  # now idle in the pool
        # When a write on the other is refused as read-only
        with pytest.raises(DatabaseUnavailable, match="read-only"):
            with db.connection(pool) as conn, conn.cursor() as cur:
                cur.execute("SET default_transaction_read_only = on")
                conn.commit()
                cur.execute("CREATE TABLE tunix_never (x int)")
        # Then that connection and the idle one are closed, not handed out again
        assert conn.closed and opened[0].closed
        with db.connection(pool) as fresh, fresh.cursor() as cur:
            cur.execute("SELECT 3")
            assert cur.fetchone() == (3,) and fresh is not conn and fresh is not opened[0]
    finally:
        pool.closeall()


def test_an_unreachable_server_is_database_unavailable_quickly():
    # Given a pool on a port where nothing listens
    pool = db.make_pool(f"postgresql://nobody@127.0.0.1:{free_port()}/none", 2)
    started = time.monotonic()
    # Then each use fails as DatabaseUnavailable at once: no retrying, and no
    # leaked slot (a third try on a pool of two would wait POOL_WAIT_S)
    for _ in range(3):
        with pytest.raises(DatabaseUnavailable):
            db.ping(pool)
    assert time.monotonic() - started < 5
