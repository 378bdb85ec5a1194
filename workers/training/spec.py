"""Reading the job file: the run's stored spec and where the run is placed.

The worker (``workers/runner.py``) writes ``<run_dir>/training.json``::

    {"spec": <the run's config exactly as stored at submit (tasks/run_spec.py)>,
     "run":  {"run_id": str, "run_dir": str, "dataset_kind": "synthetic" | "jsonl",
              "dataset_path": str | null, "effective_max_seq_length": int}}

``spec`` is read with the API's own ``RunSpec`` (``RunSpec.stored``): every
field must be there, as the submit resolved it; there are no defaults here.
``run`` holds what the worker decided about this execution: the run's folder
(created if missing), the dataset's kind and file (required for ``jsonl``),
and the effective sequence length (``max_seq_length`` clamped to the model's
window).  Unknown keys in either part are errors.  What was read is written
to ``<run_dir>/manifest.json`` (``write_manifest``) before anything trains,
so a run's stored spec and the spec its training used can be compared.
"""

import json
from dataclasses import asdict, dataclass
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.artifacts import Scratch
from tasks.atomic import atomic_write
from tasks.run_spec import IncompleteSpec, RunSpec, field_errors

from .errors import ConfigError

#: Smallest effective sequence length (the spec's ``max_seq_length`` minimum).
MIN_SEQ_LENGTH = 8


class Placement(BaseModel):
    """Where and on what one execution of a run trains (the job's ``run``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    run_id: str
    run_dir: str = Field(min_length=1)
    dataset_kind: Literal["synthetic", "jsonl"]
    dataset_path: Optional[str]
    effective_max_seq_length: int = Field(ge=MIN_SEQ_LENGTH)
    #: The folder the worker made the model's weights ready in
    #: (``workers/weights/ensure.py``); None: ``weights_dir()`` looks for them.
    weights_dir: Optional[str] = None

    @model_validator(mode="after")
    def _jsonl_has_a_file(self):
        if self.dataset_kind == "jsonl" and not self.dataset_path:
            raise ValueError("'dataset_path' is required when dataset_kind is 'jsonl'")
        return self


@dataclass(frozen=True)
class Job:
    spec: RunSpec
    run: Placement


def _problems(exc):
    return "; ".join(f"{e['field']!r}: {e['message']}" for e in field_errors(exc))


def parse_job(obj):
    """The Job of a decoded job file (ConfigError if anything is off)."""
    if not isinstance(obj, dict) or set(obj) != {"spec", "run"}:
        raise ConfigError('the job file must be a JSON object {"spec": {...}, "run": {...}}')
    try:
        spec = RunSpec.stored(obj["spec"])
    except ValidationError as exc:
        raise ConfigError(f"invalid spec: {_problems(exc)}") from None
    except IncompleteSpec as exc:
        raise ConfigError(f"invalid spec: {exc}") from None
    try:
        run = Placement.model_validate(obj["run"])
    except ValidationError as exc:
        raise ConfigError(f"invalid run placement: {_problems(exc)}") from None
    return Job(spec, run)


def load_job(path):
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"job file {path} is not valid JSON: {exc}") from None
    return parse_job(obj)


def manifest(job, model_spec):
    """What this training read, as ``<run_dir>/manifest.json`` records it."""
    return {"run_id": job.run.run_id, "dry_run": False, "spec": job.spec.as_stored(),
            "run": job.run.model_dump(mode="json"), "model": asdict(model_spec)}


def write_manifest(job, model_spec):
    path = str(Scratch.at(job.run.run_dir).manifest)
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(manifest(job, model_spec), fh, indent=2, sort_keys=True)
    return path
