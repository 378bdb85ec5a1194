"""GGUF tensor names (llama.cpp's ``gemma3`` layout) to the Hugging Face names
tunix's ``gemma3.params_safetensors`` loader maps onto its modules.

After reshaping a GGUF tensor to its reversed ``ne`` shape every matrix is
already in HF ``[out, in]`` layout: no transpose here, tunix's own HF
mapping applies the rest.  Three llama.cpp quirks, each measured on 20
English sentences (notes: gemma3-270m-from-gguf.md, section 2):

* norm weights are stored as ``1 + w`` (Gemma's RMSNorm scales by
  ``1 + w``, llama.cpp's by ``w``): 1 is subtracted here; kept, the loss is
  18.3 nats/token instead of 2.95;
* q and k are not permuted (the LLaMA un-permutation gives 7.26);
* the embedding is stored unscaled, as tunix wants it (dividing by
  sqrt(640) gives 12.3); the output head is tied (no ``output.weight``).
"""

import re

_LAYER = "model.layers.{}."

#: (GGUF name pattern, HF name template; ``{}`` is the layer number).
TENSOR_MAP = (
    (r"token_embd\.weight", "model.embed_tokens.weight"),
    (r"output_norm\.weight", "model.norm.weight"),
    (r"blk\.(\d+)\.attn_q\.weight", _LAYER + "self_attn.q_proj.weight"),
    (r"blk\.(\d+)\.attn_k\.weight", _LAYER + "self_attn.k_proj.weight"),
    (r"blk\.(\d+)\.attn_v\.weight", _LAYER + "self_attn.v_proj.weight"),
    (r"blk\.(\d+)\.attn_output\.weight", _LAYER + "self_attn.o_proj.weight"),
    (r"blk\.(\d+)\.attn_q_norm\.weight", _LAYER + "self_attn.q_norm.weight"),
    (r"blk\.(\d+)\.attn_k_norm\.weight", _LAYER + "self_attn.k_norm.weight"),
    (r"blk\.(\d+)\.attn_norm\.weight", _LAYER + "input_layernorm.weight"),
    (r"blk\.(\d+)\.post_attention_norm\.weight", _LAYER + "post_attention_layernorm.weight"),
    (r"blk\.(\d+)\.ffn_norm\.weight", _LAYER + "pre_feedforward_layernorm.weight"),
    (r"blk\.(\d+)\.post_ffw_norm\.weight", _LAYER + "post_feedforward_layernorm.weight"),
    (r"blk\.(\d+)\.ffn_gate\.weight", _LAYER + "mlp.gate_proj.weight"),
    (r"blk\.(\d+)\.ffn_up\.weight", _LAYER + "mlp.up_proj.weight"),
    (r"blk\.(\d+)\.ffn_down\.weight", _LAYER + "mlp.down_proj.weight"),
)

_COMPILED = tuple((re.compile(pattern), template) for pattern, template in TENSOR_MAP)

#: Tensors one Gemma 3 block holds (each maps to one HF name above).
PER_LAYER = 13


def hf_name(gguf_name):
    """The HF name of the GGUF tensor ``gguf_name``; None when it is not in the map."""
    for pattern, template in _COMPILED:
        match = pattern.fullmatch(gguf_name)
        if match:
            return template.format(*match.groups())
    return None


def is_norm(name):
    """True for an HF norm weight (stored by llama.cpp as ``1 + w``)."""
    return name.endswith("norm.weight")


def expected_names(num_layers):
    """Every HF name a complete ``num_layers``-block model has (2 + 13 per block)."""
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    for _, template in TENSOR_MAP[2:]:
        names.update(template.format(i) for i in range(num_layers))
    return names
