"""Llama 3 in Hugging Face's names and layout: the inverse of tunix's
``tunix/models/llama3/params.py`` mapping (``_get_key_and_transform_mapping``),
so the folder loads back through tunix's own loader
(``create_model_from_safe_tensors``) and reads as a ``LlamaForCausalLM``
checkpoint.  ``qwen3.py`` shares the names: tunix's two mappings agree on
every dense parameter (Qwen 3 adds ``q_norm``/``k_norm``, which tunix's
Llama mapping names too).

tunix's loader reads ``q_proj`` ``(N*H, D)`` transposed and reshaped to
``(D, N, H)`` (``k_proj``/``v_proj``: ``(D, K, H)``); ``o_proj``
``(D, N*H)`` transposed and reshaped to ``(N, H, D)``; an MLP ``kernel`` and
an untied ``lm_head`` ``w`` ``(D, V)`` are the transposed ``weight``; norms
are ``w`` as stored (both sides compute ``w * x / rms``, no ``1 +``).  RoPE
rotates the two halves of a head on both sides (HF's ``rotate_half``), so q
and k need no permutation.  llama3-tiny's embedding is untied
(``tied_embeddings=False`` in tasks/models.py): ``lm_head.weight`` is
written; a tied model (``weight_tying``) has none and says so in its config.
"""

import numpy as np

#: tunix's loader for this layout (the export's proof loads the folder with it).
LOADER = "tunix.models.llama3.params"
ARCHITECTURE = "LlamaForCausalLM"

_MLP = ("gate_proj", "up_proj", "down_proj")
_NORMS = ("input_layernorm", "post_attention_layernorm")


def _proj_in(w):
    """``(D, heads, H)`` -> HF's ``(heads*H, D)``."""
    d, n, h = w.shape
    return np.ascontiguousarray(w.reshape(d, n * h).T)


def _proj_out(w):
    """``o_proj`` ``(N, H, D)`` -> HF's ``(D, N*H)``."""
    n, h, d = w.shape
    return np.ascontiguousarray(w.reshape(n * h, d).T)


_ATTN = {"q_proj": _proj_in, "k_proj": _proj_in, "v_proj": _proj_in, "o_proj": _proj_out,
         "q_norm": None, "k_norm": None}


def hf_item(path, value):
    """``(hf_name, ndarray)`` of one dense decoder parameter (``path`` an nnx
    path tuple), or None when tunix's Llama/Qwen mapping has no such name."""
    if path == ("embedder", "input_embedding"):
        return "model.embed_tokens.weight", value
    if path == ("final_norm", "w"):
        return "model.norm.weight", value
    if path == ("lm_head", "w"):
        return "lm_head.weight", np.ascontiguousarray(value.T)
    if len(path) < 4 or path[0] != "layers":
        return None
    pre, rest = f"model.layers.{path[1]}", path[2:]
    if len(rest) == 3 and rest[0] == "attn" and rest[1] in _ATTN and rest[2] == "w":
        transform = _ATTN[rest[1]]
        return f"{pre}.self_attn.{rest[1]}.weight", value if transform is None else transform(value)
    if len(rest) == 3 and rest[0] == "mlp" and rest[1] in _MLP and rest[2] == "kernel":
        return f"{pre}.mlp.{rest[1]}.weight", np.ascontiguousarray(value.T)
    if len(rest) == 2 and rest[0] in _NORMS and rest[1] == "w":
        return f"{pre}.{rest[0]}.weight", value
    return None


def named(params, family):
    """``{hf_name: ndarray}`` of ``params``; a parameter without a name is an error."""
    out = {}
    for path, value in params.items():
        item = hf_item(path, value)
        if item is None:
            raise ValueError(f"no Hugging Face name for {family} parameter {'.'.join(map(str, path))}")
        out[item[0]] = item[1]
    return out


def hf_tensors(params, cfg):
    """``{hf_name: ndarray}`` of ``params`` (``{nnx path tuple: ndarray}``)."""
    return named(params, "llama3")


def decoder_config(model_spec, cfg, tokenizer, tied):
    """The fields a Llama-style decoder's ``config.json`` shares (Llama 3, Qwen 3)."""
    ends = sorted(set(tokenizer.end_ids()))
    return {
        "hidden_size": cfg.embed_dim, "intermediate_size": cfg.hidden_dim, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size, "max_position_embeddings": model_spec.max_seq_length,
        # tunix's RoPE has no scaling (not Llama 3.1's "llama3" rope_type): none here either.
        "rope_theta": float(cfg.rope_theta), "rope_scaling": None, "rms_norm_eps": cfg.norm_eps,
        "hidden_act": "silu", "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": bool(tied),
        "pad_token_id": tokenizer.pad_id, "bos_token_id": tokenizer.bos_id,
        "eos_token_id": ends[0] if len(ends) == 1 else ends,
        "torch_dtype": model_spec.dtype, "use_cache": True,
    }


def hf_config(model_spec, cfg, tokenizer):
    """``config.json``: a ``LlamaForCausalLM`` (``llama``) config of the
    architecture ``cfg`` (a tunix llama3 ``ModelConfig``)."""
    return {"architectures": [ARCHITECTURE], "model_type": "llama",
            **decoder_config(model_spec, cfg, tokenizer, cfg.weight_tying), "mlp_bias": False}
