"""A sweep's early stopping (``tasks/sql/early_stopping.sql``): its rule,
the inputs of the median rule and of ASHA's rungs, and a promotion; the
decisions are ``tasks/early_stopping.py``'s."""

from ..sql.cursor import execute, fetch_tuples, fetch_value


def sweep_rule(conn, sweep_id):
    """A sweep's early-stopping rule (a dict), or None."""
    return fetch_value(conn, "sweep_rule", sweep_id=sweep_id)


def _stopping(rule):
    """The rule's per-step value as SQL parameters: its ``metric`` (``loss``
    or a method metric's key) and ``sign`` (-1 for higher-is-better, so the
    queries' "lower is better" holds for every metric)."""
    return dict(metric=rule.get("metric") or "loss", sign=-1 if rule.get("mode") == "max" else 1)


def median_inputs(conn, run_id, sweep_id, step, rule=None):
    """``(best value up to step, [other trials' mean value up to it])``; the
    value is the loss, or the rule's metric signed so that lower is better."""
    ((best, peers),) = fetch_tuples(conn, "median_inputs", run_id=run_id, sweep_id=sweep_id, step=step,
                                    **_stopping(rule or {}))
    return best, list(peers)


def rung_inputs(conn, run_id, sweep_id, step, rule=None):
    """``(the trial's value at the rung, [the other trials' there])`` (signed as in ``median_inputs``)."""
    rows = fetch_tuples(conn, "rung_inputs", run_id=run_id, sweep_id=sweep_id, step=step, **_stopping(rule or {}))
    own = [loss for is_own, loss in rows if is_own]
    return (own[0] if own else None), [loss for is_own, loss in rows if not is_own]


def promote(conn, run_id, attempt, rung):
    execute(conn, "promote", run_id=run_id, attempt=attempt, rung=rung)
