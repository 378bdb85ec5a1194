"""What this installation can run: datasets and models.

Datasets, by key, the first place that has a key wins:

1. ``synthetic``, built in;
2. the JSONL files shipped in ``tasks/data/`` (never shadowed);
3. an operator's ``<key>.jsonl`` in ``$DATA_DIR/datasets/`` (this machine's
   own; the one-machine path);
4. an operator's ``datasets/<key>.jsonl`` object in the artifact store
   (``ARTIFACTS_URL``, see ``tasks/artifacts.py``): what every host sees.

NOTE: a local file wins over a store object of the same key (a warning is
logged): what a key means on a host then never depends on whether the store
answers.  Keep a key in one place.

Every submit validates its ``dataset_key`` against this, so nothing here may
be slow: the local folders are read again only when their mtimes change, the
store's listing at most once per ``DATASETS_TTL_S`` (``StoreListing``), and
an unreachable store costs a warning and the last known listing, never an
error.  Models are listed in ``tasks/models.py``.
"""

import logging
import os
import pathlib
import re
import threading
import time
from dataclasses import asdict, dataclass

from .checks import check_of
from .datasets_jsonl import KIND_NAMES, jsonl_kind
from .instruction_sets import DESCRIPTIONS
from .models import MODELS, get_model  # noqa: F401  (re-exported)
from .settings import get_settings

logger = logging.getLogger(__name__)

#: What a dataset key (and so a dataset file's stem) may look like.
DATASET_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

SHIPPED_DIR = pathlib.Path(__file__).parent / "data"

#: Seconds the request that starts a refresh of the store's listing waits for
#: it; then it (and every request meanwhile) serves the last known listing
#: while the refresh goes on in the background.
REFRESH_WAIT_S = 1.0
#: The same for a process' first listing (its store client is built then:
#: imports, credentials, the first connection).
FIRST_WAIT_S = 5.0
#: A submit naming a key the listing lacks lists the store again if the
#: listing is older than this (an upload is usable at once; a flood of
#: unknown keys lists the store at most once per second and process).
MISS_MAX_AGE_S = 1.0


@dataclass(frozen=True)
class Dataset:
    key: str
    kind: str  # "synthetic" or "jsonl"
    description: str
    #: The local file (for a store dataset: the worker's cached copy, once resolved).
    path: str = None
    #: ``builtin``, ``shipped``, ``operator`` (``$DATA_DIR/datasets``) or ``store``.
    origin: str = "builtin"
    size: int = None
    #: A store object's ETag (S3: the MD5 of a single-part upload).
    etag: str = None
    #: A store object's URI.
    uri: str = None
    #: The SHA-256 of a store dataset's cached copy (set by the worker).
    sha256: str = None
    #: Records of a validated copy (set by the worker's cache).
    examples: int = None
    #: The kind of its records (``datasets_jsonl.RECORD_KINDS``); None for a
    #: store object, which no listing reads (its worker checks it).
    data_kind: str = "completion"

    def to_json(self):
        return asdict(self)

    def listing(self):
        """What ``GET /api/tunix/datasets`` shows of it (no local paths)."""
        item = {"key": self.key, "kind": self.kind, "description": self.description, "origin": self.origin,
                "data_kind": self.data_kind, "methods": methods_for(self.data_kind)}
        for name in ("size", "etag"):
            if getattr(self, name) is not None:
                item[name] = getattr(self, name)
        if self.origin == "shipped" and check_of(self.key)[0]:
            item["check"] = check_of(self.key)[0]
        return item


SYNTHETIC = Dataset(
    key="synthetic",
    kind="synthetic",
    description="Generated counting sequences; the loss falls within a few dozen steps.",
)


def methods_for(data_kind):
    """The training methods that take records of ``data_kind`` (None: unknown yet, any)."""
    from .run_spec import METHOD_DATA

    return [m for m, kind in METHOD_DATA.items() if data_kind is None or kind == data_kind]


