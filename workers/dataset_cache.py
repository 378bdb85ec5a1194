"""A worker's local copies of the artifact store's datasets.

A run on a store dataset (``datasets/<key>.jsonl``, see ``tasks/catalog.py``)
trains or dry-runs from a local file; this module fetches it once per
content and host::

    $DATA_DIR/cache/datasets/<sha256>.jsonl              the content, named by its checksum
    $DATA_DIR/cache/datasets/index/<key>-<etag hash>.json  {"key", "etag", "size", "sha256", "examples"}

Each run asks the store for the object's current size and ETag (one HEAD,
not a listing: a worker's view is never older than the object); an index
entry for that key and ETag whose file is present is reused, nothing
downloaded.  Otherwise the object is streamed into a temporary file while
its SHA-256 is computed, validated line by line (a malformed line fails
the run with ``InvalidDataset`` naming it, and nothing is cached), then
renamed into place, and its index entry written (both atomic, so workers
of one host may fetch the same dataset at once).  An object replaced
between the HEAD and the download (its size, or a single-part upload's
MD5, is not the HEAD's) is fetched again.

The folder is a cache: deleting it (or any file in it) costs a download.
"""

import contextlib
import hashlib
import json
import logging
import pathlib
import re
import time
from dataclasses import replace

from tasks import artifacts, catalog
from tasks.atomic import atomic_write
from tasks.datasets_jsonl import validate_jsonl
from tasks.errors import InvalidDataset, ObjectMissing, StoreUnavailable

logger = logging.getLogger(__name__)

#: Bytes read per chunk while downloading.
CHUNK = 1 << 20
#: Downloads of one run that found the object changed under them before it gives up.
MAX_CHANGED = 3
#: First and longest wait between tries of an unreachable store.
FIRST_RETRY_S, MAX_RETRY_S = 0.5, 5.0

_MD5 = re.compile(r"^[0-9a-f]{32}$")


class _Changed(Exception):
    """The object is not the one the HEAD described (replaced meanwhile)."""


def cache_dir(settings):
    return pathlib.Path(settings.data_dir) / "cache" / "datasets"


def _index_path(root, key, etag):
    return root / "index" / f"{key}-{hashlib.sha256(str(etag).encode()).hexdigest()[:20]}.json"


def _write_atomically(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(data)


def local_copy(dataset, store, settings, say=None):
    """``dataset`` (a store dataset of the catalog, or just its key in a
    ``Dataset``) with ``path`` set to its local copy, ``sha256``, ``size``,
    ``etag`` and ``examples`` filled in; None when the store has no such
    object.

    Raises:
      InvalidDataset: the object holds a malformed line (the message names it).
      StoreUnavailable: the store did not answer within ``STORE_PATIENCE_S``.
    """
    deadline = time.monotonic() + settings.store_patience_s
    delay = FIRST_RETRY_S
    while True:
        try:
            return _local_copy_once(dataset, store, cache_dir(settings), say)
        except StoreUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise StoreUnavailable(
                    f"dataset {dataset.key!r}: the artifact store could not be read within "
                    f"{settings.store_patience_s:g}s (STORE_PATIENCE_S): {exc}") from None
            logger.warning("dataset %r: artifact store unavailable, trying again in %.1fs: %s", dataset.key, delay,
                           exc)
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)


def _local_copy_once(dataset, store, root, say):
    object_key = artifacts.dataset_key(dataset.key)
    uri = store.uri(object_key)
    for _ in range(MAX_CHANGED):
        try:
            meta = store.stat(object_key)
        except ObjectMissing:
            return None
        found = catalog.store_object_dataset(store, object_key, meta["size"], meta["etag"])
        index = _index_path(root, dataset.key, meta["etag"])
        with contextlib.suppress(OSError, ValueError, KeyError):
            entry = json.loads(index.read_text())
            path = root / f"{entry['sha256']}.jsonl"
            if entry["etag"] == meta["etag"] and path.is_file():
                logger.info("dataset %r: cached copy %s reused", dataset.key, path.name)
                return replace(found, path=str(path), sha256=entry["sha256"], examples=entry["examples"])
        try:
            return _download(found, store, object_key, meta, root, index, say)
        except _Changed as exc:
            logger.warning("dataset %r: %s; fetching it again", dataset.key, exc)
        except ObjectMissing:
            return None
    raise StoreUnavailable(f"{uri} kept changing while it was downloaded ({MAX_CHANGED} tries)")


def _download(found, store, object_key, meta, root, index, say):
    root.mkdir(parents=True, exist_ok=True)
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    started = time.monotonic()

    def named():
        return f"{sha256.hexdigest()}.jsonl"

    with atomic_write(root, name=named) as dst:
        with store.open(object_key) as src:
            try:
                while chunk := src.read(CHUNK):
                    sha256.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError):
                    raise ObjectMissing(str(exc)) from None
                raise StoreUnavailable(f"{found.uri}: download failed: {type(exc).__name__}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - botocore and aiohttp errors mid-stream
                raise StoreUnavailable(f"{found.uri}: download failed: {type(exc).__name__}: {exc}") from None
        etag = str(meta["etag"])
        if meta["size"] is not None and size != meta["size"]:
            raise _Changed(f"{size} bytes downloaded, the object had {meta['size']}")
        if _MD5.match(etag) and md5.hexdigest() != etag:
            raise _Changed(f"MD5 {md5.hexdigest()} downloaded, the object's ETag is {etag}")
        dst.flush()
        try:
            examples = validate_jsonl(dst.name)
        except ValueError as exc:
            raise InvalidDataset(f"dataset {found.key!r} ({found.uri}): {exc}", field="dataset_key") from None
    digest = sha256.hexdigest()
    path = root / named()
    _write_atomically(index, json.dumps({"key": found.key, "etag": meta["etag"], "size": size, "sha256": digest,
                                         "examples": examples}).encode())
    message = (f"dataset {found.key!r}: {found.uri} downloaded ({size} bytes, sha256 {digest[:12]}, "
               f"{examples} examples) in {time.monotonic() - started:.2f}s")
    logger.info(message)
    if say is not None:
        say(message)
    return replace(found, path=str(path), sha256=digest, examples=examples)
