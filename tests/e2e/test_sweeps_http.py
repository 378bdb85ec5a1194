"""Sweeps through the real API process and the session's worker launch:
a search space becomes trials that are ordinary runs, ranked by their loss."""

import pytest

from support import count_runs, scalar, wait_for

BASE = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}
TRAIN = dict(BASE, dry_run=False, max_steps=30, batch_size=4, max_seq_length=32, checkpoint_every_steps=100)


@pytest.fixture(autouse=True)
def _workers(workers):
    return workers


def post(api, path, body=None):
    return api.http.post(api.url(path), json=body, timeout=60)


def wait_finished(api, sweep_id, timeout=120):
    return wait_for(lambda: (lambda s: s if s["status"] == "finished" else None)(
        api.get(f"/api/tunix/sweeps/{sweep_id}").json()), timeout, message=f"sweep {sweep_id} finished")


def test_a_grid_sweep_makes_one_run_per_combination_each_executed_once(api, db_conn):
    # Given a 2 x 2 grid over dry runs
    body = {"name": "grid of dry runs", "base": BASE, "grid": {"batch_size": [2, 4], "seed": [1, 2]}}
    # When it is submitted
    response = post(api, "/api/tunix/sweeps", body)
    # Then it is accepted with its four trials, ordinary runs carrying the sweep and their parameters
    assert response.status_code == 202, response.text
    sweep = response.json()
    assert response.headers["Location"].endswith(f"/api/tunix/sweeps/{sweep['sweep_id']}")
    # (every trial admitted at once; a worker may have taken one between the admission and the answer)
    assert sweep["trials"] == 4 and sum(sweep["counts"].values()) == 4
    assert set(sweep["counts"]) <= {"pending", "running", "completed"}, sweep["counts"]
    assert [r["trial"] for r in sweep["runs"]] == [{"batch_size": b, "seed": s} for b in (2, 4) for s in (1, 2)]
    assert all(r["sweep_id"] == sweep["sweep_id"] and r["config"]["batch_size"] == r["trial"]["batch_size"]
               for r in sweep["runs"])
    # When the workers drain it
    done = wait_finished(api, sweep["sweep_id"])
    # Then every trial completed, once
    assert done["counts"] == {"completed": 4} and done["trials"] == 4
    assert [t["attempts"] for t in done["runs"]] == [1, 1, 1, 1]
    assert {t["run_id"] for t in done["runs"]} == {r["run_id"] for r in sweep["runs"]}
    assert api.run(sweep["runs"][0]["run_id"])["trial"] == {"batch_size": 2, "seed": 1}
    # And the sweep is listed, newest first
    listed = api.get("/api/tunix/sweeps", limit=1).json()
    assert listed["data"][0]["sweep_id"] == sweep["sweep_id"] and listed["pagination"]["total"] >= 1
    assert scalar(db_conn, "SELECT count(*) FROM tunix_runs WHERE sweep_id = %s", (sweep["sweep_id"],)) == 4


def test_the_best_trial_is_the_completed_one_with_the_lowest_eval_loss_on_held_out_data(api):
    # Given three tiny trainings differing by learning rate, one of them far too low to learn
    body = {"name": "lr", "base": dict(TRAIN, seed=5), "grid": {"learning_rate": [1e-6, 3e-3, 1e-2]}}
    sweep = post(api, "/api/tunix/sweeps", body).json()
    assert sweep["metric"] == "eval_loss"  # the default
    # When they have all trained
    done = wait_finished(api, sweep["sweep_id"], timeout=300)
    # Then each reports its latest step, its training loss and its eval loss on the held-out examples
    assert done["counts"] == {"completed": 3}, done
    assert all(t["step"] == 30 and t["loss"] is not None and t["eval_loss"] is not None for t in done["runs"])
    # And the best is the completed one with the lowest eval loss, not the lowest training loss
    lowest = min(done["runs"], key=lambda t: t["eval_loss"])
    assert done["best"]["run_id"] == lowest["run_id"] and done["best"]["params"] == lowest["params"]
    assert done["best"]["params"] != {"learning_rate": 1e-6}
    # And that eval loss is the one its run recorded at its last step, and in its result
    metrics = api.get(f"/api/tunix/runs/{lowest['run_id']}/metrics").json()["data"]
    assert metrics[-1]["step"] == 30 and metrics[-1]["eval_loss"] == pytest.approx(done["best"]["eval_loss"])
    assert api.run(lowest["run_id"])["result"]["final_eval_loss"] == pytest.approx(done["best"]["eval_loss"])


