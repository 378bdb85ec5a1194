"""Helpers for ``test_training_lifecycle.py``: an isolated stack, SSE, /proc.

The lifecycle tests need to know how many training slots there are (one), so
they run on a stack of their own: a database cloned from the session's
template, an API process and a worker launch of one process with
``TRAIN_CONCURRENCY=1``.  No other test's worker launch can take their runs,
and no other test's truncate can remove them.  ``DATA_DIR`` is the session's,
so the JAX compilation cache (``DATA_DIR/jax-cache``) is shared with the other
training tests.
"""

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import requests

from support import ApiClient, connect, scratch, start_api, wait_for
from tasks import lifecycle

FINAL = {s.value for s in lifecycle.FINAL}


@dataclass
class Stack:
    api: ApiClient
    conn: object  # autocommit psycopg2 connection to the stack's database
    data_dir: object  # pathlib.Path
    launch: object = None
    api_process: object = None

    def scratch(self, run_id, attempt=1):
        """The attempt's scratch folder on the stack's one host."""
        return scratch(self.data_dir, run_id, attempt)

    def status(self, run_id):
        response = self.api.get(f"/api/tunix/runs/{run_id}/status")
        assert response.status_code == 200, response.text
        return response.json()

    def metrics(self, run_id):
        response = self.api.get(f"/api/tunix/runs/{run_id}/metrics")
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def post(self, path):
        return self.api.http.post(self.api.url(path), timeout=30)

    def submit(self, body):
        response = self.api.submit(body, mode="async")
        assert response.status_code == 202, response.text
        return response.json()["run_id"]

    def wait_status(self, run_id, predicate, timeout, interval=0.02, message="status"):
        """Poll ``/status`` until ``predicate(status)``; returns that status."""
        return wait_for(lambda: (lambda s: s if predicate(s) else None)(self.status(run_id)), timeout,
                        interval=interval, message=f"run {run_id}: {message}")

    def message_state(self, run_id):
        """The broker's state of the run's message (its id is the run id), None when absent."""
        with self.conn.cursor() as cur:
            cur.execute('SELECT "state" FROM dramatiq.queue WHERE message_id = %s', (str(run_id),))
            row = cur.fetchone()
        return row[0] if row else None


def start_stack(databases, data_dir, log_dir, worker_launch):
    """Database, API and a one-process, one-training-slot worker launch.
    The API starts in a thread while the launch starts (saves seconds)."""
    url = databases.create()
    box = {}

    def api():
        try:
            box["api"] = start_api(url, data_dir, log_dir)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=api)
    thread.start()
    try:
        launch = worker_launch(workers=1, threads=4, url=url, TRAIN_CONCURRENCY=1)
    finally:
        thread.join()
    if "error" in box:
        raise box["error"]
    process = box["api"]
    return Stack(api=ApiClient(process.url), conn=connect(url), data_dir=data_dir, launch=launch,
                 api_process=process)


def stack_for_module(databases, data_dir, log_dir, worker_launch):
    """A module fixture's body: ``yield from`` it for a ``start_stack``
    stopped when the module's tests are done."""
    stack = start_stack(databases, data_dir, log_dir, worker_launch)
    yield stack
    stack.launch.stop()
    stack.api_process.stop()
    stack.conn.close()


# --------------------------------------------------------------------------
# Server-Sent Events


def sse_events(response):
    """Yield ``{"id", "event", "data"}`` of a ``text/event-stream`` response
    (comments skipped) until the server closes it."""
    event = {}
    for line in response.iter_lines(decode_unicode=True):
        if line is None:
            continue
        if line == "":
            if event:
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event["id"] = int(value)
            elif name in ("event", "data"):
                event[name] = value if name not in event else event[name] + "\n" + value


def read_stream(base, run_id, headers=None, params=None, stop_after_logs=None, timeout=90):
    """Open the run's log stream; read it until the server closes it, or
    until ``stop_after_logs`` log events (then hang up).  Returns
    ``(events, closed_by_server, response)``."""
    events, closed = [], False
    with requests.get(f"{base}/api/tunix/runs/{run_id}/logs", headers=headers or {}, params=params or {},
                      stream=True, timeout=(5, timeout)) as response:
        if response.status_code != 200:
            return events, closed, response
        for event in sse_events(response):
            events.append(event)
            if stop_after_logs is not None and sum(e.get("event") == "log" for e in events) >= stop_after_logs:
                break
        else:
            closed = True
    return events, closed, response


def log_ids(events):
    return [e["id"] for e in events if e.get("event") == "log"]


@dataclass
class StreamWatch:
    """One client watching a training live: a stream it hangs up after a few
    lines, then a second one resumed with ``Last-Event-ID``."""

    base: str
    run_id: str
    hang_up_after: int = 3
    first: list = field(default_factory=list)
    first_closed_by_server: bool = None
    resumed_from: int = None
    second: list = field(default_factory=list)
    second_closed_by_server: bool = None
    content_type: str = None
    error: BaseException = None

    def __post_init__(self):
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def join(self, timeout):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the log stream did not end"
        if self.error is not None:
            raise self.error

    def _watch(self):
        try:
            self.first, self.first_closed_by_server, response = read_stream(
                self.base, self.run_id, stop_after_logs=self.hang_up_after)
            self.content_type = response.headers.get("Content-Type")
            assert response.status_code == 200, response.text
            self.resumed_from = log_ids(self.first)[-1]
            self.second, self.second_closed_by_server, response = read_stream(
                self.base, self.run_id, headers={"Last-Event-ID": str(self.resumed_from)})
            assert response.status_code == 200, response.text
        except BaseException as exc:  # noqa: BLE001 - re-raised in join()
            self.error = exc


# --------------------------------------------------------------------------
# Raw HTTP and processes


def raw_get(base, path):
    """GET ``path`` byte for byte (``requests`` would normalise ``..`` and
    re-quote): ``(status, content_type, body bytes)``."""
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def monotonic_since(t0):
    return round(time.monotonic() - t0, 3)
