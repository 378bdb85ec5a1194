"""The early-stopping rules as pure decisions (tasks/early_stopping.py)."""

import pytest

from tasks import early_stopping as es
from tasks.sweep_spec import EarlyStopping, SweepInvalid, expand

MEDIAN = {"rule": "median", "min_steps": 10, "min_trials": 3, "reduction_factor": 3}
ASHA = {"rule": "asha", "min_steps": 4, "min_trials": 3, "reduction_factor": 3}


def test_the_median_rule_stops_a_trial_whose_best_is_worse_than_the_median_of_the_others_means():
    # Given three other trials whose mean loss over their first 20 steps is 1.0, 2.0 and 3.0
    peers = [1.0, 2.0, 3.0]
    # Then a trial whose best loss by step 20 is 2.5 stops, and one at 1.5 (or exactly the median) goes on
    assert "worse than the median 2" in es.median_verdict(MEDIAN, 20, 2.5, peers)
    assert es.median_verdict(MEDIAN, 20, 1.5, peers) is None
    assert es.median_verdict(MEDIAN, 20, 2.0, peers) is None


def test_the_median_rule_waits_for_min_steps_and_min_trials():
    assert es.median_verdict(MEDIAN, 9, 100.0, [1.0, 1.0, 1.0]) is None
    assert es.median_verdict(MEDIAN, 10, 100.0, [1.0, 1.0]) is None
    assert es.median_verdict(MEDIAN, 10, 100.0, [1.0, 1.0, 1.0]) is not None


def test_asha_rungs_grow_by_the_reduction_factor():
    assert [es.rung_step(ASHA, k) for k in range(4)] == [4, 12, 36, 108]


def test_asha_keeps_the_best_third_at_a_rung_and_the_first_to_arrive():
    # The first trial at a rung has nothing to be compared with: promoted
    assert es.asha_verdict(ASHA, 0, 5.0, []) is None
    # With six recorded losses 1..6 the cutoff is their 1/3 quantile (2.67): 1 and 2 go on, 3 stops
    assert es.asha_verdict(ASHA, 0, 2.0, [1.0, 3.0, 4.0, 5.0, 6.0]) is None
    assert "outside the best 1/3" in es.asha_verdict(ASHA, 0, 3.0, [1.0, 2.0, 4.0, 5.0, 6.0])


def test_saved_steps_are_planned_minus_done():
    assert es.saved_steps({"progress": {"step": 30, "total_steps": 200}}) == 170
    assert es.saved_steps({"progress": {"step": 30, "total_steps": None}, "config": {"max_steps": 100}}) == 70
    assert es.saved_steps({"progress": None, "config": {"max_steps": None}}) == 0


def test_a_sweep_names_its_rule_and_a_bad_one_is_a_422_naming_the_field():
    import types

    settings = types.SimpleNamespace(default_time_limit_s=3600, run_time_limit_s=86400)
    base = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}
    spec, *_ = expand({"name": "e", "base": base, "grid": {"seed": [1]},
                       "early_stopping": {"rule": "asha", "min_steps": 5}}, settings)
    assert spec.early_stopping == EarlyStopping(rule="asha", min_steps=5)
    for bad, field in (({"rule": "hyperband"}, "early_stopping.rule"),
                       ({"rule": "asha", "reduction_factor": 1}, "early_stopping.reduction_factor"),
                       ({"rule": "median", "patience": 3}, "early_stopping.patience")):
        with pytest.raises(SweepInvalid) as info:
            expand({"name": "e", "base": base, "grid": {"seed": [1]}, "early_stopping": bad}, settings)
        assert [f["field"] for f in info.value.fields] == [field]
