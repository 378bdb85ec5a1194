"""Runs you can find (issue #21), through gunicorn on real PostgreSQL: a
name and tags at submit (single and batch), an owner's or admin's PATCH of
name, tags and notes, the history's filters (owner, tag, sweep, q, on top
of status, mode, dataset and model) with its counts by status, and the CSV
exports, each equal to the JSON answer it mirrors.

Users turn authentication on for a whole database, so this module has its
own database and API (as tests/e2e/test_ownership_http.py).  No worker: the
runs stay where the test puts them (statuses are set in SQL).
"""

import csv
import io
import json
import uuid

import pytest
import requests
from click.testing import CliRunner

from tunix_cli import cli

from support import connect, first_admin, start_api

DRY = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": True}
#: The installation's API_TOKEN: an admin with no name.
LEGACY_TOKEN = "legacy-" + uuid.uuid4().hex


class User:
    def __init__(self, url, token):
        self.url, self.token, self.session = url, token, requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method, path, body=None, **params):
        return self.session.request(method, self.url + path, json=body, params=params, timeout=30)

    def submit(self, **fields):
        response = self.request("POST", "/api/tunix/run", {**DRY, **fields}, mode="async")
        assert response.status_code == 202, response.text
        return response.json()

    def runs(self, **params):
        response = self.request("GET", "/api/tunix/runs", **{"limit": 100, **params})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def stack(databases, tmp_path_factory, log_dir):
    data_dir = tmp_path_factory.mktemp("run-search")
    url = databases.create()
    root_token = first_admin(url)
    api = start_api(url, data_dir, log_dir, threads=4, API_TOKEN=LEGACY_TOKEN)
    users = {"root": User(api.url, root_token), "legacy": User(api.url, LEGACY_TOKEN)}
    for name in ("alice", "bob"):
        response = users["root"].request("POST", "/api/tunix/users", {"name": name, "role": "member"})
        assert response.status_code == 201, response.text
        users[name] = User(api.url, response.json()["token"]["token"])
    conn = connect(url)
    yield users, conn
    api.stop()
    conn.close()


def fields_of(response):
    assert response.status_code == 422, response.text
    return sorted(f["field"] for f in response.json()["error"]["fields"])


def csv_rows(response):
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.reader(io.StringIO(response.text)))


def as_cell(value):
    """A JSON value as its CSV cell (app/csv_export.py)."""
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def test_a_name_and_tags_come_with_the_submit_and_the_batch(stack):
    users, conn = stack
    alice = users["alice"]
    # A single submit: the run answers with them; its stored spec has neither
    run = alice.submit(name="baseline, take 1", tags=["base", "lr:2e-5"])
    assert (run["name"], run["tags"], run["notes"]) == ("baseline, take 1", ["base", "lr:2e-5"], "")
    assert "name" not in run["config"] and "tags" not in run["config"]
    # A submit without them: none
    bare = alice.submit()
    assert (bare["name"], bare["tags"]) == (None, [])
    # A batch: each run its own, in request order
    response = alice.request("POST", "/api/tunix/runs/batch",
                             {"runs": [{**DRY, "name": "b0", "tags": ["batch"]}, DRY, {**DRY, "tags": ["batch", "x"]}]})
    assert response.status_code == 202, response.text
    assert [(r["name"], r["tags"]) for r in response.json()["data"]] == [("b0", ["batch"]), (None, []),
                                                                         (None, ["batch", "x"])]
    # Bad ones are 422s naming them, and nothing is written
    assert fields_of(alice.request("POST", "/api/tunix/run", {**DRY, "tags": ["ok", "no space"]})) == ["tags.1"]
    assert fields_of(alice.request("POST", "/api/tunix/run", {**DRY, "name": "x" * 201, "tags": ["a", "a"]})) == [
        "name", "tags"]
    assert fields_of(alice.request("POST", "/api/tunix/runs/batch", {"runs": [DRY, {**DRY, "tags": "a"}]})) == [
        "runs.1.tags"]
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM tunix_runs")
        assert cur.fetchone()[0] == 5


