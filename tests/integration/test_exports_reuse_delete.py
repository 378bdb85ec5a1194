"""An export is made once per run and step, and can be deleted: the app in
this process (Flask's test client), the registry in real PostgreSQL, the
artifact store a local folder.

No worker: a test moves an export as the worker would (claim, the tar
uploaded, finish), so each case takes well under a second.  The worker's
own round trip (a real gemma3-tiny export) is tests/e2e/test_exports_http.py.
"""

import threading
import uuid

import pytest

from tasks import artifacts, db, registry
from tasks.artifacts import ArtifactStore, get_store
from tasks.errors import StoreUnavailable
from tasks.run_service import RunService
from tasks.settings import get_settings

from support import connect, scalar

WORKER = "host:1"


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def run_id(conn):
    """A gemma3-tiny run with recorded checkpoints at steps 2 and 4 (rows only: no export reads them here)."""
    run = RunService(get_settings()).submit(conn, {"dataset_key": "synthetic", "model_id": "gemma3-tiny",
                                                   "dry_run": True})
    with conn.cursor() as cur:
        for step in (2, 4):
            cur.execute("INSERT INTO tunix_checkpoints (run_id, step, attempt, uri, object_key, size_bytes, sha256) "
                        "VALUES (%s, %s, 1, 'file:///x', 'x', 1, %s)", (run["id"], step, "0" * 64))
    return str(run["id"])


def post(client, run_id, step=None):
    return client.post(f"/api/tunix/runs/{run_id}/exports", json={} if step is None else {"step": step})


def complete(conn, settings, export_id, tmp_path):
    """What the worker does: claim, upload a (tiny) tar to the export's key, finish."""
    row = registry.claim_export(conn, export_id, WORKER)
    folder = tmp_path / f"folder-{export_id}"
    folder.mkdir()
    (folder / "tunix_export.json").write_text("{}")
    key = artifacts.export_key(row["run_id"], row["step"], export_id)
    size, sha256 = get_store(settings).upload_tree(folder, key, "folder")
    stored = {"object_key": key, "uri": get_store(settings).uri(key), "size_bytes": size, "sha256": sha256}
    return registry.finish_export(conn, export_id, WORKER, stored=stored, manifest={"folder": "folder"})


def exports_of(conn, run_id):
    return scalar(conn, "SELECT count(*) FROM tunix_exports WHERE run_id = %s", (run_id,))


def messages(conn):
    return scalar(conn, "SELECT count(*) FROM dramatiq.queue WHERE queue_name = 'tunix-samples'")


def tars(settings, run_id, step):
    return sorted(get_store(settings).list(f"runs/{run_id}/exports/step-{step}"))


def test_asking_again_for_a_step_answers_its_live_export_and_makes_nothing(client, conn, settings, run_id, tmp_path):
    # Given an export of the run's latest step, pending
    first = post(client, run_id)
    assert first.status_code == 202, first.get_data(as_text=True)
    pending = first.get_json()
    assert pending["reused"] is False and pending["step"] == 4 and pending["deleted_at"] is None
    # When the same step is asked for again, by number, while it is pending
    again = post(client, run_id, 4)
    # Then that export is the answer (200, reused), and no row nor message was written
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.get_json()["export_id"] == pending["export_id"] and again.get_json()["reused"] is True
    assert again.headers["Location"] == f"/api/tunix/exports/{pending['export_id']}"
    assert exports_of(conn, run_id) == 1 and messages(conn) == 1
    # And once completed, asking again still answers it: one row, one tar
    complete(conn, settings, pending["export_id"], tmp_path)
    again = post(client, run_id)
    assert again.status_code == 200 and again.get_json()["export_id"] == pending["export_id"]
    assert again.get_json()["status"] == "completed" and again.get_json()["download"]
    assert exports_of(conn, run_id) == 1 and len(tars(settings, run_id, 4)) == 1
    # And another step is another export
    other = post(client, run_id, 2)
    assert other.status_code == 202 and other.get_json()["export_id"] != pending["export_id"]


