"""Preference pairs as DPO's model inputs, and how a model ranks them.

A ``{prompt, chosen, rejected}`` record becomes three token rows, in the
layout tunix's ``DPOTrainer`` takes (``tunix.sft.dpo.dpo_trainer.TrainingInput``):
the prompt (``tokenizer.prompt_ids``: byte models ``BOS prompt SEP``, Gemma
its chat turns) left-padded, and each answer (``encode(answer) +
end_ids()``, trained on like an SFT completion) right-padded.  Every pair
of a dataset has the same widths (one compiled shape): the answers get the
longest answer's width, or half the window when the prompts leave less; the
prompts the rest.  A longer prompt keeps its first token (BOS) and its tail
(which opens the answer), as ``data.encode_example`` cuts an SFT record; a
longer answer keeps its head.  Masks come from the lengths, not from the
pad id (Gemma's pad id is a real token id 0).

``pair_logps`` is the held-out comparison's measure: each answer's summed
log-probability given its prompt (tunix's ``compute_logps``, the sum DPO's
loss compares), for a base model and a trained one.
"""

from dataclasses import dataclass

import numpy as np

from .data import held_out_mask
from .errors import DatasetError

#: The arrays of ``Pairs``, in ``TrainingInput``'s field names.
FIELDS = ("prompt_ids", "prompt_mask", "chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask")


@dataclass
class Pairs:
    prompt_ids: np.ndarray  # [N, P] int32, left-padded
    prompt_mask: np.ndarray  # [N, P] int32 (1 = a token)
    chosen_ids: np.ndarray  # [N, C] int32, right-padded
    chosen_mask: np.ndarray
    rejected_ids: np.ndarray
    rejected_mask: np.ndarray
    #: Pairs cut to fit the window (a prompt's middle, or an answer's tail).
    truncated: int = 0

    def __len__(self):
        return len(self.prompt_ids)

    @property
    def widths(self):
        """(prompt width, answer width): a batch is ``P + C`` tokens wide."""
        return int(self.prompt_ids.shape[1]), int(self.chosen_ids.shape[1])

    def take(self, idx):
        return Pairs(*(np.ascontiguousarray(getattr(self, f)[idx]) for f in FIELDS))

    def batch(self, idx, training_input):
        """``training_input`` (tunix's DPO ``TrainingInput`` class) of the pairs ``idx``."""
        return training_input(**{f: getattr(self, f)[idx] for f in FIELDS})


def _rows(seqs, width, left):
    ids = np.zeros((len(seqs), width), np.int32)
    mask = np.zeros((len(seqs), width), np.int32)
    for i, seq in enumerate(seqs):
        if left:
            ids[i, width - len(seq):], mask[i, width - len(seq):] = seq, 1
        else:
            ids[i, :len(seq)], mask[i, :len(seq)] = seq, 1
    return ids, mask


def encode_pairs(tokenizer, records, seq_len):
    """``Pairs`` of ``records`` (``tasks.datasets_jsonl.Record``s of kind
    preference), each at most ``seq_len`` tokens (prompt + answer)."""
    prompts = [tokenizer.prompt_ids(r.prompt) for r in records]
    end = tokenizer.end_ids()
    chosen = [tokenizer.encode(r.chosen) + end for r in records]
    rejected = [tokenizer.encode(r.rejected) + end for r in records]
    longest_prompt = max(len(p) for p in prompts)
    longest_answer = max(len(a) for a in chosen + rejected)
    answer_width = min(longest_answer, max(seq_len - longest_prompt, seq_len // 2))
    prompt_width = min(longest_prompt, seq_len - answer_width)
    truncated = 0
    for i in range(len(records)):
        cut = False
        if len(prompts[i]) > prompt_width:
            keep = prompt_width - 1  # after BOS: the prompt's tail
            prompts[i] = prompts[i][:1] + (prompts[i][len(prompts[i]) - keep:] if keep else [])
            cut = True
        if len(chosen[i]) > answer_width or len(rejected[i]) > answer_width:
            chosen[i], rejected[i] = chosen[i][:answer_width], rejected[i][:answer_width]
            cut = True
        truncated += cut
    arrays = [*_rows(prompts, prompt_width, left=True), *_rows(chosen, answer_width, left=False),
              *_rows(rejected, answer_width, left=False)]
    return Pairs(*arrays, truncated=truncated)


def load_pairs(run, tokenizer, seq_len):
    """``(train, held_out, records)`` of the run's preference dataset: every
    ``data.HOLD_OUT_EVERY``-th pair held out (the same ones whatever the
    seed; ``held_out`` None under ``data.MIN_EXAMPLES_TO_HOLD_OUT`` pairs).
    ``DatasetError`` for a dataset of another kind or a malformed line."""
    from .data import load_records

    if run.dataset_kind != "jsonl":
        raise DatasetError("method dpo needs preference pairs ({prompt, chosen, rejected}); the synthetic "
                           "dataset holds none")
    records = load_records(run.dataset_path, "dpo")
    pairs = encode_pairs(tokenizer, records, seq_len)
    out = held_out_mask(len(pairs))
    if out is None:
        return pairs, None, records
    train = pairs.take(~out)
    train.truncated = pairs.truncated
    return train, pairs.take(out), records


def pair_logps(model, pairs, batch_size):
    """``(chosen, rejected)``: each pair's summed answer log-probability
    under ``model`` (float arrays of ``len(pairs)``), in batches of
    ``batch_size`` (the training's shape; the last filled from the first
    pairs again), as tunix's ``DPOTrainer`` computes them."""
    import jax.numpy as jnp
    from tunix.rl import common
    from tunix.sft.dpo.dpo_trainer import compute_logps

    n, chosen, rejected = len(pairs), [], []
    for start in range(0, n, batch_size):
        idx = [i % n for i in range(start, start + batch_size)]
        b = pairs.take(idx)
        # As DPOTrainer._prepare_inputs: chosen then rejected, one forward pass.
        prompt_ids = jnp.concatenate([b.prompt_ids, b.prompt_ids])
        prompt_mask = jnp.concatenate([b.prompt_mask, b.prompt_mask])
        answer_ids = jnp.concatenate([b.chosen_ids, b.rejected_ids])
        answer_mask = jnp.concatenate([b.chosen_mask, b.rejected_mask])
        input_ids = jnp.concatenate([prompt_ids, answer_ids], axis=1)
        mask = jnp.concatenate([prompt_mask, answer_mask], axis=1)
        attention_mask = model.get_attention_mask(input_ids, inputs_mask=mask) \
            if hasattr(model, "get_attention_mask") else common.make_causal_attn_mask(mask)
        c, r = compute_logps(model, input_ids, common.build_positions_from_mask(mask), attention_mask,
                             answer_ids.shape[1], answer_mask)
        keep = min(batch_size, n - start)
        chosen.extend(np.asarray(c, np.float64)[:keep])
        rejected.extend(np.asarray(r, np.float64)[:keep])
    return np.asarray(chosen), np.asarray(rejected)


def preference_figures(chosen, rejected):
    """``{"preferred_rate", "mean_logp_margin"}``: the share of pairs whose
    chosen answer is the likelier, and the mean of chosen - rejected."""
    margin = chosen - rejected
    return {"preferred_rate": round(float(np.mean(margin > 0)), 4),
            "mean_logp_margin": round(float(np.mean(margin)), 4)}
