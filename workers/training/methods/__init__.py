"""Training methods: what a method supplies to a training, as named hooks.

``workers/training/loop.py`` runs every training the same way (weights,
tokenizer, model, LoRA, optimizer, checkpoints, SIGTERM, events); a method
supplies the parts that differ from one way of training to another.  The
seam, hook by hook, in the order ``train()`` calls them:

* ``load(seq_len)``: its data.  Reads the dataset into training and
  held-out inputs and sets ``num_examples``, ``batch_seq_length`` and
  ``held_out_examples`` (the start and result events carry them);
  ``describe_data()`` is their part of the opening log line.
* ``before_trainer(model)``: the base model, before the trainer exists (a
  resumed trainer restores its checkpoint into it).  True when it did work
  (the loop then checks for a stop).
* ``build_trainer(model, optimizer, config)``: its model inputs and its
  loss.  The tunix trainer, with its model-input function and loss function
  set; ``eval_batches`` (the held-out inputs, a list, empty for none) is
  ready once it returns.
* ``batches(total_steps)``: its training inputs, one per step, in the
  seed's order (a resume skips the ones already trained).
* ``progress(ctx, step, loss, total_steps)``: its metrics per step, as the
  step's ``events.Progress``.
* ``report(model, log)``: its end-of-run report, the result event's extra
  fields (a dict; free-form parts stay plain dicts).

SFT (``sft.Sft``), DPO/ORPO (``dpo.Dpo``) and GRPO (``grpo.Grpo``) exist; a method joins by subclassing ``Method``
in a module of its own here and naming itself in ``METHODS``.
"""

from .base import Method  # noqa: F401 - the base every method subclasses
from .dpo import Dpo
from .grpo import Grpo
from .sft import Sft

#: The methods, by name.  A spec names none yet: every training is SFT.
METHODS = {Sft.name: Sft, Dpo.name: Dpo, Grpo.name: Grpo}
#: The method of a spec that names none.
DEFAULT_METHOD = Sft.name


def method_for(spec):
    """The ``Method`` class that trains ``spec``."""
    return METHODS[getattr(spec, "method", None) or DEFAULT_METHOD]
