"""The console's charts (app/static/js/plot.js, on the vendored uPlot) in
Chromium against the live system: a run's eval loss beside its training
loss, read from the keyboard; log y, drag-zoom fetching the zoomed range at
full resolution, smoothing and wall time; a sweep's curves with the best
trial by the sweep's metric in colour.  Curves are written to the registry
as a worker writes them; screenshots at 1400 px go to $SCREENSHOT_DIR or the test's tmp dir."""

import json
import re

import pytest

from support import connect

pytestmark = pytest.mark.browser

BASE = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}
STEPS = 5000
SPIKE = 2537

PLOT = "document.querySelector('[data-testid={}]')?.plot"


def plot_eval(page, testid, body):
    """``body`` evaluated with ``p``: the chart's Plot."""
    return page.evaluate(f"() => {{ const p = {PLOT.format(testid)}; return {body}; }}")


def wait_plot(page, testid, condition):
    page.wait_for_function(f"() => {{ const p = {PLOT.format(testid)}; return p && p.el.dataset.loading === 'false' "
                           f"&& ({condition}); }}")


def center(page, selector):
    box = page.locator(selector).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.fixture
def trained_run(live_system):
    """A finished training of 5,000 steps as the registry holds it: the loss
    falls, with one spike; an eval loss every 500 steps; a method's kl at
    every step; a step a second."""
    run_id = live_system.submit(BASE, mode="sync")["run_id"]
    conn = connect(live_system.database_url)
    try:
        with conn.cursor() as cur:
            # A dry run's row, made a training's: the page then reads its curves
            cur.execute("UPDATE tunix_runs SET dry_run = false, config = config || %s WHERE id = %s",
                        (json.dumps({"dry_run": False, "max_steps": STEPS}), run_id))
            cur.execute("INSERT INTO tunix_run_metrics (run_id, step, loss, learning_rate, grad_norm, attempt, recorded_at, "
                        "metrics) SELECT %s, s, CASE WHEN s = %s THEN 9.0 ELSE 0.4 + 3.0 * exp(-s / 700.0) END, 0.001, "
                        "1.0, 1, now() + make_interval(secs => s), jsonb_build_object('kl', s / 5000.0) "
                        "FROM generate_series(1, %s) s", (run_id, SPIKE, STEPS))
            cur.execute("INSERT INTO tunix_run_evals (run_id, step, eval_loss, examples, attempt, recorded_at) "
                        "SELECT %s, s, 0.6 + 3.0 * exp(-s / 700.0), 16, 1, now() + make_interval(secs => s) "
                        "FROM generate_series(500, %s, 500) s", (run_id, STEPS))
    finally:
        conn.close()
    return run_id


