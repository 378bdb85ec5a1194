"""One Tunix SFT training, run as its own process.

    python -m workers.train CONFIG_JSON_PATH

Every training runs in a fresh subprocess: JAX state is per process, and
tunix's ``MetricsLogger.close()`` clears every ``jax.monitoring`` listener of
the process it runs in.

Config (JSON object; unknown keys are ignored):

    run_id                  str, informational
    model_id                str, a key of tasks.models.MODELS           (required)
    dataset_key             str, informational
    dataset_kind            "synthetic" | "jsonl"                       (required)
    dataset_path            str, the JSONL file (jsonl only)
    learning_rate           float > 0          (default 1e-3)
    batch_size              int 1..4096        (default 8)
    max_seq_length          int >= 1           (default 64; clamped, see below)
    num_epochs              int 1..10000       (default 1)
    max_steps               int >= 1 or null   (default null)
    seed                    int                (default 0)
    device                  "auto" | "cpu" | "gpu"   (default "auto")
    run_dir                 str, created if missing                    (required)
    checkpoint_every_steps  int >= 1 or null   (default null)

Output protocol: machine-readable events on stdout, one per line, each
``@@tunix `` + compact JSON, flushed at once (other stdout lines are human
logs: what is trained, ``step S/N loss L lr LR grad_norm G`` after each step,
thinned to at most ``MAX_STEP_LOG_LINES`` per run plus the last, and how the
run stopped)::

    {"event":"start","total_steps":N,"param_count":P,"device":"cpu",...}
    {"event":"progress","step":S,"total_steps":N,"loss":L,"learning_rate":LR,"grad_norm":G}
    {"event":"checkpoint","step":S,"path":"<run_dir>/checkpoints"}   (only with checkpoint_every_steps)
    {"event":"checkpoint","step":S,"path":"<run_dir>/checkpoints","final":true,"reason":"sigterm"}
    {"event":"result","final_loss":L,"steps":S,"total_steps":N,"duration_s":T,"effective_max_seq_length":M,...}

``step`` is 1-based (the number of optimizer updates done); ``loss`` is the
batch's mean token cross-entropy; ``learning_rate`` is the rate of that update
(linear warm-up, then constant); ``grad_norm`` is the global norm before
clipping to 1.0.  The start event also carries ``model_id``, ``start_step``
(> 0 after a resume), ``batches_per_epoch``, ``num_examples``,
``effective_max_seq_length``, ``batch_seq_length``, ``batch_size`` and
``steps_capped``; the result event ``batch_seq_length``, ``param_count`` and
``start_step``.  ``final_loss`` is the training loss of the last step (the
loss of the batch that step trained on, before its update).  A run started
again on a run_dir whose checkpoint is already at the last step trains
nothing: it emits no progress event and reports the loss that was recorded
with that checkpoint when it was saved (``final_loss_from: "checkpoint"``;
null for a checkpoint written without that record).  ``python -m
workers.train --param-counts`` prints the exact parameter count of every
catalog model.

Exit status: 0 on success; 2 for bad input (config, unknown model, malformed
dataset, missing weights, GPU asked for but absent); 143 (128 + SIGTERM) when
stopped by SIGTERM (see below); 130 on Ctrl-C; 1 for any other failure.  On
failure the last line of stderr is ``error: <Type>: <message>`` (one line;
Type is ConfigError, UnknownModel, DatasetError, WeightsNotFound,
DeviceUnavailable, Terminated or the unexpected exception's class), and the
traceback of an unexpected error goes to ``<run_dir>/traceback.txt``.

SIGTERM (what the worker sends to cancel a run or end it at its time limit,
and what the process gets when its worker dies) stops the training after the
step in flight: the handler only sets a flag; before the next step starts the
trainer is stopped, the pending progress event of the last step is emitted,
a checkpoint of that step is saved (forced, whatever the interval) and
waited for, and then ``{"event":"checkpoint",...,"final":true,"reason":"sigterm"}``
is printed: its files are complete when the event appears.  The process exits
143 with ``error: Terminated: ...`` on stderr.  The stop costs one step plus
one save (well under a second for the tiny models; the worker allows 10 s
before SIGKILL).  A SIGTERM before the first step exits 143 at once without a
new checkpoint; one that arrives after the last step lets the run finish
normally (exit 0, result event).  Without ``checkpoint_every_steps`` nothing
is saved: the process just stops after the step and exits 143.

Tokenisation is byte-level for the tiny models (256 ids, nothing to download):
id = UTF-8 byte, 0 = padding (NUL bytes are dropped from the text), and three
bytes that never occur in UTF-8 serve as specials: 0xFE = BOS, 0xFD = separator
between prompt and completion, 0xFF = EOS.  A JSONL record becomes
``BOS prompt SEP completion EOS``; the loss covers ``completion EOS`` only.

Sizes: the effective sequence length is ``max_seq_length`` clamped to
[8, spec.max_seq_length] (128 for the tiny models), reported as
``effective_max_seq_length``; for a JSONL dataset the batches are further cut
to the longest tokenised example rounded up to a multiple of 8 (reported as
``batch_seq_length``; the synthetic set always fills the window).  The total
number of steps is ``max_steps`` when given, else ``num_epochs * ceil(examples / batch_size)``
(a short last batch is filled from the start of the epoch's order, so every
batch has the same shape and XLA compiles once); either way it is capped at
``MAX_TOTAL_STEPS`` (10,000: ~2-4 minutes for a tiny model on 2 CPU cores),
and ``steps_capped`` in the start event says so.

Determinism: model initialisation (``nnx.Rngs(seed)``), the synthetic data and
the per-epoch shuffle all derive from ``seed``; the same config gives the
same losses, bit for bit, on the same machine and JAX build.

Checkpoints: with ``checkpoint_every_steps`` the tunix trainer saves model and
optimizer state (orbax) under ``<run_dir>/checkpoints`` every that many steps
(orbax also saves step 1), at the end and on SIGTERM, keeping the last two;
periodic saving is asynchronous, so a periodic checkpoint event may come
before its files are final (the SIGTERM one never does).  Each checkpoint's
orbax custom metadata holds ``{"tunix_rt": {"step": S, "loss": L}}``, the
training loss of its step.  A periodic checkpoint event of step S may come
before the progress event of step S (tunix reports a step's metrics one step
late).  A process started again on the same run_dir restores the latest
checkpoint (model and optimizer state, so also the learning-rate schedule's
position) and goes on from it: tunix skips the batches already trained, and
the data order is a function of the seed, so the resumed run sees the same
batches and reports the same losses, bit for bit, as an uninterrupted one.
"""

