"""The run spec: one schema for a run request, from submit to training.

The API validates every submit against ``RunSpec`` and stores it resolved
(``RunSpec.resolved``: every default filled in, the seed chosen, the time
limit decided) as the run's ``config``.  Nothing downstream adds defaults of
its own: the worker hands the stored spec unchanged to the training
subprocess (``workers/training/spec.py``), which reads it back with
``RunSpec.stored``, where a missing field is an error.
"""

import secrets
from typing import Annotated, Literal, Optional

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,  # noqa: F401
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from . import lifecycle
from .lifecycle import RunStatus
from .models import MODELS, get_model
from .rewards import REWARDS

#: Submit modes.
MODES = ("sync", "async")

#: Fields ``resolved`` fills in; a stored spec must carry a value for each.
RESOLVED_AT_SUBMIT = ("seed", "time_limit_s")
#: Fields added after runs were first stored, each with the value that means
#: what a run stored before it did (no LoRA: full-parameter SFT; no held-out
#: samples): a stored spec that lacks one reads back with it, so a run
#: queued before an upgrade still resumes, and trains as it would have.
ADDED_SINCE_FIRST_STORE = {"lora": None, "sample_held_out": 0, "method": "sft", "dpo": None, "grpo": None}
#: Fields that say when a run is admitted or how it is found, not what it
#: trains: the registry keeps them in columns of their own, and the stored
#: spec (``config``, what the training reads) leaves them out.
SCHEDULING = ("priority", "name", "tags")
#: Most tags a run may carry.
MAX_TAGS = 20
#: A tag: a word a history filter names in a URL (``?tag=lr:1e-4``) and a CSV
#: joins with spaces, so no space, comma or quote.
TAG_PATTERN = r"^[A-Za-z0-9_.:=-]{1,64}$"
#: A run's name: one line of at most 200 characters (no control characters:
#: it is shown in tables and CSV rows).
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"
#: Longest notes a run may carry.
MAX_NOTES = 10_000


def _distinct_tags(value):
    if value is not None and len(set(value)) != len(value):
        raise PydanticCustomError("repeated_tag", "each tag at most once")
    return value


#: A run's name (null: none).
RunName = Annotated[Optional[str], Field(None, min_length=1, max_length=200, pattern=NAME_PATTERN,
                                         description="a name to find the run by (?q= searches it); one line")]
#: A run's tags.
RunTags = Annotated[list[Annotated[str, Field(pattern=TAG_PATTERN)]],
                    Field(max_length=MAX_TAGS, json_schema_extra={"uniqueItems": True},
                          description=f"up to {MAX_TAGS} distinct tags of 1 to 64 characters of "
                                      "A-Z a-z 0-9 _ . : = - (?tag= filters on them)")]


def _integral(value):
    # JSON has one number type, and JSON Schema (so the OpenAPI document, and
    # every client generated from it) counts 3.0 as an integer: it is 3.  A
    # fraction, a string or a boolean is still refused (strict mode).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer field: 3 or 3.0, never 3.5, "3" or true.
JsonInt = Annotated[int, BeforeValidator(_integral)]
#: The same, or null.  (Not ``Optional[JsonInt]``: pydantic would then write
#: the field's bounds into the JSON schema as "ge"/"le", which no validator reads.)
OptionalJsonInt = Annotated[Optional[int], BeforeValidator(_integral)]


#: The layers LoRA can adapt, by their role in every catalog family: the
#: attention's query, key, value and output projections and the MLP's gate,
#: up and down projections.  Gemma 3 holds key and value in one tensor
#: (``kv_einsum``), so on Gemma "k" and "v" each adapt both.
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


