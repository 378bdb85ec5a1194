"""A run's whole log and its store objects through the API (``app/run_artifacts.py``):
the app in this process, the registry in real PostgreSQL, a local-folder store."""

import gzip
import io
import json
import tarfile
import uuid

import pytest

from tasks import artifacts, registry
from tasks.artifacts import get_store
from tasks.errors import StoreForbidden, StoreUnavailable
from tasks.run_service import RunService
from tasks.settings import get_settings


def new_run(conn, attempts=0):
    run = RunService(get_settings()).submit(conn, {"dataset_key": "synthetic", "model_id": "llama3-tiny",
                                                   "dry_run": False, "max_seq_length": 32, "max_steps": 10})
    if attempts:
        with conn.cursor() as cur:
            cur.execute("UPDATE tunix_runs SET attempts = %s WHERE id = %s", (attempts, run["id"]))
    return run


def registry_lines(conn, run_id, lines):
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO tunix_run_logs (run_id, seq, stream, line) VALUES (%s, %s, 'stdout', %s)",
                        [(run_id, seq, line) for seq, line in enumerate(lines, 1)])


def stored_log(store, run_id, attempt, text, tmp_path):
    local = tmp_path / f"a{attempt}.log"
    local.write_text(text)
    store.put_gzipped(local, artifacts.log_key(run_id, attempt))


@pytest.fixture
def store(settings):
    return get_store(settings)


@pytest.fixture
def client(make_client):
    return make_client()


def test_a_run_whose_log_is_not_stored_answers_the_registrys_lines(conn, client):
    # Given a run with registry lines only, one of them holding a newline
    run = new_run(conn, attempts=1)
    registry_lines(conn, run["id"], ["first", "two\nlines", "last ERROR here"])
    # When its whole log is downloaded
    response = client.get(f"/api/tunix/runs/{run['id']}/logs/full")
    # Then it is the registry's lines, as plain text, from the registry
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["X-Log-Source"] == "registry"
    assert response.get_data(as_text=True) == "first\ntwo\nlines\nlast ERROR here\n"
    # And a search numbers the lines as the download does
    found = client.get(f"/api/tunix/runs/{run['id']}/logs/search", query_string={"q": "error"}).get_json()
    assert found["source"] == "registry"
    assert found["data"] == [{"line": 4, "attempt": None, "text": "last ERROR here"}]
    assert found["more"] is False


def test_the_whole_log_is_every_stored_attempts_log_once_the_latest_is_stored(conn, client, store, tmp_path):
    # Given a run of two attempts, each of which stored its log (the first
    # without a last newline), and only a few of its lines in the registry
    run = new_run(conn, attempts=2)
    registry_lines(conn, run["id"], ["line 1", "line 2"])
    first = "".join(f"a1 line {i}\n" for i in range(1, 30001)) + "a1 no newline"
    stored_log(store, run["id"], 1, first, tmp_path)
    stored_log(store, run["id"], 2, "a2 line 1\na2 needle\n", tmp_path)
    # When its whole log is downloaded
    response = client.get(f"/api/tunix/runs/{run['id']}/logs/full")
    # Then it is both attempts' logs, whole, in order, each on lines of its own
    assert response.headers["X-Log-Source"] == "store"
    text = response.get_data(as_text=True)
    assert text == first + "\na2 line 1\na2 needle\n"
    assert len(text.splitlines()) == 30003
    # And a search finds a line of each attempt with its number in that text
    found = client.get(f"/api/tunix/runs/{run['id']}/logs/search", query_string={"q": "NEEDLE"}).get_json()
    assert found["data"] == [{"line": 30003, "attempt": 2, "text": "a2 needle"}]
    found = client.get(f"/api/tunix/runs/{run['id']}/logs/search", query_string={"q": "a1 line 2999"}).get_json()
    assert [m["line"] for m in found["data"]] == [2999, 29990, 29991, 29992, 29993, 29994, 29995, 29996, 29997,
                                                  29998, 29999]