import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np

EVENT_PREFIX = "@@tunix "

#: Hard cap on the steps of one run (see the module docstring).
MAX_TOTAL_STEPS = 10_000
#: Smallest effective sequence length.
MIN_SEQ_LENGTH = 8
#: Examples the synthetic dataset holds (one epoch).
SYNTHETIC_EXAMPLES = 256
#: Human "step S/N ..." log lines one run prints at most (every step of a short run).
MAX_STEP_LOG_LINES = 200
#: Linear warm-up: min(MAX_WARMUP_STEPS, total_steps // 10) steps, then constant.
MAX_WARMUP_STEPS = 10
MAX_BATCH_SIZE = 4096  # the API allows as much; memory grows with batch x seq
MAX_EPOCHS = 10_000

# Byte tokenizer specials (0xFD-0xFF never occur in UTF-8).
PAD_ID = 0
SEP_ID = 0xFD
BOS_ID = 0xFE
EOS_ID = 0xFF


class InputError(Exception):
    """Bad input: config, model, dataset, weights, device.  Exit status 2."""

    exit_code = 2


class ConfigError(InputError):
    pass


class UnknownModel(InputError):
    pass


class DatasetError(InputError):
    pass


class WeightsNotFound(InputError):
    pass


class DeviceUnavailable(InputError):
    pass


class Terminated(Exception):
    """Stopped by SIGTERM (after the step in flight, with a checkpoint).  Exit status 143."""

    exit_code = 128 + 15


