"""The console's HTML shell and static files, through Flask's test client:
no browser, no database (these run where Chromium is missing too)."""

import json
import re
import uuid

import pytest

from app import create_app


@pytest.fixture(scope="module")
def client():
    return create_app({"TESTING": True}).test_client()


def bootstrap(html):
    match = re.search(r'<script type="application/json" id="bootstrap">(.*?)</script>', html, re.S)
    assert match, "the shell carries no bootstrap data"
    return json.loads(match.group(1))


@pytest.mark.parametrize("path", ["/", f"/runs/{uuid.uuid4()}", f"/runs/{str(uuid.uuid4()).upper()}"])
def test_every_page_is_the_same_shell(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<script type="module" src="/static/js/main.js"></script>' in html
    assert '<link rel="stylesheet" href="/static/console.css">' in html
    # Only the page's own files run: no inline script, no eval.
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_malformed_run_id_is_a_404_page(client):
    response = client.get("/runs/not-a-run")
    assert response.status_code == 404
    assert response.mimetype == "text/html"  # the page says "not found", not a JSON error


def test_the_shell_carries_the_submit_schema_and_the_lifecycle(client):
    from tasks import lifecycle
    from tasks.run_spec import RunSpec

    data = bootstrap(client.get("/").get_data(as_text=True))
    assert data["schema"] == json.loads(json.dumps(RunSpec.model_json_schema()))
    assert data["statuses"] == list(lifecycle.ALL)
    assert set(data["final"]) == {s.value for s in lifecycle.FINAL}
    assert set(data["active"]) == {s.value for s in lifecycle.ACTIVE}
    assert set(data["resumable"]) == {s.value for s in lifecycle.RESUMABLE}
    assert set(data["cancellable"]) == {s.value for s in lifecycle.CANCELLABLE}
    assert set(data["waiting"]) == {s.value for s in lifecycle.WAITING}
    # The modules say STATUS.FAILED, never the word.
    assert data["names"] == {s.name: s.value for s in lifecycle.RunStatus}
    assert data["limits"]["run_time_limit_s"] > 0


def test_bootstrap_json_cannot_close_its_script_tag(client, monkeypatch):
    from app import console

    real = console.bootstrap
    monkeypatch.setattr(console, "bootstrap", lambda: dict(real(), evil="</script><script>alert(1)</script>"))
    html = client.get("/").get_data(as_text=True)
    assert "</script><script>alert(1)" not in html
    assert bootstrap(html)["evil"] == "</script><script>alert(1)</script>"


def test_static_files_are_revalidated_modules(client):
    for path in ("/static/js/main.js", "/static/js/views/run.js", "/static/console.css", "/static/favicon.svg"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "no-cache"
        response.close()
    js = client.get("/static/js/main.js")
    assert "javascript" in js.mimetype
    js.close()
    # An API answer is left alone.
    assert "no-cache" not in client.get("/healthz").headers.get("Cache-Control", "")


def test_every_module_import_resolves():
    """A typo in an import path would only show in a browser: check them here."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "app" / "static" / "js"
    modules = list(root.rglob("*.js"))
    assert modules
    for module in modules:
        for target in re.findall(r'^\s*import[^"\']*["\'](\.[^"\']+)["\']', module.read_text(), re.M):
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports missing {target}"