def test_a_failed_export_is_not_reused(client, conn, run_id):
    # Given an export that failed
    export_id = post(client, run_id).get_json()["export_id"]
    registry.claim_export(conn, export_id, WORKER)
    registry.finish_export(conn, export_id, WORKER, error={"message": "boom"})
    # When the step is asked for again
    again = post(client, run_id)
    # Then a new export is made
    assert again.status_code == 202 and again.get_json()["export_id"] != export_id
    assert exports_of(conn, run_id) == 2


def test_two_requests_at_once_make_one_export(conn, settings, registry_url, run_id):
    from tasks import actors

    def submit(on):
        export_id = uuid.uuid4()
        return registry.submit_export(on, export_id=export_id, run_id=run_id, model_id="gemma3-tiny", step=4,
                                      message=actors.export_outbox_row(export_id))

    # Given a request whose insert is written but not committed yet
    first_conn, second_conn = db.connect(registry_url), connect(registry_url)
    try:
        first = submit(first_conn)
        assert first["reused"] is False
        # When a second request for the same step runs meanwhile (it waits on the first's index entry)
        answer = {}
        second = threading.Thread(target=lambda: answer.update(row=submit(second_conn)))
        second.start()
        second.join(0.5)
        assert second.is_alive()
        first_conn.commit()
        second.join(10)
        # Then the second answers the first's export, and one row was written
        assert answer["row"]["id"] == first["id"] and answer["row"]["reused"] is True
        assert exports_of(conn, run_id) == 1
    finally:
        first_conn.close()
        second_conn.close()


def test_deleting_a_completed_export_removes_its_tar_and_keeps_the_row(client, conn, settings, run_id, tmp_path):
    # Given a completed export, its tar in the store
    export_id = post(client, run_id).get_json()["export_id"]
    complete(conn, settings, export_id, tmp_path)
    assert client.get(f"/api/tunix/exports/{export_id}/download").status_code == 200
    assert len(tars(settings, run_id, 4)) == 1
    # When it is deleted
    response = client.delete(f"/api/tunix/exports/{export_id}")
    # Then the tar is gone from the store, and the export says when it was deleted
    assert response.status_code == 200, response.get_data(as_text=True)
    deleted = response.get_json()
    assert deleted["deleted_at"] and deleted["status"] == "completed" and deleted["download"] is None
    assert tars(settings, run_id, 4) == []
    assert client.get(f"/api/tunix/exports/{export_id}").get_json()["deleted_at"] == deleted["deleted_at"]
    # And its download is a 410 export_deleted
    gone = client.get(f"/api/tunix/exports/{export_id}/download")
    assert gone.status_code == 410 and gone.get_json()["error"]["code"] == "export_deleted"
    assert "deleted" in gone.get_json()["error"]["message"]
    # And a second DELETE answers the same
    again = client.delete(f"/api/tunix/exports/{export_id}")
    assert again.status_code == 200 and again.get_json() == deleted
    # And asking for the step again makes a new export
    new = post(client, run_id)
    assert new.status_code == 202 and new.get_json()["export_id"] != export_id
    assert new.get_json()["reused"] is False and exports_of(conn, run_id) == 2


def test_a_pending_or_running_export_cannot_be_deleted(client, conn, run_id):
    # Given a pending export
    export_id = post(client, run_id).get_json()["export_id"]
    for status in ("pending", "running"):
        # When it is deleted
        response = client.delete(f"/api/tunix/exports/{export_id}")
        # Then it is a 409 export_busy naming its status, and nothing changed
        assert response.status_code == 409, response.get_data(as_text=True)
        error = response.get_json()["error"]
        assert error["code"] == "export_busy" and error["status"] == status and status in error["message"]
        row = registry.get_export(conn, export_id)
        assert row["status"] == status and row["deleted_at"] is None
        registry.claim_export(conn, export_id, WORKER)


