"""A run's whole log and its store objects, end to end: a real worker's
(tiny) training stores its log when the attempt ends, and the API and
``tunix logs --all`` answer it whole, past what the registry keeps
(``app/run_artifacts.py``, ``workers/runner.py``: ``_store_log``).

The registry keeps a run's first ``MAX_LOG_LINES`` lines
(``workers/monitor.py``), a constant of the worker's, and a tiny training
prints a few dozen lines.  So the run's registry log is filled to its bound
before a worker claims it (as a long run's first attempts would leave it):
every line of the training is then past the bound, counted by the registry
and not kept there, and only the stored log has them.
"""

import gzip
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import requests

from support import ApiClient, connect, start_api
from tasks import artifacts
from tasks.artifacts import ArtifactStore
from workers.monitor import MAX_LOG_LINES

pytestmark = pytest.mark.training

TUNIX = str(pathlib.Path(sys.executable).parent / "tunix")
STEPS = 6
BODY = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": STEPS,
        "batch_size": 2, "max_seq_length": 32, "seed": 5, "device": "cpu", "checkpoint_every_steps": 3}


@pytest.fixture(scope="module")
def stack(databases, data_dir, log_dir):
    """An API on a database of its own, whose runs no worker claims until a
    test starts one (``worker_launch(url=...)``)."""
    url = databases.create()
    process = start_api(url, data_dir, log_dir)
    conn = connect(url)
    yield type("Stack", (), {"url": url, "api": ApiClient(process.url), "conn": conn, "base": process.url,
                             "launch": None})
    conn.close()
    process.stop()


def start_workers(stack, worker_launch):
    """The stack's one worker launch, started on first use."""
    if stack.launch is None:
        stack.launch = worker_launch(workers=1, threads=2, url=stack.url)
    return stack.launch


def fill_registry_log(conn, run_id, lines):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tunix_run_logs (run_id, seq, stream, line) "
                    "SELECT %s, n, 'system', 'earlier line ' || n FROM generate_series(1, %s) AS n",
                    (run_id, lines))


def registry_lines_after(conn, run_id, seq):
    with conn.cursor() as cur:
        cur.execute("SELECT line FROM tunix_run_logs WHERE run_id = %s AND seq > %s ORDER BY seq", (run_id, seq))
        return [line for (line,) in cur.fetchall()]


def test_a_trainings_whole_log_past_the_registrys_bound_is_downloadable_searchable_and_listed(
        stack, worker_launch, data_dir):
    api = stack.api
    # Given a training whose registry log is already at its bound
    response = api.submit(BODY, mode="async")
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    fill_registry_log(stack.conn, run_id, MAX_LOG_LINES)
    # When a worker runs it to its end
    start_workers(stack, worker_launch)
    run = api.wait_final(run_id, timeout=300)
    assert run["status"] == "completed", run["error"]
    # Then the registry kept none of the training's lines, only how many there were
    past = registry_lines_after(stack.conn, run_id, MAX_LOG_LINES)
    assert len(past) == 1 and past[0].endswith(f"log lines not stored (bound: {MAX_LOG_LINES} per run)"), past
    not_stored = int(re.match(r"(\d+) ", past[0]).group(1))
    # And the whole log is the stored one: exactly those lines, every step line among them
    full = api.get(f"/api/tunix/runs/{run_id}/logs/full")
    assert full.status_code == 200 and full.headers["Content-Type"].startswith("text/plain")
    assert full.headers["X-Log-Source"] == "store"
    lines = full.text.splitlines()
    assert len(lines) == not_stored
    steps = [int(m.group(1)) for m in (re.match(rf"step (\d+)/{STEPS} loss ", line) for line in lines) if m]
    assert steps == list(range(1, STEPS + 1))
    assert not any(line.startswith("earlier line ") for line in lines)
    # And a search finds the last step line by its number in that text
    found = api.get(f"/api/tunix/runs/{run_id}/logs/search", q=f"STEP {STEPS}/{STEPS} LOSS").json()
    last = next(i for i, line in enumerate(lines, 1) if line.startswith(f"step {STEPS}/{STEPS} loss "))
    assert [(m["line"], m["attempt"], m["text"]) for m in found["data"]] == [(last, 1, lines[last - 1])]
    # And `tunix logs --all` prints the same text
    cli = subprocess.run([TUNIX, "logs", run_id, "--all"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, TUNIX_URL=stack.base))
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == full.text

    # When the run's artifacts are listed
    listing = api.get(f"/api/tunix/runs/{run_id}/artifacts")
    assert listing.status_code == 200, listing.text
    items = {item["key"]: item for item in listing.json()["data"]}
    # Then they are the store's objects of the run, each with its size on disk
    root = pathlib.Path(data_dir) / "artifacts"
    on_disk = {str(p.relative_to(root)): p.stat().st_size for p in (root / artifacts.run_prefix(run_id)).rglob("*")
               if p.is_file()}
    assert {key: item["size_bytes"] for key, item in items.items()} == on_disk
    kinds = sorted(item["kind"] for item in items.values())
    recorded = api.get(f"/api/tunix/runs/{run_id}/checkpoints").json()["data"]
    assert recorded, "the training recorded no checkpoint"
    assert kinds == sorted(["manifest", "summary", "log"] + ["checkpoint"] * len(recorded))
    # And each downloads: the manifest and summary as stored, the log gzipped
    # (the whole log's text), each checkpoint the recorded tar
    store = ArtifactStore(f"file://{root}")
    for item in items.values():
        got = requests.get(stack.base + item["download"], timeout=30)
        assert got.status_code == 200, (item, got.text[:200])
        assert len(got.content) == item["size_bytes"]
        if item["kind"] in ("manifest", "summary"):
            assert got.json() == store.get_json(item["key"])
        elif item["kind"] == "log":
            assert item["attempt"] == 1
            assert gzip.decompress(got.content).decode() == full.text
        else:
            row = next(r for r in recorded if r["step"] == item["step"])
            assert got.headers["X-Checkpoint-SHA256"] == row["sha256"] and row["size_bytes"] == item["size_bytes"]


def test_a_dry_runs_whole_log_is_its_registry_lines(stack, worker_launch):
    api = stack.api
    start_workers(stack, worker_launch)
    # Given a dry run, ended
    run_id = api.submit({"dataset_key": "synthetic", "model_id": "llama3-tiny"}, mode="async").json()["run_id"]
    run = api.wait_final(run_id, timeout=60)
    assert run["status"] == "completed", run["error"]
    # When its whole log is asked for, then it is the registry's lines
    full = api.get(f"/api/tunix/runs/{run_id}/logs/full")
    assert full.status_code == 200 and full.headers["X-Log-Source"] == "registry"
    assert full.text.splitlines() == [line for line in registry_lines_after(stack.conn, run_id, 0)
                                      for line in line.split("\n")]
    # And its artifacts are its manifest alone
    items = api.get(f"/api/tunix/runs/{run_id}/artifacts").json()["data"]
    assert [item["kind"] for item in items] == ["manifest"]
    assert json.loads(requests.get(stack.base + items[0]["download"], timeout=30).text)["dry_run"] is True


def test_an_unknown_run_has_no_log_nor_artifacts(stack):
    for path in ("logs/full", "logs/search?q=x", "artifacts"):
        response = requests.get(f"{stack.base}/api/tunix/runs/00000000-0000-0000-0000-000000000000/{path}",
                                timeout=30)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "run_not_found"