class _StopTraining(Exception):
    """Raised from a training hook to leave tunix's loop between two steps."""


# --------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class TrainConfig:
    model_id: str
    dataset_kind: str
    run_dir: str
    run_id: str = ""
    dataset_key: str = ""
    dataset_path: str = None
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_seq_length: int = 64
    num_epochs: int = 1
    max_steps: int = None
    seed: int = 0
    device: str = "auto"
    checkpoint_every_steps: int = None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def parse_config(obj):
    """A validated TrainConfig from the decoded JSON object (InputError if bad)."""
    if not isinstance(obj, dict):
        raise ConfigError(f"config must be a JSON object, got {type(obj).__name__}")
    for key in ("model_id", "dataset_kind", "run_dir"):
        if obj.get(key) in (None, ""):
            raise ConfigError(f"config: missing {key!r}")
    values = {}
    for key in TrainConfig.__dataclass_fields__:
        if key in obj and obj[key] is not None:
            values[key] = obj[key]

    def need(cond, message):
        if not cond:
            raise ConfigError(f"config: {message}")

    for key in ("model_id", "dataset_kind", "run_dir", "run_id", "dataset_key", "dataset_path", "device"):
        if key in values:
            need(isinstance(values[key], str), f"{key!r} must be a string")
    if _is_int(values.get("learning_rate")):
        values["learning_rate"] = float(values["learning_rate"])
    if "learning_rate" in values:
        lr = values["learning_rate"]
        need(isinstance(lr, float) and math.isfinite(lr) and 0 < lr <= 1,
             f"'learning_rate' must be a number in (0, 1], got {lr!r}")
    for key, low, high in (("batch_size", 1, MAX_BATCH_SIZE), ("max_seq_length", 1, None),
                           ("num_epochs", 1, MAX_EPOCHS), ("max_steps", 1, None),
                           ("checkpoint_every_steps", 1, None)):
        if key in values:
            value = values[key]
            ok = _is_int(value) and value >= low and (high is None or value <= high)
            bounds = f"{low}..{high}" if high else f">= {low}"
            need(ok, f"{key!r} must be an integer {bounds}, got {value!r}")
    if "seed" in values:
        need(_is_int(values["seed"]), f"'seed' must be an integer, got {values['seed']!r}")
    need(values["dataset_kind"] in ("synthetic", "jsonl"),
         f"'dataset_kind' must be 'synthetic' or 'jsonl', got {values['dataset_kind']!r}")
    if values["dataset_kind"] == "jsonl":
        need(bool(values.get("dataset_path")), "'dataset_path' is required when dataset_kind is 'jsonl'")
    if "device" in values:
        need(values["device"] in ("auto", "cpu", "gpu"),
             f"'device' must be 'auto', 'cpu' or 'gpu', got {values['device']!r}")
    return TrainConfig(**values)


def load_config(path):
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid JSON: {exc}") from None
    return parse_config(obj)


# --------------------------------------------------------------------------
# Model specs and weights (no jax)


def resolve_model(model_id):
    from tasks.models import MODELS, get_model

    spec = get_model(model_id)
    if spec is None:
        raise UnknownModel(f"unknown model {model_id!r} (known: {', '.join(MODELS)})")
    return spec


def weights_dir(spec):
    """The folder holding ``spec``'s weights; InputError when they are not there."""
    root = os.environ.get("WEIGHTS_DIR", "")
    where = f"$WEIGHTS_DIR/{spec.weights_subdir}"
    if not root:
        raise WeightsNotFound(f"model {spec.model_id!r} needs pre-downloaded weights in {where}, "
                         "but WEIGHTS_DIR is not set (weights are never downloaded)")
    folder = os.path.join(root, spec.weights_subdir)
    if not os.path.isdir(folder):
        raise WeightsNotFound(f"model {spec.model_id!r} needs its weights in {folder} (= {where}), "
                         "which does not exist (weights are never downloaded)")
    if not any(name.endswith(".safetensors") for name in os.listdir(folder)):
        raise WeightsNotFound(f"model {spec.model_id!r}: no *.safetensors file in {folder}")
    if spec.tokenizer_file and not os.path.isfile(os.path.join(folder, spec.tokenizer_file)):
        raise WeightsNotFound(f"model {spec.model_id!r}: tokenizer {spec.tokenizer_file} missing from {folder}")
    return folder


