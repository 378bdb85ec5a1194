"""Real tiny trainings through the whole platform: watch, stop, resume, download.

API (gunicorn) + one worker launch (``python -m workers``: one process, one
training slot) + PostgreSQL, all real processes on a stack of this module's
own (``training_support.start_stack``), and real Tunix trainings of
``llama3-tiny`` on the CPU.  To stay short, one uninterrupted training (the
*reference*) is watched, measured and downloaded by several tests, and the
cancelled-then-resumed training runs the reference's exact config, so the
reference is also what the resume must reproduce (on a machine fast enough
to finish those steps before a cancel lands, it runs more steps, and an
uninterrupted run of that config is made for the comparison).  Each fixture
returns with the training slot free again.  ~45 s on 2 cores.
"""

import hashlib
import io
import json
import math
import re
import tarfile
import time
import uuid
from datetime import datetime

import pytest

from support import pids_with, wait_for
from training_support import FINAL, StreamWatch, log_ids, raw_get, read_stream, stack_for_module

pytestmark = pytest.mark.training

#: Steps of the reference run: enough that a status poll and a log stream
#: catch it running (~30 ms a step on 2 cores) and that a cancel sent at its
#: first visible step lands long before its end.
STEPS = 150


def training(**overrides):
    body = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "learning_rate": 0.01,
            "batch_size": 4, "max_seq_length": 32, "max_steps": STEPS, "seed": 20240611, "device": "cpu",
            "checkpoint_every_steps": 10}
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def stack(databases, data_dir, log_dir, worker_launch):
    yield from stack_for_module(databases, data_dir, log_dir, worker_launch)


def losses(series):
    return {point["step"]: point["loss"] for point in series}


# --------------------------------------------------------------------------
# The reference run: (a) status and metrics, (b) the log stream, (g) checkpoints


class Watched:
    pass


@pytest.fixture(scope="module")
def reference(stack):
    """The uninterrupted training, watched while it runs: ``/status`` polled
    every 20 ms, and a log stream hung up after three lines and resumed with
    ``Last-Event-ID``."""
    w = Watched()
    t0 = time.monotonic()
    w.run_id = stack.submit(training())
    w.stream = StreamWatch(stack.api.base, w.run_id).start()
    w.polls, moving = [], []  # moving: (time, step) of the polls that saw a step, while running
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = stack.status(w.run_id)
        w.polls.append(status)
        if status["status"] == "running" and status["progress"]:
            moving.append((time.monotonic(), status["progress"]["step"]))
        if status["status"] in FINAL:
            break
        time.sleep(0.02)
    # This machine's pace, for the run that must be caught mid-way (see ``cancelled``).
    if len(moving) >= 2 and moving[-1][1] > moving[0][1]:
        w.steps_per_s = (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])
    else:  # all its steps within about one progress beat (0.5 s)
        w.steps_per_s = STEPS / 0.5
    w.seconds = time.monotonic() - t0
    w.stream.join(60)
    w.run = stack.api.run(w.run_id)
    w.metrics = stack.metrics(w.run_id)
    assert w.run["status"] == "completed", w.run["error"]
    return w


def test_a_training_loss_falls_and_status_and_metrics_show_every_step(stack, reference):
    run, series = reference.run, reference.metrics
    # Then it completed all its steps with a finite final loss
    assert run["status"] == "completed" and run["exit_code"] == 0 and run["attempts"] == 1
    result = run["result"]
    assert result["steps"] == result["total_steps"] == STEPS and result["start_step"] == 0
    # And /metrics holds one row per step, in order, each with its loss, rate and gradient norm
    assert [p["step"] for p in series] == list(range(1, STEPS + 1))
    assert all(p["attempt"] == 1 and math.isfinite(p["loss"]) and p["learning_rate"] > 0 and p["grad_norm"] > 0
               for p in series)
    assert series[-1]["loss"] == result["final_loss"]
    # And the loss fell: from ~ln(256) at random init to a fraction of it
    first, last = [p["loss"] for p in series[:5]], [p["loss"] for p in series[-5:]]
    assert first[0] > 5.0, first
    assert sum(last) / 5 < 0.25 * sum(first) / 5, (first, last)
    # And /status showed the run moving while it ran: progress {step, total_steps, loss}
    running = [s for s in reference.polls if s["status"] == "running" and s["progress"]]
    assert running, f"no poll caught progress while running: {reference.polls[-3:]}"
    assert all(set(s["progress"]) == {"step", "total_steps", "loss"} for s in running)
    assert any(0 < s["progress"]["step"] < STEPS for s in running)
    assert all(s["progress"]["total_steps"] == STEPS for s in running)
    steps_seen = [s["progress"]["step"] for s in running]
    assert steps_seen == sorted(steps_seen)
    # and each polled loss is the one /metrics keeps for that step
    by_step = losses(series)
    assert all(s["progress"]["loss"] == by_step[s["progress"]["step"]] for s in running)
    # And once it ended, its status carries the last step
    assert reference.polls[-1]["progress"] == {"step": STEPS, "total_steps": STEPS, "loss": result["final_loss"]}


