"""Users, tokens and the audit trail: the app in this process (Flask's test
client), the registry in real PostgreSQL.  The same through gunicorn, the
CLI and the workers: tests/e2e/test_ownership_http.py, test_cli_users.py."""

import datetime
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest

from app import auth
from tasks import registry
from tasks.registry.users import hash_token

from support import ROOT, scalar

DRY = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": True}


@pytest.fixture(autouse=True)
def users_count_at_once(monkeypatch):
    """A user made by a test turns auth on for its next request."""
    monkeypatch.setattr(auth, "USERS_CHECK_S", 0)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def admin(conn):
    """``(name, token)`` of the installation's first admin, as ``tunix-admin`` makes it."""
    registry.create_user(conn, "root", "admin")
    token, _ = registry.create_token(conn, "root")
    return "root", token


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_without_users_the_api_stays_open_and_says_so(client, conn):
    assert client.get("/api/tunix/me").get_json() == {"name": None, "role": "admin", "via": "open",
                                                       "token_id": None, "auth": "open"}
    assert client.post("/api/tunix/run?mode=async", json=DRY).status_code == 202
    assert scalar(conn, "SELECT owner FROM tunix_runs") is None
    # Nobody makes themselves the first admin over HTTP: that is tunix-admin's, on the server.
    refused = client.post("/api/tunix/users", json={"name": "eve", "role": "admin"})
    assert refused.status_code == 403 and "tunix-admin" in refused.get_json()["error"]["message"]
    assert scalar(conn, "SELECT count(*) FROM tunix_users") == 0


def test_the_first_user_turns_auth_on_for_reads_and_writes(client, admin, conn):
    _, token = admin
    for method, path in (("get", "/api/tunix/runs"), ("get", "/api/tunix/me"), ("post", "/api/tunix/run")):
        response = getattr(client, method)(path, json=DRY if method == "post" else None)
        assert response.status_code == 401, (path, response.get_json())
        assert response.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/api/tunix/runs", headers=bearer("tnx_" + "x" * 43)).status_code == 401
    for open_path in ("/healthz", "/openapi.json"):
        assert client.get(open_path).status_code == 200
    me = client.get("/api/tunix/me", headers=bearer(token)).get_json()
    assert (me["name"], me["role"], me["via"], me["auth"]) == ("root", "admin", "token", "users")
    assert scalar(conn, "SELECT count(*) FROM tunix_runs") == 0


def test_a_token_is_shown_once_stored_hashed_and_works_until_revoked(client, admin, conn):
    _, root = admin
    made = client.post("/api/tunix/users", json={"name": "alice", "role": "member"}, headers=bearer(root))
    assert made.status_code == 201, made.get_json()
    token = made.get_json()["token"]["token"]
    assert token.startswith("tnx_") and len(token) > 40
    assert scalar(conn, "SELECT count(*) FROM tunix_tokens WHERE sha256 = %s", (hash_token(token),)) == 1
    assert scalar(conn, "SELECT count(*) FROM tunix_tokens WHERE sha256 = %s OR prefix = %s", (token, token)) == 0
    listed = client.get("/api/tunix/tokens", headers=bearer(token)).get_json()["data"]
    assert [t["token"] for t in listed] == [None] and listed[0]["prefix"] == token[:12]

    run = client.post("/api/tunix/run?mode=async", json=DRY, headers=bearer(token))
    assert run.status_code == 202 and run.get_json()["owner"] == "alice"

    second = client.post("/api/tunix/tokens", json={"label": "ci"}, headers=bearer(token)).get_json()
    revoked = client.delete(f"/api/tunix/tokens/{listed[0]['token_id']}", headers=bearer(token))
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    assert client.get("/api/tunix/me", headers=bearer(token)).status_code == 401  # at once
    assert client.get("/api/tunix/me", headers=bearer(second["token"])).get_json()["name"] == "alice"


def test_an_expired_token_and_a_disabled_users_token_are_refused(client, admin, conn):
    _, root = admin
    registry.create_user(conn, "bob", "member")
    old, row = registry.create_token(conn, "bob", expires_at=datetime.datetime.now(datetime.timezone.utc)
                                     + datetime.timedelta(seconds=1))
    assert client.get("/api/tunix/me", headers=bearer(old)).status_code == 200
    time.sleep(1.1)
    assert client.get("/api/tunix/me", headers=bearer(old)).status_code == 401
    live = client.post("/api/tunix/tokens", json={"user": "bob"}, headers=bearer(root)).get_json()["token"]
    assert client.get("/api/tunix/me", headers=bearer(live)).status_code == 200
    assert client.patch("/api/tunix/users/bob", json={"disabled": True}, headers=bearer(root)).status_code == 200
    assert client.get("/api/tunix/me", headers=bearer(live)).status_code == 401


