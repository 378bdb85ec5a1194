"""``Session``: what the tunix hooks and the checkpoint save hook share
while a training runs, driven here without tunix by a stand-in method."""

import math
import threading
from types import SimpleNamespace

import pytest

from workers.training.events import ABSENT, Eval, Progress
from workers.training.methods import METHODS, method_for
from workers.training.methods.sft import Sft
from workers.training.session import Session


class Method:
    """A method whose progress is its step's loss and a fixed learning rate."""

    held_out_examples = 3
    eval_batches = ["b1", "b2"]

    def progress(self, ctx, step, loss, total_steps):
        return Progress(step=step, total_steps=total_steps, loss=loss, learning_rate=0.5,
                        grad_norm=ABSENT if step == 2 else 1.25)


def session(total_steps=4, start_step=0, every=2):
    events, lines = [], []
    trainer = SimpleNamespace(train_steps=start_step)
    return Session(Method(), trainer, total_steps=total_steps, start_step=start_step, checkpoint_every=every,
                   checkpoint_dir="/r/checkpoints", on_event=events.append, log=lines.append,
                   stop=threading.Event()), events, lines


def test_a_step_end_reports_the_methods_progress_and_remembers_the_step():
    # Given a session of 4 steps
    s, events, lines = session()
    # When two steps end
    s.step_end(None, 1, 2.5)
    s.step_end(None, 2, 2.25)
    # Then their progress events went out, the last one is remembered, and the log says each step
    assert events == [Progress(step=1, total_steps=4, loss=2.5, learning_rate=0.5, grad_norm=1.25),
                      Progress(step=2, total_steps=4, loss=2.25, learning_rate=0.5)]
    assert (s.last_step, s.last_loss) == (2, 2.25)
    assert lines == ["step 1/4 loss 2.5000 lr 0.5 grad_norm 1.250", "step 2/4 loss 2.2500 lr 0.5"]


def test_a_loss_that_is_not_finite_fails_the_step():
    s, events, _ = session()
    with pytest.raises(FloatingPointError, match="loss became nan at step 3"):
        s.step_end(None, 3, math.nan)
    assert events == [] and s.last_loss is None


def test_the_step_log_is_thinned_to_its_bound_plus_the_last_step():
    s, _, lines = session(total_steps=1000)
    for step in range(1, 1001):
        s.step_end(None, step, 1.0)
    assert len(lines) == 200 and lines[-1].startswith("step 1000/1000 ")


def test_an_eval_reports_the_mean_over_the_held_out_batches():
    s, events, lines = session()
    s.eval_end(SimpleNamespace(train_steps=2), 5.0)
    assert events == [Eval(step=2, eval_loss=2.5, examples=3)] and (s.eval_loss, s.eval_step) == (2.5, 2)
    assert lines == ["step 2 eval loss 2.5000 (3 held-out examples)"]
    s.eval_end(SimpleNamespace(train_steps=4), math.inf)
    assert events[-1] == Eval(step=4, eval_loss=None, examples=3) and lines[-1] == "step 4 eval loss not finite"


def test_an_eval_is_due_at_checkpoint_steps_and_the_last_but_not_where_a_resume_starts():
    s, _, _ = session(total_steps=5, start_step=2, every=2)
    due = []
    for step in range(2, 6):
        s.trainer.train_steps = step
        due.append((step, s.eval_due(), bool(s.eval_ds())))
    assert due == [(2, False, False), (3, False, False), (4, True, True), (5, True, True)]


def test_a_spec_that_names_no_method_trains_with_sft_and_each_method_by_its_name():
    from workers.training.methods.dpo import Dpo
    from workers.training.methods.grpo import Grpo

    assert method_for(SimpleNamespace()) is Sft and METHODS == {"sft": Sft, "dpo": Dpo, "grpo": Grpo}
    assert method_for(SimpleNamespace(method="dpo")) is Dpo and method_for(SimpleNamespace(method="grpo")) is Grpo
