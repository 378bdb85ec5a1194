"""Request bodies: read whole, within ``BODY_READ_TIMEOUT_S``, before the
request takes an API slot (``app/request_slots.py``).

A slot is for a request at work.  Taken before the body was read, a client
that trickled its body held one for as long as it liked: ``API_ACTIVE`` such
clients stopped the API (tests/reliability/test_slow_clients.py).  Read here
first, a slow body holds one of gunicorn's threads and no slot, and only
until the deadline: then its connection's read side is shut, the read ends
and the answer is **408** ``body_timeout`` (and the connection closes).

The deadline is for the whole body, not for each read of the socket: a
socket time-out would let a client that sends a byte just before each one
keep its thread for ever.  One watchdog thread per process shuts the read
side of the connections whose time is up; a request that finishes reading
first crosses itself off.  The size limit is Flask's ``MAX_CONTENT_LENGTH``
(413), checked before anything is read when the client says its length.
"""

import heapq
import itertools
import socket
import threading
import time

from flask import current_app, request
from werkzeug.exceptions import ClientDisconnected

from .errors import ApiError
from .extensions import once


class Watchdog:
    """Shuts the read side of sockets whose deadline passed."""

    def __init__(self):
        self._heap = []
        self._ids = itertools.count()
        self._live = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._run, name="body-deadlines", daemon=True).start()

    def watch(self, sock, deadline):
        """Returns a ticket for ``cancel``; ``fired(ticket)`` says whether the deadline shut it."""
        ticket = next(self._ids)
        with self._cond:
            self._live[ticket] = sock
            heapq.heappush(self._heap, (deadline, ticket))
            if self._heap[0][1] == ticket:
                self._cond.notify()
        return ticket

    def cancel(self, ticket):
        """True when the socket was still being watched (its deadline had not shut it)."""
        with self._cond:
            return self._live.pop(ticket, None) is not None

    def _run(self):
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, ticket = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                sock = self._live.pop(ticket, None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass  # the client went away meanwhile


def _watchdog():
    return once("tunix_body_watchdog", lambda settings: Watchdog())


def _has_body():
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def read_body():
    """Read the whole body now, within the deadline; Flask's ``get_data``
    answers it from then on."""
    if not _has_body():
        return
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and request.content_length and request.content_length > limit:
        return  # Flask answers 413 without reading it
    settings = current_app.config["SETTINGS"]
    sock = request.environ.get("gunicorn.socket")
    if sock is None:  # the test client, the development server: nothing to wait for
        request.get_data(cache=True)
        return
    watchdog = _watchdog()
    ticket = watchdog.watch(sock, time.monotonic() + settings.body_read_timeout_s)
    try:
        data = request.get_data(cache=True)
        # A shut socket reads as the end of the body: werkzeug, trusting
        # gunicorn's ``wsgi.input_terminated``, does not compare the length.
        whole = not request.content_length or len(data) >= request.content_length
    except (ClientDisconnected, OSError):  # gunicorn's NoMoreData is an OSError
        whole = False
    in_time = watchdog.cancel(ticket)
    if whole:
        return
    if in_time:
        raise ApiError(400, "body_incomplete", "the connection ended before the whole request body arrived")
    raise ApiError(408, "body_timeout",
                   f"the request body did not arrive within {settings.body_read_timeout_s:g} s "
                   "(BODY_READ_TIMEOUT_S)")


def init_app(app):
    app.before_request(read_body)
