"""The generation core: prompts in, completions out, with tunix's sampler.

No platform imports (no registry, no store): the worker's sampling program
(``workers/sampling/__main__.py``) calls it, and a training may call it at
its end to sample held-out prompts.  JAX and tunix are imported inside.

A prompt is rendered exactly as the training renders it
(``tokenizer.prompt_ids``: byte models ``BOS prompt SEP``, Gemma its chat
turns), and generation stops at the first of ``tokenizer.end_ids()``.
Temperature 0 is greedy (argmax: the same text every time, whatever the
seed); above 0 it samples the whole distribution (tunix's top-p mode with
``top_p=1``) from ``seed``, so a request with the same seed gives the same
text too.
"""

#: Largest prompt, in tokens after rendering, the sampler is given: longer
#: ones keep their tail (which opens the answer: SEP, or the model turn).
MAX_PROMPT_TOKENS = 1024


class PromptTokenizer:
    """Our tokenizers (``workers/training/data.py``) in the shape tunix's
    ``TokenizerAdapter`` accepts.  ``encode`` renders a *prompt*
    (``prompt_ids``: its BOS included; the sampler's own BOS is
    de-duplicated), so the sampler sees exactly what the training showed."""

    def __init__(self, tokenizer, max_prompt_tokens=MAX_PROMPT_TOKENS):
        self.inner = tokenizer
        self.max_prompt_tokens = max_prompt_tokens

    def encode(self, text, **_):
        ids = list(self.inner.prompt_ids(text))
        if len(ids) > self.max_prompt_tokens:
            ids = ids[:1] + ids[len(ids) - (self.max_prompt_tokens - 1):]
        return ids

    def decode(self, ids, **_):
        return self.inner.decode(ids)

    def bos_id(self):
        return self.inner.bos_id

    def eos_id(self):
        return self.inner.end_ids()[0]

    def pad_id(self):
        return self.inner.pad_id


def cache_config(model_spec, cache_size):
    from tunix.generate.sampler import CacheConfig

    return CacheConfig(cache_size=cache_size, num_layers=model_spec.num_layers,
                       num_kv_heads=model_spec.num_kv_heads, head_dim=model_spec.head_dim)


def _next_power_of_2(n):
    return 1 << max(0, (n - 1).bit_length())


def generate(model, tokenizer, prompts, *, model_spec, max_new_tokens=64, temperature=0.0, seed=0):
    """Complete each of ``prompts`` with ``model`` (a tunix nnx model).

    ``tokenizer`` is a ``ByteTokenizer`` or ``SentencePieceTokenizer``
    (``workers/training/data.py``); ``model_spec`` the model's
    ``tasks.models.ModelSpec`` (the KV cache's shape).  Returns one dict per
    prompt: ``{"prompt", "text", "token_ids", "num_tokens", "stopped"}``
    (``stopped``: ``"end"`` when the model ended its completion, ``"length"``
    at ``max_new_tokens``).  The end tokens are not part of ``text`` or
    ``token_ids``.
    """
    from tunix.generate.sampler import Sampler

    adapter = PromptTokenizer(tokenizer)
    longest = max(len(adapter.encode(p)) for p in prompts)
    # The sampler pads prompts to a power of two (one compiled shape per size).
    cache_size = _next_power_of_2(longest) + max_new_tokens
    sampler = Sampler(model, adapter, cache_config(model_spec, cache_size))
    ends = list(tokenizer.end_ids())
    kwargs = {}
    if temperature > 0:
        kwargs = dict(temperature=float(temperature), top_p=1.0, top_k=None)
    out = sampler(list(prompts), max_generation_steps=max_new_tokens, eos_tokens=ends, seed=int(seed),
                  **kwargs)
    samples = []
    for prompt, tokens in zip(prompts, out.tokens):
        ids = [int(t) for t in tokens]
        stopped = "length"
        # The sampler's tokens stop before the first end token (or run to the limit).
        if len(ids) < max_new_tokens:
            stopped = "end"
        ids = ids[:max_new_tokens]
        samples.append({"prompt": prompt, "text": tokenizer.decode(ids), "token_ids": ids, "num_tokens": len(ids),
                        "stopped": stopped})
    return samples
