"""The sweep spec: a search space over run requests, and the trials it makes.

A sweep is ``base`` (a run request, ``RunSpec``) varied by ``grid`` (every
combination of the listed values) and ``random`` (``count`` draws from
distributions, for each grid point).  Every trial is an ordinary run: its
request is ``base`` with its parameters set, validated as strictly as a
single submit, and stored resolved.  The base's seed, when absent, is chosen
once for the whole sweep, so trials differ by their parameters only, and a
trial whose resolved request equals an earlier one's is created once.

Its rules across fields (ranges only over numbers and within their
limits; methods, their settings, datasets and metrics, checked on the space
so that a random search is valid or not whatever it draws) are stated in
the document too (``app/openapi.py``).  A field both in the grid and the
random space is not refused but drawn, with a warning (``overridden``): "not
both, for every field" is a condition per field, which no document
schemathesis can generate from may hold.  That the product of the grid's lengths times ``count``
stays within ``MAX_TRIALS`` is not a rule of the request's form but a limit
of the platform (``SweepTooLarge``): the API answers it 403
``limit_exceeded``, as it answers a priority over the ceiling, and a
schema-valid request is never a 422 for its size.
"""

import functools
import itertools
import json
import math
import random
import secrets
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .run_spec import SCHEDULING, DpoSpec, GrpoSpec, JsonInt, LoraSpec, OptionalJsonInt, RunSpec, field_errors

#: Most trials one sweep may make.
MAX_TRIALS = 500
#: The metrics a sweep can rank trials by: the latest eval loss on the
#: dataset's held-out examples, the last training loss (lower is better for
#: both), or a method's own metric (``METHOD_METRICS``).
METRICS = ("eval_loss", "loss")
#: A method's own per-step metrics a sweep can rank (and early-stop) on:
#: name -> (the method that records it, the better direction).  A trial's
#: value is the mean over its last ``RANK_LAST_STEPS`` recorded steps (one
#: step of GRPO's reward is one batch of prompts: noisy).
METHOD_METRICS = {
    "reward_accuracy": ("dpo", "max"),
    "reward_margin": ("dpo", "max"),
    "reward_mean": ("grpo", "max"),
    "kl": ("grpo", "min"),
}
RANK_LAST_STEPS = 5


def direction(metric):
    """``"min"`` or ``"max"``: which values of ``metric`` are better."""
    return METHOD_METRICS[metric][1] if metric in METHOD_METRICS else "min"


def stopping_metric(metric):
    """The per-step value early stopping compares for a sweep ranked on
    ``metric``: the training loss for the losses, else the method's metric."""
    return metric if metric in METHOD_METRICS else "loss"
#: Distributions of the random search, each over ``[low, high]`` but
#: ``choice``, over its values.  A draw for an integer field is rounded.
DISTRIBUTIONS = ("uniform", "log_uniform", "choice")


#: Run fields that are objects whose own fields a sweep may vary, named
#: ``<field>.<its field>`` (``lora.rank``, ``dpo.beta``).
NESTED = {"lora": LoraSpec, "dpo": DpoSpec, "grpo": GrpoSpec}


def sweepable():
    """The fields a sweep may vary: every run field but the scheduling ones,
    and each nested object's fields (``lora.rank``, ``lora.alpha`` ...)."""
    names = [name for name in RunSpec.model_fields if name not in SCHEDULING]
    return names + [f"{outer}.{name}" for outer, model in NESTED.items() for name in model.model_fields]


def field_info(name):
    """The pydantic field a sweepable ``name`` (``lr`` or ``lora.rank``) stands for."""
    outer, _, inner = name.partition(".")
    return NESTED[outer].model_fields[inner] if inner else RunSpec.model_fields[name]


@functools.cache
def _field_schema(name):
    outer, _, inner = name.partition(".")
    model, field = (NESTED[outer], inner) if inner else (RunSpec, name)
    return model.model_json_schema()["properties"][field]


#: JSON Schema's words for a number's limits.
BOUND_WORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def numeric_bounds(name, run_time_limit_s):
    """The limits of a sweepable field that is a number (``{"minimum": 0,
    ...}`` in JSON Schema's words, maybe empty), or None for a field that is
    not: what a ``uniform`` or ``log_uniform`` over it may span, the
    operator's ``RUN_TIME_LIMIT_S`` included (a plain schemathesis run drew
    ``time_limit_s`` from [6e307, 1.2e308]).  The API checks them and the
    document states them from this one place."""
    schema = _field_schema(name)
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") in ("integer", "number"):
            bounds = {word: branch[word] for word in BOUND_WORDS if word in branch}
            if name == "time_limit_s":
                bounds["maximum"] = min(bounds.get("maximum", run_time_limit_s), run_time_limit_s)
            return bounds
    return None


