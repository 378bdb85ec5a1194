"""Early stopping's decisions against real PostgreSQL: made from the losses
the workers record, written as rows, made once (tasks/early_stopping.py)."""

import uuid


from tasks import early_stopping, registry


CONFIG = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 100}


def sweep(conn, n, rule):
    trials = [dict(run_id=uuid.uuid4(), mode="async", dry_run=False, dataset_key="synthetic",
                   model_id="llama3-tiny", config=dict(CONFIG, seed=i), params={"seed": i}) for i in range(n)]
    with conn:
        _, rows = registry.insert_sweep(conn, sweep_id=uuid.uuid4(), name="es", spec={}, metric="loss",
                                        duplicates=0, trials=trials, early_stopping=rule)
        for row in rows:
            registry.transition(conn, row["id"], "admit")
            registry.claim(conn, row["id"], "w:1")
    with conn:
        return [registry.get_run(conn, row["id"]) for row in rows]


def record(conn, run, losses, start=1):
    with conn:
        registry.record_activity(conn, run["id"], metrics=[(start + i, loss, 0.01, 1.0, run["attempts"])
                                                           for i, loss in enumerate(losses)])


def check(conn, stopper, step):
    with conn:
        return stopper.check(conn, step)


def test_the_median_rule_stops_the_trial_worse_than_the_others_and_only_once(tx):
    rule = {"rule": "median", "min_steps": 5, "min_trials": 3, "reduction_factor": 3}
    good, *others, bad = sweep(tx, 5, rule)
    for run, level in ((good, 1.0), (others[0], 2.0), (others[1], 3.0), (others[2], 4.0)):
        record(tx, run, [level] * 10)
    record(tx, bad, [9.0] * 10)
    # The good trial goes on; the bad one is stopped, with its reason and the error saying why
    assert check(tx, early_stopping.Stopper(good, rule), 10) is False
    stopper = early_stopping.Stopper(bad, rule)
    assert check(tx, stopper, 10) is True
    with tx:
        row = registry.get_run(tx, bad["id"])
    assert (row["status"], row["stop_reason"]) == ("cancel_requested", "early_stopped")
    assert "worse than the median" in row["error"]["message"]
    # And a second decision on a stopped trial (a later flush, another attempt's stopper) changes nothing
    assert check(tx, early_stopping.Stopper(bad, rule), 10) is False
    # Nor before min_steps
    assert check(tx, early_stopping.Stopper(others[2], rule), 4) is False


def test_asha_promotes_through_a_rung_once_and_a_restarted_attempt_does_not_meet_it_again(tx):
    rule = {"rule": "asha", "min_steps": 4, "min_trials": 3, "reduction_factor": 3}
    first, second, third = sweep(tx, 3, rule)
    # The first trial at rung 0 (step 4) is promoted: nothing to compare with
    record(tx, first, [5.0] * 5)
    assert check(tx, early_stopping.Stopper(first, rule), 5) is False
    with tx:
        assert registry.get_run(tx, first["id"])["rung"] == 0
    # A better second trial is promoted too; a third worse than the best third of the rung stops
    record(tx, second, [1.0] * 5)
    assert check(tx, early_stopping.Stopper(second, rule), 5) is False
    record(tx, third, [3.0] * 5)
    assert check(tx, early_stopping.Stopper(third, rule), 5) is True
    # The first trial, restarted (a fresh stopper reads its rung from the row), is not judged at rung 0
    # again, where it now ranks last
    with tx:
        restarted = registry.get_run(tx, first["id"])
    assert check(tx, early_stopping.Stopper(restarted, rule), 5) is False
    with tx:
        assert registry.get_run(tx, first["id"])["status"] == "running"


def record_rewards(conn, run, rewards):
    with conn:
        registry.record_activity(conn, run["id"], metrics=[(1 + i, 0.5, 0.01, 1.0, run["attempts"],
                                                            {"reward_mean": r}, None)
                                                           for i, r in enumerate(rewards)])


def test_the_median_rule_on_a_reward_stops_the_trial_with_the_lowest_reward(tx):
    # Given a GRPO sweep ranked on reward_mean (higher is better), whose losses are all equal
    rule = {"rule": "median", "min_steps": 5, "min_trials": 3, "reduction_factor": 3,
            "metric": "reward_mean", "mode": "max"}
    best, *others, worst = sweep(tx, 5, rule)
    for run, level in ((best, 0.9), (others[0], 0.6), (others[1], 0.5), (others[2], 0.4)):
        record_rewards(tx, run, [level] * 10)
    record_rewards(tx, worst, [0.05] * 10)
    # Then the highest reward goes on and the lowest one is stopped, its message naming the metric
    assert check(tx, early_stopping.Stopper(best, rule), 10) is False
    assert check(tx, early_stopping.Stopper(worst, rule), 10) is True
    with tx:
        row = registry.get_run(tx, worst["id"])
    assert row["stop_reason"] == "early_stopped" and "reward_mean" in row["error"]["message"]
    # And the same sweep ranked on the loss (equal everywhere) would have stopped nobody
    loss_rule = {k: v for k, v in rule.items() if k not in ("metric", "mode")}
    assert check(tx, early_stopping.Stopper(others[2], loss_rule), 10) is False


def test_asha_on_a_reward_keeps_the_highest(tx):
    rule = {"rule": "asha", "min_steps": 4, "min_trials": 3, "reduction_factor": 3,
            "metric": "reward_mean", "mode": "max"}
    first, second, third = sweep(tx, 3, rule)
    record_rewards(tx, first, [0.2] * 5)
    assert check(tx, early_stopping.Stopper(first, rule), 5) is False
    record_rewards(tx, second, [0.8] * 5)
    assert check(tx, early_stopping.Stopper(second, rule), 5) is False
    # A third below the best third of the rung's rewards stops
    record_rewards(tx, third, [0.5] * 5)
    assert check(tx, early_stopping.Stopper(third, rule), 5) is True
