"""An export request and its answers: one schema from the API's body to the
OpenAPI document.

Strict as ``tasks/run_spec.py``: ``"2"`` is not an integer, unknown fields
are errors, every bad field is a 422 naming it.  An export runs on the
samples queue (``SAMPLES_QUEUE``: inference-like jobs, never a training's
slot).
"""

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError  # noqa: F401

from .jobs import JOB_FINAL, JOB_STATUSES
from .run_spec import OptionalJsonInt, field_errors  # noqa: F401
from .sample_spec import SAMPLES_QUEUE  # noqa: F401

#: Model families an export can write: every family of the catalog
#: (tasks/models.py).  The one list: the API refuses other families with 409
#: ``export_unsupported``; the export program writes each with
#: ``workers/exporting/<family>.py`` (its ``EXPORTERS``).
EXPORT_FAMILIES = ("gemma3", "llama3", "qwen3")
#: Statuses of an export, and their order: a job's (``tasks/jobs.py``).
EXPORT_STATUSES = JOB_STATUSES
#: Statuses an export ends in.
EXPORT_FINAL = JOB_FINAL


class ExportRequest(BaseModel):
    """The body of ``POST /api/tunix/runs/{run_id}/exports`` (``{}`` is the latest step)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    step: OptionalJsonInt = Field(None, ge=0, le=2**31 - 1,
                                  description="a recorded checkpoint step of the run; null: its latest")


# Answers (the OpenAPI document's schemas).

class Export(BaseModel):
    export_id: str
    status: Literal[EXPORT_STATUSES]
    run_id: str
    model_id: str
    step: int = Field(description="the checkpoint exported (a request for the latest names the step it found)")
    size_bytes: Optional[int] = Field(description="the tar's size, once completed")
    sha256: Optional[str] = Field(description="the tar's sha256, once completed")
    uri: Optional[str] = Field(description="the tar in the artifact store")
    download: Optional[str] = Field(description="the API path streaming the tar, once completed")
    manifest: Optional[dict] = Field(description="the folder's tunix_export.json (files with their sha256, the "
                                                 "LoRA merge, the loss check), less the run's spec")
    error: Optional[dict]
    worker_id: Optional[str]
    timings: Optional[dict] = Field(description="seconds: fetch, load, write, verify, upload, total")
    created_at: str
    started_at: Optional[str]
    finished_at: Optional[str]
    deleted_at: Optional[str] = Field(None, description="when its tar was removed from the store (DELETE); its "
                                                        "download is then a 410")
    reused: Optional[bool] = Field(None, description="in a POST's answer only: true (200) when a live export of the "
                                                     "run's step (pending, running or completed, not deleted) was "
                                                     "answered and nothing new was made; false (202): a new one")


class ExportList(BaseModel):
    data: list[Export]
