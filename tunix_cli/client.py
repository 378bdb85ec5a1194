"""The Python client of the Tunix RT API: what the ``tunix`` command is a thin
shell over.

    from tunix_cli import Client
    client = Client()                                  # TUNIX_URL, TUNIX_TOKEN
    client = Client.from_profile()                     # ... else what `tunix login` saved
    run = client.submit({"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False})
    for line in client.logs(run.run_id, follow=True):  # resumes across disconnects
        print(line.line)
    run = client.wait(run.run_id)                      # a Run, final

It speaks HTTP only (httpx; the log stream's Server-Sent Events through
httpx-sse).  Failures are two exceptions: ``ApiError`` (the API answered an
error: its code, message and bad fields) and ``Unreachable`` (no answer
within the client's patience; at once, with ``fail_fast``, when nothing
listens at the URL on the client's first request).

Safe to retry, and retried: a submit always carries an ``Idempotency-Key``
(one is made when the caller gives none), so the client tries it again on a
connection error or a 503 and still creates one run; reads are retried the
same way, honouring ``Retry-After``, for up to ``patience_s`` seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from typing import Iterator, Optional, Union
from urllib.parse import quote

import httpx
from httpx_sse import SSEError, connect_sse
from pydantic import BaseModel, Field

from tasks import lifecycle
from tasks.atomic import atomic_write
from tasks.export_spec import EXPORT_FINAL, Export, ExportList
from tasks.sample_spec import SAMPLE_FINAL, Sample, SampleList
from tasks.user_spec import AuditEntry, Me, Token, User

from tasks.wire import (
    BulkMove,
    Checkpoint,
    CheckpointList,
    Error,
    LogLine,
    MetricsList,
    MetricsPoint,
    Progress,
    Run,
    RunList,
    RunPage,
    RunStatusAnswer,
    StatusEvent,
    SweepCreated,
    SweepDetail,
    SweepPage,
)

DEFAULT_URL = "http://127.0.0.1:8000"
#: How long a fail-fast client's connection may take to open before the API
#: is called unreachable (a refused connection fails at once): a host that
#: drops packets, a wrong address.
FAIL_FAST_CONNECT_S = 5.0
#: Statuses after which a run never changes again (``tasks/lifecycle.py``).
FINAL = frozenset(s.value for s in lifecycle.FINAL)
#: The API sends a keep-alive comment every 15 s on an idle stream
#: (``app/streams.py``): a stream silent much longer than that is dead.
STREAM_READ_TIMEOUT_S = 45


class UserCreated(BaseModel):
    """``POST /api/tunix/users``: the user and their first token (``token.token``: shown this once)."""

    user: User
    token: Token


class UserList(BaseModel):
    data: list[User]


class TokenList(BaseModel):
    data: list[Token]


class AuditPage(BaseModel):
    """``GET /api/tunix/audit``: newest first; ``next_before_id`` asks for the next page."""

    data: list[AuditEntry]
    next_before_id: Optional[int] = None


class ApiError(Exception):
    """The API answered an error: ``status`` (HTTP), ``code``, ``message``,
    ``fields`` (``[{"field", "message"}]``) and the rest of its error body."""

    def __init__(self, status, code, message, fields=None, extra=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = list(fields or [])
        self.extra = dict(extra or {})

    def __str__(self):
        text = self.message
        if self.fields:
            text += " (" + "; ".join(f"{f['field']}: {f['message']}" for f in self.fields) + ")"
        return text


class Unreachable(Exception):
    """The API did not answer (refused, timed out, unknown host) within the patience."""


class WaitTimeout(Exception):
    """``wait`` gave up before the run ended; ``status`` is its last known one."""

    def __init__(self, run_id, status):
        super().__init__(f"run {run_id} is still {status}")
        self.run_id, self.status = run_id, status


Event = Union[LogLine, Progress, StatusEvent]


def _error(response):
    try:
        detail = Error.model_validate(response.json()).error
        extra = {k: v for k, v in detail.model_dump().items() if k not in ("code", "message", "fields")}
        return ApiError(response.status_code, detail.code, detail.message,
                        [f.model_dump() for f in detail.fields], extra)
    except (ValueError, TypeError):
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
        return ApiError(response.status_code, "http_error", f"HTTP {response.status_code}: {text}")


def _retry_after(response, default):
    try:
        return max(0.0, float(response.headers.get("Retry-After", default)))
    except ValueError:
        return default


class Client:
    def __init__(self, url=None, token=None, timeout=30.0, patience_s=30.0, transport=None, fail_fast=False):
        """``url`` (else ``TUNIX_URL``, else ``http://127.0.0.1:8000``), ``token``
        (else ``TUNIX_TOKEN``: a bearer token, when the API asks for one);
        ``timeout`` per request; ``patience_s``: how long an unanswered or
        503-answered request is tried again before it raises.

        ``fail_fast``: until the API first answered, a connection that is
        refused (nothing listens), whose host is unknown, or that does not
        open within ``FAIL_FAST_CONNECT_S`` raises ``Unreachable`` at once
        instead of being tried for ``patience_s``: a one-shot command aimed
        at a wrong URL says so in a second.  Once the API answered, a
        restart is ridden out as without it."""
        self.url = (url or os.environ.get("TUNIX_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("TUNIX_TOKEN")
        headers = {"Accept": "application/json", "User-Agent": "tunix-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.timeout, self.patience_s, self.fail_fast = timeout, patience_s, fail_fast
        self._connect_s = min(timeout, FAIL_FAST_CONNECT_S) if fail_fast else timeout
        #: Whether the API answered this client yet (anything, an error too).
        self.answered = False
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=self._timeout(),
                                  transport=transport)

    @classmethod
    def from_profile(cls, profile=None, *, url=None, token=None, **kwargs):
        """A client as ``tunix`` makes one: ``url`` and ``token``, else
        ``TUNIX_URL`` and ``TUNIX_TOKEN``, else the profile ``tunix login``
        saved (``profile``, else ``TUNIX_PROFILE``, else ``default``); see
        ``tunix_cli/profiles.py``."""
        from .profiles import resolve

        resolved = resolve(url=url, token=token, profile=profile)
        return cls(resolved.url, resolved.token or "", **kwargs)

    def close(self):
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ transport

    def _timeout(self, read=...):
        """The requests' timeouts: ``timeout`` each, the connect's shorter
        with ``fail_fast``; ``read`` another read timeout (None: none)."""
        return httpx.Timeout(self.timeout, connect=self._connect_s, read=self.timeout if read is ... else read)

    def _not_there(self, exc):
        """``Unreachable`` when ``exc`` says nothing listens at the URL and
        this fail-fast client never had an answer; else None (try again)."""
        if self.fail_fast and not self.answered and isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return Unreachable(f"the API at {self.url} did not answer: no connection could be opened "
                               f"({_reason(exc)}); check --url, TUNIX_URL or the profile's URL (tunix login --url)")
        return None

    def _request(self, method, path, *, retry=True, ok=(200, 201, 202), **kwargs):
        """The response of a request, retried on connection errors and 503 for
        up to ``patience_s`` (only when ``retry``: a request that is safe to
        repeat); with ``fail_fast``, not when nothing listens (``_not_there``)."""
        deadline = time.monotonic() + self.patience_s
        delay = 0.25
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                refused = self._not_there(exc)
                if refused is not None:
                    raise refused from None
                if not retry or time.monotonic() + delay > deadline:
                    raise Unreachable(f"the API at {self.url} did not answer: {_reason(exc)}") from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.answered = True
            if response.status_code in ok:
                return response
            if response.status_code == 503 and retry:
                wait = _retry_after(response, delay)
                if time.monotonic() + wait <= deadline:
                    time.sleep(wait)
                    continue
            raise _error(response)

    def _json(self, method, path, **kwargs):
        return self._request(method, path, **kwargs).json()

    # ------------------------------------------------------------------ runs

    def submit(self, spec, *, wait=False, idempotency_key=None) -> Run:
        """Submit one run (``spec``: a run request, ``GET /openapi.json``'s
        ``RunSpec``).  ``wait=True`` submits in sync mode (the API answers when
        the run ended, or 202 after its ``SYNC_TIMEOUT_S``)."""
        key = idempotency_key or str(uuid.uuid4())
        body = self._json("POST", "/api/tunix/run", params={"mode": "sync" if wait else "async"}, json=spec,
                          headers={"Idempotency-Key": key},
                          timeout=self._timeout(read=None if wait else self.timeout))
        return Run.model_validate(body)

    def submit_batch(self, specs) -> list[Run]:
        """Up to 1000 async runs in one request: all valid and created, or none.
        Not retried (a batch carries no Idempotency-Key)."""
        body = self._json("POST", "/api/tunix/runs/batch", json={"runs": list(specs)}, retry=False)
        return RunList.model_validate(body).data

    def get(self, run_id) -> Run:
        return Run.model_validate(self._json("GET", f"/api/tunix/runs/{run_id}"))

    def status(self, run_id) -> RunStatusAnswer:
        return RunStatusAnswer.model_validate(self._json("GET", f"/api/tunix/runs/{run_id}/status"))

    def list(self, *, status=None, dataset_key=None, model_id=None, mode=None, owner=None, tags=(), sweep_id=None,
             q=None, limit=20, offset=0) -> RunPage:
        """One page of the history, newest first (``.counts``: the runs the
        filters match, by status).  ``owner``: a user's name or ``"me"``;
        ``tags``: runs carrying all of them; ``q``: a substring of the name."""
        params = {"status": status, "dataset_key": dataset_key, "model_id": model_id, "mode": mode, "owner": owner,
                  "sweep_id": sweep_id, "q": q, "limit": limit, "offset": offset}
        params = [(k, v) for k, v in params.items() if v is not None] + [("tag", t) for t in tags]
        return RunPage.model_validate(self._json("GET", "/api/tunix/runs", params=params))

    def update_run(self, run_id, **fields) -> Run:
        """Change a run's ``name``, ``tags`` or ``notes`` (those given; a
        ``name`` of None clears it): the owner's or an admin's.  Safe to repeat."""
        return Run.model_validate(self._json("PATCH", f"/api/tunix/runs/{_segment(run_id)}", json=fields))

    def cancel(self, run_id) -> Run:
        """A pending run is cancelled at once; a running one is asked to stop
        (it saves a checkpoint and ends ``cancelled``).  Safe to repeat: a
        second cancel of a run being cancelled answers the same."""
        return Run.model_validate(self._json("POST", f"/api/tunix/runs/{run_id}/cancel"))

    def resume(self, run_id) -> Run:
        """Queue a failed, cancelled or timed-out run again (from its latest checkpoint)."""
        return Run.model_validate(self._json("POST", f"/api/tunix/runs/{run_id}/resume", retry=False))

    def cancel_matching(self, *, status=None, sweep_id=None, dataset_key=None, model_id=None) -> BulkMove:
        """Cancel every pending or running run the filter matches (at least
        one of its fields: the API refuses a move over every run); a member's
        own alone (``skipped``: the others').  Safe to repeat, and retried."""
        return BulkMove.model_validate(self._json("POST", "/api/tunix/runs/cancel", json=_filter(
            status=status, sweep_id=sweep_id, dataset_key=dataset_key, model_id=model_id)))

    def resume_matching(self, *, status=None, sweep_id=None, dataset_key=None, model_id=None) -> BulkMove:
        """Queue again every failed, cancelled or timed-out run the filter
        matches (as ``cancel_matching``).  Not retried: a lost answer's runs
        are queued already (a second try would find them pending)."""
        return BulkMove.model_validate(self._json("POST", "/api/tunix/runs/resume", retry=False, json=_filter(
            status=status, sweep_id=sweep_id, dataset_key=dataset_key, model_id=model_id)))

    def submit_sweep(self, spec) -> SweepCreated:
        """A grid and/or random search over a run request: every trial an
        async run, all created or none.  Not retried (it carries no
        Idempotency-Key)."""
        return SweepCreated.model_validate(self._json("POST", "/api/tunix/sweeps", json=spec, retry=False))

    def sweep(self, sweep_id) -> SweepDetail:
        return SweepDetail.model_validate(self._json("GET", f"/api/tunix/sweeps/{sweep_id}"))

    def sweeps(self, *, limit=20, offset=0) -> SweepPage:
        return SweepPage.model_validate(self._json("GET", "/api/tunix/sweeps",
                                                   params={"limit": limit, "offset": offset}))

    def cancel_sweep(self, sweep_id) -> SweepDetail:
        return SweepDetail.model_validate(self._json("POST", f"/api/tunix/sweeps/{sweep_id}/cancel"))

    def resume_sweep(self, sweep_id) -> SweepDetail:
        return SweepDetail.model_validate(self._json("POST", f"/api/tunix/sweeps/{sweep_id}/resume", retry=False))

    def metrics(self, run_id) -> list[MetricsPoint]:
        return MetricsList.model_validate(self._json("GET", f"/api/tunix/runs/{run_id}/metrics")).data

    def metrics_csv(self, run_id) -> str:
        """A run's recorded steps as the API's CSV (``GET .../metrics.csv``):
        the fixed figures, then each method metric the run recorded, by name."""
        return self._request("GET", f"/api/tunix/runs/{run_id}/metrics.csv", headers={"Accept": "text/csv"}).text

    def fleet(self) -> dict:
        """``GET /api/tunix/workers``: every host and worker process (alive
        or lost, heartbeat age, the runs each holds), the queues and totals;
        the API's ``Fleet`` schema (``/openapi.json``), as a dict."""
        return self._json("GET", "/api/tunix/workers")

    def checkpoints(self, run_id) -> list[Checkpoint]:
        return CheckpointList.model_validate(self._json("GET", f"/api/tunix/runs/{run_id}/checkpoints")).data

    def download(self, run_id, step, path, on_chunk=None) -> int:
        """Stream the checkpoint of ``step`` (a tar) to ``path``; returns its
        size.  The file appears only once complete, its size and sha256 equal
        to what was recorded (else ``ApiError`` ``incomplete_download``, and
        no file).  ``on_chunk(done, total)`` after each chunk."""
        try:
            with self._http.stream("GET", f"/api/tunix/runs/{run_id}/checkpoints/{int(step)}",
                                   headers={"Accept": "application/x-tar"}) as response:
                if response.status_code != 200:
                    response.read()
                    raise _error(response)
                total = int(response.headers.get("Content-Length") or 0)
                expected_sha = response.headers.get("X-Checkpoint-SHA256")
                digest, done = hashlib.sha256(), 0
                with atomic_write(path) as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if on_chunk is not None:
                            on_chunk(done, total)
                    if (total and done != total) or (expected_sha and digest.hexdigest() != expected_sha):
                        raise ApiError(200, "incomplete_download",
                                       f"checkpoint {step} of run {run_id}: got {done} bytes "
                                       f"(sha256 {digest.hexdigest()}), expected {total} (sha256 {expected_sha})")
            return done
        except httpx.TransportError as exc:
            raise Unreachable(f"the download from {self.url} broke off: {_reason(exc)}") from None

    # ------------------------------------------------------------------ logs and waiting

    def events(self, run_id, *, since=0, follow=True) -> Iterator[Event]:
        """The run's log stream: ``LogLine``, ``Progress`` and, last, a
        ``StatusEvent`` once the run ended.  With ``follow``, a stream that
        breaks off (an API restart, a proxy's time-out) is opened again from
        the last line seen (``Last-Event-ID``), so no line is lost or repeated,
        until the run ends; ``Unreachable`` after ``patience_s`` without an
        answer.  Without ``follow``: the lines there are now, then it ends."""
        last = int(since)
        delay = 0.25
        unanswered_since = None
        while True:
            try:
                with connect_sse(self._http, "GET", f"/api/tunix/runs/{run_id}/logs",
                                 params={"follow": "1" if follow else "0"},
                                 headers={"Last-Event-ID": str(last), "Accept": "text/event-stream"},
                                 timeout=self._timeout(read=STREAM_READ_TIMEOUT_S)) as source:
                    response = source.response
                    self.answered = True
                    if response.status_code != 200:
                        response.read()
                        if response.status_code == 503:  # too many streams, or the database: later
                            time.sleep(_retry_after(response, 1.0))
                            continue
                        raise _error(response)
                    unanswered_since, delay = None, 0.25
                    for sse in source.iter_sse():
                        data = json.loads(sse.data) if sse.data else {}
                        if sse.event == "log":
                            line = LogLine.model_validate(data)
                            if line.seq <= last:
                                continue
                            last = line.seq
                            yield line
                        elif sse.event == "progress":
                            yield Progress.model_validate(data)
                        elif sse.event == "status":
                            yield StatusEvent.model_validate(data)
                            return
                if not follow:
                    return
                # The stream ended before the run did: open it again.
            except (httpx.TransportError, SSEError) as exc:
                refused = self._not_there(exc)
                if refused is not None:
                    raise refused from None
                now = time.monotonic()
                unanswered_since = unanswered_since or now
                if now - unanswered_since > self.patience_s:
                    raise Unreachable(f"the log stream of run {run_id} from {self.url} broke off and did not "
                                      f"come back within {self.patience_s:g}s: {_reason(exc)}") from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def logs(self, run_id, *, follow=False, since=0) -> Iterator[LogLine]:
        """The run's log lines (``events`` without the rest)."""
        for event in self.events(run_id, since=since, follow=follow):
            if isinstance(event, LogLine):
                yield event

    def full_log(self, run_id) -> Iterator[bytes]:
        """The run's whole log (``GET /api/tunix/runs/{id}/logs/full``), in
        chunks of its text as they stream: every attempt's log as the
        artifact store keeps it once the run's latest attempt ended, else
        the registry's lines (at most 10,000)."""
        try:
            with self._http.stream("GET", f"/api/tunix/runs/{_segment(run_id)}/logs/full",
                                   headers={"Accept": "text/plain"}) as response:
                if response.status_code != 200:
                    response.read()
                    raise _error(response)
                yield from response.iter_bytes(1 << 16)
        except httpx.TransportError as exc:
            raise Unreachable(f"the log from {self.url} broke off: {_reason(exc)}") from None

    def search_log(self, run_id, q, *, limit=None, after=None) -> dict:
        """The lines of the run's whole log holding ``q``: ``{"data": [{"line",
        "attempt", "text"}], "more", "next_after", ...}``."""
        params = {k: v for k, v in {"q": q, "limit": limit, "after": after}.items() if v is not None}
        return self._json("GET", f"/api/tunix/runs/{_segment(run_id)}/logs/search", params=params)

    def wait(self, run_id, *, timeout=None, on_event=None) -> Run:
        """Block until the run ends; returns it.  ``on_event(event)`` for each
        log line and progress event on the way.  ``WaitTimeout`` after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        run = self.get(run_id)
        if run.status in FINAL:
            return run
        if deadline is None:
            for event in self.events(run_id, follow=True):
                if on_event is not None:
                    on_event(event)
            return self.get(run_id)
        # With a deadline: poll the status (the stream's reads may outlast it).
        while True:
            status = self.status(run_id)
            if status.status in FINAL:
                return self.get(run_id)
            if on_event is not None and status.progress is not None:
                on_event(status.progress)
            if time.monotonic() >= deadline:
                raise WaitTimeout(run_id, status.status)
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------------ samples

    def sample(self, prompts, *, run_id=None, model_id=None, step=None, max_new_tokens=None, temperature=None,
               seed=None) -> Sample:
        """Ask for completions of ``prompts`` from a run's checkpoint
        (``run_id``; ``step`` None: its latest) or a base model
        (``model_id``); the pending sample.  Not retried: a request carries no
        Idempotency-Key (a lost answer costs at most a second sample)."""
        if (run_id is None) == (model_id is None):
            raise ValueError("give a run_id or a model_id")
        body = {"prompts": list(prompts), "step": step, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "seed": seed}
        body = {k: v for k, v in body.items() if v is not None}
        path = f"/api/tunix/runs/{run_id}/samples" if run_id else f"/api/tunix/models/{model_id}/samples"
        return Sample.model_validate(self._json("POST", path, json=body, retry=False))

    def get_sample(self, sample_id) -> Sample:
        return Sample.model_validate(self._json("GET", f"/api/tunix/samples/{sample_id}"))

    def samples(self, run_id) -> list[Sample]:
        """A run's samples, newest first."""
        return SampleList.model_validate(self._json("GET", f"/api/tunix/runs/{run_id}/samples")).data

    def wait_sample(self, sample_id, *, timeout=None, interval=0.5) -> Sample:
        """Poll the sample until it completed or failed (``_wait_job``)."""
        return _wait_job(self.get_sample, sample_id, SAMPLE_FINAL, timeout, interval)

    # ------------------------------------------------------------------ exports

    def export(self, run_id, *, step=None) -> Export:
        """Ask for the run's checkpoint of ``step`` (None: its latest) as a
        standalone folder; the pending export, or the step's live one
        (pending, running or completed, not deleted: ``reused`` true, nothing
        new made).  Safe to retry, and retried: a lost answer's export is
        the live one the next try gets."""
        body = {} if step is None else {"step": int(step)}
        return Export.model_validate(self._json("POST", f"/api/tunix/runs/{run_id}/exports", json=body))

    def get_export(self, export_id) -> Export:
        return Export.model_validate(self._json("GET", f"/api/tunix/exports/{export_id}"))

    def delete_export(self, export_id) -> Export:
        """Remove a completed (or failed) export's tar from the store; the
        export, its ``deleted_at`` set (the row stays).  Safe to repeat: a
        deleted export answers the same.  ``ApiError`` ``export_busy`` while
        it is pending or running."""
        return Export.model_validate(self._json("DELETE", f"/api/tunix/exports/{export_id}"))

    def exports(self, run_id) -> list[Export]:
        """A run's exports, newest first."""
        return ExportList.model_validate(self._json("GET", f"/api/tunix/runs/{run_id}/exports")).data

    def wait_export(self, export_id, *, timeout=None, interval=0.5) -> Export:
        """Poll the export until it completed or failed (``_wait_job``)."""
        return _wait_job(self.get_export, export_id, EXPORT_FINAL, timeout, interval)

    def download_export(self, export, path, on_chunk=None) -> int:
        """Stream a completed ``export``'s tar to ``path``; its size.  The
        file appears only once complete, its size and sha256 those the export
        records (else ``ApiError`` ``incomplete_download``, and no file)."""
        try:
            with self._http.stream("GET", f"/api/tunix/exports/{export.export_id}/download",
                                   headers={"Accept": "application/x-tar"}) as response:
                if response.status_code != 200:
                    response.read()
                    raise _error(response)
                digest, done = hashlib.sha256(), 0
                with atomic_write(path) as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if on_chunk is not None:
                            on_chunk(done, export.size_bytes)
                    if done != export.size_bytes or digest.hexdigest() != export.sha256:
                        raise ApiError(200, "incomplete_download",
                                       f"export {export.export_id}: got {done} bytes (sha256 {digest.hexdigest()}), "
                                       f"expected {export.size_bytes} (sha256 {export.sha256})")
            return done
        except httpx.TransportError as exc:
            raise Unreachable(f"the download from {self.url} broke off: {_reason(exc)}") from None

    # ------------------------------------------------------------------ users, tokens, audit

    def me(self) -> Me:
        """Who this client's token acts as, and the installation's mode."""
        return Me.model_validate(self._json("GET", "/api/tunix/me"))

    def users(self) -> list[User]:
        """Every user (an admin's request)."""
        return UserList.model_validate(self._json("GET", "/api/tunix/users")).data

    def create_user(self, name, *, role="member", token_expires_in_days=None) -> UserCreated:
        """A new user and their first token, shown in this answer only (an
        admin's request).  Not retried: a lost answer would leave a user whose
        token nobody saw (``tokens create --user`` makes another)."""
        body = {"name": name, "role": role, "token_expires_in_days": token_expires_in_days}
        return UserCreated.model_validate(self._json("POST", "/api/tunix/users", json=body, retry=False))

    def update_user(self, name, *, role=None, disabled=None) -> User:
        """Change a user's role, or disable (their tokens stop at once) or
        enable them (an admin's request; safe to repeat)."""
        body = {k: v for k, v in {"role": role, "disabled": disabled}.items() if v is not None}
        return User.model_validate(self._json("PATCH", f"/api/tunix/users/{_segment(name)}", json=body))

    def tokens(self, user=None) -> list[Token]:
        """The caller's tokens; ``user``: another user's (an admin), ``"*"``: everyone's."""
        params = {"user": user} if user else {}
        return TokenList.model_validate(self._json("GET", "/api/tunix/tokens", params=params)).data

    def create_token(self, *, label="", expires_in_days=None, user=None) -> Token:
        """A new token (``.token``: shown this once) for the caller, or for
        ``user`` (an admin).  Not retried, as ``create_user``."""
        body = {"label": label, "expires_in_days": expires_in_days}
        if user is not None:
            body["user"] = user
        return Token.model_validate(self._json("POST", "/api/tunix/tokens", json=body, retry=False))

    def revoke_token(self, token_id) -> Token:
        """Revoke a token (one's own, or anyone's for an admin); safe to repeat."""
        return Token.model_validate(self._json("DELETE", f"/api/tunix/tokens/{_segment(token_id)}"))

    def audit(self, *, user=None, action=None, run_id=None, since=None, until=None, limit=None,
              before_id=None) -> AuditPage:
        """The audit trail, newest first (an admin's request); ``since`` and
        ``until`` ISO 8601; the next page with ``before_id=page.next_before_id``."""
        params = {"user": user, "action": action, "run_id": run_id, "since": since, "until": until,
                  "limit": limit, "before_id": before_id}
        return AuditPage.model_validate(
            self._json("GET", "/api/tunix/audit", params={k: v for k, v in params.items() if v is not None}))

    # ------------------------------------------------------------------ catalog

    def datasets(self) -> list[dict]:
        return self._json("GET", "/api/tunix/datasets")["data"]

    def models(self) -> list[dict]:
        return self._json("GET", "/api/tunix/models")["data"]


def _wait_job(get, job_id, final, timeout, interval):
    """Poll ``get(job_id)`` (a sample, an export) until its status is in
    ``final``; each read rides out an unreachable API for ``patience_s``.
    ``WaitTimeout`` after ``timeout`` seconds (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = get(job_id)
        if job.status in final:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(job_id, job.status)
        time.sleep(interval)


def _filter(**fields):
    """A bulk move's filter body: the fields given."""
    return {name: value for name, value in fields.items() if value is not None}


def _segment(value):
    """One path segment: a name with a '/' in it stays one segment."""
    return quote(str(value), safe="")


def _reason(exc):
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
