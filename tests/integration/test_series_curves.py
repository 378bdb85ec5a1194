"""Curves as the charts read them (``app/curves.py``, the ``series`` query):
downsampled so that a spike survives, a zoomed step range at full
resolution, any metric a run records, and the range arguments' 422s.  The
app in this process on real PostgreSQL."""

import json

import pytest

from support import connect

BODY = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def run_id(client):
    response = client.post("/api/tunix/run?mode=async", json=BODY)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["run_id"]


def record(registry_url, run_id, steps, loss, *, evals=(), metrics=None):
    """Steps 1..steps with ``loss(step)``; eval losses ``[(step, value)]``; a method metric ``{name: f(step)}``."""
    conn = connect(registry_url)
    try:
        with conn.cursor() as cur:
            for step in range(1, steps + 1):
                extra = None if metrics is None else {name: f(step) for name, f in metrics.items()}
                cur.execute("INSERT INTO tunix_run_metrics (run_id, step, loss, learning_rate, attempt, metrics) "
                            "VALUES (%s, %s, %s, %s, 1, %s)",
                            (run_id, step, loss(step), 0.01, None if extra is None else json.dumps(extra)))
            for step, value in evals:
                cur.execute("INSERT INTO tunix_run_evals (run_id, step, eval_loss, examples, attempt) "
                            "VALUES (%s, %s, %s, 8, 1)", (run_id, step, value))
    finally:
        conn.close()


def series(client, run_id, **body):
    response = client.post("/api/tunix/runs/series", json={"run_ids": [run_id], **body})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    return answer, answer["data"][0]


def test_a_spike_between_sampled_steps_survives_the_downsampling(client, run_id, registry_url):
    # Given 1,000 steps of a flat loss with one spike at step 537 and one dip at step 812: a stride of
    # every 53rd step (what 20 points were before: 1, 54, ... 531, 584 ...) would show neither
    record(registry_url, run_id, 1000, lambda s: {537: 50.0, 812: 0.01}.get(s, 1.0))
    # When the curve is read at 20 points
    answer, curve = series(client, run_id, points=20)
    # Then the spike and the dip are both there, with their steps, and the curve still starts and ends where the run did
    assert len(curve["steps"]) <= 20
    points = dict(zip(curve["steps"], curve["values"]))
    assert points[537] == 50.0 and points[812] == 0.01
    assert curve["steps"][0] == 1 and curve["steps"][-1] == 1000
    assert curve["steps"] == sorted(curve["steps"]) and curve["loss"] == curve["values"]
    assert answer["metric"] == "loss" and answer["from_step"] is None


def test_a_zoomed_range_comes_at_full_resolution_and_its_wall_time_counts_from_the_runs_start(
        client, run_id, registry_url):
    # Given 1,000 recorded steps
    record(registry_url, run_id, 1000, lambda s: 10.0 / s)
    # When steps 500 to 560 are asked for at 200 points
    answer, curve = series(client, run_id, points=200, from_step=500, to_step=560)
    # Then every step of the range comes, none outside it
    assert curve["steps"] == list(range(500, 561))
    # (a falling curve too, whose buckets' extremes are only their ends, when it spans no more steps than points)
    assert series(client, run_id, points=150, from_step=1, to_step=150)[1]["steps"] == list(range(1, 151))
    assert curve["values"][0] == pytest.approx(10.0 / 500)
    assert (answer["from_step"], answer["to_step"]) == (500, 560)
    # And the elapsed times count from the run's first step, in step order
    assert curve["elapsed"] == sorted(curve["elapsed"]) and curve["elapsed"][0] >= 0
    # And a range beyond the recorded steps is an empty curve, not an error
    _, empty = series(client, run_id, from_step=2000, to_step=3000)
    assert empty["steps"] == [] and empty["values"] == []


def test_two_points_keep_the_ends_and_a_spike_beside_them(client, run_id, registry_url):
    record(registry_url, run_id, 100, lambda s: {40: 7.0}.get(s, 1.0))
    assert series(client, run_id, points=2)[1]["steps"] == [1, 100]
    assert series(client, run_id, points=3)[1]["steps"] == [1, 40, 100]


def test_the_eval_loss_and_a_methods_own_metric_are_curves_too(client, run_id, registry_url):
    # Given a run with eval losses at three steps and GRPO's kl at every step
    record(registry_url, run_id, 100, lambda s: 1.0, evals=[(10, 3.0), (50, 2.0), (100, 1.5)],
           metrics={"kl": lambda s: s / 1000})
    # When each is asked for
    answer, evals = series(client, run_id, metric="eval_loss")
    _, kl = series(client, run_id, metric="kl", points=1000)
    _, lr = series(client, run_id, metric="learning_rate", from_step=1, to_step=3)
    # Then each curve holds that metric's values at its steps
    assert answer["metric"] == "eval_loss" and "loss" not in evals
    assert (evals["steps"], evals["values"]) == ([10, 50, 100], [3.0, 2.0, 1.5])
    assert kl["steps"] == list(range(1, 101)) and kl["values"][99] == pytest.approx(0.1)
    assert lr["values"] == [0.01, 0.01, 0.01]