def test_a_search_pages_with_limit_and_after(conn, client, store, tmp_path):
    # Given a stored log of 50 matching lines
    run = new_run(conn, attempts=1)
    stored_log(store, run["id"], 1, "".join(f"hit {i}\nmiss\n" for i in range(50)), tmp_path)
    # When it is searched 20 lines at a time
    url = f"/api/tunix/runs/{run['id']}/logs/search"
    pages, after = [], 0
    while True:
        page = client.get(url, query_string={"q": "hit", "limit": 20, "after": after}).get_json()
        pages.append([m["line"] for m in page["data"]])
        if not page["more"]:
            break
        after = page["next_after"]
    # Then three pages give every matching line once, in order
    assert [len(p) for p in pages] == [20, 20, 10]
    assert sum(pages, []) == list(range(1, 100, 2))


def test_a_line_longer_than_a_piece_is_one_line_cut_in_the_answer(conn, client, store, tmp_path):
    # Given a stored log whose second line is 200 KB long, with the text at its end
    run = new_run(conn, attempts=1)
    stored_log(store, run["id"], 1, "short\n" + "x" * 200_000 + "needle\nafter needle\n", tmp_path)
    # When it is searched
    found = client.get(f"/api/tunix/runs/{run['id']}/logs/search", query_string={"q": "needle"}).get_json()
    # Then the long line is found once, as line 2, its text cut around the
    # match; the next line keeps its number
    assert [m["line"] for m in found["data"]] == [2, 3]
    assert found["data"][0]["text"] == "x" * 1024 + "needle"
    # And a matching line over 4,096 characters is cut to them
    found = client.get(f"/api/tunix/runs/{run['id']}/logs/search", query_string={"q": "xxx"}).get_json()
    assert [(m["line"], len(m["text"])) for m in found["data"]] == [(2, 4096)]


def test_a_line_longer_than_a_chunk_is_searched_in_pieces_with_its_number(conn, client, store, tmp_path):
    # Given a stored log whose second line is 3 MiB long, one text across the
    # first chunk's end, another at the line's end, then a third line
    run = new_run(conn, attempts=1)
    chunk = 1 << 20
    long = bytearray(b"y" * (3 * chunk))
    long[chunk - 10:chunk - 4] = b"across"  # the file's bytes chunk - 4 .. chunk + 2: across the first read
    long[-5:] = b"atend"
    stored_log(store, run["id"], 1, "short\n" + long.decode() + "\nthird line\n", tmp_path)

    def lines(q):
        found = client.get(f"/api/tunix/runs/{run['id']}/logs/search", query_string={"q": q}).get_json()
        assert all(len(m["text"]) <= 4096 and q in m["text"] for m in found["data"]), found
        return [m["line"] for m in found["data"]], found["lines_read"]

    # When each text is searched, then each is found once, on its line
    assert lines("across") == ([2], 3)
    assert lines("atend") == ([2], 3)
    assert lines("third") == ([3], 3)
    assert lines("yyyy") == ([2], 3)  # many pieces of one line: one match


def test_a_search_without_q_is_a_422(conn, client):
    run = new_run(conn)
    for query in ({}, {"q": ""}, {"q": "x" * 201}, {"q": "a", "limit": 0}, {"q": "a", "after": -1}):
        response = client.get(f"/api/tunix/runs/{run['id']}/logs/search", query_string=query)
        assert response.status_code == 422, query
        assert response.get_json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("path", ["logs/full", "logs/search?q=a", "artifacts", "artifacts/manifest",
                                  "artifacts/summary", "artifacts/logs/1"])
def test_an_unknown_run_is_a_404(conn, client, path):
    for run_id in ("00000000-0000-0000-0000-000000000000", "not-a-run"):
        response = client.get(f"/api/tunix/runs/{run_id}/{path}")
        assert response.status_code == 404, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == "run_not_found"


