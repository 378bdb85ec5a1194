"""The training's output protocol on stdout and stderr, and its one parser.

Machine-readable events go to stdout, one per line, each ``@@tunix `` +
compact JSON, flushed at once (other stdout lines are human logs: what is
trained, ``step S/N loss L lr LR grad_norm G`` after each step, thinned to at
most ``MAX_STEP_LOG_LINES`` per run plus the last, and how the run stopped)::

    {"event":"start","total_steps":N,"param_count":P,"device":"cpu",...}
    {"event":"progress","step":S,"total_steps":N,"loss":L,"learning_rate":LR,"grad_norm":G}
    {"event":"checkpoint","step":S,"path":"<run_dir>/checkpoints"}
    {"event":"eval","step":S,"eval_loss":E,"examples":K}
    {"event":"checkpoint","step":S,"path":"<run_dir>/checkpoints","final":true,"reason":"sigterm"}
    {"event":"result","final_loss":L,"steps":S,"total_steps":N,"duration_s":T,"effective_max_seq_length":M,...}

Each kind is one frozen dataclass below (``Start``, ``Progress``,
``Checkpoint``, ``Eval``, ``Result``); its fields are the line's keys, in
the line's order.  ``emit`` writes one, ``parse_event`` reads one back: the
training writes them, ``workers/runner.py`` (``_Stream``) and
``workers/monitor.py`` read them, by type.

``step`` is 1-based (the number of optimizer updates done); ``loss`` is the
batch's mean token cross-entropy; ``learning_rate`` is the rate of that update
(linear warm-up, then constant); ``grad_norm`` is the global norm before
clipping to 1.0 (absent when tunix recorded none for the step; null when not
finite); ``metrics`` (absent for SFT) the method's own figures of the step,
``{name: number or null}`` (DPO: ``reward_accuracy``, ``reward_margin``;
GRPO: ``reward_mean``, ``reward_std``, ``kl``, ``completion_length``), and
``samples`` (GRPO, at logged steps) a few ``{prompt, completion, reward}``.  The start event also carries ``model_id``, ``start_step``
(> 0 after a resume), ``batches_per_epoch``, ``num_examples``,
``effective_max_seq_length``, ``batch_seq_length``, ``batch_size`` and
``steps_capped``; the result event ``batch_seq_length``, ``param_count`` and
``start_step``, ``final_eval_loss`` (the last eval event's), ``eval_step`` and
``held_out_examples``.  An eval event is the mean loss over the dataset's
held-out examples (every 10th of a dataset of at least 20; none for a
smaller one), after each checkpoint step and the last.  ``final_loss`` is the training loss of the last step (the
loss of the batch that step trained on, before its update).  A run started
again on a run_dir whose checkpoint is already at the last step trains
nothing: it emits no progress event and reports the loss that was recorded
with that checkpoint when it was saved (``final_loss_from: "checkpoint"``;
null for a checkpoint written without that record).  The result's
``held_out_samples`` (``held_out_samples.py``) is a plain dict, absent when
no prompt was sampled; the runner adds its own keys (``checkpoints``,
``exit_code``, ...) to the result it records, not to the event.

Reading (``parse_event``), for a worker and a training of different
versions: a line without the prefix, or whose JSON is malformed or not an
object, is no event (None: the caller keeps it as a log line, as before the
parser).  A known kind with keys this version does not know keeps them in
``extra`` (written back after the known keys, so the line round-trips); a
known kind missing one of its required keys, or an unknown kind, becomes an
``Unknown`` holding the raw dict, which readers skip.  Values are not
type-checked: the training is the only writer.

On failure the last line of stderr is ``error: <Type>: <message>`` (one line;
Type is ConfigError, DatasetError, WeightsNotFound, DeviceUnavailable,
Terminated or the unexpected exception's class).
"""

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: Prefix of a machine-readable line (``workers/runner.py`` reads it).
EVENT_PREFIX = "@@tunix "
#: Human "step S/N ..." log lines one run prints at most (every step of a short run).
MAX_STEP_LOG_LINES = 200


class _Absent:
    """The value of an optional key the line does not carry (not null: absent)."""

    def __repr__(self):
        return "ABSENT"

    def __bool__(self):
        return False


#: An optional field's default: the key is left out of the line.
ABSENT = _Absent()


