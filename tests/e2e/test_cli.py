"""The ``tunix`` command (the installed console script) against a live API and
worker launch: submit and wait, failures and their exit statuses, bad flags,
an unreachable API, logs followed across an API kill and restart, cancel,
download, batch; and in a real terminal (tmux): the progress bar, and Ctrl-C
on ``--follow`` leaving the run running."""

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from support import connect, free_port, one_line_error, start_api, wait_for

pytestmark = pytest.mark.training

TUNIX = str(pathlib.Path(sys.executable).parent / "tunix")
TINY = ["--dataset-key", "synthetic", "--model-id", "llama3-tiny", "--train", "--device", "cpu",
        "--batch-size", "2", "--max-seq-length", "32", "--seed", "7"]
FINAL = ("completed", "failed", "cancelled", "timeout")


class Stack:
    def __init__(self, url, database_url, data_dir, log_dir, api, launch):
        self.url, self.database_url, self.data_dir, self.log_dir = url, database_url, data_dir, log_dir
        self.api, self.launch = api, launch
        self.conn = connect(database_url)

    def tunix(self, *args, timeout=300, url=None, **kwargs):
        env = dict(os.environ, TUNIX_URL=url or self.url, COLUMNS="120")
        return subprocess.run([TUNIX, *args], capture_output=True, text=True, timeout=timeout, env=env, **kwargs)

    def row(self, run_id):
        with self.conn.cursor() as cur:
            cur.execute("SELECT status, progress FROM tunix_runs WHERE id = %s", (run_id,))
            return cur.fetchone()

    def log_rows(self, run_id):
        with self.conn.cursor() as cur:
            cur.execute("SELECT seq, line FROM tunix_run_logs WHERE run_id = %s ORDER BY seq", (run_id,))
            return cur.fetchall()

    def restart_api(self, kill=True):
        """SIGKILL the API (a crash) and start it again on the same port."""
        port = int(self.url.rsplit(":", 1)[1])
        if kill:
            os.killpg(self.api.pid, signal.SIGKILL)
            self.api.proc.wait(10)
        self.api.stop()
        self.api = start_api(self.database_url, self.data_dir, self.log_dir, port=port)


@pytest.fixture(scope="module")
def stack(databases, tmp_path_factory, log_dir, worker_launch):
    data_dir = tmp_path_factory.mktemp("cli")
    (data_dir / "datasets").mkdir()
    (data_dir / "datasets" / "broken.jsonl").write_text('{"prompt": "a", "completion": "b"}\nnot json\n')
    url = databases.create()
    api = start_api(url, data_dir, log_dir)
    launch = worker_launch(url=url, workers=1, threads=2, DATA_DIR=data_dir, TRAIN_CONCURRENCY=1)
    s = Stack(api.url, url, data_dir, log_dir, api, launch)
    yield s
    s.api.stop()
    s.conn.close()


def test_submit_wait_completes_shows_the_final_loss_and_exits_0(stack):
    result = stack.tunix("submit", *TINY, "--max-steps", "20", "--wait")
    assert result.returncode == 0, result.stderr
    assert "completed: final loss" in result.stdout and "after 20 steps" in result.stdout, result.stdout
    run_id = result.stderr.split()[1]
    # --json parses, and says the same
    status = stack.tunix("status", run_id, "--json")
    run = json.loads(status.stdout)
    assert run["status"] == "completed" and run["result"]["steps"] == 20
    assert f"{run['result']['final_loss']:.4f}" in result.stdout
    # And the history lists it, as a table and as JSON
    listed = stack.tunix("list", "--status", "completed", "--json")
    assert run_id in [r["run_id"] for r in json.loads(listed.stdout)["data"]]
    table = stack.tunix("list", "--limit", "5")
    assert table.returncode == 0 and run_id in table.stdout and "completed" in table.stdout


