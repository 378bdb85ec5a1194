"""Sweeps in the console (#23) in Chromium against the live system: the
form launches a sweep and puts the API's 422s next to their fields; the
sweep page draws its trials' parameters against its metric as parallel
coordinates and lists each parameter's importance."""

import pytest

from support import connect, wait_for

pytestmark = pytest.mark.browser

BASE = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


def sweeps(live_system):
    return live_system.http.get(live_system.url("/api/tunix/sweeps"), params={"limit": 100}, timeout=10).json()


def sweep_detail(live_system, sweep_id):
    return live_system.http.get(live_system.url(f"/api/tunix/sweeps/{sweep_id}"), timeout=10).json()


def test_the_form_launches_a_sweep_that_appears_with_its_trials(page, live_system, shots):
    # Given the form, reached from the sweeps page
    page.goto("/sweeps")
    page.click("[data-testid=new-sweep]")
    page.wait_for_url("**/sweeps/new")
    page.locator("[data-testid=sweep-form]").wait_for()
    # When a base run, a log-uniform learning rate (the first row), a grid of batch sizes, 3 draws,
    # the median rule and a concurrency cap are filled in
    page.fill("#s-name", "form sweep")
    page.select_option("#f-dataset_key", "synthetic")
    page.select_option("#f-model_id", "llama3-tiny")
    page.fill("#f-max_steps", "7")
    rows = page.locator("[data-testid=space-row]")
    assert rows.count() == 1
    rows.nth(0).locator("[data-testid=space-low]").fill("1e-4")
    rows.nth(0).locator("[data-testid=space-high]").fill("1e-2")
    page.click("[data-testid=add-param]")
    rows.nth(1).locator("select").first.select_option("batch_size")
    rows.nth(1).locator("[data-testid=space-values]").fill("2, 4")
    page.fill("#s-random-count", "3")
    page.select_option("#s-early_stopping-rule", "median")
    page.fill("#s-early_stopping-min_steps", "5")
    page.fill("#s-max_concurrent", "2")
    assert page.inner_text("[data-testid=trial-count]").startswith("makes 6 trials")
    page.screenshot(path=str(shots / "sweep-form.png"), full_page=True)
    page.click("[data-testid=sweep-submit]")
    # Then the sweep's page opens with its six trials
    page.wait_for_url("**/sweeps/*-*")
    sweep_id = page.url.rstrip("/").rsplit("/", 1)[1]
    page.locator("[data-testid=trial-row]").nth(5).wait_for()
    assert page.locator("[data-testid=trial-row]").count() == 6
    # And the API holds the request as the form built it
    spec = sweep_detail(live_system, sweep_id)["spec"]
    assert spec["name"] == "form sweep" and spec["grid"] == {"batch_size": [2, 4]}
    assert spec["random"]["count"] == 3 and spec["random"]["space"] == {"learning_rate": {"log_uniform": [1e-4, 1e-2]}}
    assert spec["base"]["max_steps"] == 7 and spec["base"]["dataset_key"] == "synthetic"
    assert spec["early_stopping"]["rule"] == "median" and spec["early_stopping"]["min_steps"] == 5
    assert spec["max_concurrent"] == 2 and spec["metric"] == "eval_loss"
    # And the sweeps page lists it
    assert any(s["sweep_id"] == sweep_id for s in sweeps(live_system)["data"])


def test_the_apis_422s_show_next_to_the_fields_they_name_and_nothing_is_created(page, live_system, shots):
    before = sweeps(live_system)["pagination"]["total"]
    page.goto("/sweeps/new")
    page.locator("[data-testid=sweep-form]").wait_for()
    page.select_option("#f-dataset_key", "synthetic")
    page.select_option("#f-model_id", "llama3-tiny")
    rows = page.locator("[data-testid=space-row]")
    # Given a space whose log-uniform learning rate starts at 0 and whose batch size is a choice of nothing
    rows.nth(0).locator("[data-testid=space-low]").fill("0")
    page.click("[data-testid=add-param]")
    rows.nth(1).locator("select").first.select_option("batch_size")
    rows.nth(1).locator("select").nth(1).select_option("choice")
    # When it is submitted without a name: the name is named first (the API checks the request's shape first)
    page.click("[data-testid=sweep-submit]")
    error = page.locator("[data-testid=sweep-error-name]")
    error.wait_for()
    assert "at least 1 character" in error.inner_text()
    assert page.get_attribute("#s-name", "aria-invalid") == "true"
    # When it is named and submitted again
    page.fill("#s-name", "bad space")
    assert page.locator("[data-testid=sweep-error-name]").is_hidden()  # typing clears it
    page.click("[data-testid=sweep-submit]")
    # Then each row says what is wrong with it, in the API's words
    rows.nth(0).locator("[data-testid=space-error]").wait_for()
    assert rows.nth(0).locator("[data-testid=space-error]").inner_text() == "log_uniform needs bounds above 0"
    assert rows.nth(1).locator("[data-testid=space-error]").inner_text() == "expected at least one value"
    page.screenshot(path=str(shots / "sweep-form-422.png"), full_page=True)
    # When the space is fixed but the base run's learning rate is out of range
    rows.nth(0).locator("[data-testid=space-low]").fill("1e-5")
    rows.nth(1).locator("[data-testid=space-values]").fill("2, 4")
    page.fill("#f-learning_rate", "7")
    page.click("[data-testid=sweep-submit]")
    # Then the base run's field says so, the rows no more
    page.locator("[data-testid=error-learning_rate]").wait_for()
    assert "less than or equal to 1" in page.inner_text("[data-testid=error-learning_rate]")
    assert rows.nth(0).locator("[data-testid=space-error]").is_hidden()
    # And no sweep was created
    assert sweeps(live_system)["pagination"]["total"] == before


