"""What the API answers, on the wire, as typed objects: one place for the
API's response shapes.  The API builds its answers as these models
(``app/serialize.py``) and sends their JSON dump, the OpenAPI document
(``app/openapi.py``) describes its responses with their schemas, the
fuzzing pass checks every answer against them
(``tests/reliability/test_fuzz.py``), and the Python client
(``tunix_cli/client.py``) returns them.

Unknown fields are kept, not refused: a newer API may add fields, and an
older client must go on working.
"""

from datetime import datetime
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from . import lifecycle
from .run_spec import MODES

#: What the document says a status is; a client still reads a status it does
#: not know (a newer API's).
_STATUS = Field(json_schema_extra={"enum": list(lifecycle.ALL)}, description="; ".join(
    f"`{s.value}`: {text}" for s, text in lifecycle.MEANING.items()))


#: A time as the API writes it, ``datetime.isoformat()``: UTC ends in
#: ``+00:00`` where pydantic's own dump would write ``Z``.
Timestamp = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
                      WithJsonSchema({"format": "date-time", "type": "string"})]

#: What a run's answers share, said once.
_ATTEMPTS = Field(0, description="executions begun (claims)")
_MAX_ATTEMPTS = Field(None, description="the run's attempts budget, set at its first claim")


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Progress(_Answer):
    """The latest step a training reported (``progress`` events)."""

    step: int
    total_steps: Optional[int] = None
    loss: Optional[float] = None
    learning_rate: Optional[float] = None
    grad_norm: Optional[float] = None


# "Answer": the statuses themselves are lifecycle.RunStatus.
class RunStatusAnswer(_Answer):
    """``GET /api/tunix/runs/{run_id}/status``: what changes while a run moves."""

    run_id: str
    status: str = _STATUS
    queued_at: Optional[Timestamp] = None
    started_at: Optional[Timestamp] = None
    completed_at: Optional[Timestamp] = None
    exit_code: Optional[int] = None
    attempts: int = _ATTEMPTS
    max_attempts: Optional[int] = _MAX_ATTEMPTS
    progress: Optional[Progress] = None


# Not a RunStatusAnswer with more fields: a subclass's dump puts its base's
# fields first, and this answer keeps the key order it has always had.
class Run(_Answer):
    """A run as the registry holds it (``GET /api/tunix/runs/{run_id}``)."""

    run_id: str
    status: str = _STATUS
    mode: str = Field(json_schema_extra={"enum": list(MODES)})
    dry_run: bool
    dataset_key: str
    model_id: str
    config: dict[str, Any] = Field(description="the stored run spec: every default filled in at submit")
    attempts: int = _ATTEMPTS
    max_attempts: Optional[int] = _MAX_ATTEMPTS
    worker_id: Optional[str] = None
    error: Optional[dict[str, Any]] = None
    result: Optional[dict[str, Any]] = None
    exit_code: Optional[int] = None
    queued_at: Optional[Timestamp] = None
    started_at: Optional[Timestamp] = None
    completed_at: Optional[Timestamp] = None
    queue_wait_seconds: Optional[float] = None
    duration_seconds: Optional[float] = None
    progress: Optional[Progress] = None
    heartbeat_at: Optional[Timestamp] = None
    sweep_id: Optional[str] = Field(None, description="the sweep this run is a trial of")
    trial: Optional[dict[str, Any]] = Field(None, description="a trial's parameters: what its sweep varied")
    priority: int = Field(0, description="admission order among waiting runs: higher first")
    owner: Optional[str] = Field(None, description="the user who submitted it; null without users")
    name: Optional[str] = Field(None, description="its name, given at submit or by PATCH; null: none")
    tags: list[str] = Field([], description="its tags (the history's ?tag= filters on them)")
    notes: str = Field("", description="free text, edited by PATCH")
    waiting_reason: Optional[str] = Field(None, description="a deferred run's reason to wait, in a sentence "
                                                            "(GET /api/tunix/runs/{run_id} only)")