def test_a_store_that_is_down_leaves_the_export_undeleted(client, conn, settings, run_id, tmp_path, monkeypatch):
    # Given a completed export, and a store that does not answer
    export_id = post(client, run_id).get_json()["export_id"]
    complete(conn, settings, export_id, tmp_path)

    def down(self, key):
        raise StoreUnavailable("artifact store: down")

    monkeypatch.setattr(ArtifactStore, "delete", down)
    # When it is deleted
    response = client.delete(f"/api/tunix/exports/{export_id}")
    # Then it is a 503, and the export and its tar are as they were
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert registry.get_export(conn, export_id)["deleted_at"] is None
    assert len(tars(settings, run_id, 4)) == 1


def test_an_unknown_export_is_a_404_and_a_delete_needs_the_token(client, make_client, settings, run_id):
    for raw in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        response = client.delete(f"/api/tunix/exports/{raw}")
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "export_not_found"
    # With API_TOKEN set, a DELETE is a mutating request: 401 without the token
    guarded = make_client(SETTINGS=settings.model_copy(update={"api_token": "s3cret"}))
    export_id = guarded.post(f"/api/tunix/runs/{run_id}/exports", json={},
                             headers={"Authorization": "Bearer s3cret"}).get_json()["export_id"]
    assert guarded.delete(f"/api/tunix/exports/{export_id}").status_code == 401
    answer = guarded.delete(f"/api/tunix/exports/{export_id}", headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 409  # past the token: a pending export is busy


def test_the_migration_leaves_one_live_export_per_step_of_those_asked_twice_before_it(databases, tmp_path):
    import shutil

    from tasks.migrate import migrate
    from tasks.sql import MIGRATIONS_DIR, migrations

    # Given a database as migration 0019 left it, with a run's steps exported more than once
    url = databases.create(migrated=False)
    for version, name, _ in migrations():
        if version < 20:
            shutil.copy(f"{MIGRATIONS_DIR}/{name}.sql", tmp_path)
    migrate(url, directory=tmp_path)
    conn = connect(url)
    try:
        # A run as 0019 held it (today's submit writes columns of later migrations).
        run = {"id": uuid.uuid4()}
        with conn.cursor() as cur:
            cur.execute("INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config) "
                        "VALUES (%s, 'completed', 'async', true, 'synthetic', 'gemma3-tiny', '{}')", (run["id"],))
        rows = {}
        done = {"object_key": "k", "size_bytes": 1, "sha256": "0" * 64}
        for name, step, status, age in (("old", 4, "completed", 3), ("new", 4, "completed", 2),
                                        ("queued", 4, "pending", 1), ("broken", 4, "failed", 0),
                                        ("busy", 2, "running", 2), ("later", 2, "pending", 1)):
            rows[name] = uuid.uuid4()
            final = status in ("completed", "failed")
            with conn.cursor() as cur:
                cur.execute("INSERT INTO tunix_exports (id, run_id, model_id, step, status, object_key, size_bytes, "
                            "sha256, created_at, finished_at) VALUES (%s, %s, 'gemma3-tiny', %s, %s, %s, %s, %s, "
                            "now() - make_interval(mins => %s), CASE WHEN %s THEN now() END)",
                            (rows[name], run["id"], step, status, *(done.values() if status == "completed"
                                                                    else (None, None, None)), age, final))
        # When 0020 is applied
        with conn.cursor() as cur:
            cur.execute(next(text for version, _, text in migrations() if version == 20))

        def state(name):
            row = registry.get_export(conn, rows[name])
            return row["status"], row["deleted_at"] is not None, (row["error"] or {}).get("code")

        # Then per step one export is live: the newest completed one, else the running one
        assert state("new") == ("completed", False, None) and state("busy") == ("running", False, None)
        # And the older completed duplicate is marked deleted, its tar's key kept (a DELETE removes it)
        assert state("old") == ("completed", True, None)
        assert registry.get_export(conn, rows["old"])["object_key"] == "k"
        # And the pending duplicates ended failed, naming the export that answers for their step
        assert state("queued") == ("failed", False, "superseded") and state("later") == ("failed", False, "superseded")
        assert str(rows["new"]) in registry.get_export(conn, rows["queued"])["error"]["message"]
        # And a failed export is left alone
        assert state("broken") == ("failed", False, None)
    finally:
        conn.close()