def _within(value, bounds):
    return (value >= bounds.get("minimum", value) and value <= bounds.get("maximum", value)
            and ("exclusiveMinimum" not in bounds or value > bounds["exclusiveMinimum"])
            and ("exclusiveMaximum" not in bounds or value < bounds["exclusiveMaximum"]))


def swept(spec, name):
    """``(where, values)`` of a swept field (its grid list, or its random
    ``choice``), or None when ``name`` is not swept or drawn from a range."""
    if spec.grid and name in spec.grid:
        return f"grid.{name}", spec.grid[name]
    if spec.random and name in spec.random.space and "choice" in spec.random.space[name]:
        return f"random.space.{name}.choice", spec.random.space[name]["choice"]
    return None


def trial_values(spec, base, name):
    """``(where, values)``: what the trials may take for a plain field, the
    base's value where it is not swept (``base`` a ``RunSpec``)."""
    return swept(spec, name) or (f"base.{name}", [getattr(base, name)])


def with_params(request, params):
    """``request`` with each swept field set; ``lora.rank`` sets ``request["lora"]["rank"]``
    (an absent or null ``lora`` becomes an object of the swept fields, and a
    swept ``lora`` is set before them)."""
    out = dict(request)
    # A whole object first, then its swept fields set in it: ``lora`` and
    # ``lora.dropout`` swept together vary both, in any order given.
    for name, value in sorted(params.items(), key=lambda item: "." in item[0]):
        outer, _, inner = name.partition(".")
        if not inner:
            out[name] = value
        elif isinstance(out.get(outer), dict) or out.get(outer) is None:
            out[outer] = dict(out.get(outer) or {}, **{inner: value})
        # else: the base's own value is not an object (``"lora": 5``): left as
        # it is, for the validation to name it (a 422, not a TypeError).
    return out