class Pagination(_Answer):
    limit: int
    offset: int
    next_offset: Optional[int] = Field(None, description="the offset of the next page; null on the last")
    total: int


class RunPage(_Answer):
    """``GET /api/tunix/runs``: one page of the history, newest first."""

    data: list[Run]
    pagination: Pagination
    counts: dict[str, int] = Field({}, description="the runs the same filters match, by status (every page's); "
                                                   "a status no run is in is absent")


class RunList(_Answer):
    """``POST /api/tunix/runs/batch``: the runs created, in request order."""

    data: list[Run]


class Checkpoint(_Answer):
    """A recorded checkpoint (``GET /api/tunix/runs/{run_id}/checkpoints``)."""

    step: int
    attempt: int
    size_bytes: int
    sha256: str
    loss: Optional[float] = None
    created_at: Timestamp
    uri: str
    download: str = Field(description="its download path on this API")


class CheckpointList(_Answer):
    data: list[Checkpoint]


class MetricsPoint(_Answer):
    """One training step's figures (``GET /api/tunix/runs/{run_id}/metrics``)."""

    step: int
    loss: Optional[float] = None
    learning_rate: Optional[float] = None
    grad_norm: Optional[float] = None
    attempt: int
    eval_loss: Optional[float] = Field(None, description="on the held-out examples, at a checkpoint step or the last")
    metrics: Optional[dict[str, Optional[float]]] = Field(
        None, description="the method's own figures (DPO: reward_accuracy, reward_margin; GRPO: reward_mean, "
                          "reward_std, kl, completion_length); absent for SFT")
    samples: Optional[list[dict[str, Any]]] = Field(
        None, description="GRPO, at logged steps: sampled completions with their rewards")


class MetricsList(_Answer):
    data: list[MetricsPoint]


class Series(_Answer):
    """One run's curve of one metric, downsampled: ``steps[i]``, ``values[i]``
    and ``elapsed[i]`` go together."""

    run_id: str
    steps: list[int]
    values: list[float]
    elapsed: list[float] = Field(description="seconds since the run's first recorded step")
    loss: Optional[list[float]] = Field(None, description="``values`` again, for a loss curve only")


class SeriesList(_Answer):
    """``GET /api/tunix/sweeps/{sweep_id}/series`` and ``POST /api/tunix/runs/series``:
    many runs' curves of one metric in one answer, each at most ``points``
    long: the run's steps cut into ``points`` / 4 buckets, each giving its
    first, lowest, highest and last point (so spikes survive); a range of
    at most ``points`` steps comes whole; a run with no value there has empty lists."""

    points: int
    metric: str = "loss"
    from_step: Optional[int] = None
    to_step: Optional[int] = None
    metrics: list[str] = Field(default_factory=list, description="the metrics a chart of these runs can draw: "
                               "every training's (loss, eval_loss, learning_rate, grad_norm), then the methods' own "
                               "that the runs recorded")
    data: list[Series]


class LogLine(_Answer):
    """A ``log`` event of ``GET /api/tunix/runs/{run_id}/logs`` (its SSE ``id`` is ``seq``)."""

    seq: int
    stream: str = Field(description="stdout, stderr or system")
    line: str
    at: Timestamp


class StatusEvent(_Answer):
    """The last event of a log stream: the run ended."""

    run_id: str
    status: str = _STATUS
    exit_code: Optional[int] = None


class FieldError(_Answer):
    field: str
    message: str


class ErrorDetail(_Answer):
    code: str
    message: str
    fields: list[FieldError] = []


class Error(_Answer):
    """Every 4xx and 5xx answer of the API."""

    error: ErrorDetail


