"""The web console (issue #6) in headless Chromium against the live API and a worker."""

import os
import pathlib
import re
import time
import uuid

import pytest
import requests

pytestmark = pytest.mark.browser

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: Records every status a run's badge shows in the history, in order, even
#: one replaced within milliseconds (read from the mutation records, not
#: from the DOM as it ends up).
RECORD_BADGES = """
() => {
  window.__statuses = [];
  const record = (runId, status) => {
    const seen = window.__statuses.filter((s) => s[0] === runId);
    if (!seen.length || seen[seen.length - 1][1] !== status) window.__statuses.push([runId, status]);
  };
  const scan = (node, target) => {
    if (node.nodeType !== 1) return;
    const badges = node.matches('.badge[data-status]') ? [node] : [...node.querySelectorAll('.badge[data-status]')];
    for (const b of badges) {
      const tr = b.closest('tr[data-run-id]') || (target.closest && target.closest('tr[data-run-id]'));
      if (tr) record(tr.dataset.runId, b.dataset.status);
    }
  };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) scan(n, r.target);
  }).observe(document.body, { childList: true, subtree: true });
  window.__noReload = true;
}
"""


def open_console(page, path="/"):
    page.goto(path)
    page.wait_for_selector("[data-testid=submit]")
    page.wait_for_selector("tr.run-row, tr.empty-row")


def fill_form(page, **values):
    for name, value in values.items():
        if page.locator(f"details.more #f-{name}").count() and not page.locator("details.more[open]").count():
            page.locator("details.more summary").click()
        if name in ("dry_run", "async"):
            page.set_checked(f"#f-{name}", bool(value))
        elif page.locator(f"select#f-{name}").count():
            page.select_option(f"#f-{name}", str(value))
        else:
            page.fill(f"#f-{name}", str(value))


def wait_range(page, text):
    """Wait until the pager says `text` ("1–10 of 23")."""
    page.wait_for_function("(t) => document.querySelector('[data-testid=pager-range]')?.textContent === t", arg=text)


def statuses_of(page, run_id):
    return [s for rid, s in page.evaluate("window.__statuses") if rid == run_id]


# --------------------------------------------------------------------------


