"""The artifact store fails under a real training (issue 12).

One S3 server of the module's own (SeaweedFS on loopback: no root needed),
stopped and started again to make an outage (same folder, same ports: the
objects survive); one API and one worker launch (one process, one training
slot) with ``ARTIFACTS_URL=s3://tunix/<prefix>`` and ``STORE_PATIENCE_S=5``.

* The store stops mid-training: uploads are retried with back-off while the
  training goes on, the run completes, the steps uploaded once the store is
  back are recorded, a step that never uploaded is not.
* A resume while the store is down waits about ``STORE_PATIENCE_S``, then
  fails its attempt with ``StoreUnavailable`` naming the store (never a
  silent start from step 0); once the store is back a resume goes on from
  the recorded step.
* A run that recorded no checkpoint at all (the store down all along) says
  so in its log and in ``result["checkpoints"]["note"]``.
"""

import hashlib
import re
import time
import uuid

import pytest

from s3server import S3Server
from support import ApiClient, Launch, connect, start_api, wait_for

pytestmark = pytest.mark.training

STORE_PATIENCE_S = 5
EVERY = 10
TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "learning_rate": 0.01,
            "batch_size": 4, "max_seq_length": 32, "max_steps": 300, "seed": 20240611, "device": "cpu",
            "checkpoint_every_steps": EVERY}
FINAL = ("completed", "failed", "cancelled", "timeout")
NO_CHECKPOINT = "no checkpoint was recorded for this run"


def training(**overrides):
    return dict(TRAINING, **overrides)


class Stack:
    def __init__(self, server, client, conn, launch, url, prefix):
        self.server, self.client, self.conn, self.launch, self.url, self.prefix = \
            server, client, conn, launch, url, prefix

    def submit(self, body):
        response = self.client.submit(body, mode="async")
        assert response.status_code == 202, response.text
        return response.json()["run_id"]

    def row(self, run_id):
        with self.conn.cursor() as cur:
            cur.execute("SELECT status, attempts, progress, result, error FROM tunix_runs WHERE id = %s", (run_id,))
            return dict(zip(("status", "attempts", "progress", "result", "error"), cur.fetchone()))

    def wait(self, run_id, predicate, timeout, message, interval=0.05):
        return wait_for(lambda: (lambda r: r if predicate(r) else None)(self.row(run_id)), timeout,
                        interval=interval, message=f"run {run_id}: {message}")

    def final(self, run_id, timeout=300):
        return self.wait(run_id, lambda r: r["status"] in FINAL, timeout, "final", interval=0.2)

    def rows(self, run_id):
        """``{step: (attempt, object_key, sha256)}`` of the run's checkpoint rows."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT step, attempt, object_key, sha256 FROM tunix_checkpoints WHERE run_id = %s",
                        (run_id,))
            return {step: rest for step, *rest in cur.fetchall()}

    def wait_recorded(self, run_id, at_least=EVERY, timeout=180):
        wait_for(lambda: any(step >= at_least for step in self.rows(run_id)), timeout,
                 message=f"run {run_id}: a checkpoint of step {at_least} or later recorded")

    def objects(self, run_id):
        """``{key: sha256}`` of the run's checkpoint objects in the store."""
        fs = self.server.fs()
        base = f"{self.server.bucket}/{self.prefix}/runs/{run_id}/checkpoints"
        out = {}
        for path in fs.find(base):
            out[path[len(f"{self.server.bucket}/{self.prefix}/"):]] = hashlib.sha256(fs.cat(path)).hexdigest()
        return out

    def log_lines(self, run_id):
        with self.conn.cursor() as cur:
            cur.execute("SELECT line FROM tunix_run_logs WHERE run_id = %s ORDER BY seq", (run_id,))
            return [line for (line,) in cur.fetchall()]

    def step(self, run_id):
        return (self.row(run_id)["progress"] or {}).get("step") or 0


@pytest.fixture(scope="module")
def stack(databases, tmp_path_factory, log_dir):
    root = tmp_path_factory.mktemp("store-failures")
    url = databases.create()
    server = S3Server(root / "s3", ip="127.0.0.1").start()
    prefix = f"failures-{uuid.uuid4().hex[:8]}"
    env = dict(server.env, ARTIFACTS_URL=f"s3://{server.bucket}/{prefix}", STORE_PATIENCE_S=STORE_PATIENCE_S)
    api = launch = None
    conn = connect(url)
    try:
        api = start_api(url, root / "api", log_dir, **env)
        launch = Launch(url, root / "worker", log_dir, workers=1, threads=2, TRAIN_CONCURRENCY=1, **env)
        yield Stack(server, ApiClient(api.url), conn, launch, env["ARTIFACTS_URL"], prefix)
    finally:
        for process in (launch, api):
            if process is not None:
                process.stop()
        conn.close()
        server.stop(kill=True)


@pytest.fixture
def outage(stack):
    """``outage()`` stops the store; it is started again at the latest when the test ends."""
    yield lambda: stack.server.stop()
    if not stack.server.is_running():
        stack.server.start()


def retry_delays(log_text, run_id):
    return [float(s) for s in re.findall(rf"run {run_id}: checkpoint of step \d+ not uploaded yet "
                                         rf"\(retry in ([\d.]+)s\)", log_text)]