def test_lora_is_given_as_a_json_object_and_a_bad_one_is_named(stack):
    # A dry run with LoRA: the object goes to the API, which stores it resolved
    result = stack.tunix("submit", "--dataset-key", "synthetic", "--model-id", "gemma3-tiny",
                         "--lora", '{"rank": 4, "targets": ["q", "v"]}', "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["config"]["lora"] == {"rank": 4, "alpha": 16.0, "targets": ["q", "v"]}
    # Not JSON: the CLI says so before any request; a bad field: the API's 422 names it
    assert "not JSON" in stack.tunix("submit", "--dataset-key", "synthetic", "--model-id", "gemma3-tiny",
                                     "--lora", "rank=4").stderr
    bad = stack.tunix("submit", "--dataset-key", "synthetic", "--model-id", "gemma3-tiny", "--lora", '{"rank": 0}')
    assert bad.returncode != 0 and "lora.rank" in one_line_error(bad)


def test_a_failing_run_exits_1_with_its_error(stack):
    result = stack.tunix("submit", "--dataset-key", "broken", "--model-id", "llama3-tiny", "--wait", "--json")
    assert result.returncode == 1, (result.stdout, result.stderr)
    run = json.loads(result.stdout)
    assert run["status"] == "failed" and run["error"]["type"] == "InvalidDataset"
    plain = stack.tunix("wait", run["run_id"])
    assert plain.returncode == 1
    assert "InvalidDataset" in plain.stderr and "line 2" in plain.stderr, plain.stderr


def test_a_bad_flag_value_shows_the_apis_field_error_naming_the_flag(stack):
    result = stack.tunix("submit", "--dataset-key", "synthetic", "--model-id", "llama3-tiny",
                         "--learning-rate", "-1", "--json")
    assert result.returncode == 5
    line = one_line_error(result)
    assert "--learning-rate" in line and "greater than 0" in line and "HTTP 422" in line, line
    unknown = stack.tunix("submit", "--dataset-key", "nope", "--model-id", "llama3-tiny")
    assert unknown.returncode == 5 and "--dataset-key: unknown dataset 'nope'" in one_line_error(unknown)
    missing = stack.tunix("status", str(uuid.uuid4()))
    assert missing.returncode == 5 and "HTTP 404" in one_line_error(missing)
    # A value click itself refuses is a usage error (2), before any request
    usage = stack.tunix("submit", "--dataset-key", "synthetic", "--model-id", "x", "--max-steps", "many")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_an_unreachable_api_exits_6_with_one_clear_line(stack):
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = stack.tunix("--patience", "1", "status", str(uuid.uuid4()), url=url)
    assert result.returncode == 6
    line = one_line_error(result)
    assert url in line and "did not answer" in line, line
    assert time.monotonic() - started < 30


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_logs_follow_across_an_api_kill_and_restart_print_every_line_once_in_order(stack):
    # Given a training that logs a line every few steps for a while
    submitted = stack.tunix("submit", *TINY, "--max-steps", "400", "--checkpoint-every-steps", "100")
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    # When `tunix logs -f --json` follows it
    follower = subprocess.Popen([TUNIX, "--patience", "60", "logs", "-f", "--json", run_id], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ, TUNIX_URL=stack.url))
    try:
        wait_for(lambda: any("step " in line for _, line in stack.log_rows(run_id)), 180,
                 message="the training logs steps")
        # And the API is SIGKILLed mid-stream, and started again 2 s later
        os.killpg(stack.api.pid, signal.SIGKILL)
        killed_at = stack.row(run_id)
        time.sleep(2)
        stack.restart_api(kill=False)
        out, errors = follower.communicate(timeout=300)
    finally:
        if follower.poll() is None:
            follower.kill()
    # Then it ended with the run, exit 0
    assert killed_at[0] == "running", killed_at
    assert follower.returncode == 0, errors
    events = [json.loads(line) for line in out.splitlines()]
    printed = [(e["seq"], e["line"]) for e in events if e["event"] == "log"]
    # And the lines it printed are the registry's log: in order, no gap, no duplicate
    assert printed == stack.log_rows(run_id)
    assert [seq for seq, _ in printed] == list(range(printed[0][0], printed[0][0] + len(printed)))
    assert events[-1]["event"] == "status" and events[-1]["status"] == "completed"


