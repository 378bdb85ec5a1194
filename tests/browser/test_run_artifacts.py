"""The run page's files (``app/static/js/views/run_artifacts.js``): the
whole log searched and downloaded, and the artifacts panel, in headless
Chromium against the live API and worker."""

import gzip
import json

import pytest

from tasks import artifacts
from tasks.artifacts import ArtifactStore

pytestmark = pytest.mark.browser

LINES = 20_000


def test_the_run_page_lists_the_stores_objects_and_finds_a_line_of_the_whole_log(page, live_system, tmp_path):
    # Given a finished dry run (its manifest in the store) whose stored log is
    # longer than the live view keeps, with one line to find deep in it
    run = live_system.submit({"dataset_key": "synthetic", "model_id": "llama3-tiny"}, mode="sync")
    assert run["status"] == "completed", run
    run_id = run["run_id"]
    store = ArtifactStore(f"file://{live_system.data_dir}/artifacts")
    text = "".join(f"step {i} of the long log\n" if i != 12_345 else "the needle: loss spiked to 9.9\n"
                   for i in range(1, LINES + 1))
    local = tmp_path / "a1.log"
    local.write_text(text)
    store.put_gzipped(local, artifacts.log_key(run_id, 1))
    sizes = {key: entry["size"] for key, entry in store.objects(artifacts.run_prefix(run_id)).items()}
    # When its page is opened
    page.goto(f"/runs/{run_id}")
    page.locator(".run-head .badge[data-status=completed]").wait_for()
    # Then the artifacts panel lists the manifest and the log, with their sizes and downloads
    panel = page.locator("[data-testid=artifacts]")
    panel.locator("tr[data-kind=log]").wait_for()
    rows = panel.locator("tbody tr")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.key)")) == sorted(sizes)
    assert "KiB" in panel.locator("tr[data-kind=log] td.num").inner_text()
    log_link = panel.locator("tr[data-kind=log] a[download]")
    assert log_link.get_attribute("href") == f"/api/tunix/runs/{run_id}/artifacts/logs/1"
    with page.expect_download() as download:
        panel.locator("tr[data-kind=manifest] a[download]").click()
    manifest = json.loads(open(download.value.path()).read())
    assert manifest["run_id"] == run_id and manifest["dry_run"] is True
    with page.expect_download() as download:
        log_link.click()
    assert gzip.decompress(open(download.value.path(), "rb").read()).decode() == text
    # When the whole log is searched
    page.fill("[data-testid=log-search-input]", "NEEDLE")
    page.click("[data-testid=log-search]")
    # Then the one line holding it is shown with its line number in the whole log
    results = page.locator("[data-testid=log-search-results] .log-line")
    results.first.wait_for()
    assert results.count() == 1
    assert results.first.get_attribute("data-line") == "12345"
    assert "the needle: loss spiked to 9.9" in results.first.inner_text()
    assert "1 line holding" in page.inner_text("[data-testid=log-search-summary]")
    # And "Download" saves the whole log, every line of it
    with page.expect_download() as download:
        page.click("[data-testid=log-download]")
    assert open(download.value.path()).read() == text