def test_a_bad_search_space_is_a_422_naming_each_field_and_writes_nothing(api, db_conn):
    runs, sweeps = count_runs(db_conn), scalar(db_conn, "SELECT count(*) FROM tunix_sweeps")
    response = post(api, "/api/tunix/sweeps", {
        "name": "bad", "base": BASE, "grid": {"learning_rate": [1e-3, 7.0], "colour": ["red"]},
        "random": {"count": 2, "space": {"batch_size": {"log_uniform": [0, 8]}}}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert {f["field"] for f in error["fields"]} == {"grid.colour", "random.space.batch_size.log_uniform"}
    response = post(api, "/api/tunix/sweeps", {"name": "bad", "base": BASE, "grid": {"learning_rate": [1e-3, 7.0]}})
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["grid.learning_rate"]
    response = post(api, "/api/tunix/sweeps", {"name": "bad", "base": dict(BASE, dataset_key="nope"),
                                               "grid": {"seed": [1]}})
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["base.dataset_key"]
    # And a space past the platform's trial limit is a 403 limit_exceeded naming the limit (its form is
    # valid: the schema cannot count trials), however large, refused before any trial is built
    grid = {"seed": list(range(1000)), "learning_rate": [1e-3 * (i + 1) for i in range(100)], "batch_size": [2, 4]}
    response = post(api, "/api/tunix/sweeps", {"name": "huge", "base": BASE, "grid": grid})
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["code"], error["limit"], error["trials"]) == ("limit_exceeded", 500, 200_000), error
    assert [f["field"] for f in error["fields"]] == ["grid"] and "at most 500" in error["message"], error
    assert (count_runs(db_conn), scalar(db_conn, "SELECT count(*) FROM tunix_sweeps")) == (runs, sweeps)
    # And an unknown sweep is a JSON 404
    for path in ("/api/tunix/sweeps/5f0e1d2c-0000-4000-8000-000000000000", "/api/tunix/sweeps/nope"):
        response = api.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "sweep_not_found"


def test_a_cancelled_sweep_stops_every_trial_and_a_resumed_one_queues_them_again(api):
    # Given a sweep of long trainings, some running, the rest pending
    body = {"name": "long", "base": dict(TRAIN, max_steps=100000, checkpoint_every_steps=20),
            "grid": {"seed": [1, 2, 3, 4]}}
    sweep = post(api, "/api/tunix/sweeps", body).json()
    first = sweep["runs"][0]["run_id"]
    wait_for(lambda: api.run(first)["status"] == "running", 120, message="a trial running")
    # When the sweep is cancelled
    response = post(api, f"/api/tunix/sweeps/{sweep['sweep_id']}/cancel")
    assert response.status_code == 202, response.text
    # Then every trial ends cancelled: the pending at once, the running at its next heartbeat
    done = wait_finished(api, sweep["sweep_id"], timeout=120)
    assert done["counts"] == {"cancelled": 4}, done
    # When it is resumed
    response = post(api, f"/api/tunix/sweeps/{sweep['sweep_id']}/resume")
    assert response.status_code == 202, response.text
    # Then every trial is back in the system's hands
    assert response.json()["status"] == "active"
    assert set(response.json()["counts"]) <= {"pending", "running"}
    # (and stopped again, so the session's workers are free for the next test)
    post(api, f"/api/tunix/sweeps/{sweep['sweep_id']}/cancel")
    assert wait_finished(api, sweep["sweep_id"], timeout=120)["counts"] == {"cancelled": 4}


def test_runs_are_cancelled_and_resumed_in_bulk_by_filter_and_a_filterless_move_is_refused(api, db_conn):
    # Given two sweeps of long trainings
    body = {"name": "bulk", "base": dict(TRAIN, max_steps=100000), "grid": {"seed": [1, 2, 3]}}
    target, other = (post(api, "/api/tunix/sweeps", body).json() for _ in range(2))
    # When the runs of one are cancelled by filter
    response = post(api, "/api/tunix/runs/cancel", {"sweep_id": target["sweep_id"]})
    # Then that sweep's three are stopped, and only they
    assert response.status_code == 202, response.text
    assert response.json()["matched"] == 3 and sum(response.json()["moved"].values()) == 3
    assert wait_finished(api, target["sweep_id"])["counts"] == {"cancelled": 3}
    assert api.get(f"/api/tunix/sweeps/{other['sweep_id']}").json()["status"] == "active"
    # When they are resumed by filter
    response = post(api, "/api/tunix/runs/resume", {"sweep_id": target["sweep_id"], "status": "cancelled"})
    assert response.status_code == 202 and response.json() == {"matched": 3, "moved": {"pending": 3}, "skipped": 0}
    # Then they are queued again, with the rest
    assert api.get(f"/api/tunix/sweeps/{target['sweep_id']}").json()["status"] == "active"
    # And a bulk move naming nothing, or something unknown, is a 422 that moves nothing
    before = scalar(db_conn, "SELECT count(*) FROM tunix_runs WHERE status IN ('pending', 'running')")
    for bad, field in (({}, "body"), ({"status": "lost"}, "status"), ({"sweep_id": "x"}, "sweep_id"),
                       ({"colour": "red"}, "colour")):
        response = post(api, "/api/tunix/runs/cancel", bad)
        assert response.status_code == 422, (bad, response.text)
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field]
    assert scalar(db_conn, "SELECT count(*) FROM tunix_runs WHERE status IN ('pending', 'running')") == before
    # (both stopped, so the session's workers are free for the next test)
    for sweep in (target, other):
        post(api, "/api/tunix/runs/cancel", {"sweep_id": sweep["sweep_id"]})
        assert wait_finished(api, sweep["sweep_id"])["counts"] == {"cancelled": 3}


