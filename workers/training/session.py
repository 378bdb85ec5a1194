"""``Session``: what one training process knows while it trains.

The tunix hooks (``tunix_hooks``) and the checkpoint save hook
(``checkpoints.py``) share it: the last step reported and its loss, the last
eval loss and its step, and whether the SIGTERM stop is under way.  It turns
a method's step (``Method.progress``) and tunix's eval sum into events and
log lines, and says when an eval is due.
"""

import math

from .errors import StopTraining
from .events import ABSENT, MAX_STEP_LOG_LINES, Eval, finite_or_none


class Session:
    def __init__(self, method, trainer, *, total_steps, start_step, checkpoint_every, checkpoint_dir, on_event,
                 log, stop):
        self.method, self.trainer = method, trainer
        self.total_steps, self.start_step, self.checkpoint_every = total_steps, start_step, checkpoint_every
        self.checkpoint_dir, self.on_event, self.log, self.stop = checkpoint_dir, on_event, log, stop
        #: The last step whose progress was reported, and its training loss (None before one).
        self.last_step, self.last_loss = start_step, None
        #: The last eval event's loss and step (None before one).
        self.eval_loss = self.eval_step = None
        #: True once the SIGTERM stop runs: its saves are not reported as periodic checkpoints.
        self.stopping = False
        self.log_every = max(1, math.ceil(total_steps / MAX_STEP_LOG_LINES))

    def step_end(self, ctx, train_step, train_loss):
        """A step's loss is known: report its progress (tunix calls this one
        step late, as it overlaps metric I/O with the next step, and for the
        last step from ``trainer.close()``)."""
        loss, step = float(train_loss), int(train_step)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {train_step}")
        event = self.method.progress(ctx, step, loss, self.total_steps)
        self.last_loss, self.last_step = loss, step
        self.on_event(event)
        if step % self.log_every == 0 or step == self.total_steps:
            grad_norm = event.grad_norm
            self.log(f"step {step}/{self.total_steps} loss {loss:.4f} lr {event.learning_rate:.3g}"
                     + (f" grad_norm {grad_norm:.3f}" if grad_norm is not None and grad_norm is not ABSENT else ""))

    def eval_end(self, ctx, eval_loss):
        """The held-out batches were evaluated after step ``ctx.train_steps``
        (tunix hands the sum over them): report their mean."""
        step, examples = int(ctx.train_steps), self.method.held_out_examples
        mean = finite_or_none(float(eval_loss) / len(self.method.eval_batches))
        self.eval_loss, self.eval_step = mean, step
        self.on_event(Eval(step=step, eval_loss=mean, examples=examples))
        self.log(f"step {step} eval loss {mean:.4f} ({examples} held-out examples)"
                 if mean is not None else f"step {step} eval loss not finite")

    def eval_due(self):
        """At every checkpoint step and the last (not the step a resume starts at)."""
        step = int(self.trainer.train_steps)
        return step != self.start_step and (step % self.checkpoint_every == 0 or step == self.total_steps)

    def eval_ds(self):
        """tunix's ``eval_ds``: None when the method holds nothing out."""
        return HeldOut(self.method.eval_batches, self.eval_due) if self.method.eval_batches else None


class HeldOut:
    """The held-out batches as tunix's ``eval_ds``: tunix evaluates after a
    step when ``eval_ds`` is truthy (and before the first), so this one is
    truthy only when ``due()``: at every checkpoint step and the last."""

    def __init__(self, batches, due):
        self.batches, self.due = batches, due

    def __bool__(self):
        return self.due()

    def __iter__(self):
        return iter(self.batches)


def tunix_hooks(session):
    """The tunix ``TrainingHooks`` that hand a training's moments to ``session``."""
    from tunix.sft import hooks

    class Hooks(hooks.TrainingHooks):
        def on_train_start(self, ctx):
            pass

        def on_train_end(self, ctx):
            pass

        def on_train_step_start(self, ctx):
            # Between two steps: the only place the loop can be left cleanly
            # (the model and optimizer hold exactly ``ctx.train_steps`` updates).
            if session.stop.is_set():
                raise StopTraining()

        def on_eval_step_start(self, ctx):
            pass

        def on_eval_step_end(self, ctx, eval_loss):
            session.eval_end(ctx, eval_loss)

        def on_train_step_end(self, ctx, train_step, train_loss):
            session.step_end(ctx, train_step, train_loss)

    return Hooks()