# --------------------------------------------------------------------------
# Tokenizers (no jax)


class ByteTokenizer:
    """UTF-8 bytes as ids; see the module docstring for the specials."""

    vocab_size = 256
    pad_id, bos_id, sep_id, eos_id = PAD_ID, BOS_ID, SEP_ID, EOS_ID

    def encode(self, text):
        return [b for b in text.encode("utf-8") if b != 0]

    def decode(self, ids):
        return bytes(i for i in ids if 0 < i < SEP_ID).decode("utf-8", errors="replace")


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

    def encode(self, text):
        return list(self._sp.EncodeAsIds(text))

    def decode(self, ids):
        return self._sp.DecodeIds([int(i) for i in ids])


# --------------------------------------------------------------------------
# Data (no jax)


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

    ``BOS prompt SEP completion EOS``; the mask marks completion and EOS.  A
    too long record keeps the tail of its prompt (at most half the window,
    unless the completion leaves more room) and as much completion as fits.
    """
    prompt_ids = tokenizer.encode(prompt) if prompt else []
    target = tokenizer.encode(completion) + [tokenizer.eos_id]
    tail = [tokenizer.sep_id] if (prompt_ids and tokenizer.sep_id is not None) else []
    prefix_len = 1 + len(prompt_ids) + len(tail)
    truncated = prefix_len + len(target) > seq_len
    if truncated:
        room = max(seq_len // 2, seq_len - len(target)) - 1 - len(tail)
        prompt_ids = prompt_ids[max(0, len(prompt_ids) - room):] if room > 0 else []
    prefix = [tokenizer.bos_id] + prompt_ids + tail
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


def build_examples(config, tokenizer, seq_len):
    if config.dataset_kind == "synthetic":
        records = [("", text) for text in synthetic_texts(config.seed, SYNTHETIC_EXAMPLES, seq_len)]
    else:
        from tasks.datasets_jsonl import load_jsonl

        try:
            records = [(r.prompt, r.completion) for r in load_jsonl(config.dataset_path)]
        except OSError as exc:
            raise DatasetError(f"cannot read dataset {config.dataset_path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise DatasetError(f"dataset {config.dataset_path}: {exc}") from None
    tokens, mask, truncated = [], [], 0
    for prompt, completion in records:
        ids, m, cut = encode_example(tokenizer, prompt, completion, seq_len)
        tokens.append(ids)
        mask.append(m)
        truncated += cut and config.dataset_kind == "jsonl"
    tokens, mask = np.asarray(tokens, np.int32), np.asarray(mask, np.int32)
    if config.dataset_kind == "jsonl":
        # No need to pad every batch to the window: cut it to the longest
        # example, rounded up to a multiple of 8.
        longest = int((tokens != tokenizer.pad_id).sum(axis=1).max())
        width = min(seq_len, max(MIN_SEQ_LENGTH, -(-longest // 8) * 8))
        tokens, mask = tokens[:, :width], mask[:, :width]
    return Examples(np.ascontiguousarray(tokens), np.ascontiguousarray(mask), truncated)


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


def plan_steps(config, num_examples):
    """(total_steps, batches_per_epoch, capped)."""
    per_epoch = math.ceil(num_examples / config.batch_size)
    wanted = config.max_steps if config.max_steps is not None else config.num_epochs * per_epoch
    return min(wanted, MAX_TOTAL_STEPS), per_epoch, wanted > MAX_TOTAL_STEPS


def warmup_steps(total_steps):
    return min(MAX_WARMUP_STEPS, total_steps // 10)


def learning_rate_at(config, total_steps, step_index):
    """The learning rate of the update with 0-based index ``step_index``."""
    warm = warmup_steps(total_steps)
    if warm and step_index < warm:
        return config.learning_rate * (step_index + 1) / (warm + 1)
    return config.learning_rate


# --------------------------------------------------------------------------
# JAX / tunix (imported lazily)


def setup_jax_env(device):
    """Environment JAX reads at import: platform and compilation cache."""
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def configure_jax(device):
    import jax

    cache_dir = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")))
    try:
        platform = jax.default_backend()
    except RuntimeError as exc:
        raise DeviceUnavailable(f"JAX found no usable backend: {exc}") from None
    if device == "gpu" and platform != "gpu":
        raise DeviceUnavailable(f"device 'gpu' requested but JAX found no GPU (backend: {platform})")
    return platform


def _dtype(name):
    import jax.numpy as jnp

    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def build_model_config(spec):
    """The tunix ModelConfig for ``spec``."""
    import dataclasses

    dtype = _dtype(spec.dtype)
    if spec.family == "llama3":
        from tunix.models.llama3 import model as m

        if spec.tunix_preset:
            return getattr(m.ModelConfig, spec.tunix_preset)()
        return m.ModelConfig(
            num_layers=spec.num_layers, vocab_size=spec.vocab_size, embed_dim=spec.embed_dim,
            hidden_dim=spec.hidden_dim, num_heads=spec.num_heads, head_dim=spec.head_dim,
            num_kv_heads=spec.num_kv_heads, rope_theta=spec.rope_theta, norm_eps=spec.norm_eps,
            weight_tying=spec.tied_embeddings)
    if spec.family == "qwen3":
        from tunix.models.qwen3 import model as m

        if spec.tunix_preset:
            return dataclasses.replace(getattr(m.ModelConfig, spec.tunix_preset)(),
                                       dtype=dtype, param_dtype=dtype)
        return m.ModelConfig(
            num_layers=spec.num_layers, vocab_size=spec.vocab_size, embed_dim=spec.embed_dim,
            hidden_dim=spec.hidden_dim, num_heads=spec.num_heads, head_dim=spec.head_dim,
            num_kv_heads=spec.num_kv_heads, rope_theta=spec.rope_theta, norm_eps=spec.norm_eps,
            use_tied_embedding=spec.tied_embeddings, dtype=dtype, param_dtype=dtype)
    if spec.family == "gemma3":
        from tunix.models.gemma3 import model as m

        if spec.tunix_preset:
            return dataclasses.replace(getattr(m.ModelConfig, spec.tunix_preset)(), param_dtype=dtype)
        return m.ModelConfig(
            num_layers=spec.num_layers, num_embed=spec.vocab_size, embed_dim=spec.embed_dim,
            hidden_dim=spec.hidden_dim, num_heads=spec.num_heads, head_dim=spec.head_dim,
            num_kv_heads=spec.num_kv_heads, sliding_window_size=spec.sliding_window_size,
            param_dtype=dtype)
    raise InputError(f"model {spec.model_id!r}: unsupported family {spec.family!r}")


def model_class(spec):
    if spec.family == "llama3":
        from tunix.models.llama3.model import Llama3
        return Llama3
    if spec.family == "qwen3":
        from tunix.models.qwen3.model import Qwen3
        return Qwen3
    from tunix.models.gemma3.model import Gemma3
    return Gemma3


def build_model(spec, seed, weights=None):
    """A tunix nnx model: random init from ``seed``, or loaded from ``weights``."""
    from flax import nnx

    cfg = build_model_config(spec)
    if weights is None:
        return model_class(spec)(cfg, rngs=nnx.Rngs(seed & 0xFFFFFFFF))
    if spec.family != "gemma3":
        raise InputError(f"model {spec.model_id!r}: loading weights is only wired for gemma3")
    from tunix.models.gemma3 import params_safetensors

    return params_safetensors.create_model_from_safe_tensors(weights, cfg, dtype=_dtype(spec.dtype))


def count_params(model):
    import jax
    from flax import nnx

    return int(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def abstract_param_count(spec):
    """Exact parameter count of ``spec``'s architecture, without allocating it."""
    from flax import nnx

    cfg = build_model_config(spec)
    return count_params(nnx.eval_shape(lambda: model_class(spec)(cfg, rngs=nnx.Rngs(0))))


