"""The model: weights on disk, JAX setup, the tunix model config, build and
parameter counts.  ``spec`` here is a ``tasks.models.ModelSpec``.

JAX, flax and tunix are imported inside the functions: reading the job file,
the data and a bad input's exit 2 need none of them.
"""

import os

import numpy as np

from tasks.settings import get_settings

from .errors import DeviceUnavailable, InputError, WeightsNotFound


def weights_dir(spec, folder=None):
    """The folder holding ``spec``'s weights; WeightsNotFound when they are not there.

    ``folder`` (the job's ``run.weights_dir``: where the worker made them
    ready) wins; else ``$WEIGHTS_DIR/<weights_subdir>`` when that folder
    exists; else the converted copy in ``$DATA_DIR/models/<weights_subdir>``
    (``workers/weights``)."""
    settings = get_settings()
    root = settings.weights_dir
    where = f"$WEIGHTS_DIR/{spec.weights_subdir}"
    if folder is None:
        candidates = [os.path.join(root, spec.weights_subdir)] if root else []
        candidates.append(os.path.join(settings.models_dir, spec.weights_subdir))
        folder = next((c for c in candidates if os.path.isdir(c)), None)
        if folder is None:
            raise WeightsNotFound(f"model {spec.model_id!r} needs its weights in {' or '.join(candidates)}"
                                  f"{f' (= {where})' if root else ' (WEIGHTS_DIR is not set)'}, "
                                  "and none of them exists: a worker installs them before the training starts")
    if not os.path.isdir(folder):
        raise WeightsNotFound(f"model {spec.model_id!r}: its weights folder {folder} does not exist")
    if not any(name.endswith(".safetensors") for name in os.listdir(folder)):
        raise WeightsNotFound(f"model {spec.model_id!r}: no *.safetensors file in {folder}")
    if spec.tokenizer_file and not os.path.isfile(os.path.join(folder, spec.tokenizer_file)):
        raise WeightsNotFound(f"model {spec.model_id!r}: tokenizer {spec.tokenizer_file} missing from {folder}")
    return folder


def setup_jax_env(device):
    """Environment JAX reads at import: platform and compilation cache.

    These are JAX's own variables, not the platform's settings: this sets
    them for JAX, in the training's own process, before JAX is imported
    (``workers/runner.py``'s ``training_env`` chooses the cache folder)."""
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def configure_jax(device):
    import jax

    # JAX's variables as set above, handed to its config: read by JAX's
    # contract, so they are not the platform's settings.
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
    """A tunix nnx model: random init from ``seed`` (``nnx.Rngs(seed)``, so the
    same seed gives the same initial weights), or loaded from ``weights``."""
    from flax import nnx

    cfg = build_model_config(spec)
    if weights is None:
        return model_class(spec)(cfg, rngs=nnx.Rngs(seed & 0xFFFFFFFF))
    if spec.family != "gemma3":
        raise InputError(f"model {spec.model_id!r}: loading weights is only wired for gemma3")
    from tunix.models.gemma3 import params_safetensors

    return params_safetensors.create_model_from_safe_tensors(weights, cfg, dtype=_dtype(spec.dtype))


#: The module (path suffix) each LoRA target names, per family: tunix's
#: Llama 3 and Qwen 3 have one ``nnx.Linear`` per projection; Gemma 3 has
#: einsums, with key and value in one (``kv_einsum``).
LORA_MODULES = {
    "llama3": {"q": "attn/q_proj", "k": "attn/k_proj", "v": "attn/v_proj", "o": "attn/o_proj",
               "gate": "mlp/gate_proj", "up": "mlp/up_proj", "down": "mlp/down_proj"},
    "gemma3": {"q": "attn/q_einsum", "k": "attn/kv_einsum", "v": "attn/kv_einsum", "o": "attn/attn_vec_einsum",
               "gate": "mlp/gate_proj", "up": "mlp/up_proj", "down": "mlp/down_proj"},
}
LORA_MODULES["qwen3"] = LORA_MODULES["llama3"]


def lora_module_path(spec, targets):
    """The qwix ``module_path`` regex of ``targets`` in ``spec``'s layers."""
    modules = sorted({LORA_MODULES[spec.family][t] for t in targets})
    return r"layers/\d+/(" + "|".join(modules) + ")"


def apply_lora(model, lora, spec, seed):
    """``model`` with LoRA adapters (qwix) on ``lora.targets``; only they
    train (``PeftTrainer`` sees ``nnx.LoRAParam`` and optimises and
    checkpoints those alone).  The adapters' initial A is drawn from
    ``seed`` (B starts at zero, so the model starts as the base)."""
    import qwix
    from flax import nnx

    provider = qwix.LoraProvider(module_path=lora_module_path(spec, lora.targets), rank=lora.rank,
                                 alpha=float(lora.alpha))
    return qwix.apply_lora_to_model(model, provider, rngs=nnx.Rngs(seed & 0xFFFFFFFF), **model.get_model_input())


def commit_to_device(trainer):
    """Put the trainer's model and optimizer state on the default device, committed.

    Weights loaded from safetensors arrive committed, but optax's scalar state
    (the step count and ``inject_hyperparams``' values: 9 leaves under AdamW)
    does not, while step 1's outputs are: step 2 then met other input
    shardings than step 1, and JAX compiled the train step a second time.
    Measured (gemma3-270m, full SFT, batch 4 x 128, ``bench/direct_loop.py``
    under ``JAX_LOG_COMPILES``): two compilations of 7.9 s and 13.1 s cold,
    two cache loads of 2.1 s and 3.1 s warm; one of each once committed.
    Arrays already committed are not copied."""
    import jax
    from flax import nnx

    device = jax.devices()[0]
    for node in (trainer.model, trainer.optimizer):
        nnx.update(node, jax.device_put(nnx.state(node), device))


def count_lora_params(model):
    import jax
    from flax import nnx

    return int(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam))))


def count_params(model):
    import jax
    from flax import nnx

    return int(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def abstract_param_count(spec):
    """Exact parameter count of ``spec``'s architecture, without allocating it."""
    from flax import nnx

    cfg = build_model_config(spec)
    return count_params(nnx.eval_shape(lambda: model_class(spec)(cfg, rngs=nnx.Rngs(0))))