def test_the_owner_or_an_admin_edits_name_tags_and_notes(stack):
    users, _ = stack
    alice, bob, root = users["alice"], users["bob"], users["root"]
    run_id = alice.submit(name="first", tags=["a"])["run_id"]
    path = f"/api/tunix/runs/{run_id}"
    # The owner changes what she sends, and nothing else
    response = alice.request("PATCH", path, {"notes": "diverged at step 40"})
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["tags"], response.json()["notes"]) == (
        "first", ["a"], "diverged at step 40")
    response = alice.request("PATCH", path, {"name": None, "tags": ["a", "b"]})
    assert (response.json()["name"], response.json()["tags"]) == (None, ["a", "b"])
    # Another member: 403 naming the owner, and the run is as it was
    response = bob.request("PATCH", path, {"notes": "mine now"})
    assert response.status_code == 403 and response.json()["error"]["owner"] == "alice", response.text
    # An admin: any run
    assert root.request("PATCH", path, {"name": "renamed"}).json()["name"] == "renamed"
    assert alice.request("GET", path).json()["notes"] == "diverged at step 40"
    # Bad edits name their fields; an unknown run is a 404
    assert fields_of(alice.request("PATCH", path, {})) == ["body"]
    assert fields_of(alice.request("PATCH", path, {"tags": None, "notes": "n" * 10_001, "owner": "bob"})) == [
        "notes", "owner", "tags"]
    assert alice.request("PATCH", f"/api/tunix/runs/{uuid.uuid4()}", {"notes": ""}).status_code == 404
    assert root.request("PATCH", "/api/tunix/runs/not-a-run", {"notes": ""}).status_code == 404


def test_the_history_filters_combine_and_count_by_status(stack):
    users, conn = stack
    alice, bob, root = users["alice"], users["bob"], users["root"]
    tag = "t" + uuid.uuid4().hex[:8]
    a1 = alice.submit(name="Search ME alpha", tags=[tag, "lr:1e-4"])["run_id"]
    a2 = alice.submit(name="beta", tags=[tag])["run_id"]
    b1 = bob.submit(name="alpha of bob", tags=[tag, "lr:1e-4"])["run_id"]
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_runs SET status = 'failed', completed_at = now() WHERE id = %s", (a2,))
    sweep = root.request("POST", "/api/tunix/sweeps",
                         {"name": "s", "base": DRY, "grid": {"learning_rate": [1e-4, 2e-4]}})
    assert sweep.status_code == 202, sweep.text
    sweep_id = sweep.json()["sweep_id"]

    def ids(who=root, **params):
        page = who.runs(**params)
        assert page["pagination"]["total"] == len(page["data"]) == sum(page["counts"].values())
        return {r["run_id"] for r in page["data"]}

    assert ids(tag=tag) == {a1, a2, b1}
    assert ids(tag=[tag, "lr:1e-4"]) == {a1, b1}
    assert ids(alice, tag=tag, owner="me") == {a1, a2}
    assert ids(tag=tag, owner="bob") == {b1}
    assert ids(tag=tag, q="ALPHA") == {a1, b1}
    assert ids(tag=tag, q="alpha", owner="alice") == {a1}
    assert ids(tag=tag, status="failed") == {a2}
    assert ids(tag=tag, status="failed", q="alpha") == set()
    assert ids(q="%") == set()  # no wildcard: a substring, as written
    assert len(ids(sweep_id=sweep_id)) == 2
    assert ids(sweep_id=sweep_id, tag=tag) == set()
    # Empty filters are no filters (as the console sends them)
    assert ids(tag=tag, q="", owner="", sweep_id="") == {a1, a2, b1}
    # The counts are every page's, by status
    page = root.runs(tag=tag, limit=1)
    assert page["counts"] == {"pending": 2, "failed": 1} and page["pagination"]["total"] == 3
    assert len(page["data"]) == 1


def test_bad_filters_are_422s_naming_them(stack):
    users, _ = stack
    root, legacy = users["root"], users["legacy"]
    bad = {"status": "paused", "mode": "both", "sweep_id": "nope", "tag": ["fine", "not fine"], "q": "x" * 201}
    response = root.request("GET", "/api/tunix/runs", **bad)
    assert fields_of(response) == ["mode", "q", "status", "sweep_id", "tag"]
    assert fields_of(root.request("GET", "/api/tunix/runs", tag=[f"t{i}" for i in range(21)])) == ["tag"]
    assert fields_of(root.request("GET", "/api/tunix/runs", owner="nul\x00")) == ["owner"]
    # "me" with no user (the installation's API_TOKEN): nobody to mean
    assert fields_of(legacy.request("GET", "/api/tunix/runs", owner="me")) == ["owner"]
    assert fields_of(root.request("GET", "/api/tunix/runs.csv", status="paused")) == ["status"]
    assert fields_of(root.request("GET", "/api/tunix/runs.csv", limit=10_001)) == ["limit"]


