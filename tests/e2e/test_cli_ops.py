"""The ``tunix`` command's operations (the installed console script) against
a live API with no worker, so every run stays where the test puts it:
cancel and resume by filter, the fleet (``tunix workers``), a run's metrics
as a table and as the API's CSV, run, batch and sweep files in YAML,
``tunix sweep status`` naming the best trial by the sweep's metric, shell
completion, and an address where nothing listens: a one-shot command says
so at once, ``wait`` rides out an API restart."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from support import connect, free_port, one_line_error, start_api, wait_for

from tunix_cli import client as api

TUNIX = str(pathlib.Path(sys.executable).parent / "tunix")
DRY = ["--dataset-key", "synthetic", "--model-id", "llama3-tiny"]


class Stack:
    def __init__(self, database_url, data_dir, log_dir, api_process):
        self.database_url, self.data_dir, self.log_dir, self.api = database_url, data_dir, log_dir, api_process
        self.url = api_process.url
        self.conn = connect(database_url)

    def tunix(self, *args, timeout=60, url=None, **kwargs):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNIX_")}
        env.update(TUNIX_URL=url or self.url, COLUMNS="160", XDG_CONFIG_HOME=str(self.data_dir / "xdg"))
        return subprocess.run([TUNIX, *args], capture_output=True, text=True, timeout=timeout, env=env, **kwargs)

    def sql(self, statement, params=None):
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            rows = cur.fetchall() if cur.description else None
        self.conn.commit()
        return rows

    def submit(self, *args):
        result = self.tunix("submit", *DRY, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def complete(self, run_id, steps):
        """Mark a run completed with ``steps``: [(step, loss, eval_loss)], as a worker would have recorded."""
        self.sql("UPDATE tunix_runs SET status = 'completed', started_at = now(), completed_at = now(), "
                 "attempts = 1, result = %s WHERE id = %s", (json.dumps({"steps": steps[-1][0]}), run_id))
        for step, loss, eval_loss in steps:
            self.sql("INSERT INTO tunix_run_metrics (run_id, step, loss, learning_rate, grad_norm, attempt) "
                     "VALUES (%s, %s, %s, 0.001, 1.5, 1)", (run_id, step, loss))
            if eval_loss is not None:
                self.sql("INSERT INTO tunix_run_evals (run_id, step, eval_loss, examples, attempt) "
                         "VALUES (%s, %s, %s, 8, 1)", (run_id, step, eval_loss))


@pytest.fixture(scope="module")
def stack(databases, tmp_path_factory, log_dir):
    data_dir = tmp_path_factory.mktemp("cli-ops")
    url = databases.create()
    s = Stack(url, data_dir, log_dir, start_api(url, data_dir, log_dir, threads=4))
    yield s
    s.api.stop()
    s.conn.close()


# --------------------------------------------------------------------------- nothing listening


def test_one_shot_commands_at_an_address_where_nothing_listens_fail_within_seconds(stack):
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["status", str(uuid.uuid4())], ["submit", *DRY], ["workers"], ["logs", str(uuid.uuid4())]):
        # When a one-shot command asks it, with the default 30 s of patience
        started = time.monotonic()
        result = stack.tunix(*args, url=url)
        # Then it exits 6 at once, one line naming the URL and what to check
        assert time.monotonic() - started < 5, args
        assert result.returncode == 6, (args, result.stderr)
        line = one_line_error(result)
        assert url in line and "did not answer" in line and "--url" in line, line


def test_wait_rides_out_an_api_restart_and_a_once_answered_client_too(stack):
    run_id = stack.submit()
    port = int(stack.url.rsplit(":", 1)[1])
    # Given `tunix wait` on a pending run (no worker: it stays pending)
    waiter = subprocess.Popen([TUNIX, "wait", run_id, "--timeout", "60"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, TUNIX_URL=stack.url))
    try:
        time.sleep(1)
        # When the API is killed, stays down 2 s and comes back on the same port
        os.killpg(stack.api.pid, signal.SIGKILL)
        stack.api.proc.wait(10)
        stack.api.stop()
        time.sleep(2)
        stack.api = start_api(stack.database_url, stack.data_dir, stack.log_dir, threads=4, port=port)
        # And the run is cancelled
        assert stack.tunix("cancel", run_id).returncode == 0
        out, errors = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    # Then the wait rode it out and exited with the run's status (3: cancelled)
    assert waiter.returncode == 3, (out, errors)


def test_a_fail_fast_client_that_had_an_answer_retries_a_refused_connection():
    calls = []

    def handler(request):
        calls.append(request.url.path)
        if len(calls) in (2, 3):  # the API restarting: nothing listens for a moment
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, json={"data": []})

    client = api.Client("http://tunix.test", "", patience_s=10, fail_fast=True,
                        transport=httpx.MockTransport(handler))
    assert client.datasets() == []
    assert client.datasets() == [] and len(calls) == 4
    # Whereas before any answer, a refused connection raises at once
    def nothing_listens(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    refused = api.Client("http://tunix.test", "", patience_s=10, fail_fast=True,
                         transport=httpx.MockTransport(nothing_listens))
    started = time.monotonic()
    with pytest.raises(api.Unreachable, match="no connection could be opened"):
        refused.datasets()
    assert time.monotonic() - started < 1


# --------------------------------------------------------------------------- bulk moves


def test_cancel_and_resume_by_filter_move_every_match_and_say_how_many(stack):
    # Given three pending runs of one model (no other test here uses it) and one of another
    made = [stack.tunix("submit", "--dataset-key", "synthetic", "--model-id", "gemma3-tiny") for _ in range(3)]
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    ids = [m.stdout.strip() for m in made]
    other = stack.tunix("submit", *DRY)
    assert other.returncode == 0, other.stderr
    # When the model's runs are cancelled by filter
    cancelled = stack.tunix("cancel", "--model-id", "gemma3-tiny", "--status", "pending")
    # Then all three are, and the count says so
    assert cancelled.returncode == 0, cancelled.stderr
    assert "3 runs matched: 3 cancelled" in cancelled.stdout, cancelled.stdout
    assert {json.loads(stack.tunix("status", r, "--json").stdout)["status"] for r in ids} == {"cancelled"}
    assert json.loads(stack.tunix("status", other.stdout.strip(), "--json").stdout)["status"] == "pending"
    # And resume by filter queues them again (--json: the API's answer)
    resumed = stack.tunix("resume", "--model-id", "gemma3-tiny", "--status", "cancelled", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {"matched": 3, "moved": {"pending": 3}, "skipped": 0}
    # And a RUN_ID with a filter, or neither, is a usage error; a bad filter the API's 422
    assert stack.tunix("cancel", ids[0], "--status", "pending").returncode == 2
    assert stack.tunix("resume").returncode == 2
    bad = stack.tunix("cancel", "--status", "nope")
    assert bad.returncode == 5 and "status" in one_line_error(bad) and "HTTP 422" in one_line_error(bad)
    stack.tunix("cancel", "--status", "pending")


# --------------------------------------------------------------------------- fleet and metrics


def test_workers_shows_each_worker_and_the_queues(stack):
    # Given one worker process beating now, and runs pending on the dry queue
    stack.sql("INSERT INTO tunix_workers (worker_id, hostname, pid) VALUES ('host-a:4242', 'host-a', 4242) "
              "ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = clock_timestamp()")
    pending = [stack.submit() for _ in range(2)]
    try:
        as_json = stack.tunix("workers", "--json")
        shown = stack.tunix("workers")
    finally:
        stack.tunix("cancel", "--status", "pending")
        stack.sql("DELETE FROM tunix_workers WHERE worker_id = 'host-a:4242'")
    # Then --json is the API's fleet, and the table names the worker, alive, and the queues' depth
    assert as_json.returncode == 0, as_json.stderr
    fleet = json.loads(as_json.stdout)
    assert fleet["totals"]["workers"] == 1 and fleet["totals"]["alive"] == 1
    dry = next(q for q in fleet["queues"] if q["kind"] == "dry")
    assert dry["depth"] >= len(pending)
    lines = shown.stdout.splitlines()  # in a pipe: tab-separated, header first
    assert lines[0].split("\t") == ["worker", "state", "heartbeat", "runs"]
    assert lines[1].split("\t")[:2] == ["host-a:4242", "alive"]
    assert any(line.split("\t")[:2] == [dry["queue"], "dry"] and line.split("\t")[2] == str(dry["depth"])
               for line in lines), shown.stdout
    assert "1 hosts, 1 workers (1 alive, 0 lost)" in shown.stdout


def test_metrics_prints_a_table_and_the_apis_csv(stack, tmp_path):
    run_id = stack.submit()
    stack.tunix("cancel", run_id)
    stack.complete(run_id, [(1, 2.5, None), (2, 2.25, 2.75)])
    # When its metrics are asked as CSV
    as_csv = stack.tunix("metrics", run_id, "--csv")
    # Then it is the API's CSV (its \r\n line ends read as \n here; -o below keeps the bytes)
    assert as_csv.returncode == 0, as_csv.stderr
    answer = httpx.get(f"{stack.url}/api/tunix/runs/{run_id}/metrics.csv").content
    assert as_csv.stdout == answer.decode().replace("\r\n", "\n")
    rows = as_csv.stdout.splitlines()
    assert rows[0].startswith("step,attempt,loss,learning_rate,grad_norm,eval_loss") and len(rows) == 3
    assert rows[2].split(",")[:3] == ["2", "1", "2.25"] and rows[2].split(",")[5] == "2.75"
    # And -o writes it to a file; the table shows the eval loss where there is one
    path = tmp_path / "m.csv"
    assert stack.tunix("metrics", run_id, "--csv", "-o", str(path)).returncode == 0
    assert path.read_bytes() == answer
    table = stack.tunix("metrics", run_id).stdout.splitlines()
    assert table[0].split("\t") == ["step", "attempt", "loss", "eval_loss", "learning_rate", "grad_norm"]
    assert table[1].split("\t")[:4] == ["1", "1", "2.5000", "-"]
    assert table[2].split("\t")[:4] == ["2", "1", "2.2500", "2.7500"]
    assert stack.tunix("metrics", run_id, "--csv", "--json").returncode == 2


# --------------------------------------------------------------------------- YAML files and sweeps


def test_run_batch_and_sweep_files_in_yaml(stack, tmp_path):
    # Given a run request in YAML, its learning rate written 1e-4 (a string to YAML 1.1)
    run_file = tmp_path / "run.yaml"
    run_file.write_text("dataset_key: synthetic\nmodel_id: llama3-tiny\nlearning_rate: 1e-4\nname: yaml run\n"
                        "tags: [yaml]\nlora: {rank: 4}\n")
    # When it is submitted with -f, one flag overriding it
    result = stack.tunix("submit", "-f", str(run_file), "--max-steps", "7", "--json")
    # Then the API got numbers and the object
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["config"]["learning_rate"] == 0.0001 and run["config"]["max_steps"] == 7
    assert run["name"] == "yaml run" and run["tags"] == ["yaml"] and run["config"]["lora"]["rank"] == 4
    # And a batch in YAML is a list of requests
    batch = tmp_path / "runs.yml"
    batch.write_text("- {dataset_key: synthetic, model_id: llama3-tiny, seed: 1}\n"
                     "- {dataset_key: synthetic, model_id: llama3-tiny, seed: 2}\n")
    made = stack.tunix("batch", str(batch))
    assert made.returncode == 0 and len(made.stdout.split()) == 2, made.stderr
    # And `tunix sweep -f` submits a sweep file, as `tunix sweep submit` does
    sweep_file = tmp_path / "sweep.yml"
    sweep_file.write_text("name: seeds\nbase: {dataset_key: synthetic, model_id: llama3-tiny}\n"
                          "grid: {seed: [1, 2, 3]}\n")
    swept = stack.tunix("sweep", "-f", str(sweep_file))
    assert swept.returncode == 0 and "3 trials queued" in swept.stderr, swept.stderr
    assert json.loads(stack.tunix("sweep", "status", swept.stdout.strip(), "--json").stdout)["name"] == "seeds"
    assert stack.tunix("sweep").returncode == 2
    # And a file that is not YAML is named, one line, exit 2, before any request
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset_key: [unclosed\n")
    refused = stack.tunix("submit", "-f", str(broken))
    assert refused.returncode == 2 and str(broken) in refused.stderr and "Traceback" not in refused.stderr
    stack.tunix("cancel", "--status", "pending")


def test_sweep_status_prints_the_best_trial_by_the_sweeps_metric_not_the_training_loss(stack, tmp_path):
    # Given a sweep from a YAML file, ranked on eval loss (the default metric)
    path = tmp_path / "sweep.yaml"
    path.write_text("name: ranked\nbase: {dataset_key: synthetic, model_id: llama3-tiny}\ngrid:\n"
                    "  learning_rate: [1e-3, 1e-4]\n")
    made = stack.tunix("sweep", "submit", "-f", str(path), "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["metric"] == "eval_loss" and created["trials"] == 2
    low_loss, low_eval = (r["run_id"] for r in created["runs"])
    # And its trials completed: the first with the lower training loss, the second the lower eval loss
    stack.tunix("cancel", "--sweep", created["sweep_id"])
    stack.complete(low_loss, [(10, 1.25, 3.5)])
    stack.complete(low_eval, [(10, 2.75, 1.5)])
    # When its status is printed
    shown = stack.tunix("sweep", "status", created["sweep_id"])
    # Then the best trial is the lower eval loss, with its eval loss (not its training loss)
    assert shown.returncode == 0, shown.stderr
    best = next(line for line in shown.stderr.splitlines() if line.startswith("best:"))
    assert best.startswith(f"best: {low_eval} eval_loss 1.5000 (lowest)"), best
    assert "2.7500" not in best
    lines = shown.stdout.splitlines()
    assert lines[0].split("\t")[3] == "eval_loss"
    assert [line.split("\t")[:4] for line in lines[1:]] == [[low_eval, "completed", "10", "1.5000"],
                                                             [low_loss, "completed", "10", "3.5000"]]
    # And a sweep file given twice (PATH and -f) is a usage error
    assert stack.tunix("sweep", "submit", str(path), "-f", str(path)).returncode == 2
    # And a sweep that draws a field its grid lists too is made, with the answer's warning printed
    path.write_text("name: both\nbase: {dataset_key: synthetic, model_id: llama3-tiny}\ngrid: {seed: [1, 2]}\n"
                    "random: {count: 1, space: {seed: {choice: [3]}}}\n")
    made = stack.tunix("sweep", "submit", str(path))
    assert made.returncode == 0, made.stderr
    assert "warning: seed is both in grid and random.space: each trial takes the draw" in made.stderr, made.stderr
    stack.tunix("cancel", "--sweep", made.stdout.strip())


# --------------------------------------------------------------------------- completion


def test_shell_completion_script_and_its_answers(stack):
    # The script for bash is click's, calling back the command with _TUNIX_COMPLETE
    script = stack.tunix("completion", "bash")
    assert script.returncode == 0 and "_TUNIX_COMPLETE=bash_complete" in script.stdout, script.stdout
    for shell in ("zsh", "fish"):
        assert "_TUNIX_COMPLETE" in stack.tunix("completion", shell).stdout
    # And the callback completes commands and options
    env = dict(os.environ, _TUNIX_COMPLETE="bash_complete", COMP_WORDS="tunix wor", COMP_CWORD="1")
    answer = subprocess.run([TUNIX], capture_output=True, text=True, timeout=30, env=env)
    assert answer.stdout.split() == ["plain,workers"], answer.stdout
    env.update(COMP_WORDS="tunix cancel --sw", COMP_CWORD="2")
    answer = subprocess.run([TUNIX], capture_output=True, text=True, timeout=30, env=env)
    assert answer.stdout.split() == ["plain,--sweep"], answer.stdout