class LoraSpec(BaseModel):
    """LoRA (Hu et al. 2021) through qwix: each targeted projection ``W`` is
    frozen and learns ``W + (alpha / rank) * A @ B``; only ``A`` and ``B``
    train, and a checkpoint holds only them."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    rank: JsonInt = Field(8, ge=1, le=256, description="the rank of each adapter")
    alpha: float = Field(16.0, gt=0, le=4096, allow_inf_nan=False,
                         description="the adapter's scale is alpha / rank")
    targets: list[Literal[LORA_TARGETS]] = Field(
        list(LORA_TARGETS), min_length=1, max_length=len(LORA_TARGETS),
        json_schema_extra={"uniqueItems": True},
        description="the projections to adapt: q, k, v, o (attention), gate, up, down (MLP); default all")

    @field_validator("targets")
    @classmethod
    def _no_repeats(cls, value):
        if len(set(value)) != len(value):
            raise PydanticCustomError("repeated_target", "each target at most once")
        return value


#: The training methods, and the kind of dataset record each trains on
#: (``tasks/datasets_jsonl.py``: ``RECORD_KINDS``).
METHOD_DATA = {"sft": "completion", "dpo": "preference", "grpo": "prompt_answer"}


class DpoSpec(BaseModel):
    """Direct preference optimisation (Rafailov et al. 2023) or ORPO (Hong
    et al. 2024), by tunix's ``DPOTrainer``, on ``{prompt, chosen, rejected}``
    records.  DPO's reference is the model before training (with LoRA, the
    frozen base itself: no second copy); ORPO needs none."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    beta: float = Field(0.1, gt=0, le=10, allow_inf_nan=False,
                        description="DPO: the strength of the pull towards the reference (the KL penalty)")
    loss: Literal["dpo", "orpo"] = Field("dpo", description="dpo (sigmoid loss against a reference) or orpo "
                                                            "(odds ratio, SFT loss on the chosen; no reference)")
    lambda_orpo: float = Field(0.1, gt=0, le=10, allow_inf_nan=False,
                               description="ORPO: the weight of the preference term")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, allow_inf_nan=False,
                                   description="DPO: the assumed share of wrong preference labels (cDPO)")


