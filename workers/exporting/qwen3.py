"""Qwen 3 in Hugging Face's names and layout: the inverse of tunix's
``tunix/models/qwen3/params.py`` mapping, so the folder loads back through
tunix's own loader (``create_model_from_safe_tensors``) and reads as a
``Qwen3ForCausalLM`` checkpoint.

For a dense model tunix's Qwen 3 mapping is its Llama 3 one plus the
per-head ``q_norm``/``k_norm`` (``(H,)``, ``w`` as stored): the names and
transposes are ``llama3.py``'s.  qwen3-tiny's embedding is untied
(tasks/models.py): ``lm_head.weight`` is written.  Mixture-of-experts
configs (``num_experts``; no catalog model) are refused rather than written
half-checked.
"""

from . import llama3

LOADER = "tunix.models.qwen3.params"
ARCHITECTURE = "Qwen3ForCausalLM"


def hf_tensors(params, cfg):
    """``{hf_name: ndarray}`` of ``params`` (``{nnx path tuple: ndarray}``)."""
    if cfg.num_experts:
        raise ValueError("qwen3 mixture-of-experts models have no exporter (only dense Qwen 3)")
    return llama3.named(params, "qwen3")


def hf_config(model_spec, cfg, tokenizer):
    """``config.json``: a ``Qwen3ForCausalLM`` (``qwen3``) config of the
    architecture ``cfg`` (a tunix qwen3 ``ModelConfig``)."""
    return {"architectures": [ARCHITECTURE], "model_type": "qwen3",
            **llama3.decoder_config(model_spec, cfg, tokenizer, cfg.use_tied_embedding),
            "use_sliding_window": False, "sliding_window": None, "max_window_layers": cfg.num_layers}
