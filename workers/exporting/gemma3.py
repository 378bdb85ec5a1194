"""Gemma 3 in Hugging Face's names and layout: the inverse of tunix's
``tunix/models/gemma3/params_safetensors.py`` mapping, so the folder loads
back through tunix's own loader (``create_model_from_safe_tensors``) and
reads as a ``Gemma3ForCausalLM`` checkpoint.

tunix's loader reads ``q_proj`` ``(N*H, D)`` transposed and reshaped to
``(D, N, H)``, then ``(N, D, H)``; ``k_proj``/``v_proj`` likewise into
``kv_einsum`` ``(2, K, D, H)``; ``o_proj`` ``(D, N*H)`` transposed to
``(N, H, D)``; an MLP ``kernel`` is the transposed ``weight``; norms are
``scale`` as stored (both sides compute ``1 + scale``).  The embedding is
tied: no ``lm_head``.
"""

import numpy as np

#: tunix's loader for this layout (the export's proof loads the folder with it).
LOADER = "tunix.models.gemma3.params_safetensors"
ARCHITECTURE = "Gemma3ForCausalLM"
#: tunix's Gemma 3 layer pattern: five sliding-window layers, then a global one.
LAYER_PATTERN = ("sliding_attention",) * 5 + ("full_attention",)

_NORMS = {"pre_attention_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
          "pre_ffw_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm"}
_MLP = ("gate_proj", "up_proj", "down_proj")


def _proj_in(w):
    """``(heads, D, H)`` -> HF's ``(heads*H, D)``."""
    n, d, h = w.shape
    return np.ascontiguousarray(np.transpose(w, (0, 2, 1)).reshape(n * h, d))


def hf_tensors(params, cfg):
    """``{hf_name: ndarray}`` of ``params`` (``{nnx path tuple: ndarray}``)."""
    out = {}
    for path, value in params.items():
        name = ".".join(map(str, path))
        if path == ("embedder", "input_embedding"):
            out["model.embed_tokens.weight"] = value
        elif path == ("final_norm", "scale"):
            out["model.norm.weight"] = value
        elif path[0] == "layers":
            i, rest = path[1], path[2:]
            pre = f"model.layers.{i}"
            if rest == ("attn", "q_einsum", "w"):
                out[f"{pre}.self_attn.q_proj.weight"] = _proj_in(value)
            elif rest == ("attn", "kv_einsum", "w"):
                out[f"{pre}.self_attn.k_proj.weight"] = _proj_in(value[0])
                out[f"{pre}.self_attn.v_proj.weight"] = _proj_in(value[1])
            elif rest == ("attn", "qkv_einsum", "w"):
                for j, which in enumerate("qkv"):
                    out[f"{pre}.self_attn.{which}_proj.weight"] = _proj_in(value[j])
            elif rest == ("attn", "attn_vec_einsum", "w"):
                n, h, d = value.shape
                out[f"{pre}.self_attn.o_proj.weight"] = np.ascontiguousarray(value.reshape(n * h, d).T)
            elif rest == ("attn", "_query_norm", "scale"):
                out[f"{pre}.self_attn.q_norm.weight"] = value
            elif rest == ("attn", "_key_norm", "scale"):
                out[f"{pre}.self_attn.k_norm.weight"] = value
            elif len(rest) == 3 and rest[0] == "mlp" and rest[1] in _MLP and rest[2] == "kernel":
                out[f"{pre}.mlp.{rest[1]}.weight"] = np.ascontiguousarray(value.T)
            elif len(rest) == 2 and rest[0] in _NORMS and rest[1] == "scale":
                out[f"{pre}.{_NORMS[rest[0]]}.weight"] = value
            else:
                raise ValueError(f"no Hugging Face name for gemma3 parameter {name}")
        else:
            raise ValueError(f"no Hugging Face name for gemma3 parameter {name}")
    return out


def hf_config(model_spec, cfg, tokenizer):
    """``config.json``: a ``Gemma3ForCausalLM`` (``gemma3_text``) config of
    the architecture ``cfg`` (a tunix ``ModelConfig``)."""
    from tunix.models.gemma3.model import QueryPreAttentionNormalisation as Q

    ends = sorted(set(tokenizer.end_ids()))

    # HF scales the query by query_pre_attn_scalar ** -0.5.
    scalar = cfg.head_dim if cfg.query_pre_attn_norm == Q.BY_ONE_OVER_SQRT_HEAD_DIM else cfg.embed_dim // cfg.num_heads
    return {
        "architectures": [ARCHITECTURE], "model_type": "gemma3_text",
        "hidden_size": cfg.embed_dim, "intermediate_size": cfg.hidden_dim, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
        "vocab_size": cfg.num_embed, "rope_theta": float(cfg.global_base_frequency),
        "rope_local_base_freq": float(cfg.local_base_frequency),
        "rope_scaling": None if cfg.global_scale_factor == 1.0
        else {"rope_type": "linear", "factor": float(cfg.global_scale_factor)},
        "sliding_window": cfg.sliding_window_size, "rms_norm_eps": 1e-6, "query_pre_attn_scalar": scalar,
        "layer_types": [LAYER_PATTERN[i % len(LAYER_PATTERN)] for i in range(cfg.num_layers)],
        "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False, "attention_dropout": 0.0,
        "final_logit_softcapping": None, "attn_logit_softcapping": None, "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_id, "bos_token_id": tokenizer.bos_id,
        "eos_token_id": ends[0] if len(ends) == 1 else ends,
        "torch_dtype": model_spec.dtype, "use_cache": True,
    }