def test_a_deferred_trial_is_cancelled_at_once_and_the_cancelled_sweep_admits_nothing_more(api, db_conn):
    body = {"name": "deferred cancel", "base": dict(TRAIN, max_steps=100000), "grid": {"seed": [1, 2, 3]},
            "max_concurrent": 1}
    sweep = post(api, "/api/tunix/sweeps", body).json()
    last = sweep["runs"][-1]
    assert last["status"] == "deferred"
    # When the deferred trial is cancelled on its own, it is cancelled at once (it never had a message)
    response = api.http.post(api.url(f"/api/tunix/runs/{last['run_id']}/cancel"), timeout=30)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    # And when the sweep is cancelled, nothing of it is admitted after
    post(api, f"/api/tunix/sweeps/{sweep['sweep_id']}/cancel")
    assert wait_finished(api, sweep["sweep_id"])["counts"] == {"cancelled": 3}
    ids = [r["run_id"] for r in sweep["runs"]]
    assert scalar(db_conn, "SELECT count(*) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[])", (ids,)) == 1


# 12 trainings (~2 min here on 2 slots): in `make test-all`; the rules' decisions are tested in
# tests/unit/test_early_stopping.py and tests/integration/test_early_stopping.py.
@pytest.mark.slow
def test_a_median_rule_stops_the_hopeless_half_of_a_12_trial_grid_and_reports_the_steps_saved(api):
    # Given a grid of 12 tiny trainings: 6 that learn, then 6 whose learning rate is too small to move
    good, hopeless = [1e-2, 2e-2, 5e-3], [1e-7, 2e-7, 5e-7]
    body = {"name": "median", "base": dict(TRAIN, max_steps=150, learning_rate=1e-2),
            "grid": {"learning_rate": good + hopeless, "seed": [1, 2]},
            "early_stopping": {"rule": "median", "min_steps": 20, "min_trials": 3}}
    response = post(api, "/api/tunix/sweeps", body)
    assert response.status_code == 202, response.text
    # When it runs to its end
    sweep = wait_finished(api, response.json()["sweep_id"], timeout=900)
    by_lr = {}
    for trial in sweep["runs"]:
        by_lr.setdefault(trial["params"]["learning_rate"], []).append(trial)
    # Then every trial that learns completed, and the hopeless ones were stopped early, as cancelled
    assert {t["status"] for lr in good for t in by_lr[lr]} == {"completed"}, sweep["runs"]
    stopped = [t for lr in hopeless for t in by_lr[lr]]
    assert {(t["status"], t["stop_reason"]) for t in stopped} == {("cancelled", "early_stopped")}, stopped
    assert all(20 <= t["step"] < 150 for t in stopped), [t["step"] for t in stopped]
    # And the best trial is one that learns, with the lowest eval loss of the whole grid, and a training loss
    # below every stopped trial's
    assert sweep["best"]["params"]["learning_rate"] in good
    assert sweep["best"]["eval_loss"] == min(t["eval_loss"] for t in sweep["runs"] if t["eval_loss"] is not None)
    assert sweep["best"]["loss"] < min(t["loss"] for t in stopped)
    # And the steps not trained are reported
    assert sweep["early_stopped"] == 6
    assert sweep["steps_saved"] == sum(150 - t["step"] for t in stopped) > 0
    # And a stopped trial kept a checkpoint and says why it stopped
    run = api.run(stopped[0]["run_id"])
    assert "early stopped" in run["error"]["message"] and "median" in run["error"]["message"]
    checkpoints = api.get(f"/api/tunix/runs/{stopped[0]['run_id']}/checkpoints").json()["data"]
    assert checkpoints, "a stopped trial keeps its last checkpoint"