def test_the_artifacts_listing_names_each_object_with_its_size_and_download(conn, client, store, tmp_path):
    # Given a run with a manifest, a summary, a recorded and an unrecorded
    # checkpoint, a log, a completed export and another object
    run = new_run(conn)
    run_id = run["id"]
    store.put_json(artifacts.manifest_key(run_id), {"run_id": str(run_id)})
    store.put_json(artifacts.summary_key(run_id), {"result": {"steps": 10}})
    folder = tmp_path / "10"
    folder.mkdir()
    (folder / "data").write_bytes(b"w" * 5000)
    key = artifacts.checkpoint_key(run_id, 10, 1)
    size, sha256 = store.upload_tree(folder, key, "10")
    assert registry.claim(conn, run_id, "w:1")["attempts"] == 1
    assert registry.record_checkpoint(conn, run_id=run_id, step=10, attempt=1, uri=store.uri(key), object_key=key,
                               size_bytes=size, sha256=sha256, loss=1.0)
    store.upload_tree(folder, artifacts.checkpoint_key(run_id, 5, 1), "5")
    stored_log(store, run_id, 1, "hello\n", tmp_path)
    export_id = uuid.uuid4()
    export_key = artifacts.export_key(run_id, 10, export_id)
    export_size, export_sha = store.upload_tree(folder, export_key, "export")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tunix_exports (id, run_id, model_id, step, status, object_key, uri, size_bytes, "
                    "sha256, finished_at) VALUES (%s, %s, 'llama3-tiny', 10, 'completed', %s, %s, %s, %s, now())",
                    (str(export_id), run_id, export_key, store.uri(export_key), export_size, export_sha))
    (tmp_path / "other.txt").write_text("x")
    store.put_file(tmp_path / "other.txt", f"{artifacts.run_prefix(run_id)}/notes/other.txt")
    # When the run's artifacts are listed
    response = client.get(f"/api/tunix/runs/{run_id}/artifacts")
    assert response.status_code == 200, response.get_data(as_text=True)
    listed = {item["key"]: item for item in response.get_json()["data"]}
    # Then each object is there with its kind and its size in the store
    on_disk = {k: v["size"] for k, v in store.objects(artifacts.run_prefix(run_id)).items()}
    assert {k: v["size_bytes"] for k, v in listed.items()} == on_disk
    kinds = {item["kind"] for item in listed.values()}
    assert kinds == {"manifest", "summary", "checkpoint", "export", "log", "other"}
    assert listed[export_key]["download"] == f"/api/tunix/exports/{export_id}/download"
    assert listed[export_key]["export_id"] == str(export_id) and listed[export_key]["step"] == 10
    base = f"/api/tunix/runs/{run_id}"
    assert listed[artifacts.manifest_key(run_id)]["download"] == f"{base}/artifacts/manifest"
    assert listed[key]["download"] == f"{base}/checkpoints/10" and listed[key]["step"] == 10
    assert listed[artifacts.checkpoint_key(run_id, 5, 1)]["download"] is None  # no row records it
    assert listed[artifacts.log_key(run_id, 1)]["attempt"] == 1
    assert all(item["modified_at"] for item in listed.values())
    # And every download given answers the object, its bytes as stored
    for item in listed.values():
        if item["download"] is None:
            continue
        got = client.get(item["download"])
        assert got.status_code == 200, item
        assert len(got.data) == item["size_bytes"], item
    manifest = client.get(f"{base}/artifacts/manifest")
    assert manifest.mimetype == "application/json" and json.loads(manifest.data) == {"run_id": str(run_id)}
    assert gzip.decompress(client.get(f"{base}/artifacts/logs/1").data) == b"hello\n"
    with tarfile.open(fileobj=io.BytesIO(client.get(f"{base}/checkpoints/10").data)) as tar:
        assert "10/data" in tar.getnames()


def test_an_object_the_store_does_not_hold_is_a_409_before_the_run_ends_and_a_404_after(conn, client):
    run = new_run(conn, attempts=1)
    # While the run is pending: not there yet
    for path in ("artifacts/manifest", "artifacts/summary", "artifacts/logs/1"):
        response = client.get(f"/api/tunix/runs/{run['id']}/{path}")
        assert response.status_code == 409, response.get_json()
        assert response.get_json()["error"]["code"] == "artifact_not_ready"
        assert response.get_json()["error"]["status"] == "pending"
    # Once it ended (cancelled) without them: missing for good
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_runs SET status = 'cancelled', completed_at = now() WHERE id = %s", (run["id"],))
    for path in ("artifacts/manifest", "artifacts/summary", "artifacts/logs/1"):
        response = client.get(f"/api/tunix/runs/{run['id']}/{path}")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "artifact_missing"
    # And an empty listing is no error
    assert client.get(f"/api/tunix/runs/{run['id']}/artifacts").get_json()["data"] == []


