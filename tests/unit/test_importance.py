"""Parameter importance (``tasks/importance.py``): rank statistics that are
honest with a sweep's few trials."""

import math
import random

import pytest
from scipy import stats

from tasks.importance import MIN_TRIALS, explanation, importance


def trials(n, seed=7):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        params = {"learning_rate": 10 ** rng.uniform(-5, -2), "batch_size": rng.choice([2, 4, 8]),
                  "loss_kind": rng.choice(["sigmoid", "ipo"]), "seed": 3}
        out.append((params, -math.log10(params["learning_rate"]) + rng.gauss(0, 0.05)))
    return out


def test_the_parameter_that_decides_the_metric_ranks_first_with_its_signed_rank_correlation():
    # Given 12 trials whose metric falls as the learning rate grows
    rows = importance(trials(12), ["batch_size", "learning_rate", "loss_kind", "seed"])
    # Then the learning rate ranks first, nearly perfectly (and negatively) correlated, and significant
    first = rows[0]
    assert first["param"] == "learning_rate" and first["kind"] == "numeric"
    assert first["correlation"] < -0.95 and first["strength"] == pytest.approx(-first["correlation"])
    assert first["p_value"] < 1e-4 and first["values"] == 12
    # And the shares add up to 1, the parameter with one value last, measuring nothing
    assert sum(r["importance"] for r in rows if r["importance"] is not None) == pytest.approx(1)
    assert rows[-1] == {"param": "seed", "kind": "numeric", "strength": None, "correlation": None, "p_value": None,
                        "values": 1, "importance": None}


def test_a_categorical_parameter_is_measured_on_ranks_and_equals_spearman_for_two_values():
    data = trials(15, seed=3)
    (row,) = importance(data, ["loss_kind"])
    assert row["kind"] == "categorical" and row["correlation"] is None
    coded = [p["loss_kind"] == "ipo" for p, _ in data]
    assert row["strength"] == pytest.approx(abs(stats.spearmanr(coded, [m for _, m in data])[0]))
    assert 0 <= row["p_value"] <= 1


def test_too_few_trials_or_an_even_metric_measure_nothing_and_say_so():
    few = importance(trials(MIN_TRIALS - 1), ["learning_rate"])
    assert few[0]["strength"] is None and few[0]["importance"] is None
    assert explanation("eval_loss", 2, few) == "importance needs at least 3 completed trials with eval_loss; 2 so far"
    even = [(p, 1.0) for p, _ in trials(6)]
    assert all(r["strength"] is None for r in importance(even, ["learning_rate", "loss_kind"]))


def test_the_explanation_names_the_statistic_the_metric_and_the_trials():
    rows = importance(trials(12), ["learning_rate", "loss_kind"])
    assert explanation("eval_loss", 12, rows) == (
        "importance: |Spearman rank correlation| of each parameter with eval_loss over 12 completed trials "
        "(loss_kind: the correlation ratio of eval_loss's ranks across its values)")