def method_data_problem(dataset, method):
    """Why ``method`` cannot train on ``dataset`` (a sentence), or None."""
    from .run_spec import METHOD_DATA

    needs = METHOD_DATA[method]
    if dataset is None or dataset.data_kind is None or dataset.data_kind == needs:
        return None
    return (f"method {method} needs {KIND_NAMES[needs]}; dataset {dataset.key!r} holds "
            f"{KIND_NAMES[dataset.data_kind]}")


def _jsonl(path, origin):
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    data_kind = jsonl_kind(path) or "completion"
    described = DESCRIPTIONS.get(path.stem) if origin == "shipped" else None
    return Dataset(key=path.stem, kind="jsonl", description=described or f"JSONL {KIND_NAMES[data_kind]} ({origin})",
                   path=str(path), origin=origin, size=size, data_kind=data_kind)


#: (folders' modification times) -> the datasets found then.
_cache = {}


def _mtimes(folders):
    stamps = []
    for folder in folders:
        try:
            stamps.append(os.stat(folder).st_mtime_ns)
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def local_datasets(settings=None):
    """The datasets of this machine (1-3 above) by key; an operator's file
    never shadows a shipped one.

    Read again only when a folder changed (a file dropped, renamed or
    removed changes its folder's mtime): every submit validates against this,
    and listing both folders cost ~6% of the API's time under load."""
    settings = settings or get_settings()
    folders = (SHIPPED_DIR, pathlib.Path(settings.datasets_dir))
    key = (folders, _mtimes(folders))
    found = _cache.get(key)
    if found is not None:
        return dict(found)
    found = {SYNTHETIC.key: SYNTHETIC}
    for folder, origin in zip(folders, ("shipped", "operator")):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.jsonl")):
            if DATASET_KEY.match(path.stem) and path.stem not in found:
                found[path.stem] = _jsonl(path, origin)
    _cache.clear()
    _cache[key] = found
    return dict(found)


# --------------------------------------------------------------------------
# The artifact store's datasets


def store_object_dataset(store, object_key, size=None, etag=None):
    """The ``Dataset`` of the store object ``datasets/<key>.jsonl``, or None
    for an object of another name."""
    from .artifacts import DATASETS_PREFIX

    name = object_key[len(DATASETS_PREFIX) + 1:] if object_key.startswith(DATASETS_PREFIX + "/") else ""
    stem = name[:-len(".jsonl")] if name.endswith(".jsonl") else ""
    if not DATASET_KEY.match(stem):
        return None
    return Dataset(key=stem, kind="jsonl", description="JSONL records (artifact store)",
                   origin="store", size=size, etag=etag, uri=store.uri(object_key), data_kind=None)


