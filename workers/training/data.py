"""Tokenizers, the synthetic data, examples, batch order and the step plan (no jax).

Tokenisation is byte-level for the tiny models (256 ids, nothing to download):
id = UTF-8 byte, 0 = padding (NUL bytes are dropped from the text), and three
bytes that never occur in UTF-8 serve as specials: 0xFE = BOS, 0xFD = separator
between prompt and completion, 0xFF = EOS.  A JSONL record becomes
``BOS prompt SEP completion EOS``; the loss covers ``completion EOS`` only.

Sizes: the effective sequence length is the spec's ``max_seq_length`` clamped
to the model's window (128 for the tiny models; the worker decides it, the
job's ``effective_max_seq_length``); for a JSONL dataset the batches are
further cut to the longest tokenised example rounded up to a multiple of 8
(reported as ``batch_seq_length``; the synthetic set always fills the window).
The total number of steps is ``max_steps`` when given, else
``num_epochs * ceil(examples / batch_size)`` (a short last batch is filled
from the start of the epoch's order, so every batch has the same shape and
XLA compiles once); either way it is capped at ``MAX_TOTAL_STEPS`` (10,000:
~2-4 minutes for a tiny model on 2 CPU cores), and ``steps_capped`` in the
start event says so.

Determinism: the synthetic data and the per-epoch shuffle derive from the
seed, so the data order is a function of the seed: a resumed run sees the
same batches as an uninterrupted one.
"""

import math
from dataclasses import dataclass

import numpy as np

from .errors import DatasetError
from .spec import MIN_SEQ_LENGTH

#: Hard cap on the steps of one run (see the module docstring).
MAX_TOTAL_STEPS = 10_000
#: Examples the synthetic dataset holds (one epoch).
SYNTHETIC_EXAMPLES = 256
#: Every this-many-th example of a dataset is held out for evaluation
#: (``split_held_out``), when the dataset has at least ``MIN_EXAMPLES_TO_HOLD_OUT``.
HOLD_OUT_EVERY = 10
MIN_EXAMPLES_TO_HOLD_OUT = 20
#: Linear warm-up: min(MAX_WARMUP_STEPS, total_steps // 10) steps, then constant.
MAX_WARMUP_STEPS = 10

# Byte tokenizer specials (0xFD-0xFF never occur in UTF-8).
PAD_ID = 0
SEP_ID = 0xFD
BOS_ID = 0xFE
EOS_ID = 0xFF


class ByteTokenizer:
    """UTF-8 bytes as ids; see the module docstring for the specials."""

    vocab_size = 256
    pad_id, bos_id, sep_id, eos_id = PAD_ID, BOS_ID, SEP_ID, EOS_ID

    def encode(self, text):
        return [b for b in text.encode("utf-8") if b != 0]

    def decode(self, ids):
        return bytes(i for i in ids if 0 < i < SEP_ID).decode("utf-8", errors="replace")

    def prompt_ids(self, prompt):
        """``BOS prompt SEP`` (``BOS`` alone for no prompt): what a completion follows."""
        return [self.bos_id] + (self.encode(prompt) + [self.sep_id] if prompt else [])

    def end_ids(self):
        """What ends a completion (trained on, and where sampling stops)."""
        return [self.eos_id]


#: Gemma's chat turns (the format of google/gemma-3-*-it's chat template).
CHAT_USER = "<start_of_turn>user\n"
CHAT_MODEL = "<start_of_turn>model\n"
CHAT_END = "<end_of_turn>"


