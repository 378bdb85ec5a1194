"""The Sweeps pages in Chromium against the live system: a sweep of dry runs
whose trials get recorded loss curves (written to the registry as a worker
writes them), then the list, the sweep's curves, scatter and sortable table,
and the comparison of two selected trials."""

import pytest

pytestmark = pytest.mark.browser

BASE = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


@pytest.fixture
def sweep(finished_sweep):
    # Ranked on the training loss (dry runs have no eval loss); trial i's loss falls to 1 + i: trial 0 is the best
    return finished_sweep({"name": "ui sweep", "base": BASE, "metric": "loss",
                           "grid": {"learning_rate": [1e-3, 1e-2, 1e-1], "batch_size": [2, 4]}})


def test_a_sweeps_page_overlays_every_curve_ranks_the_trials_and_compares_two(page, sweep, shots):
    sweep_id, ids = sweep
    # The list links to the sweep
    page.goto("/sweeps")
    page.locator("[data-testid=sweep-row]", has_text="ui sweep").first.wait_for()
    page.screenshot(path=str(shots / "sweeps-list.png"), full_page=True)
    page.locator("[data-testid=sweep-row]", has_text="ui sweep").first.locator("a").click()
    page.wait_for_url(f"**/sweeps/{sweep_id}")
    # Every trial's curve is drawn (the sweep's metric, here the loss), one of them (the best) in colour
    chart = "document.querySelector('[data-testid=overlay-chart]')"
    page.wait_for_function(f"() => {chart}?.dataset.curves === '6' && {chart}.plot.u !== null")
    assert page.evaluate(f"{chart}.dataset.metric") == "loss"
    assert page.evaluate(f"{chart}.dataset.best") == ids[0]
    strokes = page.evaluate(f"{chart}.plot.curves.map((c) => {chart}.plot.strokeOf(c.id))")
    assert len(set(strokes)) == 2 and strokes.count(page.evaluate(f"{chart}.plot.colours.accent")) == 1
    # Pointing at a trial's row raises its curve
    page.locator(f'[data-testid=trial-row][data-run="{ids[3]}"]').hover()
    assert page.evaluate(f"{chart}.dataset.highlight") == ids[3]
    # The scatter has a dot per trial with a loss
    assert page.get_attribute("[data-testid=scatter]", "data-dots") == "6"
    # The table sorts by loss (the default) and by a parameter when its header is clicked
    rows = page.locator("[data-testid=trial-row]")
    losses = [float(t) for t in page.locator("[data-testid=trial-loss]").all_inner_texts()]
    assert losses == sorted(losses)
    page.click("[data-testid=sort-loss]")
    losses = [float(t) for t in page.locator("[data-testid=trial-loss]").all_inner_texts()]
    assert losses == sorted(losses, reverse=True)
    page.click("[data-testid=sort-learning_rate]")
    assert rows.first.get_attribute("data-run") in ids[:2]  # learning rate 1e-3 first
    # Two trials selected are compared: their configs side by side, the differing fields marked, two curves
    page.locator(f'[data-testid=trial-row][data-run="{ids[0]}"] input').check()
    page.locator(f'[data-testid=trial-row][data-run="{ids[5]}"] input').check()
    page.click("[data-testid=compare]")
    page.wait_for_url("**/compare?runs=*")
    page.locator("[data-testid=compare-row]").first.wait_for()
    differs = {r.get_attribute("data-field") for r in page.locator('[data-testid=compare-row][data-differs="true"]').all()}
    assert differs == {"learning_rate", "batch_size"}
    page.wait_for_function("() => document.querySelector('[data-testid=overlay-chart]')?.dataset.curves === '2'")
    page.screenshot(path=str(shots / "compare.png"), full_page=True)
