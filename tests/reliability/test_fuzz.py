"""Garbage in: the live API fuzzed from its own ``/openapi.json`` (schemathesis),
and the validator fuzzed in-process (hypothesis).

The fuzzed API runs with no worker (a fuzzed training must not train) and
``SYNC_TIMEOUT_S=0.2`` (a sync submit answers 202 at once).  Every operation
of the document gets schema-conforming and schema-violating requests; none
may answer 5xx (the database is up: not even 503), none may hang, each error
is the one JSON shape, and the rows in the registry are exactly those the 2xx
answers announced: a rejected request writes nothing.
"""

import json
import math
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

import app.db as app_db
from app import create_app
from support import DRY, connect, first_admin, scalar, start_api
from reliability_support import Stopwatch, census
from tasks import catalog, db
from tasks.settings import Settings

#: Generated requests per operation and mode (positive, negative).
EXAMPLES = 150
#: Answered by gunicorn itself, before the API (a request line or headers
#: over its limits): HTML, and documented so (``app/openapi.py``).
SERVER_LIMITS = {414, 431}
#: Longest answer accepted from the live API.
REQUEST_TIMEOUT_S = 10


def error_shape_ok(body):
    error = body.get("error") if isinstance(body, dict) else None
    return (isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str)
            and isinstance(error.get("fields"), list))


