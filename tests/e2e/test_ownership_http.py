"""Whose runs are whose (issue #21), through gunicorn on real PostgreSQL: a
member cancels, resumes and bulk-moves only their own runs and sweeps, an
admin (and ``API_TOKEN``) all of them; a member's priority stops at
``PRIORITY_CEILING``; idempotency keys are per user; every move, refused or
not, is in the audit trail.

Users turn authentication on for a whole database, so this module has its
own database and API (never the session's).  No worker launch until the
last test: the runs moved here stay pending where they are put, so every
status the test reads is the one the moves left.
"""

import uuid

import pytest
import requests

from support import connect, first_admin, scalar, start_api, wait_for

DRY = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": True}
#: The installation's API_TOKEN: an admin with no name, whose runs have no owner.
LEGACY_TOKEN = "legacy-" + uuid.uuid4().hex
CEILING = 100


class Stack:
    """The module's API, its database, and one HTTP session per user."""

    def __init__(self, url, database_url, data_dir, log_dir, api):
        self.url, self.database_url, self.data_dir, self.log_dir, self.api = url, database_url, data_dir, log_dir, api
        self.conn = connect(database_url)
        self.tokens = {}

    def as_(self, who):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return User(self.url, session)

    def status(self, run_id):
        return scalar(self.conn, "SELECT status FROM tunix_runs WHERE id = %s", (run_id,))

    def statuses(self, owner):
        with self.conn.cursor() as cur:
            cur.execute("SELECT id::text, status FROM tunix_runs WHERE owner IS NOT DISTINCT FROM %s", (owner,))
            return dict(cur.fetchall())


class User:
    def __init__(self, url, session):
        self.url, self.session = url, session

    def post(self, path, body=None, **headers):
        return self.session.post(self.url + path, json=body, headers=headers, timeout=30)

    def get(self, path, **params):
        return self.session.get(self.url + path, params=params, timeout=30)

    def submit(self, body=DRY, **headers):
        response = self.post("/api/tunix/run?mode=async", body, **headers)
        assert response.status_code in (200, 202), response.text
        return response.json()["run_id"]


@pytest.fixture(scope="module")
def stack(databases, tmp_path_factory, log_dir):
    data_dir = tmp_path_factory.mktemp("ownership")
    url = databases.create()
    # The first admin, as an operator makes one: tunix-admin on the server, the token on stdout alone.
    root_token = first_admin(url)
    api = start_api(url, data_dir, log_dir, threads=8, API_TOKEN=LEGACY_TOKEN, PRIORITY_CEILING=CEILING)
    s = Stack(api.url, url, data_dir, log_dir, api)
    s.tokens = {"root": root_token, "legacy": LEGACY_TOKEN}
    # The admin makes the members, through the API.
    for name in ("alice", "bob"):
        response = s.as_("root").post("/api/tunix/users", {"name": name, "role": "member"})
        assert response.status_code == 201, response.text
        s.tokens[name] = response.json()["token"]["token"]
    yield s
    s.api.stop()
    s.conn.close()


def audit(stack, **params):
    response = stack.as_("root").get("/api/tunix/audit", limit=500, **params)
    assert response.status_code == 200, response.text
    return [(e["user"], e["action"], e["status"]) for e in reversed(response.json()["data"])]


def refused(response, owner):
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden" and error["owner"] == owner, error
    return error["message"]


