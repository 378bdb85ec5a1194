"""Curves of many runs in one answer (a run's page, a comparison, a sweep):
one metric each, within a step range, downsampled so that spikes survive.

The query (``series`` in ``tasks/sql/activity.sql``) cuts each run's span of
steps into ``points`` / 4 buckets and keeps each bucket's first, lowest,
highest and last point (M4).  A span of fewer than ``points`` steps (a
zoomed range, say) comes whole, at full resolution."""

import re

from flask import request

from tasks import registry

from .errors import ApiError
from .parse import int_arg

#: The metrics every training may record: its table's columns and the eval
#: loss.  A method's own (DPO's ``reward_accuracy``, GRPO's ``kl`` ...) is any
#: other name ``METRIC_NAME`` allows, read from the step's ``metrics``.
COLUMNS = ("loss", "eval_loss", "learning_rate", "grad_norm")
#: What a metric's name may be (the names the training methods record).
METRIC_NAME = r"^[a-z][a-z0-9_]{0,63}$"
#: The highest step a range may name (steps are PostgreSQL integers).
MAX_STEP = 2**31 - 1
#: Every bucket gives up to this many points: first, lowest, highest, last.
PER_BUCKET = 4


def _field_error(field, message):
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def check(metric, from_step, to_step):
    """The 422 for a bad metric name.  A range that ends before it starts
    is empty, not an error: no JSON Schema can say ``to_step >= from_step``,
    and a plain schemathesis run found the documented request refused."""
    if not isinstance(metric, str) or not re.fullmatch(METRIC_NAME, metric):
        raise _field_error("metric", "expected a metric's name: loss, eval_loss, learning_rate, grad_norm or a "
                                     "method's own (lower-case letters, digits, underscores)")


def range_args():
    """``metric``, ``from_step`` and ``to_step`` of a GET's query, checked."""
    metric = request.args.get("metric", "loss")
    from_step = int_arg("from_step", None, 0, MAX_STEP)
    to_step = int_arg("to_step", None, 0, MAX_STEP)
    check(metric, from_step, to_step)
    return {"metric": metric, "from_step": from_step, "to_step": to_step}


def trim(steps, values, elapsed, points):
    """A curve of more than ``points`` points (one bucket gives up to four)
    cut to its ends, then its lowest and highest points."""
    if len(steps) <= points:
        return steps, values, elapsed
    keep = {0, len(steps) - 1}
    for i in (values.index(min(values)), values.index(max(values))):
        if len(keep) < points:
            keep.add(i)
    keep = sorted(keep)
    return [steps[i] for i in keep], [values[i] for i in keep], [elapsed[i] for i in keep]


def series_json(conn, run_ids, points, metric="loss", from_step=None, to_step=None):
    """The ``SeriesList`` answer for ``run_ids``, in their order: ``metric``
    within ``from_step``..``to_step`` (both included; None: the run's first,
    last), each curve at most ``points`` long.  ``elapsed``: seconds since the
    run's first recorded step; ``loss`` repeats ``values`` for a loss curve
    (what clients before ``metric`` read); ``metrics``: what a chart of these
    runs can draw (every training's, then the methods' own they recorded)."""
    check(metric, from_step, to_step)
    curves = registry.series(conn, run_ids, metric, points, max(1, points // PER_BUCKET),
                             0 if from_step is None else from_step, MAX_STEP if to_step is None else to_step)
    data = []
    for run_id in run_ids:
        steps, values, elapsed = trim(*curves.get(str(run_id), ([], [], [])), points)
        item = {"run_id": str(run_id), "steps": steps, "values": values, "elapsed": elapsed}
        if metric == "loss":
            item["loss"] = item["values"]
        data.append(item)
    return {"points": points, "metric": metric, "from_step": from_step, "to_step": to_step,
            "metrics": [*COLUMNS, *registry.recorded_method_metrics(conn, run_ids)], "data": data}