class Ledger:
    """What the fuzzer sent and what it was told."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_status = Counter()
        self.created = 0  # rows the 2xx answers announced
        self.run_ids = set()
        self.samples = 0  # sample requests the 2xx answers announced (tunix_samples rows)
        self.slowest = 0.0
        self.unsendable = 0  # cases the HTTP client itself refused to send (bad header bytes)
        self.problems = []

    def record(self, case, response, seconds):
        method, path = case.operation.method.upper(), case.operation.path
        status = response.status_code
        with self.lock:
            self.by_status[status] += 1
            self.slowest = max(self.slowest, seconds)
            try:
                body = response.json()
            except ValueError:
                body = None
            if status >= 400 and status not in SERVER_LIMITS and not error_shape_ok(body):
                self.problems.append(f"{method} {path} -> {status} without the JSON error shape: {response.text[:200]}")
            if method == "POST" and status == 202 and path == "/api/tunix/run":
                self.created += 1
                self.run_ids.add(body["run_id"])
            elif method == "POST" and status == 202 and path == "/api/tunix/runs/batch":
                self.created += len(body["data"])
                self.run_ids.update(r["run_id"] for r in body["data"])
            elif method == "POST" and status == 202 and path.endswith("/samples"):
                self.samples += 1
            elif method == "POST" and status == 202 and path == "/api/tunix/sweeps":
                self.created += len(body["runs"])  # a sweep's trials are runs
                self.run_ids.update(r["run_id"] for r in body["runs"])


@pytest.fixture(scope="module")
def fuzzed_api(databases, data_dir, log_dir):
    url = databases.create()
    api = start_api(url, data_dir, log_dir, SYNC_TIMEOUT_S="0.2")
    yield api.url, url
    api.stop()


@pytest.fixture(scope="module")
def fuzzed_api_with_users(databases, data_dir, log_dir):
    """The same API on an installation with users (auth on, reads too): ``(base, url, an admin's token)``."""
    url = databases.create()
    token = first_admin(url)
    api = start_api(url, data_dir, log_dir, SYNC_TIMEOUT_S="0.2")
    yield api.url, url, token
    api.stop()


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_fuzzing_the_live_api_from_its_openapi_document(fuzzed_api, report):
    base, url = fuzzed_api
    conn = connect(url)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    # The live log stream stays open while its run is active (these runs stay
    # pending: no worker); tests/e2e cover it.
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if not op.path.endswith("/logs")]
    ledger, session, not_negatable = Ledger(), requests.Session(), []
    # Real runs for the operations on one run (random ids only ever find 404):
    # pending ones to cancel, and so cancelled ones to resume.
    real_ids = [session.post(f"{base}/api/tunix/run?mode=async", json=dict(DRY, seed=i), timeout=10).json()["run_id"]
                for i in range(3)]
    since = Stopwatch()

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            if "{run_id}" in operation.path and mode == GenerationMode.POSITIVE:
                strategy = st.one_of(strategy, *[operation.as_strategy(generation_mode=mode,
                                                                       path_parameters={"run_id": run_id})
                                                 for run_id in real_ids])

            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy, real_dataset=st.booleans())
            def fuzz(case, real_dataset):
                if real_dataset and case.meta.generation.mode.is_positive:
                    # A generated dataset_key matches the pattern but names no
                    # dataset (422): half the time, name a real one.
                    items = case.body.get("runs") if isinstance(case.body, dict) else None
                    for item in items if isinstance(items, list) else [case.body]:
                        if isinstance(item, dict) and "dataset_key" in item:
                            item["dataset_key"] = "synthetic"
                t = Stopwatch()
                try:
                    response = case.call(base_url=base, session=session, timeout=REQUEST_TIMEOUT_S)
                except (requests.exceptions.InvalidHeader, UnicodeEncodeError, ValueError):
                    ledger.unsendable += 1  # never left this process
                    return
                ledger.record(case, response, t())
                checks = [not_a_server_error, status_code_conformance, content_type_conformance,
                          response_schema_conformance]
                if case.operation.method.upper() == "POST":
                    # Every schema-violating submit is refused.  (Not for the
                    # history's filters: an empty one, `?mode=`, means "no
                    # filter", as the console sends it.)
                    checks.append(negative_data_rejection)
                case.validate_response(response, checks=checks)

            try:
                fuzz()
            except Unsatisfiable:
                # Nothing to violate: an operation without parameters or body.
                assert mode == GenerationMode.NEGATIVE, operation.label
                not_negatable.append(operation.label)

    fuzz_s = since()
    # No answer was a 5xx (checked per case above), none took long
    assert not [s for s in ledger.by_status if s >= 500], ledger.by_status
    assert ledger.slowest < REQUEST_TIMEOUT_S
    assert not ledger.problems, ledger.problems[:5]
    # Every row in the registry was announced by a 2xx: rejected requests wrote nothing
    rows = census(conn)["rows"]
    assert rows == len(real_ids) + ledger.created and ledger.created == len(ledger.run_ids), (rows, ledger.created)
    assert scalar(conn, "SELECT count(*) FROM dramatiq.queue WHERE queue_name <> 'tunix-samples'") <= rows
    # And every sample request written was announced by a 202, each with its message
    assert scalar(conn, "SELECT count(*) FROM tunix_samples") == ledger.samples
    assert scalar(conn, "SELECT count(*) FROM dramatiq.queue WHERE queue_name = 'tunix-samples'") == ledger.samples
    conn.close()
    total = sum(ledger.by_status.values())
    statuses = ", ".join(f"{n} x {s}" for s, n in sorted(ledger.by_status.items()))
    report(f"schemathesis {schemathesis.__version__}: {total} requests on {len(operations)} operations "
           f"(positive and negative, {EXAMPLES} each; {len(not_negatable)} without anything to violate) in "
           f"{fuzz_s:.0f}s: {statuses}; 0 x 5xx, slowest "
           f"{ledger.slowest:.2f}s; {rows} rows = {ledger.created} announced by 2xx answers + {len(real_ids)} made "
           f"beforehand "
           f"({ledger.unsendable} cases the client could not send)")


#: What the CLI run needs beside its flags (the log stream fuzzed with follow=0: see the file).
SCHEMATHESIS_CONFIG = pathlib.Path(__file__).with_name("schemathesis.toml")


def document_paths(base):
    """The operations of the live API's document."""
    paths = requests.get(f"{base}/openapi.json", timeout=10).json()["paths"]
    return [(method, path) for path, item in paths.items() for method in item]