def test_one_request_returns_every_trials_curve_downsampled_keeping_each_start_and_end(api, db_conn):
    # Given a sweep of 3 trials whose workers recorded 1,000, 37 and no steps
    sweep = post(api, "/api/tunix/sweeps", {"name": "curves", "base": BASE, "grid": {"seed": [1, 2, 3]}}).json()
    ids = [r["run_id"] for r in sweep["runs"]]
    with db_conn.cursor() as cur:
        for run_id, steps in zip(ids, (1000, 37)):
            cur.execute("INSERT INTO tunix_run_metrics (run_id, step, loss, attempt) "
                        "SELECT %s, s, 10.0 / s, 1 FROM generate_series(1, %s) s", (run_id, steps))
    # When the sweep's curves are asked for with 50 points
    response = api.get(f"/api/tunix/sweeps/{sweep['sweep_id']}/series", points=50)
    assert response.status_code == 200, response.text
    curves = {c["run_id"]: c for c in response.json()["data"]}
    # Then each trial's curve is there, at most 50 points, its first and last step kept, steps and losses paired
    assert list(curves) == ids
    long, short, empty = (curves[i] for i in ids)
    assert len(long["steps"]) <= 50 and long["steps"][0] == 1 and long["steps"][-1] == 1000
    assert long["steps"] == sorted(long["steps"]) and len(long["loss"]) == len(long["steps"])
    assert long["loss"][-1] == 10.0 / 1000
    assert short["steps"] == list(range(1, 38))  # already under 50: every step
    assert empty == {"run_id": ids[2], "steps": [], "values": [], "elapsed": [], "loss": []}
    # And the same curves come for any runs, named in one POST
    response = api.http.post(api.url("/api/tunix/runs/series"), json={"run_ids": ids[:2], "points": 50}, timeout=30)
    assert response.status_code == 200 and response.json()["data"] == [long, short]
    # And a run that does not exist is a 404 naming it, a bad request a 422 naming the field
    ghost = "00000000-0000-4000-8000-000000000000"
    response = api.http.post(api.url("/api/tunix/runs/series"), json={"run_ids": [ids[0], ghost]}, timeout=30)
    assert response.status_code == 404 and response.json()["error"]["run_ids"] == [ghost]
    response = api.http.post(api.url("/api/tunix/runs/series"), json={"run_ids": [], "points": 1}, timeout=30)
    assert response.status_code == 422
    assert {f["field"] for f in response.json()["error"]["fields"]} == {"run_ids", "points"}
    assert api.get(f"/api/tunix/sweeps/{sweep['sweep_id']}/series", points=1).status_code == 422
