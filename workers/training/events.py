"""The training's output protocol on stdout and stderr.

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

``step`` is 1-based (the number of optimizer updates done); ``loss`` is the
batch's mean token cross-entropy; ``learning_rate`` is the rate of that update
(linear warm-up, then constant); ``grad_norm`` is the global norm before
clipping to 1.0.  The start event also carries ``model_id``, ``start_step``
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
null for a checkpoint written without that record).

On failure the last line of stderr is ``error: <Type>: <message>`` (one line;
Type is ConfigError, DatasetError, WeightsNotFound, DeviceUnavailable,
Terminated or the unexpected exception's class).
"""

import json
import math
import os
import sys

#: Prefix of a machine-readable line (``workers/runner.py`` reads it).
EVENT_PREFIX = "@@tunix "
#: Human "step S/N ..." log lines one run prints at most (every step of a short run).
MAX_STEP_LOG_LINES = 200


def emit(event):
    """Print one event line."""
    write_stdout(EVENT_PREFIX + json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n")


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
