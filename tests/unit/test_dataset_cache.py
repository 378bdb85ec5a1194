"""A worker's cache of the artifact store's datasets (``workers/dataset_cache.py``)
on a real file store."""

import hashlib
import io
import json
import os

import pytest

from tasks import catalog
from tasks.artifacts import ArtifactStore
from tasks.errors import InvalidDataset, StoreUnavailable
from tasks.settings import Settings
from workers import dataset_cache, runner

GOOD = '{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n'


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "_listings", {})
    return Settings().replace(data_dir=str(tmp_path), artifacts="", store_patience_s=2)


@pytest.fixture
def store(settings):
    return ArtifactStore(settings.artifacts_url)


def upload(store, key, text):
    path = store.path(f"datasets/{key}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp-x"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def want(key):
    return catalog.Dataset(key=key, kind="jsonl", description="", origin="store")


class Opens:
    """Counts the store's downloads."""

    def __init__(self, store, monkeypatch):
        self.count = 0
        real = store.open

        def counting(key):
            self.count += 1
            return real(key)

        monkeypatch.setattr(store, "open", counting)


def test_a_store_dataset_is_downloaded_once_named_by_its_sha256_and_reused(store, settings, monkeypatch):
    # Given a dataset in the store
    upload(store, "faq", GOOD)
    opens = Opens(store, monkeypatch)
    # When a run needs it
    first = dataset_cache.local_copy(want("faq"), store, settings)
    # Then it is a local file named by the content's SHA-256, validated, with its object's metadata
    digest = hashlib.sha256(GOOD.encode()).hexdigest()
    assert first.path == str(dataset_cache.cache_dir(settings) / f"{digest}.jsonl")
    assert open(first.path).read() == GOOD
    assert (first.sha256, first.examples, first.origin, first.size) == (digest, 2, "store", len(GOOD))
    assert first.uri == store.uri("datasets/faq.jsonl") and first.etag
    # And a second run reuses the copy: no download, same file
    inode = os.stat(first.path).st_ino
    second = dataset_cache.local_copy(want("faq"), store, settings)
    assert second == first
    assert os.stat(second.path).st_ino == inode
    assert opens.count == 1
    # And no temporary file is left behind
    assert not [p for p in dataset_cache.cache_dir(settings).iterdir() if p.name.startswith(".")]


def test_a_replaced_object_is_downloaded_again(store, settings, monkeypatch):
    upload(store, "faq", GOOD)
    first = dataset_cache.local_copy(want("faq"), store, settings)
    # Given the operator uploads a new version
    newer = GOOD + '{"prompt": "e", "completion": "f"}\n'
    upload(store, "faq", newer)
    # Then the next run gets it
    second = dataset_cache.local_copy(want("faq"), store, settings)
    assert second.examples == 3 and second.sha256 != first.sha256
    assert open(second.path).read() == newer


def test_a_malformed_object_fails_naming_the_line_and_is_not_cached(store, settings):
    # Given an object whose third line has no completion
    upload(store, "broken", GOOD + '{"prompt": "no completion"}\n')
    # When a run needs it, it fails naming the object and the line
    with pytest.raises(InvalidDataset, match=r"'broken' \(file://.*/datasets/broken.jsonl\): line 3: missing"):
        dataset_cache.local_copy(want("broken"), store, settings)
    # And nothing is cached
    root = dataset_cache.cache_dir(settings)
    assert not list(root.glob("*.jsonl")) and not list(root.glob(".*"))


def test_an_object_not_in_the_store_is_none(store, settings):
    assert dataset_cache.local_copy(want("nowhere"), store, settings) is None


def test_an_unreachable_store_fails_after_the_patience(store, settings, monkeypatch):
    # Given a store that never answers
    def down(key):
        raise StoreUnavailable("artifact store s3://x: EndpointConnectionError")

    monkeypatch.setattr(store, "stat", down)
    sleeps = []
    monkeypatch.setattr(dataset_cache.time, "sleep", lambda s: sleeps.append(s) or None)
    clock = iter(range(0, 10_000, 1))
    monkeypatch.setattr(dataset_cache.time, "monotonic", lambda: float(next(clock)))
    # Then the run fails with a StoreUnavailable that says what and how long
    with pytest.raises(StoreUnavailable, match=r"dataset 'faq': the artifact store could not be read within 2s"):
        dataset_cache.local_copy(want("faq"), store, settings)
    assert sleeps  # it tried again meanwhile


def test_an_object_replaced_during_the_download_is_fetched_again(store, settings, monkeypatch):
    # Given an S3-like store whose HEAD says an MD5 ETag, and whose first GET returns an older content
    upload(store, "faq", GOOD)
    md5 = hashlib.md5(GOOD.encode()).hexdigest()
    monkeypatch.setattr(store, "stat", lambda key: {"size": len(GOOD), "etag": md5})
    bodies = iter([GOOD.replace("a", "z").encode(), GOOD.encode()])
    monkeypatch.setattr(store, "open", lambda key: io.BytesIO(next(bodies)))
    # Then the content that matches the ETag is the one cached
    got = dataset_cache.local_copy(want("faq"), store, settings)
    assert open(got.path).read() == GOOD
    index = json.loads(next((dataset_cache.cache_dir(settings) / "index").iterdir()).read_text())
    assert index["etag"] == md5 and index["sha256"] == got.sha256


def test_the_runner_resolves_a_store_dataset_to_its_cached_copy(store, settings):
    upload(store, "faq", GOOD)
    dataset, model = runner.resolve({"dataset_key": "faq", "model_id": "llama3-tiny"}, settings)
    assert dataset.origin == "store" and dataset.path.startswith(str(dataset_cache.cache_dir(settings)))
    assert model.model_id == "llama3-tiny"
    # And a shipped key never goes to the store
    upload(store, "text-sft", '{"prompt": 1}\n')
    dataset, _ = runner.resolve({"dataset_key": "text-sft", "model_id": "llama3-tiny"}, settings)
    assert dataset.origin == "shipped"
    # And a key in neither place is an UnknownDataset
    with pytest.raises(runner.UnknownDataset):
        runner.resolve({"dataset_key": "nowhere", "model_id": "llama3-tiny"}, settings)