class RewardTerm(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str = Field(json_schema_extra={"enum": list(REWARDS)},
                      description="a reward of tasks/rewards.py: " + ", ".join(REWARDS))
    weight: float = Field(1.0, ge=-100, le=100, allow_inf_nan=False, description="its weight in the sum")

    @field_validator("name")
    @classmethod
    def _known_reward(cls, value):
        if value not in REWARDS:
            raise PydanticCustomError("unknown_reward",
                                      f"unknown reward {value!r}; known rewards: {', '.join(REWARDS)}")
        return value


#: A GRPO run's reward when it names none: a right final answer, and the format.
DEFAULT_REWARD = (RewardTerm(name="final_answer", weight=1.0), RewardTerm(name="answer_format", weight=0.5))


class GrpoSpec(BaseModel):
    """Group relative policy optimisation (Shao et al. 2024), by tunix's
    ``GRPOLearner``, on ``{prompt, answer}`` records: each prompt is answered
    ``num_generations`` times by the policy (tunix's KV-cache sampler), each
    answer scored by ``reward``, and the policy pulled towards the answers
    that beat their group's mean.  The reference (for the KL term) is the
    model before training; with LoRA, the frozen base itself."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    num_generations: JsonInt = Field(4, ge=2, le=64, description="answers sampled per prompt (the group)")
    max_new_tokens: JsonInt = Field(32, ge=1, le=1024, description="tokens each sampled answer may have")
    temperature: float = Field(0.9, gt=0, le=5, allow_inf_nan=False, description="of the sampling")
    beta: float = Field(0.04, ge=0, le=10, allow_inf_nan=False,
                        description="the weight of the KL penalty to the reference (0: no reference is held)")
    epsilon: float = Field(0.2, gt=0, le=1, allow_inf_nan=False, description="the clipping range of the ratio")
    reward: list[RewardTerm] = Field(list(DEFAULT_REWARD), min_length=1, max_length=8,
                                     description="the reward: the weighted sum of these named rewards")


class IncompleteSpec(ValueError):
    """Raised when a stored spec lacks a field (or a value resolved at submit)."""


class RunSpec(BaseModel):
    # Strict: "true" is not a boolean and "2" is not an integer (2.0 is:
    # ``JsonInt``); unknown fields are mistakes, not extensions.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    dataset_key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
                             description="a dataset of GET /api/tunix/datasets")
    #: A model of the catalog (``tasks/models.py``); the enum is there for
    #: clients (OpenAPI, the console), the check is ``_known_model``.
    model_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", json_schema_extra={"enum": list(MODELS)},
                          description="a model of GET /api/tunix/models")
    dry_run: bool = Field(True, description="validate and resolve everything, train nothing")
    learning_rate: float = Field(2e-5, gt=0, le=1, allow_inf_nan=False, description="the optimizer's step size")
    num_epochs: JsonInt = Field(3, ge=1, le=1000, description="passes over the dataset (unless max_steps ends it first)")
    batch_size: JsonInt = Field(8, ge=1, le=4096, description="examples per step")
    max_seq_length: JsonInt = Field(2048, ge=8, le=32768, description="tokens per example (capped by the model's)")
    max_steps: OptionalJsonInt = Field(None, ge=1, le=10_000_000, description="stop after this many steps")
    #: Chosen at submit when absent, so a resumed or repeated run is the same run.
    seed: OptionalJsonInt = Field(None, ge=0, le=2**31 - 1, description="chosen at submit when absent")
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="where the training runs")
    #: Seconds the run may execute before it is stopped and ends ``timeout``;
    #: default ``DEFAULT_TIME_LIMIT_S``, at most ``RUN_TIME_LIMIT_S``.
    time_limit_s: OptionalJsonInt = Field(None, ge=1, description="seconds before the run is stopped and ends timeout")
    #: Save an orbax checkpoint every this many steps (and when stopped).
    checkpoint_every_steps: JsonInt = Field(10, ge=1, le=10_000_000, description="save a checkpoint every this many steps")
    #: None: full-parameter fine-tuning.
    lora: Optional[LoraSpec] = Field(None, description="train low-rank adapters only (the base stays frozen); "
                                                       "absent or null: every parameter trains")
    #: workers/training/held_out_samples.py (0 for a run stored before it existed).
    sample_held_out: JsonInt = Field(8, ge=0, le=64, description="held-out prompts answered by the base model at "
                                                                 "the start and by the trained model at the end, "
                                                                 "scored by the dataset's check; 0: none")
    method: Literal[tuple(METHOD_DATA)] = Field(
        "sft", description="sft (prompt/completion pairs), dpo (preference pairs) or grpo (prompts with "
                           "answers a reward checks)")
    #: Only with method dpo / grpo; filled with the defaults by ``resolved``.
    dpo: Optional[DpoSpec] = Field(None, description="method dpo's settings (default: all defaults)")
    grpo: Optional[GrpoSpec] = Field(None, description="method grpo's settings (default: all defaults)")
    #: Admission order among the trainings waiting (tasks/admission.py).
    priority: JsonInt = Field(0, ge=-1000, le=1000,
                              description="higher is admitted first; equal priorities share the workers fairly "
                                          "between sweeps and single runs")
    #: How the run is found (the history's ?q= and ?tag=); columns, not config.
    name: RunName = None
    tags: RunTags = []

    @field_validator("model_id")
    @classmethod
    def _known_model(cls, value):
        # NOTE: checked here, at submit, so a typo is a 422 naming the field
        # rather than a run that is queued only to fail on a worker.
        if get_model(value) is None:
            raise PydanticCustomError(
                "unknown_model", f"unknown model {value!r}; known models: {', '.join(MODELS)}")
        return value

    @field_validator("tags")
    @classmethod
    def _tags_distinct(cls, value):
        return _distinct_tags(value)

    @model_validator(mode="after")
    def _method_settings(self):
        for name in ("dpo", "grpo"):
            if getattr(self, name) is not None and self.method != name:
                # ``field_errors`` names the field from ``where`` (an after-validator's error has no loc).
                raise PydanticCustomError("method_mismatch", "{name} settings need method {name}; method is {method}",
                                          {"where": name, "name": name, "method": self.method})
        return self

    def resolved(self, settings):
        """The spec as stored (less ``SCHEDULING``, which the caller takes
        with ``scheduling``): every default filled in, including the seed.

        Raises:
          ValueError: ``time_limit_s`` is over the operator's maximum.
        """
        data = self.model_dump(exclude=set(SCHEDULING))
        if data["seed"] is None:
            data["seed"] = secrets.randbelow(2**31)
        if self.method == "dpo" and data["dpo"] is None:
            data["dpo"] = DpoSpec().model_dump()
        if self.method == "grpo" and data["grpo"] is None:
            data["grpo"] = GrpoSpec().model_dump()
        if data["time_limit_s"] is None:
            data["time_limit_s"] = min(settings.default_time_limit_s, settings.run_time_limit_s)
        if data["time_limit_s"] > settings.run_time_limit_s:
            raise ValueError(f"at most {settings.run_time_limit_s} (the operator's maximum)")
        return data

    def scheduling(self):
        """``{"priority": …, "name": …, "tags": […]}``: what ``resolved`` leaves out."""
        return {name: getattr(self, name) for name in SCHEDULING}

    def as_stored(self):
        """The spec as JSON, as the registry stores it (less ``SCHEDULING``)."""
        return self.model_dump(mode="json", exclude=set(SCHEDULING))

    @classmethod
    def stored(cls, obj):
        """The spec of a stored (resolved) ``config``, read back with no defaults.

        Raises:
          ValidationError: a field is invalid (as at submit).
          IncompleteSpec: a field is missing, or one ``resolved`` fills is null.
        """
        if isinstance(obj, dict):
            obj = {**ADDED_SINCE_FIRST_STORE, **obj}
        spec = cls.model_validate(obj)
        missing = [name for name in cls.model_fields if name not in spec.model_fields_set and name not in SCHEDULING]
        missing += [name for name in RESOLVED_AT_SUBMIT if name not in missing and getattr(spec, name) is None]
        if missing:
            raise IncompleteSpec("missing " + ", ".join(repr(name) for name in missing)
                                 + " (a stored spec has every field, resolved at submit)")
        return spec


def field_errors(exc):
    """``[{"field", "message"}]`` from a pydantic ``ValidationError``."""
    out = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or (err.get("ctx") or {}).get("where") or "body"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        out.append({"field": field, "message": message})
    return out


#: A run id or sweep id as the API writes it.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class RunFilter(BaseModel):
    """Which runs a bulk cancel or resume acts on: every field given must
    match, and at least one must be given (a bulk move over every run is
    not a typo the API should carry out)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, json_schema_extra={"minProperties": 1})

    # Not Optional: null is no filter the document could describe as one.
    status: str = Field(None, json_schema_extra={"enum": [s.value for s in RunStatus]})
    sweep_id: str = Field(None, pattern=UUID_PATTERN, description="the trials of this sweep")
    dataset_key: str = Field(None, pattern=r"^[^\x00]*$")
    model_id: str = Field(None, pattern=r"^[^\x00]*$")

    @field_validator("status")
    @classmethod
    def _known_status(cls, value):
        if value not in lifecycle.ALL:
            raise PydanticCustomError("unknown_status", f"expected one of {', '.join(lifecycle.ALL)}")
        return value

    @model_validator(mode="after")
    def _something_given(self):
        if not self.given():
            raise PydanticCustomError("no_filter", "name at least one of status, sweep_id, dataset_key, model_id")
        return self

    def given(self):
        return {name: value for name, value in self.model_dump().items() if value is not None}