class StoreListing:
    """The ``datasets/*.jsonl`` objects of one artifact store, listed at most
    once per ``ttl_s``.

    ``get`` never raises and never waits long: when the listing is older
    than ``ttl_s`` one caller starts a refresh in a thread and waits up to
    ``wait_s`` (``first_wait_s`` for the very first listing) for it; the
    others, and that one if the store is slow, get the last known listing
    (empty before the store first answered).  A store
    that fails is tried again ``ttl_s`` later; its outage is logged once,
    its recovery too."""

    def __init__(self, store, ttl_s, wait_s=REFRESH_WAIT_S, first_wait_s=FIRST_WAIT_S, clock=time.monotonic):
        self.store, self.ttl_s, self.wait_s, self.first_wait_s, self.clock = store, ttl_s, wait_s, first_wait_s, clock
        #: ``{key: Dataset}``; None until the store first answered.
        self.listing = None
        #: ``clock()`` of the last attempt, answered or not.
        self.attempted_at = None
        #: The last attempt's error; None when it answered.
        self.error = None
        self._lock = threading.Lock()
        self._refreshing = None

    def get(self, max_age=None):
        """``{key: Dataset}``, no older than ``max_age`` (default and at most
        ``ttl_s``) unless the store is slow or unreachable."""
        if self.store is None:
            return {}
        max_age = self.ttl_s if max_age is None else min(max_age, self.ttl_s)
        attempted = self.attempted_at
        if attempted is not None and self.clock() - attempted < max_age:
            return self.listing or {}
        with self._lock:
            thread, starter = self._refreshing, self._refreshing is None
            if starter:
                thread = self._refreshing = threading.Thread(target=self._refresh_quietly, daemon=True,
                                                             name="tunix-store-datasets")
                thread.start()
        if starter or self.listing is None:
            thread.join(self.first_wait_s if attempted is None else self.wait_s)
        return self.listing or {}

    def _refresh_quietly(self):
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - logged by refresh; the last listing stays
            pass
        finally:
            with self._lock:
                self._refreshing = None

    def refresh(self):
        """List the store now and return the listing.

        Raises:
          StoreUnavailable: the store did not answer (the last listing is kept).
          StoreForbidden: it refused our credentials (the last listing is kept).
        """
        from .artifacts import DATASETS_PREFIX
        from .errors import StoreForbidden, StoreUnavailable

        try:
            objects = self.store.list(DATASETS_PREFIX)
        except Exception as exc:  # noqa: BLE001 - StoreUnavailable, or anything the store raised
            self.attempted_at = self.clock()
            if self.error is None:
                logger.warning("artifact store %s: datasets not listed (%s); serving the last known listing "
                               "(%d dataset(s)), trying again every %gs", self.store.url, exc,
                               len(self.listing or {}), self.ttl_s)
            self.error = exc
            raise exc if isinstance(exc, (StoreUnavailable, StoreForbidden)) else StoreUnavailable(str(exc)) from exc
        listing = {}
        for object_key, meta in sorted(objects.items()):
            dataset = store_object_dataset(self.store, object_key, meta.get("size"), meta.get("etag"))
            if dataset is not None:
                listing[dataset.key] = dataset
        if self.error is not None:
            logger.warning("artifact store %s: datasets listed again (%d)", self.store.url, len(listing))
        self.listing, self.attempted_at, self.error = listing, self.clock(), None
        return listing


#: ARTIFACTS_URL -> its StoreListing (one per process).
_listings = {}
_listings_lock = threading.Lock()
#: (key, etag) pairs of store objects already reported as shadowed.
_shadowed = set()


def store_listing(settings=None):
    """The ``StoreListing`` of ``ARTIFACTS_URL`` (one per URL and process)."""
    settings = settings or get_settings()
    url = settings.artifacts_url
    listing = _listings.get(url)
    if listing is None:
        with _listings_lock:
            listing = _listings.get(url)
            if listing is None:
                from .artifacts import get_store

                try:
                    store = get_store(settings)
                except ValueError as exc:  # a bad ARTIFACTS_URL: say so, list the rest
                    logger.error("ARTIFACTS_URL %r: %s; the store's datasets are not listed", url, exc)
                    store = None
                listing = _listings[url] = StoreListing(store, settings.datasets_ttl_s)
    return listing


def datasets(settings=None, max_age=None):
    """Every dataset by key, in the precedence of the module docstring.

    Parameters:
      max_age: how old the store's listing may be (default ``DATASETS_TTL_S``).
    """
    settings = settings or get_settings()
    found = local_datasets(settings)
    for key, dataset in store_listing(settings).get(max_age).items():
        if key not in found:
            found[key] = dataset
        elif (key, dataset.etag) not in _shadowed:
            _shadowed.add((key, dataset.etag))
            logger.warning("dataset %r: the store's %s is shadowed by the %s one (%s)", key, dataset.uri,
                           found[key].origin, found[key].path or "built in")
    return found


def get_dataset(key, settings=None, max_age=None):
    return datasets(settings, max_age).get(key)


def models():
    return MODELS