def test_cancel_a_running_training_then_resume_and_download_a_checkpoint(stack, tmp_path):
    submitted = stack.tunix("submit", *TINY, "--max-steps", "100000", "--checkpoint-every-steps", "10", "--json")
    run_id = json.loads(submitted.stdout)["run_id"]
    wait_for(lambda: (stack.row(run_id)[1] or {}).get("step", 0) >= 20, 180, message="training under way")
    # When it is cancelled
    cancelled = stack.tunix("cancel", run_id)
    assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout, cancelled.stdout
    # Then it ends cancelled, and waiting on it exits 3
    waited = stack.tunix("wait", run_id, "--timeout", "120")
    assert waited.returncode == 3, (waited.stdout, waited.stderr)
    # And its checkpoints are listed, and one downloads with its size and sha256
    listed = json.loads(stack.tunix("checkpoints", run_id, "--json").stdout)
    assert listed, "no checkpoint recorded"
    latest = max(listed, key=lambda c: c["step"])
    path = tmp_path / "latest.tar"
    result = stack.tunix("download", run_id, str(latest["step"]), "-o", str(path))
    assert result.returncode == 0, result.stderr
    data = path.read_bytes()
    assert len(data) == latest["size_bytes"] and hashlib.sha256(data).hexdigest() == latest["sha256"]
    assert "size and sha256 checked" in result.stdout
    table = stack.tunix("checkpoints", run_id)
    assert str(latest["step"]) in table.stdout
    # And a step never recorded is the API's 404, no file left behind
    missing = stack.tunix("download", run_id, "999999", "-o", str(tmp_path / "none.tar"))
    assert missing.returncode == 5 and "HTTP 404" in one_line_error(missing)
    assert not list(tmp_path.glob("none.tar*"))
    # And resume queues it again; cancelling that before it runs far ends it cancelled too
    resumed = stack.tunix("resume", run_id, "--json")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["status"] == "pending", resumed.stderr
    assert stack.tunix("cancel", run_id).returncode == 0
    assert stack.tunix("wait", run_id, "--timeout", "120").returncode == 3


def test_batch_submits_many_runs_from_json_lines(stack, tmp_path):
    path = tmp_path / "sweep.jsonl"
    path.write_text("\n".join(json.dumps({"dataset_key": "synthetic", "model_id": "llama3-tiny", "learning_rate": lr})
                              for lr in (0.1, 0.01, 0.001)) + "\n")
    result = stack.tunix("batch", str(path))
    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    assert len(ids) == 3
    for run_id in ids:
        assert stack.tunix("wait", run_id, "--timeout", "120").returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"dataset_key": "synthetic", "model_id": "llama3-tiny"}, {"dataset_key": "x"}]))
    refused = stack.tunix("batch", str(bad))
    assert refused.returncode == 5 and "runs.1" in one_line_error(refused)