# --------------------------------------------------------------------------
# Training


def _floats(value):
    value = float(value)
    return value if math.isfinite(value) else None


def train(config, on_event, log=print, stop=None):
    """Run one training described by ``config``; report through ``on_event``.

    ``on_event(dict)`` receives the start, progress, checkpoint and result
    events (see the module docstring).  Returns the result event.  Raises
    InputError for bad input, anything else for other failures.

    ``stop`` (a ``threading.Event``; ``main`` sets it on SIGTERM) ends the
    training after the step in flight: the last step is checkpointed (when
    checkpointing is on) and ``Terminated`` is raised.
    """
    t0 = time.monotonic()
    stop = stop if stop is not None else threading.Event()
    spec = resolve_model(config.model_id)
    weights = weights_dir(spec) if spec.requires_weights else None
    if spec.tokenizer == "byte":
        tokenizer = ByteTokenizer()
    else:
        tokenizer = SentencePieceTokenizer(os.path.join(weights, spec.tokenizer_file))
    if tokenizer.vocab_size > spec.vocab_size:
        raise WeightsNotFound(f"model {spec.model_id!r}: tokenizer has {tokenizer.vocab_size} ids, "
                              f"the model only {spec.vocab_size}")
    seq_len = max(MIN_SEQ_LENGTH, min(config.max_seq_length, spec.max_seq_length))
    examples = build_examples(config, tokenizer, seq_len)
    batch_seq_len = int(examples.tokens.shape[1])  # <= seq_len (JSONL: cut to the longest example)
    num_examples = len(examples.tokens)
    total_steps, per_epoch, capped = plan_steps(config, num_examples)
    log(f"run {config.run_id or '-'}: model {spec.model_id}, dataset {config.dataset_key or config.dataset_kind} "
        f"({num_examples} examples, {examples.truncated} truncated), seq_len {seq_len} (batches {batch_seq_len}), "
        f"batch {config.batch_size}, {total_steps} steps{' (capped)' if capped else ''}")
    os.makedirs(config.run_dir, exist_ok=True)

    def stop_if_asked():
        if stop.is_set():
            raise Terminated("SIGTERM before the training started; nothing trained, nothing saved")

    stop_if_asked()
    setup_jax_env(config.device)
    platform = configure_jax(config.device)

    import optax
    import orbax.checkpoint as ocp
    from tunix.sft import hooks as tunix_hooks
    from tunix.sft import metrics_logger as tunix_metrics
    from tunix.sft import peft_trainer
    from tunix.sft import utils as sft_utils

    stop_if_asked()
    model = build_model(spec, config.seed, weights)
    param_count = count_params(model)
    stop_if_asked()

    warm = warmup_steps(total_steps)
    schedule = optax.join_schedules(
        [optax.linear_schedule(config.learning_rate / (warm + 1), config.learning_rate, warm),
         optax.constant_schedule(config.learning_rate)], [warm]) if warm else config.learning_rate
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.inject_hyperparams(optax.adamw)(learning_rate=schedule, weight_decay=0.0),
    )

    checkpoint_dir = None
    checkpoint_options = None
    if config.checkpoint_every_steps:
        checkpoint_dir = os.path.abspath(os.path.join(config.run_dir, "checkpoints"))
        checkpoint_options = ocp.CheckpointManagerOptions(
            save_interval_steps=config.checkpoint_every_steps, max_to_keep=2)
    training_config = peft_trainer.TrainingConfig(
        eval_every_n_steps=total_steps + 1,
        max_steps=total_steps,
        checkpoint_root_directory=checkpoint_dir,
        checkpointing_options=checkpoint_options,
        pbar_description=None,
    )
    trainer = peft_trainer.PeftTrainer(model, optimizer, training_config)
    start_step = trainer.train_steps  # > 0 when a checkpoint was restored
    # What this program recorded with the restored checkpoint (see save_and_report).
    restored = (getattr(trainer, "_restored_custom_metadata", None) or {}).get("tunix_rt") or {}

    pad_id = tokenizer.pad_id

    def gen_model_input(x):
        pad_mask = x.input_tokens != pad_id
        return {
            "input_tokens": x.input_tokens,
            "input_mask": x.input_mask,
            "positions": sft_utils.build_positions_from_mask(pad_mask),
            "attention_mask": sft_utils.make_causal_attn_mask(pad_mask),
        }

    trainer = trainer.with_gen_model_input_fn(gen_model_input)

    state = {"last_loss": None, "last_step": start_step, "stopping": False}
    log_every = max(1, math.ceil(total_steps / MAX_STEP_LOG_LINES))
    train_mode = tunix_metrics.Mode.TRAIN

    class Hooks(tunix_hooks.TrainingHooks):
        def on_train_start(self, ctx):
            pass

        def on_train_end(self, ctx):
            pass

        def on_train_step_start(self, ctx):
            # Between two steps: the only place the loop can be left cleanly
            # (the model and optimizer hold exactly ``ctx.train_steps`` updates).
            if stop.is_set():
                raise _StopTraining()

        def on_eval_step_start(self, ctx):
            pass

        def on_eval_step_end(self, ctx, eval_loss):
            pass

        def on_train_step_end(self, ctx, train_step, train_loss):
            # tunix calls this one step late (it overlaps metric I/O with the
            # next step), and for the last step from trainer.close().
            loss = float(train_loss)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {train_step}")
            event = {"event": "progress", "step": int(train_step), "total_steps": total_steps,
                     "loss": loss, "learning_rate": learning_rate_at(config, total_steps, int(train_step) - 1)}
            try:
                grad_norm = ctx.metrics_logger.get_metric_history("", "grad_norm", train_mode)[-1]
                event["grad_norm"] = _floats(grad_norm)
            except (ValueError, IndexError, KeyError):
                pass
            state["last_loss"], state["last_step"] = loss, int(train_step)
            on_event(event)
            if event["step"] % log_every == 0 or event["step"] == total_steps:
                grad_norm = event.get("grad_norm")
                log(f"step {event['step']}/{total_steps} loss {loss:.4f} lr {event['learning_rate']:.3g}"
                    + (f" grad_norm {grad_norm:.3f}" if grad_norm is not None else ""))

    trainer.with_training_hooks(Hooks())

    def loss_of_step(step):
        """The training loss of ``step`` when it is known here, else None."""
        if state["last_step"] == step and state["last_loss"] is not None:
            return state["last_loss"]  # already reported (the end, a stop)
        # In the loop tunix saves step S right after the update, while the
        # loss of S still waits in its one-step-late buffer.
        pending = getattr(trainer, "_prev_buffered_train_metrics", None)
        if pending is not None and pending.step + 1 == step:
            return _floats(pending.loss)
        return None

    if checkpoint_dir:
        manager = trainer.checkpoint_manager
        original_save = manager.save
        orbax_manager = getattr(manager, "_checkpoint_manager", None)

        def save_and_report(step, model, optimizer=None, save_only_lora_params=False, force=False,
                            custom_metadata=None):
            # Record the step's loss with the checkpoint, so a resume that finds
            # the run already at its last step can still report it.  Only for
            # a save that will happen: reading the loss waits for the step.
            metadata = dict(custom_metadata or {})
            if force or orbax_manager is None or orbax_manager.should_save(step):
                metadata["tunix_rt"] = {"step": int(step), "loss": loss_of_step(int(step))}
            saved = original_save(step, model, optimizer, save_only_lora_params=save_only_lora_params,
                                  force=force, custom_metadata=metadata)
            if saved and not state["stopping"]:
                on_event({"event": "checkpoint", "step": int(step), "path": checkpoint_dir})
            return saved

        manager.save = save_and_report

    def batches():
        for idx in batch_indices(num_examples, config.batch_size, config.seed, total_steps):
            yield peft_trainer.TrainingInput(input_tokens=examples.tokens[idx], input_mask=examples.mask[idx])

    on_event({"event": "start", "total_steps": total_steps, "param_count": param_count, "device": platform,
              "model_id": spec.model_id, "start_step": start_step, "batches_per_epoch": per_epoch,
              "num_examples": num_examples, "effective_max_seq_length": seq_len, "batch_seq_length": batch_seq_len,
              "batch_size": config.batch_size, "steps_capped": capped})
    if start_step:
        log(f"resumed from the checkpoint of step {start_step}")
    try:
        trainer.train(batches())
    except _StopTraining:
        _stop_and_checkpoint(trainer, state, checkpoint_dir, start_step, total_steps, on_event, log)
    final_loss, extra = state["last_loss"], {}
    if final_loss is None and int(trainer.train_steps) == start_step and restored.get("step") == start_step:
        # Nothing left to train: the checkpoint was already at the last step.
        final_loss, extra = restored.get("loss"), {"final_loss_from": "checkpoint"}
    result = {"event": "result", "final_loss": final_loss, "steps": int(trainer.train_steps),
              "total_steps": total_steps, "duration_s": round(time.monotonic() - t0, 3),
              "effective_max_seq_length": seq_len, "batch_seq_length": batch_seq_len, "param_count": param_count,
              "start_step": start_step, **extra}
    on_event(result)
    return result