def test_roles_members_and_viewers_are_refused_what_is_not_theirs(client, admin, conn):
    _, root = admin
    registry.create_user(conn, "vic", "viewer")
    registry.create_user(conn, "mia", "member")
    viewer, _ = registry.create_token(conn, "vic")
    member, _ = registry.create_token(conn, "mia")
    assert client.get("/api/tunix/runs", headers=bearer(viewer)).status_code == 200
    refused = client.post("/api/tunix/run?mode=async", json=DRY, headers=bearer(viewer))
    assert refused.status_code == 403 and "viewer" in refused.get_json()["error"]["message"]
    assert client.post("/api/tunix/tokens", json={}, headers=bearer(viewer)).status_code == 201  # their own
    for method, path, body in (("get", "/api/tunix/users", None), ("post", "/api/tunix/users", {"name": "x"}),
                               ("get", "/api/tunix/audit", None), ("get", "/api/tunix/tokens?user=vic", None),
                               ("post", "/api/tunix/tokens", {"user": "vic"}),
                               ("patch", "/api/tunix/users/vic", {"role": "admin"})):
        response = getattr(client, method)(path, json=body, headers=bearer(member))
        assert response.status_code == 403, (path, response.get_json())
    assert scalar(conn, "SELECT role FROM tunix_users WHERE name = 'vic'") == "viewer"
    assert scalar(conn, "SELECT count(*) FROM tunix_runs") == 0
    # The last enabled admin stays one.
    assert client.patch("/api/tunix/users/root", json={"role": "member"}, headers=bearer(root)).status_code == 409
    assert client.patch("/api/tunix/users/root", json={"disabled": True}, headers=bearer(root)).status_code == 409
    taken = client.post("/api/tunix/users", json={"name": "mia"}, headers=bearer(root))
    assert taken.status_code == 409 and taken.get_json()["error"]["code"] == "user_exists"
    bad = client.post("/api/tunix/users", json={"name": "Not OK", "role": "king"}, headers=bearer(root))
    assert bad.status_code == 422 and {f["field"] for f in bad.get_json()["error"]["fields"]} == {"name", "role"}


def test_api_token_keeps_working_once_users_exist(make_client, settings, admin, conn):
    client = make_client(SETTINGS=settings.model_copy(update={"api_token": "legacy-secret"}))
    me = client.get("/api/tunix/me", headers=bearer("legacy-secret")).get_json()
    assert (me["name"], me["role"], me["via"]) == (None, "admin", "API_TOKEN")
    assert client.post("/api/tunix/run?mode=async", json=DRY, headers=bearer("legacy-secret")).status_code == 202
    assert client.get("/api/tunix/runs", headers=bearer("wrong")).status_code == 401


def test_every_mutating_request_is_audited_and_the_trail_cannot_be_changed(client, admin, conn):
    _, root = admin
    mia = f"mia-{uuid.uuid4().hex[:8]}"  # the trail outlives every test: a name of this test's own
    registry.create_user(conn, mia, "member")
    member, token_row = registry.create_token(conn, mia)
    run = client.post("/api/tunix/run?mode=async", json=DRY, headers=bearer(member)).get_json()
    client.post(f"/api/tunix/runs/{run['run_id']}/cancel", headers=bearer(member))
    client.post("/api/tunix/users", json={"name": "x"}, headers=bearer(member))  # refused: audited too
    client.get("/api/tunix/runs", headers=bearer(member))  # a read: not audited
    trail = client.get(f"/api/tunix/audit?user={mia}", headers=bearer(root)).get_json()["data"]
    assert [(e["action"], e["status"]) for e in trail] == [
        ("users.create_user", 403), ("runs.cancel", 200), ("runs.submit", 202)]
    assert trail[1]["run_ids"] == [run["run_id"]] == trail[2]["run_ids"]
    assert {e["token_id"] for e in trail} == {str(token_row["id"])}
    assert trail[0]["detail"] == {"error": "forbidden"} and trail[0]["remote_addr"] == "127.0.0.1"
    by_run = client.get(f"/api/tunix/audit?run_id={run['run_id']}", headers=bearer(root)).get_json()["data"]
    assert [e["action"] for e in by_run] == ["runs.cancel", "runs.submit"]
    page = client.get(f"/api/tunix/audit?user={mia}&limit=1", headers=bearer(root)).get_json()
    rest = client.get(f"/api/tunix/audit?user={mia}&before_id={page['next_before_id']}", headers=bearer(root))
    assert [e["action"] for e in rest.get_json()["data"]] == ["runs.cancel", "runs.submit"]
    assert client.get("/api/tunix/audit?since=yesterday", headers=bearer(root)).status_code == 422
    for statement in ("UPDATE tunix_audit SET status = 200", "DELETE FROM tunix_audit", "TRUNCATE tunix_audit"):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            with conn.cursor() as cur:
                cur.execute(statement)