def test_the_answer_names_what_a_chart_of_the_runs_can_draw(client, run_id, registry_url):
    # Given a GRPO-like run recording its own four metrics, and an SFT run recording none
    record(registry_url, run_id, 3, lambda s: 1.0, metrics={name: (lambda s: 0.5) for name in (
        "reward_mean", "reward_std", "kl", "completion_length")})
    sft = client.post("/api/tunix/run?mode=async", json=BODY).get_json()["run_id"]
    record(registry_url, sft, 3, lambda s: 1.0)
    # When their curves are asked for together, or the SFT run's alone
    both = client.post("/api/tunix/runs/series", json={"run_ids": [sft, run_id]}).get_json()
    alone, _ = series(client, sft)
    # Then the menu is every training's metrics, then the methods' own the runs recorded
    assert both["metrics"] == ["loss", "eval_loss", "learning_rate", "grad_norm",
                               "completion_length", "kl", "reward_mean", "reward_std"]
    assert alone["metrics"] == ["loss", "eval_loss", "learning_rate", "grad_norm"]


def test_a_metric_no_step_recorded_as_a_number_is_an_empty_curve(client, run_id, registry_url):
    # Given steps whose "note" is text and whose "flag" is a boolean
    record(registry_url, run_id, 5, lambda s: 1.0, metrics={"note": lambda s: "x", "flag": lambda s: True})
    # Then neither is a curve (nor an error), and an unknown name is empty too
    for name in ("note", "flag", "never_recorded"):
        _, curve = series(client, run_id, metric=name)
        assert curve["steps"] == [] and curve["values"] == []


def test_the_run_metrics_take_a_step_range(client, run_id, registry_url):
    record(registry_url, run_id, 50, lambda s: 1.0 / s)
    # The whole run without arguments, as before; a range with them
    assert len(client.get(f"/api/tunix/runs/{run_id}/metrics").get_json()["data"]) == 50
    data = client.get(f"/api/tunix/runs/{run_id}/metrics?from_step=10&to_step=12").get_json()["data"]
    assert [p["step"] for p in data] == [10, 11, 12]
    data = client.get(f"/api/tunix/runs/{run_id}/metrics?from_step=45").get_json()["data"]
    assert [p["step"] for p in data] == [45, 46, 47, 48, 49, 50]


def test_a_range_that_ends_before_it_starts_is_empty(client, run_id):
    assert client.get(f"/api/tunix/runs/{run_id}/metrics?from_step=10&to_step=9").get_json()["data"] == []
    response = client.post("/api/tunix/runs/series", json={"run_ids": [run_id], "from_step": 10, "to_step": 9})
    assert response.status_code == 200 and response.get_json()["data"][0]["steps"] == []


@pytest.mark.parametrize("query, field", [
    ("from_step=-1", "from_step"), ("to_step=x", "to_step"),
    ("to_step=2147483648", "to_step")])
def test_a_bad_step_range_is_a_422_naming_the_field(client, run_id, query, field):
    response = client.get(f"/api/tunix/runs/{run_id}/metrics?{query}")
    assert response.status_code == 422, response.get_json()
    assert [f["field"] for f in response.get_json()["error"]["fields"]] == [field]


@pytest.mark.parametrize("body, field", [
    ({"from_step": -1}, "from_step"),
    ({"to_step": "9"}, "to_step"), ({"metric": "Loss; DROP"}, "metric"), ({"metric": ""}, "metric")])
def test_a_bad_series_request_is_a_422_naming_the_field(client, run_id, body, field):
    response = client.post("/api/tunix/runs/series", json={"run_ids": [run_id], **body})
    assert response.status_code == 422, response.get_json()
    assert [f["field"] for f in response.get_json()["error"]["fields"]] == [field]


def test_a_sweeps_curves_take_a_metric_and_a_range(client, registry_url):
    # Given a sweep of two trials with recorded eval losses
    response = client.post("/api/tunix/sweeps", json={"name": "zoom", "base": BODY, "grid": {"seed": [1, 2]}})
    assert response.status_code == 202, response.get_json()
    sweep = response.get_json()
    ids = [r["run_id"] for r in sweep["runs"]]
    for i, trial in enumerate(ids):
        record(registry_url, trial, 40, lambda s: 1.0, evals=[(10, 3.0 + i), (20, 2.0 + i), (30, 1.0 + i)])
    # When the eval losses of steps 15 to 40 are asked for
    url = f"/api/tunix/sweeps/{sweep['sweep_id']}/series"
    answer = client.get(f"{url}?metric=eval_loss&from_step=15&to_step=40").get_json()
    # Then each trial's curve holds its eval losses in that range
    assert [c["run_id"] for c in answer["data"]] == ids
    assert [(c["steps"], c["values"]) for c in answer["data"]] == [([20, 30], [2.0, 1.0]), ([20, 30], [3.0, 2.0])]
    # And a bad metric or range is a 422 naming it; no argument still means the loss, every step
    assert client.get(f"{url}?metric=a-b").get_json()["error"]["fields"][0]["field"] == "metric"
    # (a range that ends before it starts is empty, not an error: no schema can say so)
    assert client.get(f"{url}?from_step=5&to_step=4").get_json()["data"][0]["steps"] == []
    assert client.get(url).get_json()["data"][0]["steps"] == list(range(1, 41))
