"""``Dpo``: preference tuning, DPO or ORPO, with tunix's ``DPOTrainer``.

Its data is the dataset's ``{prompt, chosen, rejected}`` pairs
(``preference_pairs.py``), every 10th held out; its loss is the spec's
``dpo.loss``:

* ``dpo`` (Rafailov et al. 2023): ``-log sigmoid(beta * (chosen log-ratio -
  rejected log-ratio))``, each answer's summed log-probability against a
  reference, the model before training: for a LoRA run the frozen base
  (``Method.frozen_base``: the adapted model's own arrays, no copy), for a
  full fine-tuning a copy taken before the trainer restores a checkpoint
  into the model (``nnx.clone``: a second set of weights in memory).  At
  step 1 the model is its reference, so the loss is ln 2 (0.6931).
* ``orpo`` (Hong et al. 2024): the chosen answer's per-token NLL plus
  ``lambda_orpo`` times the odds-ratio loss; no reference.

Its progress metrics are tunix's per-step means (``rewards/accuracy`` ...,
``reward_accuracy`` here: the share of the batch's pairs whose chosen
reward beats the rejected's); its report compares how the base model and
the trained one rank the held-out pairs (``held_out_preferences``), and,
with ``sample_held_out``, their greedy answers to the held-out prompts
scored by the dataset's check, the chosen answer as the reference
(``held_out_samples``, as SFT reports them).
"""

import dataclasses

from tasks.checks import check_of

from ..data import batch_indices, held_out_mask, learning_rate_at
from ..events import ABSENT, Progress, finite_or_none
from ..held_out_samples import HeldOutSamples
from ..preference_pairs import load_pairs, pair_logps, preference_figures
from .base import Method

#: Progress metric -> the name tunix's ``DPOTrainer`` logs it under (per step, the batch's mean).
METRICS = {"reward_accuracy": "rewards/accuracy", "reward_margin": "rewards/margin",
           "reward_chosen": "rewards/chosen", "reward_rejected": "rewards/rejected"}


class PreferenceSamples(HeldOutSamples):
    """``HeldOutSamples`` of a preference set: the held-out pairs' prompts,
    their chosen answer as the reference the check compares with."""

    def __init__(self, spec, records, model_spec, tokenizer):  # noqa: super().__init__ reads SFT records
        self.model_spec, self.tokenizer = model_spec, tokenizer
        self.check_name, self.check = check_of(spec.dataset_key)
        mask = held_out_mask(len(records)) if spec.sample_held_out else None
        held = [(r.prompt, r.chosen) for r, out in zip(records, mask if mask is not None else []) if out and r.prompt]
        self.records = held[:spec.sample_held_out]
        self.base = None


class Dpo(Method):
    name = "dpo"

    def load(self, seq_len):
        self.pairs, self.held_out, records = load_pairs(self.run, self.tokenizer, seq_len)
        self.num_examples = len(self.pairs)
        self.batch_seq_length = sum(self.pairs.widths)
        self.held_out_examples = 0 if self.held_out is None else len(self.held_out)
        self.samples = PreferenceSamples(self.spec, records, self.model_spec, self.tokenizer)
        self.reference = self.base_figures = None

    def describe_data(self):
        prompt, answer = self.pairs.widths
        return (f"{self.num_examples} preference pairs, {self.pairs.truncated} truncated, "
                f"{self.held_out_examples} held out; {self.spec.dpo.loss}, prompt {prompt} + answer {answer} tokens")

    def before_trainer(self, model):
        # Before the trainer exists: a resumed trainer restores its checkpoint into ``model``.
        if self.spec.dpo.loss == "dpo":
            if self.frozen_base is not None:
                self.reference = self.frozen_base
            else:
                from flax import nnx

                self.reference = nnx.clone(model)
        if self.held_out is not None:
            self.base_figures = preference_figures(*pair_logps(model, self.held_out, self.spec.batch_size))
        if self.samples:
            self.samples.before(model)
        return True

    def build_trainer(self, model, optimizer, config):
        from tunix.sft.dpo import dpo_trainer

        self._input = dpo_trainer.TrainingInput
        settings = self.spec.dpo
        dpo_config = dpo_trainer.DPOTrainingConfig(
            **{f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
            algorithm=settings.loss, beta=settings.beta, lambda_orpo=settings.lambda_orpo,
            label_smoothing=settings.label_smoothing)
        # The held-out pairs in batches of the training's size (one compiled
        # shape; the last batch is filled from the first pairs again).
        self.eval_batches = []
        if self.held_out is not None:
            n_eval, size = len(self.held_out), self.spec.batch_size
            self.eval_batches = [self.held_out.batch([i % n_eval for i in range(start, start + size)], self._input)
                                 for start in range(0, n_eval, size)]
        # DPOTrainer sets its own loss (dpo_loss_fn) and model-input function.
        return dpo_trainer.DPOTrainer(model, self.reference, optimizer, dpo_config)

    def batches(self, total_steps):
        for idx in batch_indices(self.num_examples, self.spec.batch_size, self.spec.seed, total_steps):
            yield self.pairs.batch(idx, self._input)

    def progress(self, ctx, step, loss, total_steps):
        grad_norm = self.last_metric(ctx, "grad_norm")
        metrics = {}
        for key, name in METRICS.items():
            value = self.last_metric(ctx, name)
            metrics[key] = None if value is None else finite_or_none(value)
        return Progress(step=step, total_steps=total_steps, loss=loss,
                        learning_rate=learning_rate_at(self.spec.learning_rate, total_steps, step - 1),
                        grad_norm=ABSENT if grad_norm is None else finite_or_none(grad_norm), metrics=metrics)

    def report(self, model, log):
        out = {}
        if self.held_out is not None:
            trained = preference_figures(*pair_logps(model, self.held_out, self.spec.batch_size))
            out["held_out_preferences"] = {"pairs": len(self.held_out), "base": self.base_figures,
                                             "trained": trained}
            log(f"held-out preferences ({len(self.held_out)} pairs): chosen preferred "
                f"{self.base_figures['preferred_rate']:.2f} (base) -> {trained['preferred_rate']:.2f}, mean "
                f"log-prob margin {self.base_figures['mean_logp_margin']:.3f} -> {trained['mean_logp_margin']:.3f}")
        if self.samples:
            out["held_out_samples"] = self.samples.after(model, log)
        return out
