"""The sweep spec: the trials a search space makes, and what it refuses."""

import types

import pytest

from tasks import sweep_spec
from tasks.sweep_spec import SweepInvalid, expand

SETTINGS = types.SimpleNamespace(default_time_limit_s=3600, run_time_limit_s=86400)
BASE = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


def fields(body):
    with pytest.raises(SweepInvalid) as info:
        expand(body, SETTINGS)
    return {f["field"]: f["message"] for f in info.value.fields}


def test_a_grid_makes_every_combination_in_order_sharing_one_chosen_seed():
    spec, trials, duplicates, seeds = expand(
        {"name": "g", "base": BASE, "grid": {"learning_rate": [1e-3, 3e-3], "batch_size": [2, 4, 8]}}, SETTINGS)
    assert [p for p, _ in trials] == [{"learning_rate": lr, "batch_size": b}
                                      for lr in (1e-3, 3e-3) for b in (2, 4, 8)]
    assert {c["seed"] for _, c in trials} == {seeds["base_seed"]} and duplicates == 0
    assert all(c["learning_rate"] == p["learning_rate"] and c["batch_size"] == p["batch_size"] for p, c in trials)


def test_a_random_search_draws_count_per_grid_point_reproducibly_within_bounds():
    body = {"name": "r", "base": BASE, "grid": {"seed": [1, 2]},
            "random": {"count": 5, "seed": 7, "space": {"learning_rate": {"log_uniform": [1e-4, 1e-2]},
                                                         "batch_size": {"uniform": [2, 16]},
                                                         "device": {"choice": ["cpu"]}}}}
    _, trials, _, seeds = expand(body, SETTINGS)
    assert len(trials) == 10 and seeds["random_seed"] == 7
    for params, config in trials:
        assert 1e-4 <= params["learning_rate"] <= 1e-2
        assert isinstance(params["batch_size"], int) and 2 <= params["batch_size"] <= 16
        assert config["device"] == "cpu"
    assert [p for p, _ in expand(body, SETTINGS)[1]] == [p for p, _ in trials]


def test_a_trial_equal_to_an_earlier_one_is_created_once():
    _, trials, duplicates, _ = expand(
        {"name": "d", "base": dict(BASE, seed=3), "grid": {"seed": [3, 3, 4], "batch_size": [8, 8]}}, SETTINGS)
    assert [p for p, _ in trials] == [{"seed": 3, "batch_size": 8}, {"seed": 4, "batch_size": 8}]
    assert duplicates == 4


def test_bad_values_are_named_where_the_user_wrote_them():
    problems = fields({"name": "b", "base": dict(BASE, num_epochs=0),
                       "grid": {"learning_rate": [1e-3, 5.0]}})
    assert set(problems) == {"base.num_epochs"}
    problems = fields({"name": "b", "base": BASE, "grid": {"learning_rate": [1e-3, 5.0]}})
    assert set(problems) == {"grid.learning_rate"} and "5.0" in problems["grid.learning_rate"]
    problems = fields({"name": "b", "base": BASE,
                       "random": {"count": 3, "space": {"learning_rate": {"log_uniform": [0, 1]},
                                                        "colour": {"choice": [1]},
                                                        "seed": {"normal": [0, 1]}}}})
    assert set(problems) == {"random.space.learning_rate.log_uniform", "random.space.colour", "random.space.seed"}


def test_what_is_not_a_sweep_is_refused():
    assert set(fields({"name": "x", "base": BASE})) == {"grid"}
    assert set(fields({"base": BASE, "grid": {"seed": [1]}, "early": 1})) == {"name", "early"}
    assert set(fields({"name": "x", "base": BASE, "grid": {"seed": []}})) == {"grid.seed"}
    assert set(fields({"name": "x", "base": BASE, "grid": {"seed": [1]}, "metric": "accuracy"})) == {"metric"}


def test_a_sweep_making_more_than_max_trials_is_refused_before_any_is_built():
    n = sweep_spec.MAX_TRIALS
    with pytest.raises(sweep_spec.SweepTooLarge) as caught:
        expand({"name": "big", "base": BASE, "grid": {"seed": list(range(n)), "batch_size": [1, 2]}}, SETTINGS)
    assert (caught.value.trials, caught.value.field) == (2 * n, "grid")
    assert str(caught.value) == f"makes {2 * n} trials; a sweep makes at most {n}"
    with pytest.raises(sweep_spec.SweepTooLarge) as caught:
        expand({"name": "big", "base": BASE, "random": {"count": n, "space": {"seed": {"choice": [1, 2]}}},
                "grid": {"batch_size": [1, 2]}}, SETTINGS)
    assert caught.value.trials == 2 * n


