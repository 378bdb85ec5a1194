"""A store that refuses our credentials (issue 22): a real S3 server
(SeaweedFS, ``tests/s3server.py``: one identity, other keys refused with a
403) and real PostgreSQL.

A refusal is ``StoreForbidden``, never ``StoreUnavailable``: it is not
retried as an outage, the checkpoint uploads stop at once, a training whose
checkpoints the store refused fails its attempt instead of ending
``completed`` without them, and the API answers 502 with a JSON error.  The
training here is a stand-in program (it finalises one step and reports a
result) run by the real runner, so the test takes seconds.
"""

import json
import os
import sys
import time
import uuid

import pytest

from s3server import REGION, S3Server
from support import metric, metric_samples
from tasks import artifacts, registry, retrying
from tasks.artifacts import ArtifactStore, Scratch
from tasks.errors import StoreForbidden, StoreUnavailable
from tasks.run_service import RunService
from tasks.settings import get_settings

#: A stand-in for ``python -m workers.training JOB``: one finalised step of
#: orbax's shape in the attempt's folder, then the result event.
FAKE_TRAINING = r"""
import json, os, pathlib, sys, time
job = json.loads(pathlib.Path(sys.argv[-1]).read_text())
step = pathlib.Path(job["run"]["run_dir"]) / "checkpoints" / "10"
(step / "model_params").mkdir(parents=True)
(step / "model_params" / "data").write_bytes(os.urandom(4096))
(step / "commit_success.txt").write_text("ok")
time.sleep(0.5)  # the upload thread polls every 0.1 s
result = {"event": "result", "final_loss": 1.5, "steps": 10, "total_steps": 10, "duration_s": 0.5,
          "effective_max_seq_length": 32, "batch_seq_length": 32, "param_count": 1, "trainable_params": 1,
          "start_step": 0, "final_eval_loss": None, "eval_step": None, "held_out_examples": 0}
print("@@tunix " + json.dumps(result), flush=True)
"""


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("forbidden") / "s3", ip="127.0.0.1").start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def keys(s3, monkeypatch):
    """``keys(access, secret)`` puts those credentials in this process'
    environment (where botocore reads them); the server's own by default."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)

    def use(access, secret):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)

    return use


def a_store(s3):
    """A store under a prefix of its own (a fresh S3 client: the keys are read now)."""
    return ArtifactStore(s3.url(f"forbidden-{uuid.uuid4().hex[:8]}"), s3.endpoint_url, REGION)


def scrape():
    from prometheus_client import REGISTRY, generate_latest

    return metric_samples(generate_latest(REGISTRY).decode())


@pytest.mark.parametrize("access, secret, answer", [
    ("tunixtest", "not-the-secret", "SignatureDoesNotMatch"),
    ("nobody-we-know", "whatever", "InvalidAccessKeyId"),
])
def test_every_call_a_store_refuses_is_store_forbidden_naming_the_object_and_the_keys(s3, keys, tmp_path, access,
                                                                                      secret, answer):
    # Given a store whose server refuses these credentials
    keys(access, secret)
    store = a_store(s3)
    folder = tmp_path / "step"
    folder.mkdir()
    (folder / "data").write_bytes(b"x" * 100)
    before = scrape()
    calls = {
        "ping": lambda: store.ping(),
        "put_json": lambda: store.put_json("runs/x.json", {"a": 1}),
        "upload_tree": lambda: store.upload_tree(folder, "runs/x/10.a1.tar", "10"),
        "get_json": lambda: store.get_json("runs/x.json"),
        "download_tree": lambda: store.download_tree("runs/x/10.a1.tar", str(tmp_path / "into")),
        "open": lambda: store.open("runs/x/10.a1.tar"),
        "stat": lambda: store.stat("runs/x.json"),
        "list": lambda: store.list("runs"),
        "delete": lambda: store.delete("runs/x.json"),
    }
    for name, call in calls.items():
        # When each call is made
        started = time.monotonic()
        with pytest.raises(StoreForbidden) as refused:
            call()
        # Then it is refused at once (no retries), never as an outage
        assert time.monotonic() - started < 2, name
        assert not isinstance(refused.value, StoreUnavailable)
        message = str(refused.value)
        # and says what refused what, and what to check
        assert message.startswith("artifact store refused our credentials (403 "), (name, message)
        assert "check AWS_ACCESS_KEY_ID" in message and store.url in message, (name, message)
        assert refused.value.reason.startswith("403 ")
    # The refusals that carry the server's code name it (HEAD and GET of an object get a bare 403)
    with pytest.raises(StoreForbidden, match=rf"\(403 {answer}\) for {store.uri('runs/x.json')}:"):
        store.put_json("runs/x.json", {})
    # And each is counted as forbidden, none as unavailable
    after = scrape()
    for name in calls:
        assert metric(after, "tunix_store_failures_total", operation=name, kind="forbidden") > \
            metric(before, "tunix_store_failures_total", operation=name, kind="forbidden"), name
        assert metric(after, "tunix_store_failures_total", operation=name, kind="unavailable") == \
            metric(before, "tunix_store_failures_total", operation=name, kind="unavailable"), name


def test_an_unreachable_store_is_still_an_outage_and_the_right_keys_still_work(s3, keys, tmp_path):
    # Given the server's own keys, and a server that is not there
    good = a_store(s3)
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = ArtifactStore(s3.url("x"), f"http://127.0.0.1:{port}", REGION)
    # When each is written to; Then the server takes it (counted: one upload, its bytes)
    before = scrape()
    good.put_json("runs/ok.json", {"ok": True})
    assert good.get_json("runs/ok.json") == {"ok": True}
    after = scrape()
    assert metric(after, "tunix_store_uploads_total") == metric(before, "tunix_store_uploads_total") + 1
    assert metric(after, "tunix_store_bytes_total", direction="up") > metric(before, "tunix_store_bytes_total",
                                                                           direction="up")
    # and the missing server is an outage, as before
    with pytest.raises(StoreUnavailable) as outage:
        gone.put_json("runs/x.json", {})
    assert not isinstance(outage.value, StoreForbidden)
    # And a patient caller's tries after its first are counted as retries of what it stores: three tries
    # of the missing server, then a fourth call that stops the caller (bounded by calls, not by a deadline
    # cut from one call's time: botocore's own back-off between connection attempts is random)
    tries, before = [], scrape()

    class Enough(Exception):
        pass

    def put():
        if len(tries) == 3:
            raise Enough
        tries.append(1)
        gone.put_json("runs/x.json", {})
    with pytest.raises(Enough):
        retrying.patiently(artifacts.retried(put, "manifest"), 120, StoreUnavailable, first_delay_s=0.05)
    retried = metric(scrape(), "tunix_store_retries_total", what="manifest") - \
        metric(before, "tunix_store_retries_total", what="manifest")
    assert len(tries) == 3 and retried == 3, (len(tries), retried)


def test_a_local_store_whose_folder_refuses_us_is_forbidden_too(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a folder of mode 000: the S3 tests above cover the refusal")
    root = tmp_path / "store"
    root.mkdir()
    store = ArtifactStore(f"file://{root}")
    root.chmod(0o500)
    try:
        with pytest.raises(StoreForbidden, match="artifact store refused access .*writable"):
            store.put_json("runs/x.json", {})
    finally:
        root.chmod(0o700)


def new_run(conn):
    return RunService(get_settings()).submit(conn, {"dataset_key": "synthetic", "model_id": "llama3-tiny",
                                                    "dry_run": False, "max_seq_length": 32, "max_steps": 10})


def fake_step(scratch, step):
    folder = scratch.step_dir(step)
    (folder / "model_params").mkdir(parents=True)
    (folder / "model_params" / "data").write_bytes(os.urandom(4096))
    (folder / "commit_success.txt").write_text("ok")


def test_a_refused_checkpoint_stops_the_uploads_at_once_and_is_not_recorded(s3, keys, conn, pool, tmp_path):
    from workers.checkpoint_sync import CheckpointSync

    # Given a training's checkpoint sync with a minute of store patience, and a store refusing its key
    keys("tunixtest", "an-expired-secret")
    store = a_store(s3)
    run = registry.claim(conn, new_run(conn)["id"], "w:1")
    scratch = Scratch(tmp_path / "runs", run["id"], 1).create()
    lines = []
    sync = CheckpointSync(pool, store, run, scratch, get_settings().replace(store_patience_s=60), say=lines.append)
    fake_step(scratch, 10)
    # When it uploads the step
    assert not sync.upload_pending(force=True)
    # Then the sync holds the refusal (which the runner fails the attempt with), not a back-off
    assert isinstance(sync.error, StoreForbidden), sync.error
    # and finish() does not wait out its minute of patience
    started = time.monotonic()
    assert sync.finish() == []
    assert time.monotonic() - started < 5
    assert "step(s) [10] not uploaded, so not recorded: artifact store refused our credentials (403" in lines[-1]
    assert registry.list_checkpoints(conn, run["id"]) == []


@pytest.fixture
def runner(conn, pool, tmp_path, monkeypatch):
    """``runner(store_url)`` runs ``workers.runner.train`` on a claimed run
    with the stand-in training; returns ``(run, outcome)``: its result, or
    the exception it raised."""
    from workers import runner as runner_module

    program = tmp_path / "fake_training.py"
    program.write_text(FAKE_TRAINING)
    monkeypatch.setattr(runner_module, "get_pool", lambda: pool)
    monkeypatch.setattr(runner_module, "lifeline_argv", lambda: [sys.executable, str(program)])

    def run_once(url):
        settings = get_settings().replace(data_dir=str(tmp_path / "data"), artifacts=url, store_patience_s=30)
        monkeypatch.setattr(runner_module, "get_settings", lambda: settings)
        run = registry.claim(conn, new_run(conn)["id"], "w:1")
        dataset, model = runner_module.resolve(run["config"], settings)
        scratch = Scratch(settings.runs_dir, run["id"], run["attempts"]).create()
        try:
            return run, runner_module.train(run, dataset, model, scratch, settings)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            return run, exc

    return run_once


def test_a_training_whose_checkpoint_the_store_refuses_fails_its_attempt_instead_of_completing(s3, keys, conn,
                                                                                               runner):
    # Given the right keys, a training completes with its checkpoint recorded (the stand-in works)
    run, result = runner(s3.url(f"ok-{uuid.uuid4().hex[:8]}"))
    assert isinstance(result, dict), result
    assert result["checkpoints"]["recorded_steps"] == [10]
    # When the store refuses the worker's key (an expired or a wrong secret)
    keys("tunixtest", "rotated-away")
    started = time.monotonic()
    run, outcome = runner(s3.url(f"refused-{uuid.uuid4().hex[:8]}"))
    # Then the attempt fails with StoreForbidden, at once (its 30 s of store patience not waited out)
    assert isinstance(outcome, StoreForbidden), outcome
    assert time.monotonic() - started < 20
    message = str(outcome)
    assert message.startswith("artifact store refused our credentials (403 SignatureDoesNotMatch) for s3://")
    assert "check AWS_ACCESS_KEY_ID" in message
    # with what the run's error shows beside it: no step recorded
    assert outcome.details["checkpoints"]["recorded_steps"] == []
    assert outcome.details["store_answer"] == "403 SignatureDoesNotMatch"
    assert registry.list_checkpoints(conn, run["id"]) == []
    # and the run's log says why
    with conn.cursor() as cur:
        cur.execute("SELECT line FROM tunix_run_logs WHERE run_id = %s ORDER BY seq", (run["id"],))
        log = [line for (line,) in cur.fetchall()]
    assert any(line.startswith("attempt failed: artifact store refused our credentials (403") for line in log), log


def test_the_api_answers_a_download_the_store_refuses_with_a_502_json_error(s3, keys, conn, make_client, settings,
                                                                            tmp_path):
    # Given a run with a recorded checkpoint in a store, and an API whose key the store refuses
    # (an export's download streams from the store the same way: app/exports.py)
    url = s3.url(f"api-{uuid.uuid4().hex[:8]}")
    good = ArtifactStore(url, s3.endpoint_url, REGION)
    run = registry.claim(conn, new_run(conn)["id"], "w:1")
    key = artifacts.checkpoint_key(run["id"], 10, 1)
    folder = tmp_path / "10"
    folder.mkdir()
    (folder / "data").write_bytes(b"x" * 1000)
    size, sha256 = good.upload_tree(folder, key, "10")
    registry.record_checkpoint(conn, run_id=run["id"], step=10, attempt=1, uri=good.uri(key), object_key=key,
                               size_bytes=size, sha256=sha256, loss=1.0)
    keys("tunixtest", "not-the-secret")
    client = make_client(SETTINGS=settings.replace(artifacts=url, aws_endpoint_url=s3.endpoint_url,
                                                   aws_region=REGION))
    # When the checkpoint is downloaded
    response = client.get(f"/api/tunix/runs/{run['id']}/checkpoints/10")
    # Then the answer is a 502 with the platform's JSON error, not a 500, and no Retry-After
    assert response.status_code == 502, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "artifact_store_forbidden"
    assert "refused our credentials (403" in error["message"]
    assert "Retry-After" not in response.headers
    assert json.loads(response.get_data(as_text=True))  # JSON, whole