@pytest.fixture
def ranked_sweep(live_system):
    """Six dry trials: a grid of learning rates (three decades) and devices, a log-uniform LoRA rank; five of
    them get a recorded training loss that grows with the learning rate, the sixth none."""
    body = {"name": "pc sweep", "base": BASE, "metric": "loss",
            "grid": {"learning_rate": [1e-4, 1e-3, 1e-2], "device": ["auto", "cpu"]},
            "random": {"count": 1, "seed": 1, "space": {"lora.rank": {"log_uniform": [2, 64]}}}}
    response = live_system.http.post(live_system.url("/api/tunix/sweeps"), json=body, timeout=60)
    assert response.status_code == 202, response.text
    sweep = response.json()
    wait_for(lambda: sweep_detail(live_system, sweep["sweep_id"])["status"] == "finished", 60,
             message="dry trials done")
    conn = connect(live_system.database_url)
    try:
        with conn.cursor() as cur:
            for r in sweep["runs"][:5]:
                t = r["trial"]
                loss = 1 + [1e-4, 1e-3, 1e-2].index(t["learning_rate"]) + 0.01 * (t["device"] == "cpu")
                cur.execute("INSERT INTO tunix_run_metrics (run_id, step, loss, attempt) VALUES (%s, 3, %s, 1)",
                            (r["run_id"], loss))
    finally:
        conn.close()
    return sweep


def test_parallel_coordinates_draw_a_line_per_finished_trial_on_the_right_axes_with_importance(
        page, live_system, ranked_sweep, shots):
    sweep_id = ranked_sweep["sweep_id"]
    page.goto(f"/sweeps/{sweep_id}")
    lines = page.locator("[data-testid=pc-line]")
    lines.nth(4).wait_for(state="attached")  # (the best one runs flat along the bottom: no height to be "visible")
    # One line per finished trial with the metric: five, the best one thicker
    assert lines.count() == 5
    measured = {r["run_id"] for r in ranked_sweep["runs"][:5]}
    assert {lines.nth(i).get_attribute("data-run") for i in range(5)} == measured
    # The axes: every parameter, then the metric; log for the learning rate's decades and the log-uniform rank,
    # categorical for the devices
    axes = page.locator("[data-testid=pc-axis]")
    assert [axes.nth(i).get_attribute("data-param") for i in range(axes.count())] == [
        "device", "learning_rate", "lora.rank", "loss"]
    assert [axes.nth(i).get_attribute("data-kind") for i in range(axes.count())] == [
        "categorical", "log", "log", "linear"]
    assert axes.nth(0).locator("[data-testid=pc-tick]").all_text_contents() == ["auto", "cpu"]
    assert axes.nth(1).locator("[data-testid=pc-tick]").all_text_contents() == ["1e-4", "0.001", "0.01"]
    best = sweep_detail(live_system, sweep_id)["best"]["run_id"]
    assert page.locator(".pc-line.pc-best").get_attribute("data-run") == best
    # Dragging along the learning rate's axis, over its lowest value only, keeps the trials at 1e-4
    page.locator("[data-testid=parcoords]").scroll_into_view_if_needed()
    area = axes.nth(1).locator("[data-testid=pc-brush-area]").bounding_box()
    x = area["x"] + area["width"] / 2
    bottom = area["y"] + area["height"]
    page.mouse.move(x, bottom - 1)  # (the strip reaches a little past the axis' end)
    page.mouse.down()
    page.mouse.move(x, bottom - area["height"] * 0.2, steps=4)
    page.mouse.up()
    selected = {lines.nth(i).get_attribute("data-run") for i in range(5)
                if lines.nth(i).get_attribute("data-selected") == "true"}
    assert selected == {r["run_id"] for r in ranked_sweep["runs"][:5] if r["trial"]["learning_rate"] == 1e-4}
    assert "in the selection" in page.inner_text("[data-testid=pc-note]")
    page.click("[data-testid=pc-clear]")
    assert page.locator('[data-testid=pc-line][data-selected="true"]').count() == 5
    # Importance: the learning rate first, and one line saying what the numbers are
    rows = page.locator("[data-testid=importance-row]")
    rows.first.wait_for()
    assert rows.first.get_attribute("data-param") == "learning_rate"
    assert page.inner_text("[data-testid=importance-explanation]").startswith(
        "importance: |Spearman rank correlation| of each parameter with loss over 5 completed trials")
    # A screenshot at 1400 px, to look at
    shot = shots / "sweep-parcoords.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.emulate_media(color_scheme="dark")
    page.locator("[data-testid=parcoords]").screenshot(path=str(shots / "sweep-parcoords-dark.png"))