@pytest.mark.parametrize("auth, examples", [
    # make test: with users (every operation, and its 401/403 answers too), 10 examples (~75 s on 2 cores);
    # make test-all: on an open installation too, and both at 4 times the examples (~4 min each)
    ("users", 10), pytest.param("open", 10, marks=pytest.mark.slow),
    pytest.param("open", 40, marks=pytest.mark.slow), pytest.param("users", 40, marks=pytest.mark.slow)])
def test_schemathesis_with_every_check_and_its_stateful_phase_finds_nothing(auth, examples, request, report):
    """What a user of the API document runs: ``schemathesis run --checks all``
    (examples, coverage, fuzzing and the stateful phase, which follows the
    document's links from a submit to the run's own operations); on an open
    installation, and on one with users, given an admin's token (#21)."""
    if auth == "open":
        base, _ = request.getfixturevalue("fuzzed_api")
        given = []
    else:
        base, _, token = request.getfixturevalue("fuzzed_api_with_users")
        given = ["--header", f"Authorization: Bearer {token}"]
    cli = [sys.executable, "-m", "schemathesis.cli"]
    started = time.monotonic()
    result = subprocess.run([*cli, "--config-file", str(SCHEMATHESIS_CONFIG), "run", f"{base}/openapi.json",
                             "--checks", "all", "--max-examples", str(examples), "--seed", "20261202",
                             "--request-timeout", "10", "--no-color", *given],
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, SCHEMATHESIS_TELEMETRY="false", COLUMNS="160"))
    summary = result.stdout[result.stdout.find("SUMMARY"):]
    failures = result.stdout[result.stdout.find("FAILURES"):]
    assert result.returncode == 0, "\n".join(line[:300] for line in failures.splitlines()[:80])
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, summary
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert cases and cases.group(1) == cases.group(2), summary
    operations = re.search(r"Tested: (\d+)", summary)
    assert operations and int(operations.group(1)) == len(document_paths(base)), summary
    report(f"schemathesis run --checks all (examples, coverage, fuzzing, stateful), {auth}, --max-examples "
           f"{examples}: {cases.group(1)} "
           f"cases, 0 failures in {time.monotonic() - started:.0f}s")


# --------------------------------------------------------------------------
# The validator, in-process: arbitrary JSON never gives a 500, valid bodies always pass

JSON_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
JSON = st.recursive(JSON_SCALARS, lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=12)
FIELDS = ["dataset_key", "model_id", "dry_run", "learning_rate", "num_epochs", "batch_size", "max_seq_length",
          "max_steps", "seed", "device", "time_limit_s", "checkpoint_every_steps"]
#: Objects that look like a submit: known fields with arbitrary values, and a few unknown ones.
SUBMIT_LIKE = st.builds(lambda known, extra: {**extra, **known},
                        st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=len(FIELDS)),
                        st.dictionaries(st.text(max_size=12), JSON, max_size=2))
RUN_TIME_LIMIT_S = Settings().run_time_limit_s


def valid_bodies():
    optional = {
        "dry_run": st.booleans(),
        "learning_rate": st.floats(min_value=0, max_value=1, exclude_min=True, allow_nan=False),
        "num_epochs": st.integers(1, 1000),
        "batch_size": st.integers(1, 4096),
        "max_seq_length": st.integers(8, 32768),
        "max_steps": st.none() | st.integers(1, 10_000_000),
        "seed": st.none() | st.integers(0, 2**31 - 1),
        "device": st.sampled_from(["auto", "cpu", "gpu"]),
        "time_limit_s": st.none() | st.integers(1, RUN_TIME_LIMIT_S),
        "checkpoint_every_steps": st.integers(1, 10_000_000),
        "priority": st.integers(-1000, 1000),
    }
    # No method named: SFT, on the datasets of its kind (a preference set is a 422 for it).
    sft = sorted(key for key, d in catalog.datasets().items() if "sft" in catalog.methods_for(d.data_kind))
    return st.fixed_dictionaries({"dataset_key": st.sampled_from(sft),
                                  "model_id": st.sampled_from(list(catalog.models()))}, optional=optional)