class Dataset(_Answer):
    """A dataset runs may name (``GET /api/tunix/datasets``)."""

    key: str
    kind: Literal["synthetic", "jsonl"]
    description: str
    origin: Literal["builtin", "shipped", "operator", "store"]
    size: Optional[int] = None
    etag: Optional[str] = None
    #: The program that scores a completion (tasks/checks.py): the format rate
    #: of held-out samples is reported at the end of a training on it.
    check: Optional[str] = None
    data_kind: Optional[Literal["completion", "preference", "prompt_answer"]] = Field(
        description="its records: prompt/completion pairs, preference pairs {prompt, chosen, rejected} or "
                    "prompts with answers {prompt, answer}; null for a store object no listing read (its "
                    "worker checks it)")
    methods: list[str] = Field(description="the training methods that take it")


class DatasetList(_Answer):
    data: list[Dataset]


class Model(_Answer):
    """A model preset of the catalog (``GET /api/tunix/models``, ``tasks/models.py``)."""

    model_id: str
    family: str
    description: str
    param_count: int
    requires_weights: bool


class ModelList(_Answer):
    data: list[Model]


class Health(_Answer):
    """``/healthz`` (``ok``: the process serves) and ``/readyz`` (``ready``: the database answers, migrated)."""

    status: Literal["ok", "ready"]
    migrations: Optional[Literal["ahead"]] = Field(None, description="`/readyz` only: the database holds "
                                                   "migrations of a newer release (this process should be upgraded)")
    warning: Optional[str] = Field(None, description="what `migrations` means, in words")


class Trial(_Answer):
    """One trial of a sweep, with its latest recorded step."""

    run_id: str
    status: str = _STATUS
    params: dict[str, Any]
    step: Optional[int] = None
    loss: Optional[float] = Field(None, description="at its latest recorded step")
    eval_loss: Optional[float] = Field(None, description="its latest, on the dataset's held-out examples")
    attempts: int = 0
    stop_reason: Optional[str] = Field(None, description="early_stopped: its sweep's rule stopped it")
    # A sweep ranked on a method's metric also carries it, by name (e.g. "reward_mean": its mean over the
    # trial's last 5 steps): _Answer allows the extra key.


class Sweep(_Answer):
    """A sweep, its trials counted by status (``GET /api/tunix/sweeps``)."""

    sweep_id: str
    name: str
    metric: str
    mode: Literal["min", "max"] = Field("min", description="min: the lowest metric ranks first; max: the highest")
    status: Literal["active", "finished"] = Field(
        description="active while any trial is in the system's hands, then finished")
    trials: int
    counts: dict[str, int] = Field(description="trials by status")
    duplicates: int = Field(0, description="trials not created: their request equalled an earlier trial's")
    priority: int = Field(0, description="every trial's: higher is admitted first")
    created_at: Timestamp


class SweepDetail(Sweep):
    """``GET /api/tunix/sweeps/{sweep_id}``: the sweep, its best trial and
    every trial."""

    spec: dict[str, Any] = Field(description="the request as validated, with the seeds chosen at submit")
    best: Optional[Trial] = Field(None, description="the completed trial with the lowest metric")
    runs: list[Trial] = Field(description="every trial, in the order they were made")
    early_stopped: int = Field(0, description="trials its early-stopping rule stopped")
    steps_saved: int = Field(0, description="training steps those trials did not run: planned minus done")


class SweepCreated(Sweep):
    """``POST /api/tunix/sweeps``: the sweep and its trials, as runs."""

    runs: list[Run] = Field(description="the trials created, in order")
    warnings: list[str] = Field([], description="what the sweep does that its request may not have meant "
                                                "(a field both in grid and random.space is drawn)")


class SweepPage(_Answer):
    data: list[Sweep]
    pagination: Pagination


class BulkMove(_Answer):
    """``POST /api/tunix/runs/cancel`` and ``/resume``: what the filter matched
    and where those runs went."""

    matched: int = Field(description="runs the filter matched that could make the move")
    moved: dict[str, int] = Field(description="runs by the status they reached")
    skipped: int = Field(0, description="runs the filter matched that are not the caller's (a member's bulk move), "
                                        "left as they were; 0 for an admin")
