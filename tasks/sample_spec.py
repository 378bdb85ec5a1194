"""A sample request: one schema from the API's body to the worker's job.

Strict as ``tasks/run_spec.py``: ``"2"`` is not an integer (``2.0`` is),
unknown fields are errors, every bad field is a 422 naming it.  The API
stores the request *resolved* (``SampleRequest.resolved``: every default
filled in, the seed chosen), so a sample can be repeated exactly: the same
checkpoint, prompts and parameters give the same text (greedy always; a
temperature above 0 with the same seed).

The answer's shapes (``Sample``, ``SampleList``, ``SampleAccepted``) are
here too, for the OpenAPI document (``app/samples.py``).
"""

import secrets
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError  # noqa: F401

from .jobs import JOB_FINAL, JOB_STATUSES
from .run_spec import JsonInt, OptionalJsonInt, field_errors  # noqa: F401

#: The dramatiq queue of sample requests (``workers/sampling``): one JAX
#: subprocess each, seconds to minutes; a queue of its own, so a generation
#: never takes a training's slot (``TRAIN_CONCURRENCY``) nor waits behind
#: one.  Named here, not in ``tasks/broker.py``, so the worker middleware can
#: tell a sample's message from a run's without building a broker.
SAMPLES_QUEUE = "tunix-samples"

#: Prompts one request may carry (one batch in the sampler).
MAX_PROMPTS = 16
#: Longest prompt, in characters.
MAX_PROMPT_CHARS = 4000
#: Most tokens generated per prompt.
MAX_NEW_TOKENS = 512
#: Highest temperature (0 is greedy).
MAX_TEMPERATURE = 2.0
#: Statuses of a sample, and their order: a job's (``tasks/jobs.py``).
SAMPLE_STATUSES = JOB_STATUSES
#: Statuses a sample ends in.
SAMPLE_FINAL = JOB_FINAL


#: One prompt: 1 to MAX_PROMPT_CHARS characters, no NUL (PostgreSQL's jsonb
#: cannot hold one, and no tokenizer here keeps it; a lone surrogate is
#: refused by pydantic's strict str).  A blank prompt is a prompt.
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=r"^[^\x00]*$")]


class SampleRequest(BaseModel):
    """The body of ``POST /api/tunix/runs/{run_id}/samples`` (and of a base
    model's ``POST /api/tunix/models/{model_id}/samples``, where ``step``
    must be absent or null)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    prompts: list[Prompt] = Field(min_length=1, max_length=MAX_PROMPTS,
                               description=f"1 to {MAX_PROMPTS} prompts, each rendered as the training renders a "
                                           "prompt (byte models: BOS prompt SEP; Gemma: its chat turns)")
    step: OptionalJsonInt = Field(None, ge=0, le=2**31 - 1,
                                  description="a recorded checkpoint step of the run; null: its latest")
    max_new_tokens: JsonInt = Field(64, ge=1, le=MAX_NEW_TOKENS, description="tokens generated per prompt, at most")
    temperature: float = Field(0.0, ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False,
                               description="0: greedy (the default); above 0: sampled from the seed")
    seed: OptionalJsonInt = Field(None, ge=0, le=2**31 - 1, description="chosen at submit when absent, and stored")

    def resolved(self):
        """The request as stored: the seed chosen when absent."""
        data = self.model_dump(mode="json")
        if data["seed"] is None:
            data["seed"] = secrets.randbelow(2**31)
        return data


class BaseSampleRequest(SampleRequest):
    """The body of ``POST /api/tunix/models/{model_id}/samples``: a base
    model has no checkpoints, so no ``step`` (absent or null)."""

    step: None = Field(None, description="a base model has no checkpoints: absent or null")


# Answers (the OpenAPI document's schemas).

class SampleOutput(BaseModel):
    prompt: str
    text: str = Field(description="the completion, its end token(s) left out")
    token_ids: list[int]
    num_tokens: int
    stopped: Literal["end", "length"] = Field(description="end: the model ended it; length: max_new_tokens reached")


class Sample(BaseModel):
    sample_id: str
    status: Literal[SAMPLE_STATUSES]
    run_id: Optional[str] = Field(description="null for a base model's sample")
    model_id: str
    step: Optional[int] = Field(description="the checkpoint sampled; null for a base model")
    params: dict = Field(description="the request as stored: prompts, max_new_tokens, temperature, seed")
    outputs: Optional[list[SampleOutput]]
    error: Optional[dict]
    worker_id: Optional[str] = Field(description="host:pid of the worker process that generated it")
    timings: Optional[dict] = Field(description="seconds: load (model and checkpoint), generate, total; "
                                                "ms_per_token")
    created_at: str
    started_at: Optional[str]
    finished_at: Optional[str]


class SampleList(BaseModel):
    data: list[Sample]
