"""Parameter importance: how strongly each swept parameter goes with a
sweep's metric, over its completed trials.

A sweep has few trials (6 to 50), too few to fit a model of the metric
(a random forest's importances, fANOVA) and trust it, so this is a rank
statistic per parameter, from ``scipy.stats``:

* a numeric parameter (every value a number): Spearman's rank correlation
  ρ between its values and the metric; its strength is ``|ρ|``;
* any other (words, booleans, a mix): the correlation ratio of the metric's
  ranks across its values, ``η = sqrt(H / (n - 1))`` with ``H`` the
  Kruskal–Wallis statistic (it corrects for ties); for two values it equals
  ``|ρ|`` with the values coded 0 and 1, so the two kinds compare.

Each comes with its p-value (with 6 trials a ρ of 0.8 is p ≈ 0.06), and an
``importance``: its strength over the sum of the strengths, so that the
parameters' shares add up to 1.  A parameter with one value among those
trials, or a metric equal in all of them, measures nothing: ``None``.
"""

import math
import warnings

#: Fewest completed trials that give any importance: with two, every
#: parameter that differs correlates perfectly.
MIN_TRIALS = 3


def _numeric(values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _finite(x):
    return None if x is None or not math.isfinite(x) else float(x)


def _key(value):
    """A hashable, order-free stand-in for a parameter's value (a list, an object)."""
    return repr(value) if isinstance(value, (list, dict)) else (type(value).__name__, value)


def _measure(values, metric):
    """``(kind, strength, signed correlation, p-value)`` of one parameter."""
    from scipy import stats  # NOTE: about 0.8 s to import; only this request needs it

    numeric = _numeric(values)
    kind = "numeric" if numeric else "categorical"
    if len({_key(v) for v in values}) < 2 or len(set(metric)) < 2:
        return kind, None, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: handled above; tiny samples: the p-value says so
        if numeric:
            rho, p = stats.spearmanr(values, metric)
            rho = _finite(rho)
            return kind, None if rho is None else abs(rho), rho, _finite(p)
        groups = {}
        for v, m in zip(values, metric):
            groups.setdefault(_key(v), []).append(m)
        h, p = stats.kruskal(*groups.values())
    eta = _finite(math.sqrt(max(h, 0.0) / (len(metric) - 1))) if _finite(h) is not None else None
    return kind, None if eta is None else min(eta, 1.0), None, _finite(p)


def importance(trials, params):
    """Each of ``params`` measured over ``trials`` (see the module's
    docstring), strongest first: ``[{"param", "kind", "importance",
    "strength", "correlation", "p_value", "values"}]``.

    Parameters:
      trials: ``[(params, value)]``: each completed trial's parameters (its
        ``trial``) and its metric.
      params: the swept parameters' names.
    """
    metric = [float(value) for _, value in trials]
    out = []
    for name in params:
        values = [p.get(name) for p, _ in trials]
        if len(trials) < MIN_TRIALS:
            kind, strength, rho, p = ("numeric" if _numeric(values) else "categorical"), None, None, None
        else:
            kind, strength, rho, p = _measure(values, metric)
        out.append({"param": name, "kind": kind, "strength": strength, "correlation": rho, "p_value": p,
                    "values": len({_key(v) for v in values})})
    total = sum(r["strength"] for r in out if r["strength"] is not None)
    for r in out:
        r["importance"] = r["strength"] / total if r["strength"] is not None and total > 0 else None
    out.sort(key=lambda r: (r["strength"] is None, -(r["strength"] or 0.0), r["param"]))
    return out


def explanation(metric, count, rows):
    """The page's one line: what the numbers are, over how many trials."""
    if count < MIN_TRIALS:
        return (f"importance needs at least {MIN_TRIALS} completed trials with {metric}; "
                f"{count} so far")
    text = (f"importance: |Spearman rank correlation| of each parameter with {metric} over {count} completed "
            f"trials")
    words = [r["param"] for r in rows if r["kind"] == "categorical"]
    if words:
        text += f" ({', '.join(words)}: the correlation ratio of {metric}'s ranks across its values)"
    return text
