"""A SentencePiece ``tokenizer.model`` rebuilt from a GGUF's ``tokenizer.ggml.*`` fields.

llama.cpp's ``"llama"`` tokenizer model is SentencePiece; the GGUF keeps every
piece with its score and type (GGUF's type numbers are SentencePiece's), so a
``ModelProto`` can be written back with three fixes (measured, notes section 3):

1. ``<unk>`` (id 3) becomes UNKNOWN: llama.cpp writes it as CONTROL, and
   SentencePiece refuses a model without an UNKNOWN piece;
2. ``<start_of_turn>`` / ``<end_of_turn>`` (105/106) become USER_DEFINED:
   as CONTROL, ``<start_of_turn>user\\n`` would not encode to one id, and the
   chat templates (``workers/training/data.py``) rely on it;
3. user-defined pieces get ``' '`` back as ``'▁'``: llama.cpp pre-normalises
   the whitespace-run pieces (ids 138-167).

"The capital of France is" then encodes to ``[818, 5279, 529, 7001, 563]``,
the known Gemma 3 ids.
"""

from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from workers.training.errors import WeightsInvalid

#: Pieces llama.cpp marks CONTROL that templates need as single user-defined ids.
TURN_PIECES = ("<start_of_turn>", "<end_of_turn>")

_USER_DEFINED = sp_pb2.ModelProto.SentencePiece.USER_DEFINED
_UNKNOWN = sp_pb2.ModelProto.SentencePiece.UNKNOWN
_KNOWN_TYPES = {1, 2, 3, 4, 5, 6}


def _field(reader, key):
    field = reader.fields.get(key)
    if field is None:
        raise WeightsInvalid(f"GGUF: tokenizer field {key!r} is missing")
    return field


def _array(reader, key):
    field = _field(reader, key)
    return [field.parts[i] for i in field.data]


def build_model_proto(reader):
    """The serialized SentencePiece model of the GGUF ``reader`` (a ``gguf.GGUFReader``)."""
    if _field(reader, "tokenizer.ggml.model").contents() != "llama":
        raise WeightsInvalid("GGUF: tokenizer.ggml.model is not 'llama' (SentencePiece)")
    tokens = [bytes(part).decode("utf-8") for part in _array(reader, "tokenizer.ggml.tokens")]
    scores = [float(part[0]) for part in _array(reader, "tokenizer.ggml.scores")]
    types = [int(part[0]) for part in _array(reader, "tokenizer.ggml.token_type")]
    if not len(tokens) == len(scores) == len(types):
        raise WeightsInvalid(f"GGUF: {len(tokens)} tokens, {len(scores)} scores, {len(types)} types")
    special = {name: int(_field(reader, f"tokenizer.ggml.{name}_token_id").contents())
               for name in ("unknown", "bos", "eos", "padding")}
    add_space_prefix = bool(_field(reader, "tokenizer.ggml.add_space_prefix").contents())

    proto = sp_pb2.ModelProto()
    for i, (piece, score, kind) in enumerate(zip(tokens, scores, types)):
        if kind not in _KNOWN_TYPES:
            raise WeightsInvalid(f"GGUF: token {i} has unknown type {kind}")
        if i == special["unknown"]:
            kind = _UNKNOWN                                   # fix 1
        elif piece in TURN_PIECES:
            kind = _USER_DEFINED                              # fix 2
        if kind == _USER_DEFINED:
            piece = piece.replace(" ", "\u2581")              # fix 3
        entry = proto.pieces.add()
        entry.piece, entry.score, entry.type = piece, score, kind

    trainer = proto.trainer_spec
    trainer.model_type = sp_pb2.TrainerSpec.BPE
    trainer.vocab_size = len(tokens)
    trainer.byte_fallback = True
    trainer.unk_id, trainer.bos_id = special["unknown"], special["bos"]
    trainer.eos_id, trainer.pad_id = special["eos"], special["padding"]
    trainer.unk_piece, trainer.bos_piece = tokens[special["unknown"]], tokens[special["bos"]]
    trainer.eos_piece, trainer.pad_piece = tokens[special["eos"]], tokens[special["padding"]]

    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = add_space_prefix
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    return proto.SerializeToString()
