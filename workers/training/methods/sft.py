"""``Sft``: supervised fine-tuning, tunix's ``PeftTrainer`` on token cross-entropy.

Its data is the dataset's examples (prompt/completion or plain text, the
prompt's tokens masked out of the loss: ``data.py``), every 10th held out
for the eval loss; its loss is ``PeftTrainer``'s default (the mean token
cross-entropy over unmasked tokens); its progress metrics are the learning
rate and the gradient's global norm; its report is the held-out samples
(``held_out_samples.py``): the base answers before the trainer is built,
the trained model after the last step.
"""

from ..data import batch_indices, build_examples, learning_rate_at, split_held_out
from ..events import ABSENT, Progress, finite_or_none
from ..held_out_samples import HeldOutSamples
from .base import Method


class Sft(Method):
    name = "sft"

    def load(self, seq_len):
        run = self.run
        self.examples, self.held_out = split_held_out(
            build_examples(run.dataset_kind, run.dataset_path, self.spec.seed, self.tokenizer, seq_len))
        self.batch_seq_length = int(self.examples.tokens.shape[1])  # <= seq_len (JSONL: cut to the longest example)
        self.num_examples = len(self.examples.tokens)
        self.held_out_examples = 0 if self.held_out is None else len(self.held_out.tokens)

    def describe_data(self):
        return (f"{self.num_examples} examples, {self.examples.truncated} truncated, "
                f"{self.held_out_examples} held out")

    def before_trainer(self, model):
        # The base's answers, before the trainer restores a checkpoint into the model.
        self.samples = HeldOutSamples(self.spec, self.run, self.model_spec, self.tokenizer)
        if not self.samples:
            return False
        self.samples.before(model)
        return True

    def build_trainer(self, model, optimizer, config):
        from tunix.sft import peft_trainer
        from tunix.sft import utils as sft_utils

        self._input = peft_trainer.TrainingInput
        pad_id = self.tokenizer.pad_id

        def gen_model_input(x):
            pad_mask = x.input_tokens != pad_id
            return {
                "input_tokens": x.input_tokens,
                "input_mask": x.input_mask,
                "positions": sft_utils.build_positions_from_mask(pad_mask),
                "attention_mask": sft_utils.make_causal_attn_mask(pad_mask),
            }

        # The held-out examples in batches of the training's size (one
        # compiled shape; the last batch is filled from the first examples again).
        self.eval_batches = []
        if self.held_out is not None:
            n_eval, size = len(self.held_out.tokens), self.spec.batch_size
            for start in range(0, n_eval, size):
                idx = [i % n_eval for i in range(start, start + size)]
                self.eval_batches.append(self._input(input_tokens=self.held_out.tokens[idx],
                                                     input_mask=self.held_out.mask[idx]))
        # No ``with_loss_fn``: PeftTrainer's default loss is SFT's.
        return peft_trainer.PeftTrainer(model, optimizer, config).with_gen_model_input_fn(gen_model_input)

    def batches(self, total_steps):
        for idx in batch_indices(self.num_examples, self.spec.batch_size, self.spec.seed, total_steps):
            yield self._input(input_tokens=self.examples.tokens[idx], input_mask=self.examples.mask[idx])

    def progress(self, ctx, step, loss, total_steps):
        grad_norm = self.last_metric(ctx, "grad_norm")
        # None: tunix recorded none for the step, and the key is left out.
        grad_norm = ABSENT if grad_norm is None else finite_or_none(grad_norm)
        return Progress(step=step, total_steps=total_steps, loss=loss,
                        learning_rate=learning_rate_at(self.spec.learning_rate, total_steps, step - 1),
                        grad_norm=grad_norm)

    def report(self, model, log):
        return {"held_out_samples": self.samples.after(model, log)} if self.samples else {}