def test_max_concurrent_is_bounded():
    spec, *_ = expand({"name": "m", "base": BASE, "grid": {"seed": [1, 2]}, "max_concurrent": 1}, SETTINGS)
    assert spec.max_concurrent == 1
    assert set(fields({"name": "m", "base": BASE, "grid": {"seed": [1]}, "max_concurrent": 0})) == {"max_concurrent"}


def test_trials_take_the_sweeps_priority_else_the_bases_and_it_is_not_swept():
    spec, *_ = expand({"name": "p", "base": dict(BASE, priority=3), "grid": {"seed": [1]}}, SETTINGS)
    assert sweep_spec.trial_priority(spec) == 3
    spec, *_ = expand({"name": "p", "base": dict(BASE, priority=3), "grid": {"seed": [1]}, "priority": -2},
                      SETTINGS)
    assert sweep_spec.trial_priority(spec) == -2
    # A field that says when a trial runs is no search dimension: its trials would all train the same
    problems = fields({"name": "p", "base": BASE, "grid": {"priority": [1, 2]},
                       "random": {"count": 1, "space": {"priority": {"choice": [1]}}}})
    assert set(problems) == {"grid.priority", "random.space.priority"}
    assert "not what it trains" in problems["grid.priority"]


def test_a_grid_over_lora_rank_and_learning_rate_sets_the_nested_field_of_each_trial():
    # Given a base with LoRA alpha 32 and a grid over lora.rank x learning_rate
    body = {"name": "lora", "base": dict(BASE, lora={"alpha": 32.0}),
            "grid": {"lora.rank": [4, 8], "learning_rate": [1e-4, 1e-3]}}
    _, trials, _, _ = expand(body, SETTINGS)
    # Then each trial's stored LoRA has its rank, the base's alpha and the default targets
    assert [(c["lora"]["rank"], c["learning_rate"]) for _, c in trials] == [(4, 1e-4), (4, 1e-3), (8, 1e-4), (8, 1e-3)]
    assert {c["lora"]["alpha"] for _, c in trials} == {32.0}
    assert all(len(c["lora"]["targets"]) == 7 for _, c in trials)


def test_lora_fields_swept_without_a_base_lora_make_lora_trials_and_bad_ones_are_named():
    # A random rank over a base without LoRA: each trial is a LoRA run, the rank an integer
    body = {"name": "r", "base": BASE, "random": {"count": 3, "seed": 1, "space": {"lora.rank": {"uniform": [2, 16]}}}}
    _, trials, _, _ = expand(body, SETTINGS)
    assert all(isinstance(c["lora"]["rank"], int) and 2 <= c["lora"]["rank"] <= 16 for _, c in trials)
    # A bad rank is named where it was written; an unknown LoRA field is not sweepable
    assert set(fields({"name": "b", "base": BASE, "grid": {"lora.rank": [0]}})) == {"grid.lora.rank"}
    assert set(fields({"name": "b", "base": BASE, "grid": {"lora.dropout": [0.1]}})) == {"grid.lora.dropout"}


DPO_BASE = {"dataset_key": "json-person-prefs", "model_id": "llama3-tiny", "method": "dpo"}


def test_a_dpo_sweep_varies_beta_and_ranks_on_reward_accuracy_highest_first():
    spec, trials, _, _ = expand({"name": "d", "base": DPO_BASE, "metric": "reward_accuracy",
                                 "grid": {"dpo.beta": [0.05, 0.5], "learning_rate": [1e-3, 3e-3]}}, SETTINGS)
    assert [c["dpo"]["beta"] for _, c in trials] == [0.05, 0.05, 0.5, 0.5]
    assert all(c["dpo"]["loss"] == "dpo" for _, c in trials)  # the rest of dpo's defaults filled in
    assert spec.better() == "max" and sweep_spec.direction("loss") == "min"
    # A mode given wins over the metric's own direction
    assert expand({"name": "d", "base": DPO_BASE, "metric": "reward_margin", "mode": "min",
                   "grid": {"dpo.beta": [0.1]}}, SETTINGS)[0].better() == "min"


