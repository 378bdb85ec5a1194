"""``/docs`` in Chromium: Swagger UI renders this API's own document, every
file from the API itself (nothing from a CDN), and a submit can be tried."""

from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser


def test_the_docs_page_renders_the_document_from_the_apis_own_files(page, live_system, tmp_path):
    hosts = set()
    page.on("request", lambda request: hosts.add(urlparse(request.url).netloc))
    page.goto("/docs")
    # Then the operations of the document are listed, by path, with their summaries
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    body = page.inner_text("body")
    for path in ("/api/tunix/runs/{run_id}/cancel", "/api/tunix/runs/{run_id}/checkpoints/{step}",
                 "/api/tunix/runs/batch"):
        assert path in body, path
    assert "Submit a run" in body
    # And every request went to the API itself
    assert hosts == {urlparse(live_system.base_url).netloc}, hosts
    # And the request and answer schemas are listed
    assert "RunSpec" in body and "RunStatus" in body and "Checkpoint" in body
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