class SentencePieceTokenizer:
    """A model's own SentencePiece tokenizer (real presets); no separator id."""

    def __init__(self, path):
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor()
        self._sp.Load(path)
        self.vocab_size = self._sp.GetPieceSize()
        self.pad_id = max(self._sp.pad_id(), 0)
        self.bos_id = self._sp.bos_id()
        self.eos_id = self._sp.eos_id()
        self.sep_id = None

        #: Gemma's turn markers (user-defined pieces: one id each).
        self.start_of_turn_id = self._sp.PieceToId("<start_of_turn>")
        self.end_of_turn_id = self._sp.PieceToId("<end_of_turn>")

    def encode(self, text):
        return list(self._sp.EncodeAsIds(text))

    def decode(self, ids):
        return self._sp.DecodeIds([int(i) for i in ids])

    def prompt_ids(self, prompt):
        """A prompt in Gemma's chat format: ``<bos><start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n``;
        no prompt (plain text) is ``<bos>`` alone.  The base model was never
        trained on the turns, so an instruction fine-tune teaches them too."""
        if not prompt:
            return [self.bos_id]
        return [self.bos_id] + self.encode(f"{CHAT_USER}{prompt}{CHAT_END}\n{CHAT_MODEL}")

    def end_ids(self):
        """``<end_of_turn>`` then ``<eos>``: a model turn ends, and so does the text."""
        return [self.end_of_turn_id, self.eos_id]


def synthetic_texts(seed, count, length):
    """Counting sequences: cycles of digits or letters from a seeded start.

    Each next character follows from the previous one, so even a 2-layer
    model learns them within a few dozen steps: the loss falls from ~ln(256)
    towards zero.
    """
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 1])
    alphabets = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    texts = []
    for _ in range(count):
        alphabet = alphabets[int(rng.integers(len(alphabets)))]
        start = int(rng.integers(len(alphabet)))
        texts.append("".join(alphabet[(start + i) % len(alphabet)] for i in range(length)))
    return texts