def test_a_member_cancels_and_resumes_only_their_own_runs_an_admin_any(stack):
    alice, bob, root = stack.as_("alice"), stack.as_("bob"), stack.as_("root")
    kept, mine = alice.submit(), alice.submit()
    # Bob's cancel of Alice's pending run: 403 naming her, and the run stays pending
    message = refused(bob.post(f"/api/tunix/runs/{kept}/cancel"), "alice")
    assert message == f"run {kept} belongs to 'alice'; a member moves only their own"
    assert stack.status(kept) == "pending"
    # Alice's own cancel succeeds; Bob's resume of the cancelled run is refused, and it stays cancelled
    assert alice.post(f"/api/tunix/runs/{mine}/cancel").json()["status"] == "cancelled"
    refused(bob.post(f"/api/tunix/runs/{mine}/resume"), "alice")
    assert stack.status(mine) == "cancelled"
    # Alice resumes it; the admin cancels her other run
    assert alice.post(f"/api/tunix/runs/{mine}/resume").status_code == 202
    assert stack.status(mine) == "pending"
    assert root.post(f"/api/tunix/runs/{kept}/cancel").status_code == 200
    assert stack.status(kept) == "cancelled"
    # A run with no owner (API_TOKEN's): only an admin moves it
    nobodys = stack.as_("legacy").submit()
    assert scalar(stack.conn, "SELECT owner FROM tunix_runs WHERE id = %s", (nobodys,)) is None
    assert "has no owner" in refused(alice.post(f"/api/tunix/runs/{nobodys}/cancel"), None)
    assert stack.status(nobodys) == "pending"
    assert stack.as_("legacy").post(f"/api/tunix/runs/{nobodys}/cancel").status_code == 200
    # An unknown run is still a 404 for a member (not a 403)
    assert bob.post(f"/api/tunix/runs/{uuid.uuid4()}/cancel").status_code == 404
    # Every move, refused or not, is in the trail, by whom, with its run
    assert audit(stack, run_id=kept) == [("alice", "runs.submit", 202), ("bob", "runs.cancel", 403),
                                         ("root", "runs.cancel", 200)]
    assert audit(stack, run_id=mine) == [("alice", "runs.submit", 202), ("alice", "runs.cancel", 200),
                                         ("bob", "runs.resume", 403), ("alice", "runs.resume", 202)]
    assert audit(stack, run_id=nobodys) == [(None, "runs.submit", 202), ("alice", "runs.cancel", 403),
                                            (None, "runs.cancel", 200)]
    entry = stack.as_("root").get("/api/tunix/audit", run_id=kept, action="runs.cancel", user="bob").json()["data"][0]
    assert entry["detail"]["error"] == "forbidden" and entry["run_ids"] == [kept]


def others(stack, status, user):
    """How many runs in ``status`` are not ``user``'s: what their bulk move must skip."""
    return scalar(stack.conn, "SELECT count(*) FROM tunix_runs WHERE status = %s AND owner IS DISTINCT FROM %s",
                  (status, user))


def test_a_members_bulk_move_acts_on_their_own_runs_and_counts_the_others_skipped(stack):
    alice, bob, root = stack.as_("alice"), stack.as_("bob"), stack.as_("root")
    alices = [alice.submit() for _ in range(3)]
    bobs = [bob.submit() for _ in range(2)]
    before, skipped = stack.statuses("alice"), others(stack, "pending", "bob")
    assert skipped >= 3 and all(before[r] == "pending" for r in alices)
    # Bob's bulk cancel over every pending run: his two move, the others are skipped and left as they were
    response = bob.post("/api/tunix/runs/cancel", {"status": "pending"})
    assert response.status_code == 202, response.text
    assert response.json() == {"matched": 2, "moved": {"cancelled": 2, "cancel_requested": 0}, "skipped": skipped}
    assert stack.statuses("alice") == before and {stack.status(r) for r in bobs} == {"cancelled"}
    # Bob's bulk resume of cancelled runs: his own again, the others' cancelled ones skipped
    skipped_resume = others(stack, "cancelled", "bob")
    assert skipped_resume >= 1
    response = bob.post("/api/tunix/runs/resume", {"status": "cancelled"})
    assert response.json() == {"matched": 2, "moved": {"pending": 2}, "skipped": skipped_resume}
    assert stack.statuses("alice") == before and {stack.status(r) for r in bobs} == {"pending"}
    # Alice's bulk cancel: hers alone
    mine, skipped_alice = sum(1 for s in before.values() if s == "pending"), others(stack, "pending", "alice")
    response = alice.post("/api/tunix/runs/cancel", {"status": "pending"})
    assert (response.json()["matched"], response.json()["skipped"]) == (mine, skipped_alice)
    assert {stack.status(r) for r in alices} == {"cancelled"} and {stack.status(r) for r in bobs} == {"pending"}
    # The admin's: everyone's, nothing skipped
    left = scalar(stack.conn, "SELECT count(*) FROM tunix_runs WHERE status = 'pending'")
    response = root.post("/api/tunix/runs/cancel", {"status": "pending"})
    assert (response.json()["matched"], response.json()["skipped"]) == (left, 0)
    assert scalar(stack.conn, "SELECT count(*) FROM tunix_runs WHERE status = 'pending'") == 0
    # The trail has each bulk move with its caller and counts
    trail = stack.as_("root").get("/api/tunix/audit", action="runs.cancel_matching").json()["data"]
    assert [(e["user"], e["status"], e["detail"]["matched"], e["detail"]["skipped"]) for e in reversed(trail)] == [
        ("bob", 202, 2, skipped), ("alice", 202, mine, skipped_alice), ("root", 202, left, 0)]


