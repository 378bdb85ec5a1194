"""An attempt's whole log (``workers/runner.py``: ``_AttemptLog``,
``_store_log``) into a local-folder store, and the scratch folder kept
while it is not there."""

import gzip
import threading
import uuid

import pytest

from tasks import artifacts
from tasks.artifacts import ArtifactStore, Scratch
from tasks.errors import StoreForbidden, StoreUnavailable
from workers import runner


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(f"file://{tmp_path}/artifacts")


@pytest.fixture
def run():
    return {"id": uuid.uuid4(), "attempts": 3}


def test_an_attempts_lines_from_many_threads_are_stored_whole_and_gzipped(tmp_path, store, run):
    # Given an attempt's log written from three threads at once, as the two
    # streams and the runner write it
    scratch = Scratch(tmp_path / "runs", run["id"], run["attempts"]).create()
    log = runner._AttemptLog(scratch.log)

    def write(stream):
        for i in range(20_000):
            log.write(f"{stream} {i}")

    threads = [threading.Thread(target=write, args=(name,)) for name in ("stdout", "stderr", "system")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # When it is stored
    assert runner._store_log(store, run, log, patience_s=1) is True
    # Then the store holds it under the attempt's key, gzipped, every line whole
    key = artifacts.log_key(run["id"], 3)
    assert key == f"runs/{run['id']}/logs/a3.log.gz" and artifacts.log_attempt(key) == 3
    with gzip.open(store.open(key), "rt") as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 60_000
    for stream in ("stdout", "stderr", "system"):
        assert [line for line in lines if line.startswith(stream + " ")] == [f"{stream} {i}" for i in range(20_000)]
    # And smaller than the file it came from
    assert store.stat(key)["size"] < scratch.log.stat().st_size / 3
    # And a write after the close is dropped, not an error
    log.write("late")


def test_a_log_the_store_cannot_take_is_not_stored_and_a_refusal_is_raised(tmp_path, store, run, monkeypatch):
    scratch = Scratch(tmp_path / "runs", run["id"], 1).create()
    log = runner._AttemptLog(scratch.log)
    log.write("a line")
    # Given a store that is down: the log is not stored, after its patience
    monkeypatch.setattr(ArtifactStore, "put_gzipped", lambda *a: (_ for _ in ()).throw(StoreUnavailable("down")))
    assert runner._store_log(store, run, log, patience_s=0.2) is False
    # Given a store that refuses our key: raised at once, not waited out
    monkeypatch.setattr(ArtifactStore, "put_gzipped",
                        lambda *a: (_ for _ in ()).throw(StoreForbidden("no", url="u", reason="403")))
    with pytest.raises(StoreForbidden):
        runner._store_log(store, run, log, patience_s=30)


def test_a_log_that_could_not_be_opened_leaves_nothing_to_store(tmp_path, store, run):
    # Given a log whose file could not be opened (its folder is gone)
    log = runner._AttemptLog(tmp_path / "gone" / "training.log")
    log.write("a line")
    assert log.error is not None
    # Then there is nothing to store, and nothing to keep the scratch folder for
    assert runner._store_log(store, run, log, patience_s=1) is True
    assert store.objects(artifacts.logs_prefix(run["id"])) == {}


class _Synced:
    def unuploaded(self):
        return []


def test_the_scratch_folder_stays_while_its_log_is_not_in_the_store(tmp_path, run):
    scratch = Scratch(tmp_path / "runs", run["id"], 1).create()
    said = []
    # When the log could not be stored, the folder stays, saying why
    runner._clean_up(scratch, _Synced(), True, False, say=said.append, log_stored=False)
    assert scratch.path.is_dir()
    assert said == [f"scratch folder {scratch.path} kept: the log not in the artifact store"]
    # When it is stored, the folder goes
    runner._clean_up(scratch, _Synced(), True, False, say=pytest.fail, log_stored=True)
    assert not scratch.path.exists()