def encode_example(tokenizer, prompt, completion, seq_len):
    """(ids, loss_mask, truncated) for one record, padded to seq_len.

    ``tokenizer.prompt_ids(prompt) completion tokenizer.end_ids()`` (byte
    models: ``BOS prompt SEP completion EOS``; Gemma: its chat turns); the
    mask marks the completion and its end only, never the prompt.  A too long
    record keeps the tail of its prompt (at most half the window, unless the
    completion leaves more room) and as much completion as fits.
    """
    prefix = tokenizer.prompt_ids(prompt)
    target = tokenizer.encode(completion) + tokenizer.end_ids()
    truncated = len(prefix) + len(target) > seq_len
    if truncated:
        # Keep BOS and the tail of the prompt, which opens the answer (SEP, or the model turn).
        room = max(seq_len // 2, seq_len - len(target))
        prefix = prefix[:1] + prefix[max(1, len(prefix) - (room - 1)):] if room > 1 else prefix[:1]
    target = target[: seq_len - len(prefix)]
    ids = prefix + target
    mask = [0] * len(prefix) + [1] * len(target)
    pad = seq_len - len(ids)
    return ids + [tokenizer.pad_id] * pad, mask + [0] * pad, truncated


@dataclass
class Examples:
    tokens: np.ndarray  # [N, L] int32
    mask: np.ndarray  # [N, L] int32 (1 = loss on this token)
    truncated: int


def build_examples(dataset_kind, dataset_path, seed, tokenizer, seq_len):
    if dataset_kind == "synthetic":
        records = [("", text) for text in synthetic_texts(seed, SYNTHETIC_EXAMPLES, seq_len)]
    else:
        records = read_records(dataset_kind, dataset_path)
    tokens, mask, truncated = [], [], 0
    for prompt, completion in records:
        ids, m, cut = encode_example(tokenizer, prompt, completion, seq_len)
        tokens.append(ids)
        mask.append(m)
        truncated += cut and dataset_kind == "jsonl"
    tokens, mask = np.asarray(tokens, np.int32), np.asarray(mask, np.int32)
    if dataset_kind == "jsonl":
        # No need to pad every batch to the window: cut it to the longest
        # example, rounded up to a multiple of 8.
        longest = int((tokens != tokenizer.pad_id).sum(axis=1).max())
        width = min(seq_len, max(MIN_SEQ_LENGTH, -(-longest // 8) * 8))
        tokens, mask = tokens[:, :width], mask[:, :width]
    return Examples(np.ascontiguousarray(tokens), np.ascontiguousarray(mask), truncated)


def held_out_mask(n):
    """Which of ``n`` examples are held out (every ``HOLD_OUT_EVERY``-th); None under
    ``MIN_EXAMPLES_TO_HOLD_OUT``."""
    if n < MIN_EXAMPLES_TO_HOLD_OUT:
        return None
    return np.arange(n) % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1


def load_records(dataset_path, method):
    """The JSONL dataset's records (``tasks.datasets_jsonl.Record``), of the
    kind ``method`` trains on; ``DatasetError`` for a malformed file or a
    file of another kind (a store object: no listing read it before)."""
    from tasks.datasets_jsonl import KIND_NAMES, load_jsonl
    from tasks.run_spec import METHOD_DATA

    try:
        records = load_jsonl(dataset_path)
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {dataset_path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise DatasetError(f"dataset {dataset_path}: {exc}") from None
    needs = METHOD_DATA[method]
    if records[0].kind != needs:
        raise DatasetError(f"dataset {dataset_path}: method {method} needs {KIND_NAMES[needs]}; the dataset "
                           f"holds {KIND_NAMES[records[0].kind]}")
    return records


def read_records(dataset_kind, dataset_path):
    """The dataset's ``(prompt, completion)`` records (none for the synthetic set, which has no prompts)."""
    if dataset_kind == "synthetic":
        return []
    return [(r.prompt, r.completion) for r in load_records(dataset_path, "sft")]


def split_held_out(examples):
    """``(train, held_out)``: every ``HOLD_OUT_EVERY``-th example (the 10th,
    the 20th ...) held out for the eval loss, the same ones for every run of
    the dataset whatever its seed, so trials of a sweep are ranked on the
    same data; ``held_out`` is None for a dataset under
    ``MIN_EXAMPLES_TO_HOLD_OUT`` (it all trains)."""
    out = held_out_mask(len(examples.tokens))
    if out is None:
        return examples, None
    part = lambda keep: Examples(np.ascontiguousarray(examples.tokens[keep]),  # noqa: E731
                                 np.ascontiguousarray(examples.mask[keep]), 0)
    train = part(~out)
    train.truncated = examples.truncated
    return train, part(out)


def batch_indices(num_examples, batch_size, seed, total_steps):
    """Yield ``total_steps`` index arrays: shuffled epochs, full batches only."""
    per_epoch = math.ceil(num_examples / batch_size)
    step, epoch = 0, 0
    while step < total_steps:
        order = np.random.default_rng([seed & 0xFFFFFFFF, 2, epoch]).permutation(num_examples)
        if len(order) < per_epoch * batch_size:
            order = np.resize(order, per_epoch * batch_size)  # wrap around
        for b in range(per_epoch):
            if step >= total_steps:
                return
            yield order[b * batch_size:(b + 1) * batch_size]
            step += 1
        epoch += 1


def plan_steps(spec, num_examples):
    """(total_steps, batches_per_epoch, capped) for the run spec ``spec``."""
    per_epoch = math.ceil(num_examples / spec.batch_size)
    wanted = spec.max_steps if spec.max_steps is not None else spec.num_epochs * per_epoch
    return min(wanted, MAX_TOTAL_STEPS), per_epoch, wanted > MAX_TOTAL_STEPS


def warmup_steps(total_steps):
    return min(MAX_WARMUP_STEPS, total_steps // 10)


def learning_rate_at(learning_rate, total_steps, step_index):
    """The learning rate of the update with 0-based index ``step_index``."""
    warm = warmup_steps(total_steps)
    if warm and step_index < warm:
        return learning_rate * (step_index + 1) / (warm + 1)
    return learning_rate