#: Most runs one series request may ask for (a sweep has at most 500 trials).
MAX_SERIES_RUNS = 500
#: Most points a series request may ask for, per run.
MAX_SERIES_POINTS = 1000


class SeriesRequest(BaseModel):
    """``POST /api/tunix/runs/series``: the runs whose loss curves to read."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    run_ids: list[Annotated[str, Field(pattern=UUID_PATTERN)]] = Field(
        min_length=1, max_length=MAX_SERIES_RUNS, description="the runs to compare")
    points: JsonInt = Field(200, ge=2, le=MAX_SERIES_POINTS, description="at most this many points per run")
    metric: str = Field("loss", pattern=r"^[a-z][a-z0-9_]{0,63}$",
                        description="loss, eval_loss, learning_rate, grad_norm or a method's own (reward_mean, kl ...)")
    from_step: OptionalJsonInt = Field(None, ge=0, le=2**31 - 1, description="the first step (default: the run's first)")
    to_step: OptionalJsonInt = Field(None, ge=0, le=2**31 - 1,
                                     description="the last step (default: the run's last; before from_step: nothing)")


class RunUpdate(BaseModel):
    """``PATCH /api/tunix/runs/{run_id}``: what a run's owner (or an admin)
    may change after the submit; a field absent stays as it is, a null name
    clears it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, json_schema_extra={"minProperties": 1})

    name: RunName = None
    # Not Optional (as RunFilter's): null is refused; [] and "" clear them.
    tags: RunTags = None
    notes: str = Field(None, max_length=MAX_NOTES, pattern=r"^[^\x00]*$",
                       description=f"free text, at most {MAX_NOTES} characters")

    @field_validator("tags")
    @classmethod
    def _tags_distinct(cls, value):
        return _distinct_tags(value)

    @model_validator(mode="after")
    def _something_given(self):
        if not self.model_fields_set:
            raise PydanticCustomError("no_field", "name at least one of name, tags, notes")
        return self

    def given(self):
        """The fields sent, as the registry writes them."""
        return {name: getattr(self, name) for name in self.model_fields_set}