class RandomSearch(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    count: JsonInt = Field(ge=1, le=MAX_TRIALS, description="draws for each grid point")
    seed: OptionalJsonInt = Field(None, ge=0, le=2**31 - 1, description="of the draws; chosen when absent")
    space: dict[str, dict[str, list[Any]]] = Field(
        min_length=1, description='field -> {"uniform" | "log_uniform": [low, high]} or {"choice": [values]}')


class EarlyStopping(BaseModel):
    """How the platform stops a sweep's hopeless trials (``tasks/early_stopping.py``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    rule: Literal["median", "asha"] = Field(
        description="median: stop a trial whose best loss is worse than the median of the other trials' "
                    "running mean loss at the same step; asha: at steps min_steps x reduction_factor^k, keep "
                    "only the best 1/reduction_factor of the trials that reached it")
    min_steps: JsonInt = Field(10, ge=1, le=10_000_000, description="no trial is stopped before this step "
                                                                     "(asha: its first rung)")
    min_trials: JsonInt = Field(3, ge=1, le=MAX_TRIALS, description="median: other trials that must have "
                                                                    "reached the step before any is stopped")
    reduction_factor: JsonInt = Field(3, ge=2, le=100, description="asha: 1 in this many goes on at each rung")


class SweepSpec(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$", description="shown in the console")
    base: dict[str, Any] = Field(description="a run request (RunSpec): what every trial shares")
    grid: Optional[dict[str, list[Any]]] = Field(
        None, description="field -> values: one trial for each combination")
    random: Optional[RandomSearch] = None
    metric: str = Field("eval_loss", description="what ranks the completed trials: eval_loss (on the dataset's "
                                                 "held-out examples) or loss (training), lower being better; or a "
                                                 "method's own: reward_accuracy, reward_margin (dpo), reward_mean "
                                                 "(grpo), higher being better, kl (grpo), lower being better")
    mode: Optional[Literal["min", "max"]] = Field(
        None, description="min: lower is better; max: higher is better (default: the metric's own direction)")
    max_concurrent: OptionalJsonInt = Field(
        None, ge=1, le=MAX_TRIALS, description="trials queued or running at once; the rest wait 'deferred' and "
                                               "are admitted as trials end (default: as many as the workers take)")
    priority: OptionalJsonInt = Field(
        None, ge=-1000, le=1000, description="of every trial (default: the base's): higher is admitted first")
    early_stopping: Optional[EarlyStopping] = Field(
        None, description="stop the hopeless trials (they end cancelled, reason early_stopped, checkpoint saved)")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value):
        if value not in METRICS and value not in METHOD_METRICS:
            raise ValueError(f"expected one of {', '.join((*METRICS, *METHOD_METRICS))}")
        return value

    def better(self):
        """``"min"`` or ``"max"``: the given mode, else the metric's direction."""
        return self.mode or direction(self.metric)


class SweepInvalid(ValueError):
    """A sweep request that makes no valid set of trials: ``fields`` names
    each problem as ``[{"field", "message"}]``."""

    def __init__(self, fields):
        super().__init__(f"{len(fields)} invalid field(s)")
        self.fields = fields


class SweepTooLarge(ValueError):
    """A sweep whose space makes ``trials`` trials, more than ``MAX_TRIALS``
    (``field`` says where: ``grid`` or ``random.count``).  Raised before any
    trial is built: a grid of 10^6 points costs nothing to refuse."""

    def __init__(self, trials, field):
        super().__init__(f"makes {trials} trials; a sweep makes at most {MAX_TRIALS}")
        self.trials, self.field = trials, field


def _draw(rng, distribution, integral):
    (kind, values), = distribution.items()
    if kind == "choice":
        return rng.choice(values)
    low, high = sorted(values)
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if kind == "log_uniform" else rng.uniform(low, high)
    return round(value) if integral else value


def _check_space(spec, settings):
    """Problems of the search space's shape: fields that are not run
    fields, a field both in the grid and the random space, distributions
    that are not one of ``DISTRIBUTIONS`` with the right bounds."""
    problems = []
    known = set(sweepable())
    for name in spec.grid or {}:
        if name in SCHEDULING:
            problems.append({"field": f"grid.{name}", "message": "says when a trial runs, not what it trains: "
                                                                 "set the sweep's own"})
        elif name not in known:
            problems.append({"field": f"grid.{name}", "message": "not a field of a run request"})
        elif not spec.grid[name]:
            problems.append({"field": f"grid.{name}", "message": "expected at least one value"})
    for name, distribution in (spec.random.space if spec.random else {}).items():
        where = f"random.space.{name}"
        if name in SCHEDULING:
            problems.append({"field": where, "message": "says when a trial runs, not what it trains: set the "
                                                        "sweep's own"})
            continue
        if name not in known:
            problems.append({"field": where, "message": "not a field of a run request"})
            continue
        if len(distribution) != 1 or next(iter(distribution)) not in DISTRIBUTIONS:
            problems.append({"field": where, "message": f"expected one of {', '.join(DISTRIBUTIONS)}"})
            continue
        (kind, values), = distribution.items()
        if kind == "choice":
            if not values:
                problems.append({"field": f"{where}.choice", "message": "expected at least one value"})
            continue
        bounds = numeric_bounds(name, settings.run_time_limit_s)
        numbers = len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                           and math.isfinite(v) for v in values)
        if bounds is None:
            problems.append({"field": f"{where}.{kind}", "message": f"{name} is not a number: draw it by choice"})
        elif not numbers:
            problems.append({"field": f"{where}.{kind}", "message": "expected [low, high], two finite numbers"})
        elif kind == "log_uniform" and min(values) <= 0:
            problems.append({"field": f"{where}.{kind}", "message": "log_uniform needs bounds above 0"})
        elif not all(_within(v, bounds) for v in values):
            limits = ", ".join(f"{word} {limit}" for word, limit in bounds.items())
            problems.append({"field": f"{where}.{kind}", "message": f"a bound is outside {name}'s limits ({limits})"})
    return problems


def overridden(spec):
    """What the answer warns of: a field both in the grid and the random
    space is drawn (a draw is set after the grid's value, as a swept
    object's fields are after the object), so its grid list only multiplies
    the points.  Accepted, not refused: no JSON Schema the fuzzers can
    generate from states "not both" for every field (``app/openapi.py``)."""
    both = sorted(set(spec.grid or {}) & set(spec.random.space if spec.random else {}))
    return [f"{name} is both in grid and random.space: each trial takes the draw; the grid's "
            f"{len(spec.grid[name])} value(s) only multiply the points" for name in both]


def _method_problems(spec, base):
    """What no draw may break, checked on the space, not on the trials drawn
    (a random search may or may not draw the bad pair): a method's settings
    only where every trial has that method, and a method's own metric only
    where every trial records it.  ``base`` is the sweep's ``RunSpec``."""
    problems = []
    where, methods = trial_values(spec, base, "method")
    methods = {m for m in methods if isinstance(m, str)}  # others: the trials' validation names them
    for name in ("dpo", "grpo"):
        source = _settings_source(spec, base, name)
        if source and methods - {name}:
            problems.append({"field": source, "message": f"{name} settings need method {name}; the sweep also "
                                                         f"trains with method {', '.join(sorted(map(str, methods - {name})))} "
                                                         f"({where})"})
    if spec.metric in METHOD_METRICS:
        needs = METHOD_METRICS[spec.metric][0]
        if methods - {needs}:
            problems.append({"field": "metric", "message": f"{spec.metric} is recorded by method {needs} only; "
                                                           f"trials of method {', '.join(sorted(map(str, methods - {needs})))} have none"})
    return problems