def test_the_run_page_draws_the_eval_loss_beside_the_training_loss_and_reads_it_aloud(page, trained_run, shots):
    # When the run's page opens (under the console's CSP, every violation recorded)
    page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation', "
                         "(e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));")
    page.goto(f"/runs/{trained_run}")
    wait_plot(page, "loss-chart", "p.curves.length === 2")
    assert "script-src 'self'" in page.evaluate("() => fetch(location.href).then((r) => r.headers.get('content-security-policy'))")
    # Then the chart holds the training loss and the eval loss, both drawn by uPlot
    curves = plot_eval(page, "loss-chart", "p.curves.map((c) => [c.id, c.label, c.steps.length, c.steps[0]])")
    assert [c[:2] for c in curves] == [["loss", "training loss"], ["eval_loss", "eval loss"]]
    assert curves[1][2] == 10 and curves[1][3] == 500
    assert plot_eval(page, "loss-chart", "p.u.series.length") == 3
    # And the training loss, cut to 1,000 points, keeps its spike
    train = plot_eval(page, "loss-chart", "({n: p.curves[0].steps.length, at: p.curves[0].steps.indexOf(%d), "
                                          "v: p.curves[0].values[p.curves[0].steps.indexOf(%d)]})" % (SPIKE, SPIKE))
    assert train["n"] <= 1000 and train["at"] >= 0 and train["v"] == 9.0
    # And the method's own metric has its chart, from the metric's menu
    wait_plot(page, "method-chart", "p.metric === 'kl' && p.curves.length === 1")
    assert plot_eval(page, "method-chart", "p.curves[0].values[p.curves[0].values.length - 1]") == 1.0
    assert "nullnull" not in page.inner_text("main")  # the result's absent reports are not written as text
    # And the manifest's URI has a line of its own, and every configuration field a label (not its JSON name)
    assert page.inner_text("[data-testid=result-manifest]").startswith("Manifest file://")
    config = page.inner_text("#config")
    assert "Held-out samples" in config and "sample_held_out" not in config
    # And every control of the chart is labelled, and screen readers get every curve's summary
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('.plot input, .plot select, .plot button')]
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
        .map((el) => el.outerHTML)""")
    assert unlabelled == []
    label = page.get_attribute("[data-testid=loss-chart] .plot-canvas", "aria-label")
    assert "training loss:" in label and "eval loss:" in label and "lowest" in label
    page.screenshot(path=str(shots / "run-page.png"), full_page=True)
    print(f"screenshot: {shots / 'run-page.png'}")
    # And uPlot ran under the CSP: nothing was blocked
    page.mouse.move(*center(page, "[data-testid=loss-chart] .u-over"))
    assert page.evaluate("window.__csp") == []

    # When the chart is focused and read from the keyboard
    page.focus("[data-testid=loss-chart] .plot-canvas")
    live = page.locator("[data-testid=loss-chart] [data-testid=plot-live]")
    page.keyboard.press("End")
    # Then the last point is announced, then the one before, then the first
    assert live.inner_text().startswith(f"step {STEPS:,}") and "training loss" in live.inner_text()
    page.keyboard.press("ArrowLeft")  # the point before, as downsampled (each bucket's first, lowest, highest, last)
    before = int(re.match(r"step ([\d,]+),", live.inner_text()).group(1).replace(",", ""))
    assert STEPS - 40 < before < STEPS
    page.keyboard.press("Home")
    assert live.inner_text().startswith("step 1,")
    # And Up moves to the eval loss, read at its own steps
    page.keyboard.press("ArrowUp")
    assert "eval loss" in live.inner_text()
    page.keyboard.press("ArrowRight")
    assert live.inner_text().startswith("step 1,000") and "eval loss 1.31895" in live.inner_text()


def test_log_y_zoom_smoothing_and_wall_time_change_what_is_drawn(page, trained_run, shots):
    page.goto(f"/runs/{trained_run}")
    wait_plot(page, "loss-chart", "p.curves.length === 2")
    series_bodies = []
    page.on("request", lambda r: series_bodies.append(json.loads(r.post_data))
            if r.url.endswith("/api/tunix/runs/series") else None)

    # Log y: the y scale becomes logarithmic, its range stays above zero
    assert plot_eval(page, "loss-chart", "p.u.scales.y.distr") == 1
    page.check("[data-testid=loss-chart] [data-testid=plot-log]")
    wait_plot(page, "loss-chart", "p.u.scales.y.distr === 3")
    assert plot_eval(page, "loss-chart", "p.u.scales.y.min") > 0

    # A drag across about a tenth of the plot zooms in and fetches that range again
    x_before = plot_eval(page, "loss-chart", "[p.u.scales.x.min, p.u.scales.x.max]")
    assert x_before[0] <= 1 and x_before[1] >= STEPS
    box = page.locator("[data-testid=loss-chart] .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.45, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.50, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.55, y, steps=5)
    page.mouse.up()
    wait_plot(page, "loss-chart", "p.el.dataset.fromStep !== ''")
    frm, to = (int(v) for v in plot_eval(page, "loss-chart", "[p.el.dataset.fromStep, p.el.dataset.toStep]"))
    assert STEPS * 0.4 < frm < SPIKE < to < STEPS * 0.6 and to - frm < 1000
    # The requests named the range; the answer is every step of it (fewer steps than points: full resolution)
    zoomed = [b for b in series_bodies if "from_step" in b]
    assert {(b["from_step"], b["to_step"]) for b in zoomed} == {(frm, to)}
    assert {b["metric"] for b in zoomed} == {"loss", "eval_loss"}
    steps = plot_eval(page, "loss-chart", "p.curves[0].steps")
    assert steps == list(range(frm, to + 1))
    x_zoomed = plot_eval(page, "loss-chart", "[p.u.scales.x.min, p.u.scales.x.max]")
    assert frm - 1 <= x_zoomed[0] and x_zoomed[1] <= to + 1
    assert plot_eval(page, "loss-chart", "p.u.scales.y.distr") == 3  # still log
    page.screenshot(path=str(shots / "run-zoomed-log.png"), full_page=True)
    print(f"screenshot: {shots / 'run-zoomed-log.png'}")

    # Reset zoom: the whole run again, downsampled
    page.click("[data-testid=loss-chart] [data-testid=plot-reset]")
    wait_plot(page, "loss-chart", "p.el.dataset.fromStep === '' && p.u.scales.x.max >= %d" % STEPS)

    # Smoothing draws the EMA, the raw curve faint underneath
    page.eval_on_selector("[data-testid=loss-chart] [data-testid=plot-smooth]",
                          "(el) => { el.value = '0.9'; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    wait_plot(page, "loss-chart", "p.u.series.length === 5")
    smoothed, raw = plot_eval(page, "loss-chart", "[p.u.data[1].filter((v) => v !== null).slice(0, 50), "
                                                  "p.u.data[3].filter((v) => v !== null).slice(0, 50)]")
    assert smoothed != raw and max(smoothed) <= max(raw)

    # Wall time: x holds seconds since the run's first step (here one a second)
    page.select_option("[data-testid=loss-chart] [data-testid=plot-x]", "time")
    wait_plot(page, "loss-chart", "p.el.dataset.x === 'time'")
    xs = plot_eval(page, "loss-chart", "[p.u.data[0][0], p.u.data[0][p.u.data[0].length - 1]]")
    assert xs[0] == pytest.approx(0, abs=1) and xs[1] == pytest.approx(STEPS - 1, abs=2)
    assert plot_eval(page, "loss-chart", "p.u.axes[0].label") == "wall time"
    page.screenshot(path=str(shots / "run-wall-time.png"), full_page=True)


@pytest.fixture
def eval_ranked_sweep(live_system, finished_sweep):
    """Six trials ranked on the eval loss (the default), whose best by the
    training loss (trial 0) is the worst by the eval loss (trial 5 is best)."""
    sweep_id, ids = finished_sweep({"name": "eval ranked", "base": BASE,
                                    "grid": {"learning_rate": [1e-4, 1e-3, 1e-2], "batch_size": [2, 4]}})
    conn = connect(live_system.database_url)
    try:
        with conn.cursor() as cur:
            for i, run_id in enumerate(ids):
                cur.execute("INSERT INTO tunix_run_evals (run_id, step, eval_loss, examples, attempt) "
                            "SELECT %s, s, %s + 50.0 / s, 16, 1 FROM generate_series(50, 300, 50) s", (run_id, 7 - i))
            # and a method's own metric no chart lists by name (GRPO's reward_std)
            cur.execute("UPDATE tunix_run_metrics SET metrics = jsonb_build_object('reward_std', step / 100.0) "
                        "WHERE run_id = ANY(%s::uuid[])", (ids,))
    finally:
        conn.close()
    return sweep_id, ids


def test_the_sweep_overlay_draws_its_metric_with_the_best_trial_by_that_metric_in_colour(
        page, eval_ranked_sweep, shots):
    sweep_id, ids = eval_ranked_sweep
    # When the sweep's page opens
    page.goto(f"/sweeps/{sweep_id}")
    wait_plot(page, "overlay-chart", "p.curves.length === 6 && p.el.dataset.best")
    # Then its curves are the sweep's metric, the eval loss, one per trial
    assert plot_eval(page, "overlay-chart", "p.metric") == "eval_loss"
    assert page.input_value("[data-testid=overlay-chart] [data-testid=plot-metric]") == "eval_loss"
    assert plot_eval(page, "overlay-chart", "p.curves[0].steps") == [50, 100, 150, 200, 250, 300]
    # And the one in colour, drawn over the rest, is the best trial by the eval loss (not by the training loss)
    assert page.inner_text("[data-testid=trial-row][data-best=true] a.mono") == ids[5][:8]
    colours = plot_eval(page, "overlay-chart", "Object.fromEntries(p.curves.map((c) => [c.id, p.strokeOf(c.id)]))")
    accent = page.evaluate("getComputedStyle(document.querySelector('.plot')).getPropertyValue('--chart-line').trim()")
    assert colours[ids[5]] == accent
    assert {c for i, c in colours.items() if i != ids[5]} == {plot_eval(page, "overlay-chart", "p.colours.muted")}
    assert plot_eval(page, "overlay-chart", "p.curves[p.curves.length - 1].id") == ids[5]
    assert "best by eval loss" in page.inner_text("[data-testid=overlay-note]")
    page.screenshot(path=str(shots / "sweep.png"), full_page=True)
    print(f"screenshot: {shots / 'sweep.png'}")
    # And the scatter puts the learning rate (1e-4 to 1e-2) on a log axis, ticked at its decades
    page.select_option("select[aria-label=Parameter]", "learning_rate")
    page.wait_for_function("() => document.querySelector('[data-testid=scatter]').dataset.logX === 'true'")
    ticks = page.evaluate("document.querySelector('[data-testid=scatter]').plot.u.axes[0]._values")
    assert {"1e-4", "0.001", "0.01"} <= set(ticks)
    page.locator("[data-testid=scatter]").screenshot(path=str(shots / "scatter-log.png"))
    # And another metric is a choice away, the best trial still in colour
    page.select_option("[data-testid=overlay-chart] [data-testid=plot-metric]", "loss")
    wait_plot(page, "overlay-chart", "p.metric === 'loss' && p.curves.length === 6 && p.curves[0].steps.length > 6")
    assert plot_eval(page, "overlay-chart", f"p.strokeOf('{ids[5]}')") == accent
    # And the menu offers every metric the trials recorded, a method's own among them, after the sweep's
    menu = page.eval_on_selector("[data-testid=overlay-chart] [data-testid=plot-metric]",
                                 "(s) => [...s.options].map((o) => o.value)")
    assert menu == ["eval_loss", "loss", "learning_rate", "grad_norm", "reward_std"]
    page.select_option("[data-testid=overlay-chart] [data-testid=plot-metric]", "reward_std")
    wait_plot(page, "overlay-chart", "p.metric === 'reward_std' && p.curves.length === 6")
    assert plot_eval(page, "overlay-chart", "p.curves[0].values.slice(-1)[0]") == 3.0
