"""Run a named query (``QUERIES``) on a connection, in one call: the
registry's modules (``tasks/registry/``) and the broker's consumer use these.

Rows come as dicts (``fetch_one``, ``fetch_all``) where callers read columns
by name, and as tuples where they unpack them or where the read is hot (a
heartbeat, the waiter's tick: a plain cursor builds no dict per row).
"""

import functools
import re

import psycopg2.errors
import psycopg2.extras
from psycopg2.extras import Json

from . import QUERIES

_PARAM = re.compile(r"%\((\w+)\)s")

#: A prepared statement gone stale: a migration changed the row it returns
#: ("cached plan must not change result type"), the session lost it, or
#: the session holds one this connection's record does not (a PREPARE of
#: several that failed part-way: prepared statements outlive a rollback).
_STALE = (psycopg2.errors.FeatureNotSupported, psycopg2.errors.InvalidSqlStatementName,
          psycopg2.errors.DuplicatePreparedStatement)


def jsonb(value):
    """``value`` as a jsonb parameter; None stays SQL NULL."""
    return None if value is None else Json(value)


def _sql(name):
    """A named query; a tuple of names is sent as one string (one round trip,
    and on an autocommit connection one implicit transaction)."""
    return QUERIES[name] if isinstance(name, str) else "\n".join(QUERIES[n] for n in name)


def fetch_one(conn, name, /, **params):
    """The first row as a dict, or None (of the last query, for several).
    A plain cursor's tuple zipped with the column names: RealDictCursor
    sets each column through a Python ``__setitem__`` (measured: ~45 us of
    CPU less for a whole ``tunix_runs`` row, two of which a run's claim and
    end return)."""
    with conn.cursor() as cur:
        cur.execute(_sql(name), params)
        return _one(cur)


def _one(cur):
    """The cursor's next row as a dict, or None."""
    row = cur.fetchone()
    return None if row is None else dict(zip([column[0] for column in cur.description], row))


@functools.cache
def _prepared(name):
    """``(PREPARE, EXECUTE)`` of a named query: its ``%(p)s``
    become ``$n`` (types inferred by the server), and ``EXECUTE`` passes them."""
    text = QUERIES[name]
    names = list(dict.fromkeys(_PARAM.findall(text)))
    body = _PARAM.sub(lambda m: f"${names.index(m.group(1)) + 1}", text).replace("%%", "%")
    statement = f"tunix_{name}"
    return (f"PREPARE {statement} AS {body}",
            f"EXECUTE {statement} (" + ", ".join(f"%({n})s" for n in names) + ")")


def fetch_one_prepared(conn, name, /, **params):
    """``fetch_one`` of a hot statement (or a tuple of them, sent as one
    string: one round trip and one implicit transaction), each prepared once
    per session: no parse or plan per call.  Measured on the submit (its
    statement inlines the admission rule's SQL functions): 1.22 ms a round
    trip with its commit instead of 0.69 ms; on a worker's claim and finish,
    which were parsed and planned at each call, PostgreSQL spent ~0.13 ms
    planning each (``pg_stat_statements``, README "What a run costs the
    database").  Only on an autocommit ``tasks.db.Connection`` (elsewhere,
    as ``fetch_one``): a statement gone stale (a migration added a column to
    the row it returns, or the session lost it) failed there without
    writing, so the session's statements are dropped and prepared again and
    the call made once more."""
    prepared = getattr(conn, "prepared", None)
    if prepared is None or not conn.autocommit:
        return fetch_one(conn, name, **params)
    with conn.cursor() as cur:
        _execute_prepared(cur, prepared, name, params)
        return _one(cur)


def execute_prepared(conn, name, /, **params):
    """``execute`` of a hot statement (or several), as ``fetch_one_prepared``
    prepares them; the rows the last one touched."""
    prepared = getattr(conn, "prepared", None)
    if prepared is None or not conn.autocommit:
        return execute(conn, name, **params)
    with conn.cursor() as cur:
        _execute_prepared(cur, prepared, name, params)
        return cur.rowcount


def _execute_prepared(cur, prepared, name, params):
    names = (name,) if isinstance(name, str) else name
    statement = _executes(names)
    try:
        _prepare(cur, prepared, names)
        cur.execute(statement, params)
    except _STALE:
        cur.execute("DEALLOCATE ALL")
        prepared.clear()
        _prepare(cur, prepared, names)
        cur.execute(statement, params)


@functools.cache
def _executes(names):
    return ";".join(_prepared(n)[1] for n in names)


def _prepare(cur, prepared, names):
    missing = [n for n in names if n not in prepared]
    if missing:
        cur.execute(";".join(_prepared(n)[0] for n in missing))
        prepared.update(missing)


def fetch_all(conn, name, /, **params):
    """Every row, as dicts."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(QUERIES[name], params)
        return cur.fetchall()


def fetch_tuples(conn, name, /, **params):
    """Every row, as tuples."""
    with conn.cursor() as cur:
        cur.execute(QUERIES[name], params)
        return cur.fetchall()


def fetch_value(conn, name, /, **params):
    """The first column of the first row, or None when no row returns."""
    with conn.cursor() as cur:
        cur.execute(QUERIES[name], params)
        row = cur.fetchone()
    return row[0] if row else None


def fetch_column(conn, name, /, **params):
    """The first column of every row, as a list."""
    with conn.cursor() as cur:
        cur.execute(QUERIES[name], params)
        return [row[0] for row in cur.fetchall()]


def execute(conn, name, /, **params):
    """Run the query (or several, as ``fetch_one``); the number of rows the last touched."""
    with conn.cursor() as cur:
        cur.execute(_sql(name), params)
        return cur.rowcount


def execute_values(conn, name, rows, /, *, template=None, page_size=None, fetch=False):
    """A batch query's ``VALUES %s`` filled with ``rows`` (psycopg2
    ``execute_values``), in one statement unless ``page_size`` says how many
    rows each takes; with ``fetch``, the returned rows as dicts."""
    factory = psycopg2.extras.RealDictCursor if fetch else None
    with conn.cursor(cursor_factory=factory) as cur:
        return psycopg2.extras.execute_values(cur, QUERIES[name], rows, template=template,
                                              page_size=page_size or len(rows) or 1, fetch=fetch)