def test_a_member_moves_only_their_own_sweeps(stack):
    alice, bob, root = stack.as_("alice"), stack.as_("bob"), stack.as_("root")
    response = alice.post("/api/tunix/sweeps", {"name": "hers", "base": DRY, "grid": {"seed": [1, 2]}})
    assert response.status_code == 202, response.text
    sweep = response.json()
    trials = [r["run_id"] for r in sweep["runs"]]
    assert scalar(stack.conn, "SELECT owner FROM tunix_sweeps WHERE id = %s", (sweep["sweep_id"],)) == "alice"
    before = {r: stack.status(r) for r in trials}
    assert "belongs to 'alice'" in refused(bob.post(f"/api/tunix/sweeps/{sweep['sweep_id']}/cancel"), "alice")
    assert {r: stack.status(r) for r in trials} == before
    assert alice.post(f"/api/tunix/sweeps/{sweep['sweep_id']}/cancel").status_code == 202
    assert {stack.status(r) for r in trials} == {"cancelled"}
    refused(bob.post(f"/api/tunix/sweeps/{sweep['sweep_id']}/resume"), "alice")
    assert {stack.status(r) for r in trials} == {"cancelled"}
    assert root.post(f"/api/tunix/sweeps/{sweep['sweep_id']}/resume").status_code == 202
    assert {stack.status(r) for r in trials} <= {"pending", "deferred"}
    assert root.post(f"/api/tunix/sweeps/{sweep['sweep_id']}/cancel").status_code == 202
    actions = [(u, a, s) for u, a, s in audit(stack, user="bob") if a.startswith("sweeps.")]
    assert actions == [("bob", "sweeps.cancel_sweep", 403), ("bob", "sweeps.resume_sweep", 403)]


def test_a_members_priority_stops_at_the_ceiling_an_admins_does_not(stack):
    alice, root = stack.as_("alice"), stack.as_("root")
    runs_before = scalar(stack.conn, "SELECT count(*) FROM tunix_runs")
    sweeps_before = scalar(stack.conn, "SELECT count(*) FROM tunix_sweeps")
    for path, body, field in (
            ("/api/tunix/run?mode=async", dict(DRY, priority=CEILING + 1), "priority"),
            ("/api/tunix/runs/batch", {"runs": [DRY, dict(DRY, priority=500)]}, "runs.1.priority"),
            ("/api/tunix/sweeps", {"name": "urgent", "base": DRY, "grid": {"seed": [1]}, "priority": 200},
             "priority")):
        response = alice.post(path, body)
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "forbidden" and f"above {CEILING}" in error["message"], error
        assert [f["field"] for f in error["fields"]] == [field] and error["ceiling"] == CEILING
    assert scalar(stack.conn, "SELECT count(*) FROM tunix_runs") == runs_before
    assert scalar(stack.conn, "SELECT count(*) FROM tunix_sweeps") == sweeps_before
    # At the ceiling a member is served; above it an admin is
    at = alice.submit(dict(DRY, priority=CEILING))
    above = root.submit(dict(DRY, priority=CEILING + 400))
    assert scalar(stack.conn, "SELECT priority FROM tunix_runs WHERE id = %s", (above,)) == CEILING + 400
    assert root.post("/api/tunix/runs/cancel", {"status": "pending"}).json()["matched"] >= 2
    assert {stack.status(at), stack.status(above)} == {"cancelled"}


def test_idempotency_keys_are_per_user(stack):
    alice, bob = stack.as_("alice"), stack.as_("bob")
    key = "nightly-" + uuid.uuid4().hex
    hers = alice.submit(**{"Idempotency-Key": key})
    his = bob.submit(**{"Idempotency-Key": key})
    assert hers != his
    assert scalar(stack.conn, "SELECT owner FROM tunix_runs WHERE id = %s", (his,)) == "bob"
    retry = alice.post("/api/tunix/run?mode=async", DRY, **{"Idempotency-Key": key})
    assert retry.status_code == 200 and retry.json()["run_id"] == hers and retry.json()["owner"] == "alice"
    assert scalar(stack.conn, "SELECT count(*) FROM tunix_runs WHERE idempotency_key = %s", (key,)) == 2


def test_with_workers_a_members_run_completes_and_stays_out_of_anothers_reach(stack, worker_launch):
    # Whose a run is is checked before its status: Bob hears "not yours", not "already completed"
    launch = worker_launch(url=stack.database_url, workers=1, threads=2)
    try:
        alice, bob = stack.as_("alice"), stack.as_("bob")
        run_id = alice.submit()
        wait_for(lambda: stack.status(run_id) == "completed", 30, message=f"run {run_id} completed")
        refused(bob.post(f"/api/tunix/runs/{run_id}/cancel"), "alice")
        assert alice.post(f"/api/tunix/runs/{run_id}/cancel").status_code == 409
        assert stack.status(run_id) == "completed"
    finally:
        launch.stop()
