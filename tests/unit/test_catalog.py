"""The dataset catalog: precedence of its four places, and the store listing's
short-lived cache (every submit validates against it)."""

import logging
import os
import pathlib
import threading
import time

import pytest

from tasks import catalog
from tasks.artifacts import ArtifactStore
from tasks.errors import StoreUnavailable
from tasks.settings import Settings

#: What every listing holds whatever the store says: the built-in set and the shipped files.
BUILTIN_AND_SHIPPED = {"synthetic"} | {p.stem for p in catalog.SHIPPED_DIR.glob("*.jsonl")}

LINE = '{"prompt": "p", "completion": "c"}\n'


class FakeStore:
    """``list`` answers from a dict, counting calls; ``down`` makes it fail, ``slow_s`` makes it slow."""

    url = "s3://fake/prefix"

    def __init__(self, objects=None):
        self.objects = dict(objects or {})
        self.calls = 0
        self.down = False
        self.slow_s = 0

    def uri(self, key):
        return f"{self.url}/{key}"

    def list(self, prefix):
        self.calls += 1
        if self.slow_s:
            time.sleep(self.slow_s)
        if self.down:
            raise StoreUnavailable("artifact store s3://fake/prefix: ConnectTimeoutError")
        return {k: v for k, v in self.objects.items() if k.startswith(prefix + "/")}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def obj(size=10, etag="abc"):
    return {"size": size, "etag": etag}


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "_listings", {})
    monkeypatch.setattr(catalog, "_shadowed", set())
    s = Settings().replace(data_dir=str(tmp_path), artifacts="", datasets_ttl_s=5)
    (tmp_path / "datasets").mkdir()
    return s


def put_object(settings, name, text=LINE):
    folder = settings.data_dir + "/artifacts/datasets"
    os.makedirs(folder, exist_ok=True)
    with open(f"{folder}/{name}", "w") as fh:
        fh.write(text)


# --------------------------------------------------------------------------
# Precedence


def test_a_store_object_is_listed_with_its_origin_size_and_etag(settings):
    # Given an object datasets/faq.jsonl in the (file) store
    put_object(settings, "faq.jsonl")
    # When the catalog is read
    found = catalog.datasets(settings)
    # Then it is listed as a store dataset, with its size and an etag
    faq = found["faq"]
    assert (faq.origin, faq.kind, faq.size) == ("store", "jsonl", len(LINE))
    assert faq.etag and faq.uri.endswith("/datasets/faq.jsonl")
    assert faq.listing() == {"key": "faq", "kind": "jsonl", "description": faq.description, "origin": "store",
                             "size": len(LINE), "etag": faq.etag,
                             "data_kind": None, "methods": ["sft", "dpo", "grpo"]}
    assert found["synthetic"].origin == "builtin" and found["text-sft"].origin == "shipped"


def test_a_shipped_or_local_dataset_wins_over_a_store_object_of_the_same_key(settings, caplog):
    # Given store objects under a shipped key, a built-in key and an operator file's key
    (pathlib.Path(settings.datasets_dir) / "mine.jsonl").write_text(LINE)
    for name in ("text-sft.jsonl", "synthetic.jsonl", "mine.jsonl", "only-store.jsonl"):
        put_object(settings, name)
    # When the catalog is read
    with caplog.at_level(logging.WARNING, logger="tasks.catalog"):
        found = catalog.datasets(settings)
        catalog.datasets(settings)
    # Then the machine's own datasets win, and the store adds the key no one else has
    assert found["text-sft"].origin == "shipped"
    assert found["synthetic"].origin == "builtin"
    assert found["mine"].origin == "operator"
    assert found["only-store"].origin == "store"
    # And each shadowed object is reported once
    shadowed = [r.getMessage() for r in caplog.records if "shadowed" in r.getMessage()]
    assert len(shadowed) == 3, shadowed


def test_objects_of_other_names_are_not_datasets(settings):
    # Given objects that are not datasets/<key>.jsonl with a valid key
    for name in ("Upper.jsonl", "notes.txt", "x.jsonl.tmp-123", "-bad.jsonl"):
        put_object(settings, name)
    # Then none is listed
    assert set(catalog.datasets(settings)) == BUILTIN_AND_SHIPPED


# --------------------------------------------------------------------------
# The store listing's cache


def test_the_store_is_listed_at_most_once_per_ttl():
    # Given a listing with a 5 s TTL
    store, clock = FakeStore({"datasets/a.jsonl": obj()}), Clock()
    listing = catalog.StoreListing(store, ttl_s=5, clock=clock)
    # When it is read many times within the TTL
    for _ in range(100):
        assert set(listing.get()) == {"a"}
    # Then the store was listed once
    assert store.calls == 1
    # And an object added meanwhile appears once the TTL has passed
    store.objects["datasets/b.jsonl"] = obj()
    clock.now += 4.9
    assert set(listing.get()) == {"a"}
    clock.now += 0.2
    assert set(listing.get()) == {"a", "b"}
    assert store.calls == 2