@pytest.fixture(scope="module")
def validator_client(databases):
    """The app in this process on a database of its own (no worker consumes
    the messages its submits queue)."""
    url = databases.create()
    pool = db.make_pool(url, 4)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("API_TOKEN", raising=False)
        mp.setattr(app_db, "get_pool", lambda: pool)
        flask_app = create_app({"SETTINGS": Settings(database_url=url)})
        yield flask_app, flask_app.test_client(), connect(url), None
    pool.closeall()


HYPOTHESIS = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def post_json(client, path, body):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def test_arbitrary_json_bodies_never_give_500_and_rejected_ones_write_nothing(validator_client, report):
    flask_app, client, conn, _ = validator_client
    seen = Counter()

    @HYPOTHESIS
    @given(body=JSON | SUBMIT_LIKE, path=st.sampled_from(["/api/tunix/run?mode=async", "/api/tunix/runs/batch"]),
           wrap=st.booleans())
    def check(body, path, wrap):
        if wrap and path.endswith("batch"):
            body = {"runs": [body]}
        before = census(conn)["rows"]
        response = post_json(client, path, body)
        seen[response.status_code] += 1
        assert response.status_code in (202, 400, 422), (response.status_code, body, response.get_json())
        if response.status_code != 202:
            assert error_shape_ok(response.get_json()), response.get_json()
            assert census(conn)["rows"] == before

    check()
    # Raw bytes that are not JSON at all, and JSON that Python accepts but is not standard
    for raw in [b"", b"{", b"\xff\xfe", b'{"a": NaN}', b"[1, 2", b'"\\ud800"', b"1e999999"]:
        response = client.post("/api/tunix/run?mode=async", data=raw, content_type="application/json")
        assert response.status_code in (400, 422), (raw, response.status_code)
        seen[response.status_code] += 1
    report(f"hypothesis: {sum(seen.values())} arbitrary bodies on /run and /runs/batch (in-process): "
           f"{dict(sorted(seen.items()))}, never a 500, no row from a rejected one")


def test_every_valid_body_passes_the_validator_and_is_stored_as_sent(validator_client, report):
    flask_app, client, conn, _ = validator_client
    passed = []

    @HYPOTHESIS
    @given(body=valid_bodies())
    def check(body):
        from app.runs import _field_problems

        with flask_app.test_request_context():
            config, problems = _field_problems(body, catalog.datasets())
        assert problems == [] and config is not None, (body, problems)
        response = post_json(client, "/api/tunix/run?mode=async", body)
        assert response.status_code == 202, (body, response.get_json())
        run = response.get_json()
        # A scheduling field is a column of the run, the rest its stored spec
        stored = dict(run["config"], priority=run["priority"])
        for field, value in body.items():
            if value is not None:
                assert stored[field] == value or (isinstance(value, float) and math.isclose(stored[field], value))
        passed.append(response.get_json()["run_id"])

    check()
    assert len(set(passed)) == len(passed)
    # Each is queued with its message, or (a training behind others: no worker consumes here) waits
    # deferred for admission with none
    queued = scalar(conn, "SELECT count(*) FROM dramatiq.queue q JOIN tunix_runs r ON r.id = q.message_id "
                          "WHERE q.state = 'queued' AND r.status = 'pending' AND r.id = ANY(%s::uuid[])", (passed,))
    deferred = scalar(conn, "SELECT count(*) FROM tunix_runs r WHERE r.status = 'deferred' AND r.id = ANY(%s::uuid[]) "
                            "AND NOT EXISTS (SELECT 1 FROM dramatiq.queue q WHERE q.message_id = r.id)", (passed,))
    assert queued + deferred == len(passed), (queued, deferred)
    report(f"hypothesis: {len(passed)} valid bodies (every field within its limits) all accepted and stored as sent")