def _stop_and_checkpoint(trainer, state, checkpoint_dir, start_step, total_steps, on_event, log):
    """After SIGTERM, between two steps: report and checkpoint the last step,
    wait for the save, then raise ``Terminated``."""
    step = int(trainer.train_steps)
    if step == start_step:
        # No step done by this process: nothing new to save (a restored
        # checkpoint, if any, is still the latest).
        where = f"the checkpoint of step {start_step} is unchanged" if start_step else "nothing saved"
        raise Terminated(f"SIGTERM before the first step; {where}")
    state["stopping"] = True
    # What tunix does at the end of a loop: emit the last step's progress
    # (buffered one step late), save the step unless already saved (force),
    # wait for every asynchronous save (orbax's close waits), close.
    trainer.close()
    if checkpoint_dir is None:
        raise Terminated(f"SIGTERM: stopped after step {step} of {total_steps}; "
                         "no checkpoint (checkpoint_every_steps not set)")
    path = os.path.join(checkpoint_dir, str(step))
    if not os.path.isdir(path):
        raise RuntimeError(f"SIGTERM: the checkpoint of step {step} was not written to {path}")
    on_event({"event": "checkpoint", "step": step, "path": checkpoint_dir, "final": True, "reason": "sigterm"})
    log(f"SIGTERM: stopped after step {step} of {total_steps}; checkpoint of step {step} saved in {path}")
    raise Terminated(f"SIGTERM: stopped after step {step} of {total_steps}; checkpoint of step {step} saved")


