"""The run page's Samples panel in headless Chromium: ask for a sample of a
trained run's checkpoint, see the prompt and its completion appear."""

import pytest

pytestmark = pytest.mark.browser


def test_the_run_page_asks_for_a_sample_and_shows_its_text(page, live_system, quick_training):
    # Given a completed tiny training with recorded checkpoints
    run = live_system.submit(quick_training, mode="sync")
    assert run["status"] == "completed", run
    page.goto(f"/runs/{run['run_id']}")
    page.locator(".run-head .badge[data-status=completed]").wait_for()
    # And the form offers its recorded steps (latest first)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=sample-step] option').length > 1")
    assert page.locator("[data-testid=samples]").inner_text() == "None yet."
    # When a prompt is sampled greedily from the latest checkpoint
    page.fill("[data-testid=sample-prompt]", "abc")
    page.fill("#sample-tokens", "8")
    page.click("[data-testid=sample-submit]")
    # Then it is listed at once, and its completion appears when a worker generated it
    page.locator("[data-testid=samples] article.sample").first.wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=samples] [data-testid=sample-status]')"
                           "?.textContent === 'completed'", timeout=120_000)
    sample = page.locator("[data-testid=samples] article.sample").first
    assert sample.locator(".sample-prompt").inner_text() == "abc"
    assert sample.locator(".sample-text").count() == 1
    api_sample = live_system.http.get(live_system.url(f"/api/tunix/runs/{run['run_id']}/samples"), timeout=10).json()["data"][0]
    assert api_sample["outputs"][0]["text"].strip() == sample.locator(".sample-text").inner_text().strip()
    assert f"step {api_sample['step']}" in sample.inner_text()