def _settings_source(spec, base, name):
    """Where some trial gets ``name``'s settings (``dpo``, ``grpo``): a swept
    sub-field, a swept object that is not null, or the base's, else None."""
    for field in (spec.grid or {}):
        if field.startswith(name + "."):
            return f"grid.{field}"
    for field in (spec.random.space if spec.random else {}):
        if field.startswith(name + "."):
            return f"random.space.{field}"
    found = swept(spec, name)
    if found:
        return found[0] if any(isinstance(v, dict) for v in found[1]) else None
    if spec.random and name in spec.random.space:
        return None  # drawn from a range: refused above
    return f"base.{name}" if getattr(base, name) is not None else None


def _count(spec):
    points = math.prod(len(v) for v in (spec.grid or {}).values())
    return points * (spec.random.count if spec.random else 1)


def trial_params(spec, random_seed):
    """The parameters of every trial, in order: the grid's combinations
    (last field fastest), each with ``random.count`` draws."""
    grid = spec.grid or {}
    names = list(grid)
    points = [dict(zip(names, values)) for values in itertools.product(*grid.values())] or [{}]
    if spec.random is None:
        return points
    rng = random.Random(random_seed)
    integral = {name: field_info(name).annotation is not float for name in spec.random.space}
    out = []
    for point in points:
        for _ in range(spec.random.count):
            drawn = {name: _draw(rng, d, integral[name]) for name, d in spec.random.space.items()}
            out.append({**point, **drawn})
    return out


def _where(field, spec):
    """The request field a trial's error is about, named where the user wrote it."""
    parts = field.split(".")
    # The longest swept name the field is in: "lora.rank", else "lora".
    for name in (".".join(parts[:2]), parts[0]):
        if name in (spec.grid or {}):
            return f"grid.{name}"
        if spec.random and name in spec.random.space:
            return f"random.space.{name}"
    return f"base.{field}"


def trial_priority(spec):
    """The priority every trial of ``spec`` (validated) is admitted with."""
    return spec.priority if spec.priority is not None else RunSpec.model_validate(spec.base).priority


def expand(body, settings):
    """``(spec, [(params, resolved request)], duplicates, chosen seeds)`` of
    a sweep request (each trial's priority: ``trial_priority``).

    Raises:
      SweepInvalid: naming every bad field; nothing is to be written then.
      SweepTooLarge: the space makes more than ``MAX_TRIALS`` trials.
    """
    try:
        spec = SweepSpec.model_validate(body)
    except ValidationError as exc:
        raise SweepInvalid(field_errors(exc)) from None
    try:
        base = RunSpec.model_validate(spec.base)
    except ValidationError as exc:
        raise SweepInvalid([dict(e, field="base." + e["field"]) for e in field_errors(exc)]) from None
    if not spec.grid and not spec.random:
        raise SweepInvalid([{"field": "grid", "message": "a sweep needs a grid, a random search, or both"}])
    problems = _check_space(spec, settings)
    problems = problems or _method_problems(spec, base)
    if problems:
        raise SweepInvalid(problems)
    if _count(spec) > MAX_TRIALS:
        raise SweepTooLarge(_count(spec), "grid" if spec.grid else "random.count")
    seeds = {"base_seed": base.seed if base.seed is not None else secrets.randbelow(2**31),
             "random_seed": None}
    if spec.random:
        seeds["random_seed"] = spec.random.seed if spec.random.seed is not None else secrets.randbelow(2**31)
    base_request = dict(spec.base, seed=seeds["base_seed"])
    trials, seen, duplicates, problems = [], set(), 0, {}
    for params in trial_params(spec, seeds["random_seed"]):
        try:
            config = RunSpec.model_validate(with_params(base_request, params)).resolved(settings)
        except ValidationError as exc:
            for e in field_errors(exc):
                where = _where(e["field"], spec)
                problems.setdefault(where, f"{e['message']} (trial {json.dumps(params, sort_keys=True)})")
            continue
        except ValueError as exc:  # time_limit_s over the operator's maximum
            problems.setdefault(_where("time_limit_s", spec), str(exc))
            continue
        key = json.dumps(config, sort_keys=True)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        trials.append((params, config))
    if problems:
        raise SweepInvalid([{"field": f, "message": m} for f, m in problems.items()])
    return spec, trials, duplicates, seeds