def test_a_miss_may_ask_for_a_younger_listing_but_never_older_than_the_ttl():
    store, clock = FakeStore({"datasets/a.jsonl": obj()}), Clock()
    listing = catalog.StoreListing(store, ttl_s=5, clock=clock)
    listing.get()
    # Given an upload just after the listing
    store.objects["datasets/new.jsonl"] = obj()
    # When a submit asks for a listing at most 1 s old, 0.5 s later: the cached one serves
    clock.now += 0.5
    assert "new" not in listing.get(max_age=1)
    # And 1.5 s later the store is listed again
    clock.now += 1.0
    assert "new" in listing.get(max_age=1)
    assert store.calls == 2
    # And a max_age above the TTL is the TTL
    clock.now += 5.1
    listing.get(max_age=60)
    assert store.calls == 3


def test_an_unreachable_store_serves_the_last_known_listing_and_warns_once(caplog):
    # Given a listing that answered once
    store, clock = FakeStore({"datasets/a.jsonl": obj()}), Clock()
    listing = catalog.StoreListing(store, ttl_s=5, clock=clock)
    listing.get()
    # When the store goes down, over several TTLs
    store.down = True
    with caplog.at_level(logging.WARNING, logger="tasks.catalog"):
        for _ in range(3):
            clock.now += 6
            # Then every read still gets the last known listing, no error
            assert set(listing.get()) == {"a"}
            # and within a TTL it is not tried again
            listing.get()
    assert store.calls == 4
    assert isinstance(listing.error, StoreUnavailable)
    warnings = [r for r in caplog.records if "not listed" in r.getMessage()]
    assert len(warnings) == 1
    # And once it answers again the listing moves on
    store.down = False
    store.objects["datasets/b.jsonl"] = obj()
    clock.now += 6
    with caplog.at_level(logging.WARNING, logger="tasks.catalog"):
        assert set(listing.get()) == {"a", "b"}
    assert listing.error is None
    assert any("listed again" in r.getMessage() for r in caplog.records)


def test_a_store_that_never_answered_lists_nothing_and_the_rest_still_lists(settings, monkeypatch):
    # Given an ARTIFACTS_URL whose server does not answer
    store = FakeStore({"datasets/a.jsonl": obj()})
    store.down = True
    monkeypatch.setitem(catalog._listings, settings.artifacts_url, catalog.StoreListing(store, ttl_s=5))
    # Then the catalog holds the machine's datasets and nothing of the store's
    assert set(catalog.datasets(settings)) == BUILTIN_AND_SHIPPED


def test_a_slow_store_costs_one_request_at_most_the_refresh_wait():
    # Given a listing that answered once, and a store that now takes 2 s to answer
    store, clock = FakeStore({"datasets/a.jsonl": obj()}), Clock()
    listing = catalog.StoreListing(store, ttl_s=5, wait_s=0.2, clock=clock)
    listing.get()
    store.slow_s = 1.0
    store.objects["datasets/b.jsonl"] = obj()
    clock.now += 6
    # When the TTL has passed: the request that starts the refresh waits 0.2 s, then serves the last listing
    started = time.monotonic()
    assert set(listing.get()) == {"a"}
    assert time.monotonic() - started < 0.8
    # And the requests meanwhile do not wait at all, nor start another listing
    started = time.monotonic()
    for _ in range(20):
        assert set(listing.get()) == {"a"}
    assert time.monotonic() - started < 0.1
    # And once the refresh finished, its listing serves
    for thread in threading.enumerate():
        if thread.name == "tunix-store-datasets":
            thread.join(5)
    assert set(listing.get()) == {"a", "b"}
    assert store.calls == 2


def test_a_bad_artifacts_url_lists_the_rest(settings):
    bad = settings.replace(artifacts="ftp://nowhere/x")
    assert set(catalog.datasets(bad)) == BUILTIN_AND_SHIPPED


def test_the_real_file_store_lists_what_the_upload_command_put(settings, tmp_path):
    # Given a file uploaded with the operator command
    from tasks import datasets

    source = tmp_path / "upload.jsonl"
    source.write_text(LINE * 3)
    done = datasets.put(source, "from-cli", settings)
    assert done["examples"] == 3 and done["uri"].endswith("/datasets/from-cli.jsonl")
    # Then the store holds it and the catalog lists it
    assert ArtifactStore(settings.artifacts_url).exists("datasets/from-cli.jsonl")
    assert catalog.datasets(settings, max_age=0)["from-cli"].size == len(LINE) * 3


def test_the_upload_command_names_a_bad_line_and_uploads_nothing(settings, tmp_path):
    from tasks import datasets

    source = tmp_path / "bad.jsonl"
    source.write_text(LINE + '{"prompt": "p"}\n')
    with pytest.raises(ValueError, match="line 2: missing field"):
        datasets.put(source, "bad", settings)
    with pytest.raises(ValueError, match="shipped dataset"):
        datasets.put(tmp_path / "bad.jsonl", "text-sft", settings)
    assert not ArtifactStore(settings.artifacts_url).exists("datasets/bad.jsonl")
    # And the command line says so with exit status 2
    assert datasets.main(["put", str(source), "bad"]) == 2


def test_the_first_listing_of_a_process_may_take_longer():
    # Given a store whose first answer takes 0.3 s (the client is built, the first connection made)
    store = FakeStore({"datasets/a.jsonl": obj()})
    store.slow_s = 0.3
    listing = catalog.StoreListing(store, ttl_s=5, wait_s=0.05, first_wait_s=3)
    # Then the first read waits for it rather than listing nothing
    assert set(listing.get()) == {"a"}
