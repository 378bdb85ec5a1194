"""Request slots: how many requests do work at once in one API process.

Every request takes a slot when it starts and gives it back when it ends;
a request that then waits (a sync submit for its run, a log stream between
events) gives its slot back first.  The rest queue for a slot in order of
arrival, blocked, so they do not compete for the GIL with the ones doing
work: with 256 threads all runnable, a thread that held a database
connection waited for the GIL after each round trip, and under 256 clients
the pool's waits added up to 80% of the clients' time, p99 2.2 s.  A request
that waits longer than ``DB_POOL_WAIT_S`` for a slot gets 503 ``overloaded``
with ``Retry-After``.
"""

import collections
import threading

from flask import current_app, g, request

from tasks.errors import Overloaded

from .extensions import once

class FairSlots:
    """A semaphore that serves its waiters in order: a freed slot is handed
    to the longest waiter, never taken by a newcomer (``threading.Semaphore``
    lets arriving threads barge, and under 256 clients some requests waited
    seconds while newer ones went first)."""

    def __init__(self, size):
        self._free = size
        self._lock = threading.Lock()
        self._waiters = collections.deque()

    def acquire(self, timeout):
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            handed = threading.Event()
            self._waiters.append(handed)
        if handed.wait(timeout):
            return True
        with self._lock:
            if handed.is_set():  # handed over as the wait ran out
                return True
            self._waiters.remove(handed)
            return False

    def release(self):
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._free += 1


def _get_slots():
    return once("tunix_request_slots", lambda settings: FairSlots(settings.api_active))


#: Paths that must answer even when the API is saturated: liveness and the scrape.
EXEMPT = ("/healthz", "/metrics")


def take_slot():
    if request.path in EXEMPT:
        return
    settings = current_app.config["SETTINGS"]
    if not _get_slots().acquire(timeout=settings.db_pool_wait_s):
        raise Overloaded(f"server busy: {settings.api_active} requests already at work; retry")
    g.holds_slot = True


def leave(exc=None):
    """Give the slot back (once): before waiting, or when the request ends."""
    if g.pop("holds_slot", False):
        _get_slots().release()


def init_app(app):
    app.before_request(take_slot)
    app.teardown_request(leave)