def test_a_method_metric_of_another_method_is_refused_naming_the_metric():
    problems = fields({"name": "d", "base": BASE, "metric": "reward_mean", "grid": {"learning_rate": [1e-3]}})
    assert "recorded by method grpo only" in problems["metric"]
    assert "expected one of" in fields({"name": "d", "base": BASE, "metric": "accuracy",
                                        "grid": {"learning_rate": [1e-3]}})["metric"]


def test_a_range_is_drawn_only_over_a_number_and_within_its_limits():
    space = lambda **d: {"name": "r", "base": BASE, "random": {"count": 2, "space": d}}
    assert set(fields(space(model_id={"uniform": [0, 1]}))) == {"random.space.model_id.uniform"}
    assert set(fields(space(learning_rate={"uniform": [-1, 0.5]}))) == {"random.space.learning_rate.uniform"}
    assert set(fields(space(learning_rate={"log_uniform": [1e-5, 2]}))) == {"random.space.learning_rate.log_uniform"}
    assert sweep_spec.numeric_bounds("learning_rate", 86400) == {"exclusiveMinimum": 0, "maximum": 1}
    assert sweep_spec.numeric_bounds("model_id", 86400) is None
    # the operator's maximum time limit bounds a drawn one (SETTINGS: 86400)
    assert sweep_spec.numeric_bounds("time_limit_s", 600)["maximum"] == 600
    assert set(fields(space(time_limit_s={"uniform": [60, 1e308]}))) == {"random.space.time_limit_s.uniform"}
    spec, trials, *_ = expand(space(learning_rate={"log_uniform": [1e-5, 1]}, **{"dpo.beta": {"uniform": [0.1, 10]}},
                                    method={"choice": ["dpo"]}), SETTINGS)
    assert len(trials) == 2


def test_an_object_and_its_own_fields_swept_together_vary_both_the_fields_set_in_the_object():
    for grid in ({"lora": [None, {"rank": 4, "alpha": 8}], "lora.rank": [8]},
                 {"lora.rank": [8], "lora": [None, {"rank": 4, "alpha": 8}]}):
        spec, trials, *_ = expand({"name": "o", "base": BASE, "grid": grid}, SETTINGS)
        assert [(config["lora"]["rank"], config["lora"]["alpha"]) for _, config in trials] == [(8, 16), (8, 8)], trials


@pytest.mark.parametrize("seed", range(5))
def test_a_space_whose_draws_could_pair_a_method_with_anothers_settings_is_refused_whatever_is_drawn(seed):
    # A random search over methods with dpo settings: refused before any draw, not when one pairs badly
    body = {"name": "m", "base": BASE, "random": {"count": 1, "seed": seed, "space": {
        "method": {"choice": ["sft", "dpo"]}, "dpo.beta": {"uniform": [0.1, 1]}}}}
    assert set(fields(body)) == {"random.space.dpo.beta"}
    # the base's settings, with a grid of methods
    body = {"name": "m", "base": dict(BASE, method="dpo", dpo={"beta": 0.2}), "grid": {"method": ["dpo", "sft"]}}
    assert set(fields(body)) == {"base.dpo"}
    # a method's own metric with a method that does not record it
    body = {"name": "m", "base": dict(BASE, method="dpo"), "grid": {"method": ["dpo", "sft"]},
            "metric": "reward_margin"}
    assert set(fields(body)) == {"metric"}
    # null settings with any method are no settings
    spec, trials, *_ = expand({"name": "m", "base": BASE, "grid": {"method": ["sft", "dpo"], "dpo": [None]}}, SETTINGS)
    assert [config["method"] for _, config in trials] == ["sft", "dpo"]


def test_a_field_both_in_the_grid_and_the_random_space_is_drawn_with_a_warning():
    spec, trials, duplicates, _ = expand({"name": "x", "base": BASE, "grid": {"seed": [1, 2], "batch_size": [2, 4]},
                                          "random": {"count": 2, "seed": 3, "space": {"seed": {"choice": [7, 8]}}}},
                                         SETTINGS)
    assert {config["seed"] for _, config in trials} <= {7, 8} and len(trials) + duplicates == 8
    assert sweep_spec.overridden(spec) == ["seed is both in grid and random.space: each trial takes the draw; the "
                                           "grid's 2 value(s) only multiply the points"]
    spec, *_ = expand({"name": "x", "base": BASE, "grid": {"seed": [1]}}, SETTINGS)
    assert sweep_spec.overridden(spec) == []