def test_a_sweep_from_a_file_is_submitted_watched_and_listed(stack, tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"name": "dry grid", "base": {"dataset_key": "synthetic", "model_id": "llama3-tiny"},
                                "grid": {"seed": [1, 2, 2]}}))
    result = stack.tunix("sweep", "submit", str(path))
    assert result.returncode == 0, result.stderr
    sweep_id = result.stdout.strip()
    assert "2 trials queued, 1 duplicates not created" in result.stderr
    wait_for(lambda: json.loads(stack.tunix("sweep", "status", sweep_id, "--json").stdout)["status"] == "finished",
             120, message="sweep finished")
    shown = stack.tunix("sweep", "status", sweep_id)  # in a pipe: tab-separated, header first
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split("\t") == ["run", "status", "step", "eval_loss", "params"]  # the sweep's metric
    assert sorted(line.split("\t")[4] for line in lines[1:]) == ['{"seed": 1}', '{"seed": 2}']
    assert "dry grid: finished, 2 trials (2 completed)" in shown.stderr
    listed = stack.tunix("sweep", "list")
    assert sweep_id in listed.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "base": {"dataset_key": "synthetic", "model_id": "llama3-tiny"},
                               "grid": {"learning_rate": [7.0]}}))
    refused = stack.tunix("sweep", "submit", str(bad))
    assert refused.returncode == 5 and "grid.learning_rate" in one_line_error(refused)


# --------------------------------------------------------------------------- a real terminal


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    name = f"tunix-{uuid.uuid4().hex[:8]}"
    socket = str(tmp_path / "tmux.sock")

    def run(*args):
        return subprocess.run(["tmux", "-S", socket, *args], capture_output=True, text=True, timeout=30)

    run.name = name
    yield run
    run("kill-server")


def _pane(tmux):
    return tmux("capture-pane", "-p", "-t", tmux.name).stdout


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_in_a_terminal_the_progress_bar_renders_and_ctrl_c_on_follow_leaves_the_run_running(stack, tmux,
                                                                                            tmp_path):
    env = f"TUNIX_URL={stack.url}"
    status_file = tmp_path / "exit"
    tmux("new-session", "-d", "-s", tmux.name, "-x", "140", "-y", "40")
    # When `tunix submit --wait` runs in a terminal
    tmux("send-keys", "-t", tmux.name,
         f"{env} {TUNIX} submit {' '.join(TINY)} --max-steps 300 --wait; echo EXIT=$? > {status_file}", "Enter")
    # Then a progress bar shows the step out of the total and the loss, then the outcome
    bar = re.compile(r"run [0-9a-f]{8} .*━.* (\d+)/300 loss \d+\.\d{4}")
    pane = wait_for(lambda: (lambda p: p if any(0 < int(m.group(1)) < 300 for m in bar.finditer(p)) else None)(
        _pane(tmux)), 180, message="a progress bar with step/300 and the loss, mid-way")
    assert "━" in pane, pane
    wait_for(status_file.exists, 300, message="submit --wait ended")
    assert status_file.read_text().strip() == "EXIT=0", _pane(tmux)
    final = _pane(tmux)
    assert "300/300" in final and "completed: final loss" in final, final
    # When `tunix submit --follow` streams a longer one and Ctrl-C is pressed
    status_file.unlink()
    tmux("send-keys", "-t", tmux.name, "clear", "Enter")
    tmux("send-keys", "-t", tmux.name,
         f"{env} {TUNIX} submit {' '.join(TINY)} --max-steps 100000 --follow; echo EXIT=$? > {status_file}", "Enter")
    pane = wait_for(lambda: (lambda p: p if "step " in p and "loss" in p else None)(_pane(tmux)), 180,
                    message="log lines of the followed run")
    run_id = next(word for line in pane.splitlines() if line.startswith("run ") and "submitted" in line
                  for word in line.split()[1:2])
    tmux("send-keys", "-t", tmux.name, "C-c", "")
    wait_for(status_file.exists, 30, message="the follow ended on Ctrl-C")
    # Then it exits 130 with one line saying the run goes on, no traceback, and the run still runs
    assert status_file.read_text().strip() == "EXIT=130"
    pane = _pane(tmux)
    assert f"stopped following; run {run_id} goes on" in pane and "Traceback" not in pane, pane
    time.sleep(1)
    assert stack.row(run_id)[0] == "running"
    assert stack.tunix("cancel", run_id).returncode == 0
    assert stack.tunix("wait", run_id, "--timeout", "120").returncode == 3