def test_the_store_stops_mid_training_the_run_goes_on_and_records_what_uploaded(stack, outage):
    # Long enough to train on past the store's return: the outage takes ~6
    # checkpoints and 3 retries (~300 steps here), a restart up to 5 s.
    # Given a training that recorded a checkpoint
    STEPS = 800
    run_id = stack.submit(training(max_steps=STEPS))
    stack.wait_recorded(run_id)
    # When the store stops
    outage()
    stopped_at, step_at_stop = time.monotonic(), stack.step(run_id)
    rows_at_stop = stack.rows(run_id)
    # Then the training goes on (some checkpoints later, which cannot be uploaded)
    stack.wait(run_id, lambda r: ((r["progress"] or {}).get("step") or 0) >= step_at_stop + 6 * EVERY, 120,
               "training on while the store is down")
    wait_for(lambda: len(retry_delays(open(stack.launch.log_path).read(), run_id)) >= 3, 60,
             message="uploads retried")
    assert stack.row(run_id)["status"] == "running"
    assert stack.rows(run_id) == rows_at_stop  # nothing recorded while the store is down
    # When the store comes back (the step read first: the start itself takes seconds)
    step_at_restart = stack.step(run_id)
    stack.server.start()
    outage_s = time.monotonic() - stopped_at
    # Then the run completes, on its first attempt
    final = stack.final(run_id)
    assert final["status"] == "completed" and final["attempts"] == 1, final["error"]
    checkpoints = final["result"]["checkpoints"]
    recorded = checkpoints["recorded_steps"]
    # And the uploads were retried with back-off (doubling)
    delays = retry_delays(open(stack.launch.log_path).read(), run_id)
    assert delays[:3] == [0.5, 1.0, 2.0], delays
    # And the steps uploaded once the store was back are recorded, the last one included
    assert step_at_restart < STEPS, "the training ended before the store came back: make STEPS larger"
    assert max(recorded) == STEPS and any(step > step_at_restart for step in recorded), recorded
    # And a step finalised during the outage that never uploaded is not recorded: no row, no object
    never = [s for s in range(step_at_stop // EVERY * EVERY + EVERY, step_at_restart - 3 * EVERY, EVERY)
             if s not in recorded]
    assert never, (recorded, step_at_stop, step_at_restart)
    rows, objects = stack.rows(run_id), stack.objects(run_id)
    assert not set(never) & set(rows)
    assert not [key for key in objects if int(key.rsplit("/", 1)[1].split(".")[0]) in never], objects
    # And every recorded row names an object in the store holding exactly what was recorded
    assert rows and set(rows) <= set(recorded)
    for step, (attempt, key, sha256) in rows.items():
        assert objects.get(key) == sha256, (step, key)
    print(f"store down {outage_s:.1f}s from step {step_at_stop} to {step_at_restart}: retries every {delays}s; "
          f"recorded {recorded}; never uploaded {never}")


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_a_resume_while_the_store_is_down_fails_its_attempt_after_the_patience(stack, outage):
    # Given a cancelled training whose last checkpoint is recorded
    run_id = stack.submit(training())
    stack.wait_recorded(run_id)
    assert stack.client.http.post(stack.client.url(f"/api/tunix/runs/{run_id}/cancel"), timeout=30).status_code \
        in (200, 202)
    cancelled = stack.final(run_id)
    assert cancelled["status"] == "cancelled", cancelled
    latest = max(stack.rows(run_id))
    # When the store is down and the run is resumed
    outage()
    response = stack.client.http.post(stack.client.url(f"/api/tunix/runs/{run_id}/resume"), timeout=30)
    assert response.status_code == 202, response.text
    stack.wait(run_id, lambda r: r["attempts"] == 2 and r["status"] != "pending", 60, "attempt 2 claimed")
    claimed_at = time.monotonic()
    # Then its attempt fails after about STORE_PATIENCE_S, with an error naming the store
    failed = stack.final(run_id, timeout=STORE_PATIENCE_S + 60)
    waited_s = time.monotonic() - claimed_at
    assert failed["status"] == "failed" and failed["attempts"] == 2, failed
    assert failed["error"]["type"] == "StoreUnavailable", failed["error"]
    assert stack.url in failed["error"]["message"], failed["error"]["message"]
    assert STORE_PATIENCE_S - 0.5 <= waited_s <= STORE_PATIENCE_S + 30, waited_s
    # And it never trained from step 0: no step of attempt 2, no such line
    with stack.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM tunix_run_metrics WHERE run_id = %s AND attempt = 2", (run_id,))
        assert cur.fetchone()[0] == 0
    assert not [line for line in stack.log_lines(run_id) if "from step 0" in line]
    # When the store is back and the run is resumed again
    stack.server.start()
    response = stack.client.http.post(stack.client.url(f"/api/tunix/runs/{run_id}/resume"), timeout=30)
    assert response.status_code == 202, response.text
    # Then it completes from the recorded step
    final = stack.wait(run_id, lambda r: r["attempts"] == 3 and r["status"] in FINAL, 300, "attempt 3 final")
    assert final["status"] == "completed", final["error"]
    assert final["result"]["start_step"] == final["result"]["checkpoints"]["restored_step"] == latest
    print(f"resume with the store down: failed after {waited_s:.1f}s (STORE_PATIENCE_S={STORE_PATIENCE_S}): "
          f"{failed['error']['message']}; resumed again from step {latest} once it was back")


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_a_run_with_no_checkpoint_at_all_says_so(stack, outage):
    # Given the store down from the start
    outage()
    # When a training runs to its end
    run_id = stack.submit(training(max_steps=40, checkpoint_every_steps=20))
    final = stack.final(run_id)
    # Then it completes, and says that no checkpoint was recorded
    assert final["status"] == "completed", final["error"]
    checkpoints = final["result"]["checkpoints"]
    assert checkpoints["note"] == NO_CHECKPOINT and checkpoints["recorded_steps"] == [], checkpoints
    assert checkpoints["restored_step"] is None
    lines = stack.log_lines(run_id)
    assert NO_CHECKPOINT in lines, lines[-10:]
    assert any(line.startswith("artifact store unreachable") and "not uploaded, so not recorded" in line
               for line in lines), lines[-10:]
    assert stack.rows(run_id) == {}