def test_b_log_stream_live_resumable_and_replayable(stack, reference):
    watch, base, run_id = reference.stream, stack.api.base, reference.run_id
    assert watch.content_type.startswith("text/event-stream")
    # The first connection got the first lines, numbered 1, 2, 3 (``id:``), and was hung up on
    assert watch.first_closed_by_server is False
    assert log_ids(watch.first) == [1, 2, 3] and watch.resumed_from == 3
    # The second, resumed with Last-Event-ID: 3, went on at 4: no gap, no duplicate ...
    second_ids = log_ids(watch.second)
    assert second_ids == list(range(4, 4 + len(second_ids)))
    # ... with progress events while the training ran ...
    progress = [e["data"] for e in watch.first + watch.second if e["event"] == "progress"]
    assert any(p["step"] < STEPS for p in progress), "no live progress event"
    assert [p["step"] for p in progress] == sorted(p["step"] for p in progress)
    assert all(p["total_steps"] == STEPS for p in progress)
    # ... and ended with the run's final status, after which the server closed the stream
    assert watch.second[-1] == {"event": "status", "data": {"run_id": run_id, "status": "completed",
                                                            "exit_code": 0}}
    assert watch.second_closed_by_server is True
    # The lines are the training's own log: one per step
    lines = [e["data"]["line"] for e in watch.first + watch.second if e["event"] == "log"]
    assert any(line.startswith("run ") for line in lines)
    assert sum(bool(re.match(rf"step \d+/{STEPS} loss ", line)) for line in lines) == STEPS
    live = [e["data"] for e in watch.first + watch.second if e["event"] == "log"]

    # Given the finished run, a new stream replays everything and closes
    replay, closed, _ = read_stream(base, run_id)
    assert closed and replay[-1]["event"] == "status" and replay[-1]["data"]["status"] == "completed"
    assert log_ids(replay) == list(range(1, len(live) + 1))
    assert [e["data"] for e in replay if e["event"] == "log"] == live  # same lines, same numbers
    # ?since=N and Last-Event-ID: N both give exactly the lines after N
    middle = len(live) // 2
    for kwargs in ({"params": {"since": middle}}, {"headers": {"Last-Event-ID": str(middle)}}):
        after, closed, _ = read_stream(base, run_id, **kwargs)
        assert closed and log_ids(after) == list(range(middle + 1, len(live) + 1)), kwargs
    # Resuming past the last line gives no line: the latest progress and the final status
    after, closed, _ = read_stream(base, run_id, params={"since": len(live)})
    assert closed and [e["event"] for e in after] == ["progress", "status"]
    assert after[0]["data"] == {"step": STEPS, "total_steps": STEPS, "loss": reference.run["result"]["final_loss"]}
    # A malformed position is refused
    _, _, response = read_stream(base, run_id, params={"since": "x"})
    assert response.status_code == 422


# --------------------------------------------------------------------------
# (c) cancel a pending run, (e) time limit: one slot held by a run that times out