@pytest.mark.parametrize("error, status, code", [
    (StoreUnavailable("store down"), 503, "artifact_store_unavailable"),
    (StoreForbidden("refused", url="file:///x", reason="403 AccessDenied"), 502, "artifact_store_forbidden"),
])
def test_a_store_down_or_refusing_is_a_503_or_502(conn, client, store, monkeypatch, error, status, code):
    # Given a store that is down, or refuses the API's credentials
    run = new_run(conn, attempts=1)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(type(store), "objects", fail)
    monkeypatch.setattr(type(store), "stat", fail)
    # When the run's log or artifacts are asked for, then the answer says so in the error shape
    for path in ("logs/full", "logs/search?q=a", "artifacts", "artifacts/manifest"):
        response = client.get(f"/api/tunix/runs/{run['id']}/{path}")
        assert response.status_code == status, (path, response.get_data(as_text=True))
        assert response.get_json()["error"]["code"] == code


def _documented(doc, path, method, response):
    """Whether ``response`` is what the document says ``method path`` answers:
    its status listed, its content type among the listed ones, a JSON body
    valid against the listed schema."""
    from jsonschema import Draft202012Validator

    answers = doc["paths"][path][method]["responses"]
    assert str(response.status_code) in answers, (path, response.status_code)
    content = answers[str(response.status_code)]["content"]
    assert response.mimetype in content, (path, response.mimetype, list(content))
    if response.mimetype == "application/json":
        schema = dict(content["application/json"]["schema"], components=doc["components"])
        Draft202012Validator(schema).validate(response.get_json())


def test_the_document_describes_every_answer_of_the_endpoints(conn, client, store, tmp_path, monkeypatch):
    doc = client.get("/openapi.json").get_json()
    run = new_run(conn, attempts=1)
    store.put_json(artifacts.manifest_key(run["id"]), {"run_id": str(run["id"])})
    stored_log(store, run["id"], 1, "one\ntwo\n", tmp_path)
    base = "/api/tunix/runs/{run_id}"
    requests = [
        (f"{base}/logs/full", "logs/full"), (f"{base}/logs/search", "logs/search?q=o"),
        (f"{base}/logs/search", "logs/search"), (f"{base}/artifacts", "artifacts"),
        (f"{base}/artifacts/manifest", "artifacts/manifest"), (f"{base}/artifacts/summary", "artifacts/summary"),
        (f"{base}/artifacts/logs/{{attempt}}", "artifacts/logs/1"),
        (f"{base}/artifacts/logs/{{attempt}}", "artifacts/logs/2"),
    ]
    seen = set()
    for path, tail in requests:
        for run_id in (run["id"], "00000000-0000-0000-0000-000000000000"):
            response = client.get(f"/api/tunix/runs/{run_id}/{tail}")
            _documented(doc, path, "get", response)
            seen.add(response.status_code)
    for error in (StoreUnavailable("down"), StoreForbidden("refused", url="u", reason="403")):
        monkeypatch.setattr(type(store), "objects", lambda *a, error=error: (_ for _ in ()).throw(error))
        for path, tail in requests[:4]:
            response = client.get(f"/api/tunix/runs/{run['id']}/{tail}")
            _documented(doc, path, "get", response)
            seen.add(response.status_code)
    assert seen == {200, 404, 409, 422, 502, 503}


def test_with_users_the_log_and_artifacts_are_read_with_a_token_as_any_run_read(conn, client, store, tmp_path,
                                                                                 monkeypatch):
    from app import auth

    monkeypatch.setattr(auth, "USERS_CHECK_S", 0)
    # Given a run owned by nobody in particular, and an installation with users
    run = new_run(conn, attempts=1)
    stored_log(store, run["id"], 1, "a line\n", tmp_path)
    registry.create_user(conn, "vera", "viewer")
    token, _ = registry.create_token(conn, "vera")
    paths = ("logs/full", "logs/search?q=line", "artifacts", "artifacts/logs/1")
    for path in paths:
        # Then without a token each read is a 401
        response = client.get(f"/api/tunix/runs/{run['id']}/{path}")
        assert response.status_code == 401, path
        # And a viewer's token reads it, whoever's run it is
        response = client.get(f"/api/tunix/runs/{run['id']}/{path}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, (path, response.get_data(as_text=True))