def test_form_is_labelled_shows_defaults_and_limits(page):
    open_console(page)
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('main input, main select, main button')]
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
        .map((el) => el.outerHTML)""")
    assert unlabelled == []
    # Choices come from the API's catalog.
    assert "synthetic" in page.locator("#f-dataset_key option").all_inner_texts()
    assert any(t.startswith("llama3-tiny") for t in page.locator("#f-model_id option").all_inner_texts())
    # Defaults and limits from the schema, next to each field.
    assert "default 2e-5" in page.inner_text("#hint-learning_rate")
    assert "0 < x ≤ 1" in page.inner_text("#hint-learning_rate")
    assert "1–4,096" in page.inner_text("#hint-batch_size")
    assert page.is_checked("#f-dry_run") and page.is_checked("#f-async")


def test_validation_errors_appear_next_to_their_field(page, live_system):
    open_console(page)
    before = live_system.runs(limit=1)["pagination"]["total"]
    fill_form(page, learning_rate="5", batch_size="2.5", seed="-1")
    # Keyboard only: Enter in a field submits the form.
    page.focus("#f-batch_size")
    page.keyboard.press("Enter")

    lr_error = page.locator("[data-testid=error-learning_rate]")
    lr_error.wait_for(state="visible")
    assert "less than or equal to 1" in lr_error.inner_text()
    assert page.get_attribute("#f-learning_rate", "aria-invalid") == "true"
    assert "valid integer" in page.inner_text("[data-testid=error-batch_size]")
    # A field under "More options" opens it.
    assert page.locator("details.more[open] [data-testid=error-seed]").is_visible()
    assert "greater than or equal to 0" in page.inner_text("[data-testid=error-seed]")
    # The first invalid field has the focus; a field without error shows none.
    assert page.evaluate("document.activeElement.id") == "f-learning_rate"
    assert page.locator("[data-testid=error-num_epochs]").is_hidden()
    # Editing a field clears its error.
    page.fill("#f-learning_rate", "0.01")
    assert lr_error.is_hidden()
    assert live_system.runs(limit=1)["pagination"]["total"] == before  # nothing was written


def test_async_submit_badge_goes_pending_running_completed_live(page, live_system):
    open_console(page)
    page.evaluate(RECORD_BADGES)
    fill_form(page, dry_run=False, learning_rate="0.01", max_steps="30", batch_size="4", max_seq_length="32")
    assert page.inner_text("[data-testid=submit]").strip() == "Queue training"
    page.click("[data-testid=submit]")

    # The run shows up at once, as the API answered: pending.
    first = page.locator("tr.run-row.is-new").first
    first.wait_for()
    run_id = first.get_attribute("data-run-id")
    assert statuses_of(page, run_id)[0] == "pending"
    page.locator("[data-testid=toast]").filter(has_text=run_id[:8]).wait_for()

    row = page.locator(f'tr[data-run-id="{run_id}"]')
    row.locator('.badge[data-status="running"]').wait_for(timeout=60_000)
    row.locator('.badge[data-status="completed"]').wait_for(timeout=90_000)
    assert statuses_of(page, run_id)[:3] == ["pending", "running", "completed"]
    assert page.evaluate("window.__noReload") is True  # no reload happened

    # The history refreshed on completion: the row shows the outcome.
    row.locator("text=loss").wait_for()
    assert re.search(r"\d+(\.\d+)? s", row.locator(".cell-duration").inner_text())
    run = live_system.run(run_id)
    assert run["status"] == "completed" and run["config"]["max_steps"] == 30
    # Nothing active: polling stops.
    requests_seen = []
    page.on("request", lambda r: requests_seen.append(r.url) if "/status" in r.url else None)
    time.sleep(3.5)
    assert requests_seen == []


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_sync_submit_waits_with_a_spinner_and_shows_the_result(page, live_system):
    open_console(page)
    fill_form(page, dry_run=False, learning_rate="0.01", max_steps="30", batch_size="4", max_seq_length="32")
    page.set_checked("#f-async", False)
    button = page.locator("[data-testid=submit]")
    assert "and wait" in button.inner_text()
    button.click()
    page.wait_for_selector("[data-testid=submit][aria-busy=true] .spinner")
    assert "Waiting for the run" in button.inner_text()
    assert page.locator("#f-learning_rate").is_disabled()  # the form is locked while it waits

    result = page.locator("[data-testid=sync-result]")
    result.wait_for(timeout=90_000)
    assert result.locator('.badge[data-status="completed"]').count() == 1
    assert "final loss" in result.inner_text()
    assert button.get_attribute("aria-busy") == "false"
    run_id = result.get_attribute("data-run-id")
    assert live_system.run(run_id)["mode"] == "sync"
    # It is in the history too, and the result links to it.
    page.locator(f'tr[data-run-id="{run_id}"] .badge[data-status="completed"]').wait_for()
    result.locator("a", has_text="Open run").click()
    page.wait_for_url(f"**/runs/{run_id}")
    page.locator(".run-head .badge[data-status=completed]").wait_for()


def test_run_detail_live_log_chart_cancel_resume(page, live_system):
    """A long training: live log and loss curve, the connection-lost state,
    silence while hidden, Cancel, checkpoints, Resume."""
    # Long enough to act on while it runs; it logs a line every 10 steps.
    body = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 2000,
            "batch_size": 4, "max_seq_length": 32, "learning_rate": 0.01, "checkpoint_every_steps": 100}
    run_id = live_system.submit(body)["run_id"]
    page.goto(f"/runs/{run_id}")
    head_badge = page.locator(".run-head .badge")
    page.locator('.run-head .badge[data-status="running"]').wait_for(timeout=60_000)

    # The log panel receives lines over SSE, and the loss curve grows.
    page.wait_for_function("() => document.querySelectorAll('[data-testid=log-lines] .log-line').length >= 3", timeout=60_000)
    page.wait_for_function("() => Number(document.querySelector('[data-testid=loss-chart]').dataset.points || 0) >= 2",
                           timeout=30_000)
    points = int(page.get_attribute("[data-testid=loss-chart]", "data-points"))
    page.wait_for_function(f"() => Number(document.querySelector('[data-testid=loss-chart]').dataset.points) > {points}",
                           timeout=30_000)
    assert page.locator("[data-testid=progress] [role=progressbar]").count() == 1
    assert "live" in page.inner_text(".live-state")

    # Auto-scroll follows; reading back (keyboard here) pauses it; the button or End resumes.
    follow = page.locator("[data-testid=log-follow]")
    following = "[data-testid=log-follow][data-following={}]".format
    assert follow.get_attribute("data-following") == "true"
    page.focus("[data-testid=log-lines]")
    page.keyboard.press("PageUp")
    page.wait_for_selector(following("false"))
    assert follow.inner_text() == "Follow"
    page.wait_for_timeout(400)  # the keyboard's smooth scroll ends
    follow.click()
    page.wait_for_selector(following("true"))
    page.focus("[data-testid=log-lines]")
    page.keyboard.press("PageUp")
    page.wait_for_selector(following("false"))
    page.wait_for_timeout(400)
    page.keyboard.press("End")
    page.wait_for_selector(following("true"))

    # The API unreachable: "connection lost, retrying", then back.
    page.route("**/api/tunix/runs/*/status", lambda route: route.abort())
    banner = page.locator("#conn")
    banner.wait_for(state="visible", timeout=10_000)
    assert "Connection lost, retrying" in banner.inner_text()
    page.unroute("**/api/tunix/runs/*/status")
    banner.get_by_role("button", name="Retry now").click()  # rather than wait out the back-off
    banner.wait_for(state="hidden", timeout=15_000)

    # A hidden tab polls nothing; visible again, it polls at once.
    polls = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/status") else None)
    page.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    polls.clear()
    time.sleep(3.5)  # more than one polling interval (2.5 s)
    assert polls == []
    page.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    page.wait_for_timeout(500)
    assert polls, "polling did not resume when the tab became visible"

    # Cancel: cancel_requested, then cancelled; a checkpoint is saved.
    assert page.locator("[data-testid=resume]").count() == 0
    page.click("[data-testid=cancel]")
    page.locator('.run-head .badge[data-status="cancelled"]').wait_for(timeout=60_000)
    assert live_system.run(run_id)["status"] == "cancelled"
    assert page.locator("[data-testid=cancel]").count() == 0
    page.locator("[data-testid=error-panel]").wait_for()  # why it stopped
    link = page.locator("[data-testid=checkpoints] a[download]").first
    link.wait_for(timeout=15_000)
    response = requests.get(live_system.url(link.get_attribute("href")), timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-tar"

    # Resume: queued again, then running on; cancel it again.
    page.click("[data-testid=resume]")
    page.locator('.run-head .badge[data-status="running"], .run-head .badge[data-status="pending"]').wait_for()
    page.locator('.run-head .badge[data-status="running"]').wait_for(timeout=60_000)
    live_state = page.inner_text(".live-state")  # read once: it flips from connecting to live
    assert "live" in live_state or "connecting" in live_state
    page.click("[data-testid=cancel]")
    page.locator('.run-head .badge[data-status="cancelled"]').wait_for(timeout=60_000)
    assert head_badge.get_attribute("data-status") == "cancelled"
    assert live_system.run(run_id)["attempts"] == 2


def test_history_paginates_filters_and_links_to_runs(page, live_system):
    body = {"dataset_key": "text-sft", "model_id": "qwen3-tiny"}  # dry runs no other test makes
    ids = [live_system.submit(body)["run_id"] for _ in range(23)]
    live_system.wait_status(ids[-1], "completed", timeout=60)
    for run_id in ids:
        live_system.wait_status(run_id, "completed", timeout=30)
    newest_first = [r["run_id"] for r in live_system.runs(model_id="qwen3-tiny", dataset_key="text-sft",
                                                           limit=100)["data"]]
    assert sorted(newest_first) == sorted(ids)

    open_console(page, "/?model_id=qwen3-tiny&dataset_key=text-sft&limit=10")
    rng = page.locator("[data-testid=pager-range]")
    assert rng.inner_text() == "1–10 of 23"
    assert page.locator("tr.run-row").evaluate_all("rows => rows.map(r => r.dataset.runId)") == newest_first[:10]
    assert page.locator(".chip[data-status=completed] .chip-count").inner_text() == "23"

    page.click("[data-testid=next-page]")
    wait_range(page, "11–20 of 23")
    assert page.locator("tr.run-row").evaluate_all("rows => rows.map(r => r.dataset.runId)") == newest_first[10:20]
    page.click("[data-testid=next-page]")
    wait_range(page, "21–23 of 23")
    assert page.locator("tr.run-row").count() == 3
    assert page.locator("[data-testid=next-page]").is_disabled()
    assert "offset=20" in page.url

    # The page is in the URL: a reload shows the same page.
    page.reload()
    wait_range(page, "21–23 of 23")
    page.click("[data-testid=prev-page]")
    wait_range(page, "11–20 of 23")

    # Filters: by status (chips) and by mode.
    page.click(".chip[data-status=failed]")
    page.wait_for_selector("text=No runs match these filters.")
    page.click(".chip[data-status=completed]")
    wait_range(page, "1–10 of 23")
    page.select_option("#filter-mode", "sync")
    page.wait_for_selector("text=No runs match these filters.")
    page.select_option("#filter-mode", "async")
    wait_range(page, "1–10 of 23")

    # Each row links to its run; Back returns to the same history.
    target = newest_first[0]
    page.click(f'tr[data-run-id="{target}"] a.run-link')
    page.wait_for_url(f"**/runs/{target}")
    page.locator(".run-head .badge[data-status=completed]").wait_for()
    page.go_back()
    wait_range(page, "1–10 of 23")


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_run_detail_is_reloadable_and_complete(page, live_system, quick_training):
    run = live_system.submit(quick_training, mode="sync")
    assert run["status"] == "completed", run
    page.goto(f"/runs/{run['run_id']}")
    page.locator(".run-head .badge[data-status=completed]").wait_for()
    for _ in range(2):  # as loaded, then reloaded
        assert page.inner_text("h1") == f"Run {run['run_id'][:8]}"
        assert page.inner_text("[data-testid=queue-wait] dd") not in ("", "—")
        assert page.inner_text("[data-testid=duration] dd") not in ("", "—")
        assert "llama3-tiny" in page.inner_text("#config")
        assert "final loss" in page.inner_text("#result").lower()
        page.wait_for_function("() => Number(document.querySelector('[data-testid=loss-chart]').dataset.points) === 30")
        page.locator("[data-testid=checkpoints] a[download]").first.wait_for()
        page.wait_for_function("() => document.querySelectorAll('[data-testid=log-lines] .log-line').length >= 1")
        assert page.inner_text(".live-state") == "ended"
        page.reload()
        page.locator(".run-head .badge[data-status=completed]").wait_for()

    page.goto(f"/runs/{uuid.uuid4()}")
    page.locator("[data-testid=not-found]").wait_for()


def test_phone_width_has_no_horizontal_scroll(chromium, live_system):
    run_id = live_system.submit({"dataset_key": "synthetic", "model_id": "gemma3-tiny"}, mode="sync")["run_id"]
    context = chromium.new_context(base_url=live_system.base_url, viewport={"width": 390, "height": 844},
                                   is_mobile=True, has_touch=True)
    try:
        pg = context.new_page()
        open_console(pg)
        pg.locator(f'tr[data-run-id="{run_id}"]').wait_for()
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        pg.goto(f"/runs/{run_id}")
        pg.locator(".run-head .badge").wait_for()
        pg.wait_for_timeout(300)
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_token_from_the_dialog_authorises_changes(chromium, live_system, extra_api):
    """With API_TOKEN set, a submit answered 401 opens the token dialog; the
    token saved there (localStorage) goes with the next requests."""
    base = extra_api(API_TOKEN="s3cret-token")
    context = chromium.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    try:
        pg = context.new_page()
        open_console(pg)
        pg.click("[data-testid=submit]")
        dialog = pg.locator("#token-dialog")
        dialog.wait_for(state="visible")
        assert pg.evaluate("document.activeElement.id") == "token-input"
        pg.fill("#token-input", "s3cret-token")
        pg.click("#token-dialog button[value=save]")
        dialog.wait_for(state="hidden")
        # The label follows the check of the saved token (GET /me), not the dialog's closing
        pg.wait_for_selector('#token-button[aria-label="API token (set)"]', timeout=10_000)
        pg.click("[data-testid=submit]")
        row = pg.locator("tr.run-row.is-new").first
        row.wait_for()
        live_system.wait_status(row.get_attribute("data-run-id"), "completed", timeout=30)
        # Kept across reloads, in this browser only.
        pg.reload()
        pg.wait_for_selector("[data-testid=submit]")
        assert pg.evaluate("localStorage.getItem('tunix-rt.api-token')") == "s3cret-token"
    finally:
        context.close()


@pytest.mark.skipif(not os.environ.get("UPDATE_SCREENSHOTS"), reason="set UPDATE_SCREENSHOTS=1 to refresh docs/*.png")
def test_update_readme_screenshots(chromium, live_system, quick_training):
    """docs/console.png and docs/run-detail.png from this live system; best
    alone, on a fresh database: UPDATE_SCREENSHOTS=1 pytest tests/browser -k screenshots"""
    long_run = dict(quick_training, max_steps=2000, checkpoint_every_steps=500)
    # A history with a bit of everything.
    live_system.submit({"dataset_key": "text-sft", "model_id": "qwen3-tiny"})
    # (a dry run: a real training would hold the training slot the runs below need)
    live_system.submit({"dataset_key": "text-sft", "model_id": "gemma3-270m", "dry_run": True})
    stopped = live_system.submit(long_run)["run_id"]
    live_system.wait_status(stopped, "running", timeout=60)
    time.sleep(3)
    live_system.http.post(live_system.url(f"/api/tunix/runs/{stopped}/cancel"), timeout=10)
    live_system.wait_status(stopped, "cancelled", timeout=60)
    live_system.submit({"dataset_key": "synthetic", "model_id": "gemma3-tiny"})
    finished = live_system.submit(dict(quick_training, max_steps=60, checkpoint_every_steps=20), mode="sync")
    running = live_system.submit(long_run)["run_id"]
    context = chromium.new_context(base_url=live_system.base_url, viewport={"width": 1440, "height": 960})
    try:
        pg = context.new_page()
        live_system.wait_status(running, "running", timeout=60)
        open_console(pg)
        pg.locator(f'tr[data-run-id="{running}"] [data-testid=progress-loss]').wait_for(timeout=60_000)
        pg.wait_for_timeout(2500)
        pg.screenshot(path=str(ROOT / "docs" / "console.png"))
        live_system.http.post(live_system.url(f"/api/tunix/runs/{running}/cancel"), timeout=10)
        pg.goto(f"/runs/{finished['run_id']}")
        pg.wait_for_function("() => Number(document.querySelector('[data-testid=loss-chart]')?.dataset.points) === 60")
        pg.locator("[data-testid=checkpoints] a[download]").first.wait_for()
        box = pg.locator("[data-testid=loss-chart] .u-over").bounding_box()
        pg.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
        pg.wait_for_timeout(300)
        pg.screenshot(path=str(ROOT / "docs" / "run-detail.png"), full_page=True)
        live_system.wait_status(running, "cancelled", timeout=60)
    finally:
        context.close()
