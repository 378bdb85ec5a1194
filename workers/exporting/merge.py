"""Fold LoRA adapters into the base weights: ``W + (alpha / rank) * A B``.

qwix keeps an adapter beside the weight it adapts (``w_lora_a`` and
``w_lora_b`` next to an ``Einsum``'s ``w``; ``kernel_lora_a``/``_b`` next
to an ``nnx.Linear``'s ``kernel``) and adds ``(alpha/rank) * x A B`` to the
projection's output.  The projection is linear in its weight, so the same
delta folded into the weight gives the same output: for an einsum the
adapter's axes are the weight's (A holds the weight's axes shared with the
input, in the weight's order, then the rank; B the rank, then the others:
``qwix/_src/providers/lora.py``), so ``delta = einsum('<A>r,r<B>-><W>')``;
for a Linear, ``A @ B`` is the kernel's shape.  Gemma's ``kv_einsum``
(``CKDH``: A is ``Dr``, B ``rCKH``) and ``attn_vec_einsum`` (``NHD``: A is
``NHr``, B ``rD``) need nothing special that way.  Checked numerically in
tests/training/test_export_program.py: the merged model's logits equal the
adapted model's to ~1e-6 in float32.
"""

import numpy as np

SUFFIX_A, SUFFIX_B = "_lora_a", "_lora_b"


def _einsum_delta(einsum_str, a, b):
    lhs, rhs = einsum_str.replace(" ", "").split("->")[0].split(",")
    rank = next(c for c in "rzyxwvutsqponmlkjihgfedcba" if c not in lhs + rhs)
    shared = "".join(c for c in rhs if c in lhs)
    others = "".join(c for c in rhs if c not in lhs)
    return np.einsum(f"{shared}{rank},{rank}{others}->{rhs}", a, b)


def merged_params(model, alpha, rank):
    """``({path: ndarray}, merged_paths)``: every plain parameter of ``model``
    (an ``nnx`` model, adapted or not), each adapted one with its adapter
    folded in at scale ``alpha / rank``; the adapters themselves left out."""
    from flax import nnx

    flat = {}
    for path, var in nnx.to_flat_state(nnx.state(model)):
        if isinstance(var, nnx.Variable):
            flat[tuple(path)] = var
    modules = {tuple(path): module for path, module in nnx.iter_graph(model) if isinstance(module, nnx.Module)}
    params, adapters = {}, {}
    for path, var in flat.items():
        name = str(path[-1])
        if isinstance(var, nnx.LoRAParam):
            adapters[path] = np.asarray(var.get_value(), dtype=np.float32)
        elif isinstance(var, nnx.Param):
            params[path] = np.asarray(var.get_value())
    merged = []
    scale = float(alpha) / float(rank) if rank else 0.0
    for path in sorted(p for p in adapters if str(p[-1]).endswith(SUFFIX_A)):
        weight = str(path[-1])[:-len(SUFFIX_A)]
        target = path[:-1] + (weight,)
        a, b = adapters[path], adapters[path[:-1] + (weight + SUFFIX_B,)]
        module = modules[path[:-1]]
        base = params[target]
        if hasattr(module, "einsum_str"):
            delta = _einsum_delta(module.einsum_str, a, b)
        else:
            delta = (a.reshape(-1, a.shape[-1]) @ b.reshape(b.shape[0], -1))
        params[target] = (base.astype(np.float32) + scale * delta.reshape(base.shape)).astype(base.dtype)
        merged.append("/".join(map(str, target)))
    return params, merged


def load_params(model, params):
    """Write ``params`` (as ``merged_params`` gives them) into a plain model of
    the same architecture; ``model``."""
    from flax import nnx

    state = nnx.state(model, nnx.Param)
    for path, var in nnx.to_flat_state(state):
        var.set_value(params[tuple(path)].astype(np.asarray(var.get_value()).dtype))
    nnx.update(model, state)
    return model