def test_tunix_admin_makes_the_first_admin_and_prints_the_token_alone(registry_url, client, conn):
    env = {"DATABASE_URL": registry_url, "PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT}
    made = subprocess.run([sys.executable, "-m", "tasks.users_admin", "create-user", "ops"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("tnx_") and "\n" not in token and token not in made.stderr
    assert client.get("/api/tunix/me", headers=bearer(token)).get_json()["role"] == "admin"
    again = subprocess.run([sys.executable, "-m", "tasks.users_admin", "create-user", "ops"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr and again.stdout == ""
    assert scalar(conn, "SELECT action FROM tunix_audit WHERE action LIKE 'tunix-admin.%%' ORDER BY id DESC "
                        "LIMIT 1") == "tunix-admin.create-user"


TRAIN = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False}


def test_a_users_queued_limit_is_a_429_that_writes_nothing(make_client, settings, admin, conn):
    client = make_client(SETTINGS=settings.model_copy(update={"user_max_queued": 3}))
    registry.create_user(conn, "mia", "member")
    member, _ = registry.create_token(conn, "mia")
    for _ in range(2):
        assert client.post("/api/tunix/run?mode=async", json=TRAIN, headers=bearer(member)).status_code == 202
    over = client.post("/api/tunix/runs/batch", json={"runs": [TRAIN, TRAIN]}, headers=bearer(member))
    assert over.status_code == 429, over.get_json()
    assert over.headers["Retry-After"] == "60"
    error = over.get_json()["error"]
    assert error["code"] == "quota_exceeded" and "USER_MAX_QUEUED" in error["message"]
    assert (error["limit"], error["waiting"], error["asked"]) == (3, 2, 2)
    assert scalar(conn, "SELECT count(*) FROM tunix_runs") == 2
    assert client.post("/api/tunix/run?mode=async", json=TRAIN, headers=bearer(member)).status_code == 202
    assert client.post("/api/tunix/run?mode=async", json=TRAIN, headers=bearer(member)).status_code == 429
    # Another user's runs are not counted against her, nor runs with no owner
    _, root = admin
    assert client.post("/api/tunix/run?mode=async", json=TRAIN, headers=bearer(root)).status_code == 202


def test_a_run_past_its_users_concurrency_limit_waits_and_says_why(make_client, settings, admin, conn):
    client = make_client(SETTINGS=settings.model_copy(update={"user_max_trainings": 1, "admit_ahead": 10}))
    registry.create_user(conn, "mia", "member")
    member, _ = registry.create_token(conn, "mia")
    first = client.post("/api/tunix/run?mode=async", json=TRAIN, headers=bearer(member)).get_json()
    second = client.post("/api/tunix/run?mode=async", json=TRAIN, headers=bearer(member)).get_json()
    assert (first["status"], second["status"]) == ("pending", "deferred")
    shown = client.get(f"/api/tunix/runs/{second['run_id']}", headers=bearer(member)).get_json()
    assert shown["waiting_reason"].startswith("1 of mia's 1 trainings are queued or running"), shown
    assert "waiting_reason" not in client.get(f"/api/tunix/runs/{first['run_id']}", headers=bearer(member)).get_json()


def test_metrics_auth_closes_metrics_to_all_but_the_api_token_and_live_user_tokens(make_client, settings, conn, pool,
                                                                                    monkeypatch):
    from app import observability

    monkeypatch.setattr(observability, "get_pool", lambda: pool)
    # Given a user's token, a revoked one, and METRICS_AUTH with an API_TOKEN
    registry.create_user(conn, "scraper", "viewer")
    token, _ = registry.create_token(conn, "scraper")
    revoked, row = registry.create_token(conn, "scraper")
    registry.revoke_token(conn, row["id"])
    closed = make_client(SETTINGS=settings.replace(metrics_auth=True, api_token="tnx_operator"))
    # Then /metrics answers no token, a wrong one or a revoked one 401 (JSON, naming the setting)
    for headers in ({}, bearer("wrong"), bearer(revoked)):
        refused = closed.get("/metrics", headers=headers)
        assert refused.status_code == 401 and "METRICS_AUTH" in refused.get_json()["error"]["message"], headers
    # And the operator's token and a live user's token get the metrics
    for good in ("tnx_operator", token):
        answer = closed.get("/metrics", headers=bearer(good))
        assert answer.status_code == 200 and b"tunix_runs_in_state" in answer.data
    # And the other open paths stay open
    assert closed.get("/healthz").status_code == 200
    # And without METRICS_AUTH, /metrics stays open to anyone (Prometheus as before)
    assert make_client().get("/metrics").status_code == 200