@dataclass(frozen=True)
class Event:
    """One event line.  Subclasses name their ``kind`` (the ``event`` key)."""

    kind: ClassVar[str] = ""

    def to_dict(self):
        """The line's JSON object: ``event`` first, then the fields in order,
        absent optional ones left out, then ``extra``."""
        out = {"event": self.kind}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is not ABSENT:
                out[f.name] = value
        out.update(getattr(self, "extra", None) or {})
        return out

    def line(self):
        """The line on stdout, without its newline."""
        return EVENT_PREFIX + json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data):
        """The event of ``data`` (its ``event`` key already matched); KeyError
        naming the first required key it lacks."""
        known, kwargs = set(), {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            known.add(f.name)
            if f.name in data:
                kwargs[f.name] = data[f.name]
            elif f.default is dataclasses.MISSING:
                raise KeyError(f.name)
        extra = {k: v for k, v in data.items() if k != "event" and k not in known}
        return cls(**kwargs, extra=extra)


@dataclass(frozen=True)
class Start(Event):
    kind: ClassVar[str] = "start"
    total_steps: int
    param_count: int
    trainable_params: int
    device: str
    model_id: str
    start_step: int
    batches_per_epoch: int
    num_examples: int
    effective_max_seq_length: int
    batch_seq_length: int
    batch_size: int
    steps_capped: bool
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Progress(Event):
    kind: ClassVar[str] = "progress"
    step: int
    total_steps: int
    loss: float
    learning_rate: float
    grad_norm: Any = ABSENT  # float, None (not finite) or ABSENT
    metrics: Any = ABSENT  # the method's own figures, {name: float or None} (methods/)
    samples: Any = ABSENT  # GRPO: a few sampled completions, [{prompt, completion, reward}]
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Checkpoint(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str
    final: Any = ABSENT  # True for the SIGTERM one
    reason: Any = ABSENT  # "sigterm"
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Eval(Event):
    kind: ClassVar[str] = "eval"
    step: int
    eval_loss: Any  # float, or None when not finite
    examples: int
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Result(Event):
    kind: ClassVar[str] = "result"
    final_loss: Any
    steps: int
    total_steps: int
    duration_s: float
    effective_max_seq_length: int
    batch_seq_length: int
    param_count: int
    trainable_params: int
    start_step: int
    final_eval_loss: Any
    eval_step: Any
    held_out_examples: int
    final_loss_from: Any = ABSENT  # "checkpoint"
    held_out_samples: Any = ABSENT  # dict (held_out_samples.py)
    held_out_preferences: Any = ABSENT  # dict: DPO's held-out pairs, base vs trained (methods/dpo.py)
    held_out_rewards: Any = ABSENT  # dict: GRPO's held-out prompts, base vs trained (methods/grpo.py)
    grpo_timing: Any = ABSENT  # dict: GRPO's step time and its share spent sampling (methods/grpo.py)
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Unknown(Event):
    """A line this version cannot read as one of its kinds: an unknown
    ``event`` (or none), or a known one missing a required key (``problem``
    says which).  ``data`` is the line's object, unchanged."""

    data: dict
    problem: str = ""

    @property
    def kind(self):
        """The line's own ``event`` when it is a string, else None."""
        kind = self.data.get("event")
        return kind if isinstance(kind, str) else None

    def to_dict(self):
        return dict(self.data)


#: The kinds this version reads, by their ``event`` key.
KINDS = {cls.kind: cls for cls in (Start, Progress, Checkpoint, Eval, Result)}


def parse_event(line):
    """The event on ``line`` (with or without its trailing newline); None
    when it is not an event line: no ``@@tunix `` prefix, malformed JSON or
    JSON that is not an object.  Never raises for any string."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        data = json.loads(line[len(EVENT_PREFIX):])
    except (ValueError, RecursionError):  # malformed; or nested past Python's recursion limit
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("event")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return Unknown(data)
    try:
        return cls.from_dict(data)
    except KeyError as exc:
        return Unknown(data, problem=f"{cls.kind} event without {exc.args[0]!r}")


def emit(event):
    """Print one event line: an ``Event``, or a plain dict (the sampling
    program's result, ``workers/sampling/__main__.py``, which is not a
    training event)."""
    line = event.line() if isinstance(event, Event) else \
        EVENT_PREFIX + json.dumps(event, separators=(",", ":"), allow_nan=False)
    write_stdout(line + "\n")


def log(line):
    """Print one human log line."""
    write_stdout(f"{line}\n")


def write_stdout(text):
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The worker reading our output died (SIGKILL): its SIGTERM
        # (PR_SET_PDEATHSIG) is on its way.  Go on without an audience so the
        # training still stops after its step and checkpoints, instead of
        # dying here with nothing saved since the last periodic checkpoint.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)


def one_line(text, limit=2000):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_error(error):
    """The ``error: <Type>: <message>`` line, last on stderr."""
    sys.stdout.flush()
    sys.stderr.write(f"error: {type(error).__name__}: {one_line(error) or 'interrupted'}\n")
    sys.stderr.flush()


def finite_or_none(value):
    """``value`` as a float for an event; None when not finite (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None