# --------------------------------------------------------------------------
# Command line


def emit(event):
    _write_stdout(EVENT_PREFIX + json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n")


def _write_stdout(text):
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


def _one_line(text, limit=2000):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _print_param_counts():
    from tasks.models import MODELS

    setup_jax_env("cpu")
    for spec in MODELS.values():
        print(f"{spec.model_id} {abstract_param_count(spec)} (catalog: {spec.param_count})")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--param-counts"]:
        _print_param_counts()
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write("usage: python -m workers.train CONFIG_JSON_PATH\n")
        return 2
    config = None
    # First thing: a SIGTERM during the imports or the compilation must not
    # kill the process with the default action.  The handler only sets the
    # flag; the training loop stops between two steps.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        config = load_config(argv[0])
        train(config, emit, log=lambda line: _write_stdout(f"{line}\n"), stop=stop)
        return 0
    except (InputError, Terminated) as exc:
        code, error = exc.exit_code, exc
    except KeyboardInterrupt as exc:
        code, error = 130, exc
    except BaseException as exc:  # noqa: BLE001 - report every failure as one line
        code, error = 1, exc
        if config is not None:
            try:
                with open(os.path.join(config.run_dir, "traceback.txt"), "w", encoding="utf-8") as fh:
                    fh.write(traceback.format_exc())
            except OSError:
                pass
    sys.stdout.flush()
    sys.stderr.write(f"error: {type(error).__name__}: {_one_line(error) or 'interrupted'}\n")
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
