"""The schema of a run request: one place for fields, types, limits, defaults.

The API validates every submit against ``RunConfig`` and stores the result
(defaults filled in) as the run's ``config``; a worker executes the run from
that alone.
"""

import secrets
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError  # noqa: F401

#: Submit modes.
MODES = ("sync", "async")


class RunConfig(BaseModel):
    # Strict: "true" is not a boolean and 2.0 is not an integer; unknown
    # fields are mistakes, not extensions.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    dataset_key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    model_id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    dry_run: bool = True
    learning_rate: float = Field(2e-5, gt=0, le=1, allow_inf_nan=False)
    num_epochs: int = Field(3, ge=1, le=1000)
    batch_size: int = Field(8, ge=1, le=4096)
    max_seq_length: int = Field(2048, ge=8, le=32768)
    max_steps: Optional[int] = Field(None, ge=1, le=10_000_000)
    #: Chosen at submit when absent, so a resumed or repeated run is the same run.
    seed: Optional[int] = Field(None, ge=0, le=2**31 - 1)
    device: Literal["auto", "cpu", "gpu"] = "auto"
    #: Seconds the run may execute before it is stopped and ends ``timeout``;
    #: default ``DEFAULT_TIME_LIMIT_S``, at most ``RUN_TIME_LIMIT_S``.
    time_limit_s: Optional[int] = Field(None, ge=1)
    #: Save an orbax checkpoint every this many steps (and when stopped).
    checkpoint_every_steps: int = Field(10, ge=1, le=10_000_000)

    def resolved(self, settings):
        """The config as stored: every default filled in, including the seed.

        Raises:
          ValueError: ``time_limit_s`` is over the operator's maximum.
        """
        data = self.model_dump()
        if data["seed"] is None:
            data["seed"] = secrets.randbelow(2**31)
        if data["time_limit_s"] is None:
            data["time_limit_s"] = min(settings.default_time_limit_s, settings.run_time_limit_s)
        if data["time_limit_s"] > settings.run_time_limit_s:
            raise ValueError(f"at most {settings.run_time_limit_s} (the operator's maximum)")
        return data


def field_errors(exc):
    """``[{"field", "message"}]`` from a pydantic ``ValidationError``."""
    out = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "body"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        out.append({"field": field, "message": message})
    return out
