"""A real preset's weights made ready once per host and once per fleet
(``workers/weights/ensure.py``): real processes, a real ``flock``, a real
file artifact store; only the converter is a cheap stand-in (the real one,
~40 s and 3 GB, is tested once in ``tests/training/test_gguf_convert.py``)."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tasks.artifacts import ArtifactStore
from tasks.models import get_model
from tasks.settings import Settings
from workers.training.errors import WeightsNotFound
from workers.training.model import weights_dir
from workers.training.spec import Placement
from workers.weights import convert, ensure

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = get_model("gemma3-270m")

#: The stand-in converter: writes a complete folder the way the real one
#: does (staging, then rename), counts its runs in $FAKE_CONVERT_LOG, and
#: takes a second, so that concurrent callers really overlap.  With
#: FAKE_CONVERT_FAIL set it fails like the real one on a bad GGUF.
FAKE = textwrap.dedent('''
    import hashlib, json, os, sys, time
    out = sys.argv[sys.argv.index("--out") + 1]
    with open(os.environ["FAKE_CONVERT_LOG"], "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    print("assembling the GGUF (fake)", flush=True)
    if os.environ.get("FAKE_CONVERT_FAIL"):
        sys.stderr.write("error: WeightsInvalid: GGUF x: sha256 0000 is not the expected abcd\\n")
        sys.exit(2)
    time.sleep(1.0)
    staging = out + ".fake-staging"
    os.makedirs(staging)
    files = {}
    for name, data in (("model.safetensors", os.urandom(4096)), ("tokenizer.model", b"spm" * 100)):
        with open(os.path.join(staging, name), "wb") as fh:
            fh.write(data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = {"format": 1, "model_id": "gemma3-270m", "files": files,
                "source": {"gguf_sha256": "%s"}, "smoke": {"loss": 2.6}}
    with open(os.path.join(staging, "weights.json"), "w") as fh:
        json.dump(manifest, fh)
    os.replace(staging, out)
    print(f"converted into {out}: fake", flush=True)
''' % convert.SOURCE_SHA256)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_convert.py"
    script.write_text(FAKE)
    log = tmp_path / "conversions.log"
    monkeypatch.setenv("FAKE_CONVERT_LOG", str(log))
    monkeypatch.delenv("FAKE_CONVERT_FAIL", raising=False)
    monkeypatch.delenv("WEIGHTS_DIR", raising=False)

    class Fake:
        argv = [sys.executable, str(script)]
        path = script

        @staticmethod
        def runs():
            return len(log.read_text().splitlines()) if log.exists() else 0

    return Fake


def host(tmp_path, name, store_dir):
    """A host's Settings: its own DATA_DIR, the fleet's file store."""
    return Settings().replace(data_dir=str(tmp_path / name), artifacts="file://" + str(store_dir))


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_a_first_use_converts_installs_and_uploads_then_reuses(tmp_path, fake, monkeypatch):
    # Given a host with no weights and an empty store
    monkeypatch.setattr(ensure, "BEAT_S", 0.1)
    settings = host(tmp_path, "a", tmp_path / "store")
    lines, beats = [], []
    # When a run needs gemma3-270m
    folder = ensure.ensure(SPEC, settings, say=lines.append, beat=lambda: beats.append(1), convert_argv=fake.argv)
    # Then it was converted once into $DATA_DIR/models/gemma3-270m, and said so in the run's log
    assert folder == os.path.join(settings.models_dir, "gemma3-270m")
    assert fake.runs() == 1 and ensure.is_complete(folder, SPEC)
    assert any("converting its weights" in line for line in lines)
    assert any(line.startswith("converted into") for line in lines)
    assert beats, "the run's heartbeat went on during the conversion"
    # And the three files are in the store, under the GGUF's checksum
    prefix = ensure.store_prefix(SPEC, convert.SOURCE_SHA256)
    assert prefix == f"models/gemma3-270m/{convert.SOURCE_SHA256[:16]}"
    store = ArtifactStore(settings.artifacts_url)
    for name in ("model.safetensors", "tokenizer.model", "weights.json"):
        assert sha(store.path(f"{prefix}/{name}")) == sha(os.path.join(folder, name))
    # And no staging folder is left beside it
    assert sorted(os.listdir(settings.models_dir)) == [".gemma3-270m.lock", "gemma3-270m"]
    # When another run needs it: nothing is converted or said
    lines.clear()
    assert ensure.ensure(SPEC, settings, say=lines.append, convert_argv=fake.argv) == folder
    assert fake.runs() == 1 and lines == []


def test_concurrent_first_uses_on_one_host_convert_once(tmp_path, fake):
    # Given two worker processes of one host starting a gemma3-270m run at once
    data_dir = tmp_path / "host"
    code = textwrap.dedent(f'''
        import dataclasses, sys
        from tasks.models import get_model
        from tasks.settings import Settings
        from workers.weights.ensure import ensure
        settings = Settings().replace(data_dir={str(data_dir)!r}, artifacts="file://{tmp_path}/store")
        print("FOLDER", ensure(get_model("gemma3-270m"), settings, say=print, convert_argv={fake.argv!r}))
    ''')
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    # Then both got the same folder, the conversion ran once, and one of them waited for it
    assert [proc.returncode for proc in procs] == [0, 0], outs
    folders = {line for out, _ in outs for line in out.splitlines() if line.startswith("FOLDER ")}
    assert folders == {f"FOLDER {data_dir}/models/gemma3-270m"}
    assert fake.runs() == 1
    assert sum("another worker of this host is preparing" in out for out, _ in outs) == 1


def test_a_second_host_downloads_and_checks_instead_of_converting(tmp_path, fake):
    # Given host a converted and uploaded the weights
    store_dir = tmp_path / "store"
    first = ensure.ensure(SPEC, host(tmp_path, "a", store_dir), convert_argv=fake.argv)
    # When host b (another DATA_DIR, the same store) needs them
    lines = []
    second = ensure.ensure(SPEC, host(tmp_path, "b", store_dir), say=lines.append, convert_argv=fake.argv)
    # Then it downloaded them (checked) and converted nothing
    assert fake.runs() == 1
    assert second.startswith(str(tmp_path / "b")) and ensure.is_complete(second, SPEC)
    for name in ("model.safetensors", "tokenizer.model", "weights.json"):
        assert sha(os.path.join(first, name)) == sha(os.path.join(second, name))
    assert any("downloading its converted weights" in line for line in lines)
    assert any("sha256 checked" in line for line in lines)


def test_a_tampered_store_object_is_refused_and_replaced(tmp_path, fake):
    # Given host a's upload, then one store object altered (same size, other bytes)
    store_dir = tmp_path / "store"
    ensure.ensure(SPEC, host(tmp_path, "a", store_dir), convert_argv=fake.argv)
    store = ArtifactStore("file://" + str(store_dir))
    key = f"{ensure.store_prefix(SPEC, convert.SOURCE_SHA256)}/model.safetensors"
    size = os.path.getsize(store.path(key))
    with open(store.path(key), "r+b") as fh:
        fh.write(b"\0" * 64)
    assert os.path.getsize(store.path(key)) == size
    # When host b needs the weights
    lines = []
    folder = ensure.ensure(SPEC, host(tmp_path, "b", store_dir), say=lines.append, convert_argv=fake.argv)
    # Then the object was refused, host b converted its own, and the store holds a consistent copy again
    assert any("refused the artifact store's" in line and "model.safetensors" in line for line in lines)
    assert fake.runs() == 2 and ensure.is_complete(folder, SPEC)
    manifest = json.loads(open(store.path(key.replace("model.safetensors", "weights.json"))).read())
    assert sha(store.path(key)) == manifest["files"]["model.safetensors"]["sha256"] == \
        sha(os.path.join(folder, "model.safetensors"))
    assert sorted(os.listdir(os.path.dirname(folder))) == [".gemma3-270m.lock", "gemma3-270m"]


def test_a_failed_conversion_fails_the_run_with_its_reason_and_installs_nothing(tmp_path, fake, monkeypatch):
    # Given a converter that finds the GGUF corrupt
    monkeypatch.setenv("FAKE_CONVERT_FAIL", "1")
    settings = host(tmp_path, "a", tmp_path / "store")
    # When a run needs the weights
    with pytest.raises(ensure.WeightsUnavailable) as failure:
        ensure.ensure(SPEC, settings, convert_argv=fake.argv)
    # Then it fails (not retried: exit 2) saying why, and nothing is installed or uploaded
    assert "WeightsInvalid: GGUF x: sha256" in str(failure.value) and failure.value.exit_code == 2
    assert not os.path.exists(os.path.join(settings.models_dir, "gemma3-270m"))
    assert not os.path.exists(tmp_path / "store" / "models")


def test_an_incomplete_folder_is_made_again(tmp_path, fake):
    # Given installed weights, then a file removed by hand
    settings = host(tmp_path, "a", tmp_path / "nostore")
    folder = ensure.ensure(SPEC, settings, convert_argv=fake.argv)
    os.remove(os.path.join(folder, "tokenizer.model"))
    assert not ensure.is_complete(folder, SPEC)
    # When a run needs them: the store's copy is installed again (no conversion)
    assert ensure.ensure(SPEC, settings, convert_argv=fake.argv) == folder
    assert ensure.is_complete(folder, SPEC) and fake.runs() == 1


def test_weights_dir_wins_when_its_folder_exists(tmp_path, fake):
    # Given WEIGHTS_DIR set but without a gemma3-270m folder: the default folder is made
    settings = host(tmp_path, "a", tmp_path / "store").replace(weights_dir=str(tmp_path / "mine"))
    assert ensure.ensure(SPEC, settings, convert_argv=fake.argv) == os.path.join(settings.models_dir, "gemma3-270m")
    # Given the operator's own folder: it is used as it is, nothing converted
    (tmp_path / "mine" / "gemma3-270m").mkdir(parents=True)
    assert ensure.ensure(SPEC, settings, convert_argv=fake.argv) == str(tmp_path / "mine" / "gemma3-270m")
    assert fake.runs() == 1


def test_a_model_without_weights_needs_nothing(tmp_path, fake):
    settings = host(tmp_path, "a", tmp_path / "store")
    assert ensure.ensure(get_model("gemma3-tiny"), settings, convert_argv=fake.argv) is None
    assert fake.runs() == 0 and not os.path.exists(settings.models_dir)


def test_the_training_prefers_the_placement_folder_then_weights_dir_then_data_dir(tmp_path, monkeypatch):
    # Given a placement naming the folder the worker made ready
    placed = tmp_path / "placed"
    placed.mkdir()
    (placed / "model.safetensors").write_bytes(b"x")
    (placed / "tokenizer.model").write_bytes(b"x")
    assert Placement(run_id="r", run_dir="d", dataset_kind="synthetic", dataset_path=None,
                     effective_max_seq_length=64, weights_dir=str(placed)).weights_dir == str(placed)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WEIGHTS_DIR", str(tmp_path / "mine"))
    assert weights_dir(SPEC, str(placed)) == str(placed)
    # Without it: neither WEIGHTS_DIR's nor DATA_DIR's folder exists, and the error names both
    with pytest.raises(WeightsNotFound) as missing:
        weights_dir(SPEC)
    assert str(tmp_path / "mine" / "gemma3-270m") in str(missing.value)
    assert str(tmp_path / "data" / "models" / "gemma3-270m") in str(missing.value)
    # DATA_DIR's converted copy is found, and WEIGHTS_DIR's wins over it when present
    os.makedirs(tmp_path / "data" / "models")
    os.symlink(placed, tmp_path / "data" / "models" / "gemma3-270m")
    assert weights_dir(SPEC) == str(tmp_path / "data" / "models" / "gemma3-270m")
    os.makedirs(tmp_path / "mine")
    os.symlink(placed, tmp_path / "mine" / "gemma3-270m")
    assert weights_dir(SPEC) == str(tmp_path / "mine" / "gemma3-270m")