def test_the_csv_exports_equal_the_json_answers(stack):
    users, conn = stack
    alice, root = users["alice"], users["root"]
    tag = "csv" + uuid.uuid4().hex[:8]
    first = alice.submit(name='quoted "name", with a comma', tags=[tag, "b"])["run_id"]
    alice.submit(tags=[tag])
    with conn.cursor() as cur:
        cur.execute("""UPDATE tunix_runs SET status = 'completed', started_at = created_at, completed_at = now(),
                       duration_seconds = 1.5, result = '{"final_loss": 0.25}' WHERE id = %s""", (first,))
    # The history: one row per run of the same page, the JSON's values
    runs = root.runs(tag=tag)["data"]
    rows = csv_rows(root.request("GET", "/api/tunix/runs.csv", tag=tag))
    columns = ["run_id", "name", "owner", "status", "mode", "dataset_key", "model_id", "tags", "priority", "sweep_id",
               "created_at", "started_at", "completed_at", "duration_seconds", "final_loss"]
    assert rows[0] == columns
    expected = [[as_cell(v) for v in (
        r["run_id"], r["name"], r["owner"], r["status"], r["mode"], r["dataset_key"], r["model_id"],
        " ".join(r["tags"]), r["priority"], r["sweep_id"], r["queued_at"], r["started_at"], r["completed_at"], r["duration_seconds"],
        (r["result"] or {}).get("final_loss"))] for r in runs]
    assert rows[1:] == expected and len(expected) == 2
    (completed,) = [row for row in rows[1:] if row[0] == first]
    assert completed[columns.index("final_loss")] == "0.25" and completed[1] == 'quoted "name", with a comma'
    assert completed[columns.index("tags")] == f"{tag} b"

    # A run's metrics: every step, and each metric it recorded a column
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO tunix_run_metrics (run_id, step, loss, learning_rate, grad_norm, attempt, metrics)
                       VALUES (%s, 1, 2.5, 1e-4, 0.5, 1, '{"kl": 0.1}'), (%s, 2, 2.0, 1e-4, null, 1,
                       '{"kl": 0.2, "reward_mean": 1.0}')""", (first, first))
        cur.execute("INSERT INTO tunix_run_evals (run_id, step, eval_loss, examples, attempt) "
                    "VALUES (%s, 2, 2.2, 4, 1)", (first,))
    points = alice.request("GET", f"/api/tunix/runs/{first}/metrics").json()["data"]
    rows = csv_rows(alice.request("GET", f"/api/tunix/runs/{first}/metrics.csv"))
    assert rows[0] == ["step", "attempt", "loss", "learning_rate", "grad_norm", "eval_loss", "kl", "reward_mean"]
    assert rows[1:] == [[as_cell(p[c]) for c in rows[0][:6]] + [as_cell(p["metrics"].get(m)) for m in rows[0][6:]]
                        for p in points]
    assert root.request("GET", f"/api/tunix/runs/{uuid.uuid4()}/metrics.csv").status_code == 404

    # A sweep's trials: its parameters (by name), then status, step, loss, eval_loss
    sweep = root.request("POST", "/api/tunix/sweeps", {"name": "csv", "base": DRY,
                                                       "grid": {"learning_rate": [1e-4, 2e-4], "batch_size": [4]}})
    sweep_id = sweep.json()["sweep_id"]
    trials = root.request("GET", f"/api/tunix/sweeps/{sweep_id}").json()["runs"]
    rows = csv_rows(root.request("GET", f"/api/tunix/sweeps/{sweep_id}/trials.csv"))
    assert rows[0] == ["run_id", "batch_size", "learning_rate", "status", "step", "loss", "eval_loss"]
    assert rows[1:] == [[t["run_id"], as_cell(t["params"]["batch_size"]), as_cell(t["params"]["learning_rate"]),
                         t["status"], as_cell(t["step"]), as_cell(t["loss"]), as_cell(t["eval_loss"])] for t in trials]
    assert root.request("GET", f"/api/tunix/sweeps/{uuid.uuid4()}/trials.csv").status_code == 404


def test_the_cli_names_tags_finds_and_annotates_runs(stack):
    users, _ = stack
    alice = users["alice"]
    tag = "cli" + uuid.uuid4().hex[:8]

    def tunix(*args):
        result = CliRunner().invoke(cli.main, ["--url", alice.url, "--token", alice.token, *args])
        assert result.exit_code == 0, result.output
        return result.output

    # tunix submit --name --tag
    run_id = tunix("submit", "--dataset-key", "synthetic", "--model-id", "llama3-tiny", "--name", "from the cli",
                   "--tag", tag, "--tag", "cli").strip()
    # tunix list --mine --tag --search: the run, with its name and tags
    page = json.loads(tunix("list", "--mine", "--tag", tag, "--tag", "cli", "--search", "THE CLI", "--json"))
    assert [(r["run_id"], r["name"], r["tags"]) for r in page["data"]] == [(run_id, "from the cli", [tag, "cli"])]
    assert page["counts"] == {"pending": 1}
    table = tunix("list", "--owner", "alice", "--tag", tag)
    assert "from the cli" in table and f"{tag} cli" in table and "1 of 1 (1 pending)" in table
    # tunix notes RUN TEXT
    assert json.loads(tunix("notes", run_id, "a note", "--json"))["notes"] == "a note"
    assert alice.request("GET", f"/api/tunix/runs/{run_id}").json()["notes"] == "a note"
