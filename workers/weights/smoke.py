"""A converted model's smoke test: does it know English?

The folder is loaded exactly as a training loads it (``build_model`` through
tunix's ``params_safetensors``) and scores fixed plain sentences: the mean
next-token cross-entropy of the pretrained Gemma 3 270M is about 3 nats per
token (2.95 on 20 sentences, notes section 4), a randomly initialised one
about 12.5, and the conversion quirks (norms kept as ``1 + w``, an
un-permuted q/k, a rescaled embedding) give 7.3 to 18.3.  A threshold of 4
tells them apart with room on both sides.
"""

import os

import numpy as np

#: Fixed sentences, written for this test (none is a known benchmark text).
SENTENCES = (
    "The capital of France is Paris, and the capital of Germany is Berlin.",
    "Once upon a time, there was a little girl who lived in a small village near the forest.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "She opened the window to let some fresh air into the room.",
    "The meeting has been moved to Thursday afternoon at three o'clock.",
    "Please remember to bring your passport when you travel abroad.",
    "He bought a loaf of bread, a carton of milk and a dozen eggs at the store.",
    "The sun rises in the east and sets in the west.",
)

#: Mean nats per token above which the weights are judged broken.
MAX_LOSS = 4.0


def score(folder, spec, sentences=SENTENCES):
    """``(mean loss in nats per predicted token, tokens scored)`` of the model
    in ``folder`` (catalog ``spec``) on ``sentences``, each after ``<bos>``."""
    from workers.training.data import SentencePieceTokenizer
    from workers.training.model import build_model, setup_jax_env

    # On the CPU even on a GPU host: 8 short sentences, and the GPU may be a training's.
    setup_jax_env("cpu")
    import jax
    import jax.numpy as jnp
    from tunix.sft.utils import build_positions_from_mask, make_causal_attn_mask

    tokenizer = SentencePieceTokenizer(os.path.join(folder, spec.tokenizer_file))
    rows = [[tokenizer.bos_id, *tokenizer.encode(text)] for text in sentences]
    length = max(len(row) for row in rows)
    tokens = np.full((len(rows), length), tokenizer.pad_id, dtype=np.int32)
    valid = np.zeros((len(rows), length), dtype=bool)
    for i, row in enumerate(rows):
        tokens[i, :len(row)], valid[i, :len(row)] = row, True

    model = build_model(spec, 0, folder)
    mask = jnp.asarray(valid)
    logits, _ = model(jnp.asarray(tokens), build_positions_from_mask(mask), None, make_causal_attn_mask(mask))
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    target = jnp.asarray(tokens[:, 1:])
    nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    weight = jnp.asarray(valid[:, 1:], dtype=jnp.float32)
    count = float(weight.sum())
    return float((nll * weight).sum() / count), int(count)