@pytest.fixture(scope="module")
def slot_held(stack):
    """A long training with ``time_limit_s: 3`` holds the only training slot;
    a training submitted behind it is cancelled while pending."""
    w = Watched()
    w.long_id = stack.submit(training(max_steps=10_000, time_limit_s=3, seed=7))
    stack.wait_status(w.long_id, lambda s: s["status"] == "running", 60, message="running")
    w.pending_id = stack.submit(training(max_steps=5, seed=8))
    time.sleep(0.5)  # a free slot would have claimed it by now (pickup takes milliseconds)
    w.before_cancel = stack.status(w.pending_id)
    w.message_before = stack.message_state(w.pending_id)
    w.cancel = stack.post(f"/api/tunix/runs/{w.pending_id}/cancel")
    w.long = stack.api.wait_final(w.long_id, timeout=60)
    w.long_config_path = str(stack.scratch(w.long_id).job)
    # The slot is free now: the worker takes the cancelled run's message and must skip it.
    wait_for(lambda: stack.message_state(w.pending_id) in ("done", None), 30, message="message consumed")
    w.pending = stack.api.run(w.pending_id)
    return w


def test_c_cancelling_a_pending_run_answers_200_and_it_never_starts(stack, slot_held):
    w = slot_held
    # Given a training queued behind the one training slot
    assert w.before_cancel["status"] == "pending" and w.before_cancel["started_at"] is None
    assert w.message_before == "queued"
    # When it is cancelled, it is cancelled at once
    assert w.cancel.status_code == 200, w.cancel.text
    assert w.cancel.json()["status"] == "cancelled" and w.cancel.json()["run_id"] == w.pending_id
    # Then, after the slot freed and the worker took its message, it never started
    assert w.pending["status"] == "cancelled"
    assert w.pending["started_at"] is None and w.pending["attempts"] == 0 and w.pending["worker_id"] is None
    assert w.pending["exit_code"] is None and w.pending["result"] is None
    assert stack.metrics(w.pending_id) == []
    assert not stack.scratch(w.pending_id).run_root.exists()  # nothing was executed for it
    # And cancelling it again is a conflict naming its status
    again = stack.post(f"/api/tunix/runs/{w.pending_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["status"] == "cancelled"


def test_e_a_run_past_its_time_limit_ends_timeout(stack, slot_held):
    run = slot_held.long
    assert run["status"] == "timeout", run["error"]
    assert run["error"]["type"] == "RunTimedOut"
    assert "time limit of 3s" in run["error"]["message"]
    # Stopped by SIGTERM (the training exits 143), well before SIGKILL
    assert run["exit_code"] == 143, run["error"]
    assert 3 <= run["duration_seconds"] < 12, run["duration_seconds"]
    assert run["completed_at"] and run["result"] is None
    assert pids_with(slot_held.long_config_path) == []


# --------------------------------------------------------------------------
# (d) cancel a running training, (f) resume it


#: Seconds of steps the cancelled training must have: a cancel takes up to
#: about a second to reach it (one 0.5 s progress beat to see it moving, one
#: for the worker to see the cancel).
CANCEL_MARGIN_S = 3


@pytest.fixture(scope="module")
def cancelled(stack, reference):
    """A training cancelled as soon as /status shows a step: the reference's
    exact config, unless this machine is fast enough to finish those steps
    before a cancel lands (then more steps; see ``uninterrupted``)."""
    w = Watched()
    w.steps = max(STEPS, math.ceil(reference.steps_per_s * CANCEL_MARGIN_S))
    w.run_id = stack.submit(training(max_steps=w.steps))
    w.config_path = str(stack.scratch(w.run_id).job)
    w.seen = stack.wait_status(w.run_id, lambda s: bool(s["progress"]), 120, message="first progress")
    w.pids_running = pids_with(w.config_path)
    t0 = time.monotonic()
    w.cancel = stack.post(f"/api/tunix/runs/{w.run_id}/cancel")
    w.after_cancel = stack.status(w.run_id)
    w.run = stack.api.wait_final(w.run_id, timeout=30)
    w.cancel_to_final_s = time.monotonic() - t0
    w.pids_left = pids_with(w.config_path)
    w.metrics = stack.metrics(w.run_id)
    w.checkpoints = stack.api.get(f"/api/tunix/runs/{w.run_id}/checkpoints").json()["data"]
    return w


@pytest.fixture(scope="module")
def uninterrupted(stack, reference, cancelled):
    """Per-step losses of an uninterrupted training with the cancelled run's
    seed and config: the reference's, or a run of its own."""
    if cancelled.steps == STEPS:
        return losses(reference.metrics)
    run_id = stack.submit(training(max_steps=cancelled.steps))
    run = stack.api.wait_final(run_id, timeout=240)
    assert run["status"] == "completed", run["error"]
    return losses(stack.metrics(run_id))


def test_d_cancelling_a_running_training_checkpoints_and_stops_it(stack, cancelled, uninterrupted):
    w = cancelled
    # Given a training seen running (its subprocess visible in /proc)
    assert w.seen["status"] in ("running", "cancel_requested") and w.seen["progress"]["step"] >= 1
    assert w.pids_running, "the training subprocess was not found while running"
    # When it is cancelled, the stop is requested ...
    assert w.cancel.status_code == 202, w.cancel.text
    assert w.cancel.json()["status"] == "cancel_requested"
    assert w.after_cancel["status"] in ("cancel_requested", "cancelled")
    # ... and it is cancelled within a few seconds, part-way through
    assert w.run["status"] == "cancelled", w.run["error"]
    assert w.cancel_to_final_s < 8, w.cancel_to_final_s
    assert w.run["error"]["type"] == "RunCancelled"
    assert w.run["exit_code"] == 143  # the training stopped on SIGTERM, not SIGKILL
    stopped_at = w.metrics[-1]["step"]
    assert 1 <= stopped_at < cancelled.steps
    assert [p["step"] for p in w.metrics] == list(range(1, stopped_at + 1))
    assert w.run["progress"]["step"] == stopped_at
    # And the step it stopped after was checkpointed
    assert w.checkpoints and w.checkpoints[-1]["step"] == stopped_at, w.checkpoints
    assert any("checkpoint of step" in line for line in w.run["error"]["stdout_tail"])
    # And its training subprocess is gone
    assert w.pids_left == []
    # And the steps it did are the uninterrupted run's, bit for bit
    assert all(p["loss"] == uninterrupted[p["step"]] for p in w.metrics)


def test_d_cancel_of_a_finished_or_unknown_run(stack, reference):
    finished = stack.post(f"/api/tunix/runs/{reference.run_id}/cancel")
    assert finished.status_code == 409
    assert finished.json()["error"]["status"] == "completed"
    assert finished.json()["error"]["code"] == "invalid_transition"
    assert stack.api.run(reference.run_id)["status"] == "completed"
    for unknown in (uuid.uuid4(), "not-a-run"):
        response = stack.post(f"/api/tunix/runs/{unknown}/cancel")
        assert response.status_code == 404 and response.json()["error"]["code"] == "run_not_found"


def test_f_a_resumed_run_continues_from_its_checkpoint_exactly(stack, cancelled, uninterrupted):
    checkpoint, steps = cancelled.checkpoints[-1]["step"], cancelled.steps
    # When the cancelled run is resumed
    response = stack.post(f"/api/tunix/runs/{cancelled.run_id}/resume")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    run = stack.api.wait_final(cancelled.run_id, timeout=240)
    # Then it completed, in a second attempt that started from the checkpoint
    assert run["status"] == "completed", run["error"]
    assert run["attempts"] == 2 and run["error"] is None
    assert run["result"]["start_step"] == checkpoint and run["result"]["steps"] == steps
    # And /metrics holds every step once: the first attempt's up to the checkpoint, the second's after
    series = stack.metrics(cancelled.run_id)
    assert [p["step"] for p in series] == list(range(1, steps + 1))
    assert all(p["attempt"] == (1 if p["step"] <= checkpoint else 2) for p in series)
    # And every loss after the checkpoint is the uninterrupted run's (same seed and config), exactly
    resumed = losses(series)
    assert [resumed[s] for s in range(checkpoint + 1, steps + 1)] == \
        [uninterrupted[s] for s in range(checkpoint + 1, steps + 1)]
    assert run["result"]["final_loss"] == uninterrupted[steps]
    # And a completed run cannot be resumed
    again = stack.post(f"/api/tunix/runs/{cancelled.run_id}/resume")
    assert again.status_code == 409 and again.json()["error"]["status"] == "completed"
    assert stack.post(f"/api/tunix/runs/{uuid.uuid4()}/resume").status_code == 404


# --------------------------------------------------------------------------
# (g) checkpoints: list, download, and nothing outside a run's folder


def test_g_checkpoints_are_listed_and_downloadable(stack, reference):
    listed = stack.api.get(f"/api/tunix/runs/{reference.run_id}/checkpoints")
    assert listed.status_code == 200
    data = listed.json()["data"]
    # Recorded every 10 steps (not step 1: workers/training/checkpoints.py); retention kept the
    # latest CHECKPOINT_KEEP (3) and the lowest-loss one of them all
    series = losses(stack.api.get(f"/api/tunix/runs/{reference.run_id}/metrics").json()["data"])
    saved = list(range(10, STEPS + 1, 10))
    best = min(saved, key=lambda step: (series[step], -step))
    assert [c["step"] for c in data] == sorted({*saved[-3:], best}), (data, best)
    for item in data:
        assert item["size_bytes"] > 10_000 and len(item["sha256"]) == 64 and item["attempt"] == 1
        assert item["loss"] == pytest.approx(series[item["step"]])
        assert datetime.fromisoformat(item["created_at"]).tzinfo is not None
        assert item["download"] == f"/api/tunix/runs/{reference.run_id}/checkpoints/{item['step']}"
    response = stack.api.get(data[-1]["download"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-tar"
    assert f"{reference.run_id}-step-{STEPS}.tar" in response.headers["Content-Disposition"]
    # It is the recorded object, byte for byte
    assert hashlib.sha256(response.content).hexdigest() == data[-1]["sha256"] == response.headers["X-Checkpoint-SHA256"]
    assert len(response.content) == data[-1]["size_bytes"]
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:") as tar:
        names = tar.getnames()
        assert all(n == f"{STEPS}" or n.startswith(f"{STEPS}/") for n in names)
        # orbax's layout: metadata, the model's parameters and the optimizer's state
        assert f"{STEPS}/_CHECKPOINT_METADATA" in names
        assert any(n.startswith(f"{STEPS}/model_params/") for n in names)
        assert any(n.startswith(f"{STEPS}/optimizer_state/") for n in names)
        metadata = json.load(tar.extractfile(f"{STEPS}/_CHECKPOINT_METADATA"))
    # with the loss of its step recorded by the training
    assert metadata["custom_metadata"]["tunix_rt"] == {"step": STEPS, "loss": reference.run["result"]["final_loss"]}
    # A step the run has no checkpoint of is 404
    absent = next(step for step in saved if step not in {c["step"] for c in data})  # deleted by retention
    missing = stack.api.get(f"/api/tunix/runs/{reference.run_id}/checkpoints/{absent}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "checkpoint_not_found"


@pytest.mark.parametrize("path", [
    "/api/tunix/runs/{run}/checkpoints/7",  # no such step
    "/api/tunix/runs/{run}/checkpoints/-1",
    "/api/tunix/runs/{run}/checkpoints/..%2F..%2Fetc",
    "/api/tunix/runs/{run}/checkpoints/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/tunix/runs/{run}/checkpoints/../../../../etc/passwd",
    "/api/tunix/runs/{run}/checkpoints/150%2F..%2F..%2Ftraining.json",
    "/api/tunix/runs/{run}/checkpoints/%2E%2E",
    "/api/tunix/runs/../checkpoints",
    "/api/tunix/runs/../checkpoints/150",
    "/api/tunix/runs/..%2F..%2Fetc/checkpoints",
    "/api/tunix/runs/%2E%2E/checkpoints/1",
    "/api/tunix/runs/{unknown}/checkpoints",
    "/api/tunix/runs/{unknown}/checkpoints/150",
])
def test_g_checkpoint_paths_outside_a_run_are_404(stack, reference, path):
    status, content_type, body = raw_get(stack.api.base, path.format(run=reference.run_id, unknown=uuid.uuid4()))
    assert status == 404, (path, status, body[:200])
    assert content_type == "application/json"
    assert "error" in json.loads(body)
    assert not body.startswith(b"\x1f\x8b") and b"root:" not in body and b"run_dir" not in body
