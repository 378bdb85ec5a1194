"""Where a run's files live: the one module that knows their names.

Two places, each with its own layout, and nothing else builds these paths.

**The artifact store** (``ARTIFACTS_URL``): what outlives an attempt and is
shared by every host: the API, the workers on any machine.  ``file://…``
(default ``file://$DATA_DIR/artifacts``, one machine, nothing to set up) or
``s3://bucket/prefix`` (any S3-compatible server: ``AWS_ENDPOINT_URL`` or
``S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``), through fsspec (s3fs)::

    runs/<run_id>/manifest.json                        what the run executed with
    runs/<run_id>/summary.json                         its final result
    runs/<run_id>/checkpoints/<step>.a<attempt>.tar    one recorded checkpoint
    runs/<run_id>/logs/a<attempt>.log.gz               an attempt's whole log (gzip)
    datasets/<key>.jsonl                               an operator's dataset

A checkpoint object's name carries the attempt that wrote it, so a stale
attempt (a worker that froze or was cut off, then thawed) can never
overwrite a newer attempt's; whether it exists for the system is decided by
its row in ``tunix_checkpoints`` (``tasks/sql``), which only the run's
current attempt can write.

**A worker's scratch folder** (``$DATA_DIR/runs/<run_id>/a<attempt>/``,
class ``Scratch``): the job file, the logs, and orbax's checkpoints while the
training writes them (orbax 0.12 cannot write ``s3://``).  It is a cache: a
resume on any host fills it from the store.  So it is removed once the
attempt ended and its checkpoints are recorded (kept while a checkpoint in it
could not be uploaded: that is its only copy), and an earlier attempt's
folder once a later attempt of the run starts on the same host.  One folder per attempt, because
two attempts of a run can run on one host at once: a frozen worker's training
that thaws after the reaper gave its run to the other launch there goes on
saving steps until its lifeline stops it, and in a shared folder orbax in the
new attempt restored the stale attempt's newest step (seen: attempt 2 started
from step 314 when 20 was recorded).
"""

import contextlib
import gzip
import hashlib
import json
import os
import pathlib
import posixpath
import re
import shutil
import tarfile
import uuid

from .atomic import atomic_write
from .errors import ObjectMissing, StoreForbidden, StoreUnavailable
from .metrics import STORE_BYTES, STORE_FAILURES, STORE_RETRIES, STORE_UPLOADS
from .settings import get_settings

#: Bytes read or written per chunk when streaming an object.
CHUNK = 1 << 20
#: s3fs buffers this much of an upload before sending a part: what an
#: upload holds in memory, whatever the checkpoint's size.
S3_BLOCK_SIZE = 8 << 20


# --------------------------------------------------------------------------
# Layout


def read_chunks(source):
    """An open object of the store read ``CHUNK`` by ``CHUNK``, then closed:
    the body of a download, streamed, never held whole."""
    with source:
        while data := source.read(CHUNK):
            yield data


def run_prefix(run_id):
    return f"runs/{uuid.UUID(str(run_id))}"


def manifest_key(run_id):
    return f"{run_prefix(run_id)}/manifest.json"


def summary_key(run_id):
    return f"{run_prefix(run_id)}/summary.json"


def checkpoints_prefix(run_id):
    return f"{run_prefix(run_id)}/checkpoints"


def checkpoint_key(run_id, step, attempt):
    return f"{checkpoints_prefix(run_id)}/{int(step)}.a{int(attempt)}.tar"


def export_key(run_id, step, export_id):
    """A run's export of ``step`` (``workers/exporting``): the tar of its folder."""
    return f"{run_prefix(run_id)}/exports/step-{int(step)}/{uuid.UUID(str(export_id))}.tar"


def logs_prefix(run_id):
    return f"{run_prefix(run_id)}/logs"


def log_key(run_id, attempt):
    """An attempt's whole log (``workers/runner.py``: ``_store_log``): every
    line the training printed, stdout and stderr as they came, and the
    runner's own, gzipped."""
    return f"{logs_prefix(run_id)}/a{int(attempt)}.log.gz"


_LOG_NAME = re.compile(r"^a(\d+)\.log\.gz$")


def log_attempt(key):
    """The attempt whose log the object ``key`` is; None for another name."""
    match = _LOG_NAME.match(posixpath.basename(key))
    return int(match.group(1)) if match else None


_CHECKPOINT_NAME = re.compile(r"^(\d+)\.a(\d+)\.tar$")


def checkpoint_attempt(key):
    """The attempt that wrote the checkpoint object ``key``; None for a name
    that is not a checkpoint's (left alone by every clean-up)."""
    match = _CHECKPOINT_NAME.match(posixpath.basename(key))
    return int(match.group(2)) if match else None


DATASETS_PREFIX = "datasets"


def dataset_key(key):
    return f"{DATASETS_PREFIX}/{key}.jsonl"


class Scratch:
    """A run's folder on this host (see the module docstring)."""

    def __init__(self, runs_dir, run_id, attempt):
        self.run_root = pathlib.Path(runs_dir).resolve() / str(uuid.UUID(str(run_id)))
        self._at(self.run_root / f"a{int(attempt)}")

    @classmethod
    def at(cls, path):
        """The scratch folder at ``path`` (what a job file's ``run_dir`` names)."""
        scratch = cls.__new__(cls)
        scratch._at(pathlib.Path(path).resolve())
        return scratch

    def _at(self, path):
        self.path = path
        #: The run's folder on this host: one ``a<attempt>`` folder per attempt.
        self.run_root = path.parent
        self.job = self.path / "training.json"
        self.traceback = self.path / "traceback.txt"
        self.manifest = self.path / "manifest.json"
        self.stdout_log = self.path / "stdout.log"
        self.stderr_log = self.path / "stderr.log"
        #: Both streams and the runner's lines, in order: what ``log_key`` stores.
        self.log = self.path / "training.log"
        #: orbax's folder: ``<step>/`` once a step is finalised.
        self.checkpoints = self.path / "checkpoints"
        #: Hard-linked copies of steps being uploaded.
        self.snapshots = self.path / "uploading"

    def create(self):
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def finalised_steps(self):
        """Steps orbax has finalised here (renamed from its temporary name,
        ``commit_success.txt`` written), oldest first."""
        if not self.checkpoints.is_dir():
            return []
        steps = []
        for child in self.checkpoints.iterdir():
            if child.name.isdigit() and child.is_dir() and (child / "commit_success.txt").exists():
                steps.append(int(child.name))
        return sorted(steps)

    def step_dir(self, step):
        return self.checkpoints / str(int(step))

    def clear_checkpoints(self):
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        shutil.rmtree(self.snapshots, ignore_errors=True)

    def remove(self):
        """Delete this attempt's folder, and the run's once no attempt's is
        left in it.  Only once everything in it that matters is in the store
        (``workers/runner.py`` decides): it is a cache, see the module
        docstring."""
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            self.run_root.rmdir()
        except OSError:
            pass  # another attempt's folder is still there (or the root is gone)

    def earlier_attempts(self):
        """The scratch folders earlier attempts of the run left on this host."""
        mine = self.path.name
        return [Scratch.at(p) for p in sorted(self.run_root.glob("a*"))
                if p.is_dir() and p.name != mine and p.name[1:].isdigit() and int(p.name[1:]) < int(mine[1:])]

    def snapshot(self, step):
        """A hard-linked copy of a finalised step, which orbax's own clean-up
        cannot take away while it uploads (kept until ``drop_snapshot``)."""
        target = self.snapshots / str(int(step))
        if not target.is_dir():
            source = self.step_dir(step)
            if not source.is_dir():
                raise FileNotFoundError(source)
            tmp = self.snapshots / f"{int(step)}.tmp-{uuid.uuid4().hex}"
            shutil.copytree(source, tmp, copy_function=os.link)
            os.replace(tmp, target)
        return target

    def drop_snapshot(self, step):
        shutil.rmtree(self.snapshots / str(int(step)), ignore_errors=True)


# --------------------------------------------------------------------------
# The store


def _filesystem(url, endpoint_url=None, region=None):
    import fsspec

    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme == "file":
        return fsspec.filesystem("file", auto_mkdir=True), url.split("://", 1)[-1]
    if scheme == "s3":
        client = {"endpoint_url": endpoint_url, "region_name": region}
        # An outage must be seen in seconds, not after botocore's minutes of retries.
        config = {"connect_timeout": 3, "read_timeout": 30, "retries": {"max_attempts": 2, "mode": "standard"}}
        fs = fsspec.filesystem("s3", client_kwargs={k: v for k, v in client.items() if v},
                               config_kwargs=config, use_listings_cache=False, skip_instance_cache=True)
        return fs, url.split("://", 1)[1]
    raise ValueError(f"ARTIFACTS_URL: unsupported scheme {scheme!r} (file:// or s3://)")


#: S3 error codes that refuse who we are or what we may do, not an outage:
#: waiting mends none of them (botocore's ``ClientError`` codes; s3fs turns
#: most into ``PermissionError``, a HEAD's bare 403 into code ``"403"``).
FORBIDDEN_CODES = frozenset({
    "403", "AccessDenied", "AccountProblem", "AllAccessDisabled", "ExpiredToken", "ExpiredTokenException",
    "InvalidAccessKeyId", "InvalidClientTokenId", "InvalidSecurity", "InvalidToken", "NotSignedUp",
    "RequestTimeTooSkewed", "SignatureDoesNotMatch", "TokenRefreshRequired", "UnrecognizedClientException",
})


def _forbidden_answer(exc):
    """The store's refusal in ``exc`` as ``"403 AccessDenied"`` (or the
    error's name: a local ``PermissionError``, botocore's
    ``NoCredentialsError``); None when ``exc`` is no refusal (an outage)."""
    seen = set()
    error = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        response = getattr(error, "response", None)
        if isinstance(response, dict) and "Error" in response:
            code = str(response["Error"].get("Code") or "")
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if code in FORBIDDEN_CODES or status == 403:
                if code == "403" or not code:
                    return "403 Forbidden"
                return f"{status or 403} {code}"
            return None  # the store answered something else: not a refusal
        if type(error).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return f"no credentials ({type(error).__name__})"
        error = error.__cause__ or error.__context__
    if isinstance(exc, PermissionError):
        return f"{type(exc).__name__}: {exc}"
    return None


def _key_of(fn, args, kwargs):
    """The object key a store method was called on (its ``key`` or ``prefix``), or None."""
    import inspect

    try:
        bound = inspect.signature(fn).bind(None, *args, **kwargs).arguments
    except TypeError:
        return None
    return bound.get("key") or bound.get("prefix")


def _forbidden(store, key, answer):
    where = store.uri(key) if key else store.url
    if store.is_local:
        message = (f"artifact store refused access ({answer}) for {where}: check that the folder of ARTIFACTS_URL "
                   "is writable by the user this process runs as")
    else:
        message = (f"artifact store refused our credentials ({answer}) for {where}: check AWS_ACCESS_KEY_ID and "
                   "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, if any) of the API and the workers, and the "
                   "bucket's policy")
    return StoreForbidden(message, url=where, reason=answer)


def _errors_are_unavailable(fn):
    """A store method whose errors are the platform's: ``ObjectMissing``
    (absent), ``StoreForbidden`` (refused: never retried), else
    ``StoreUnavailable`` (an outage: tried again by the callers), each
    counted in ``tunix_store_failures_total``."""
    operation = fn.__name__

    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except (ObjectMissing, ValueError):
            raise
        except StoreForbidden:
            STORE_FAILURES.labels(operation, "forbidden").inc()
            raise
        except StoreUnavailable:
            STORE_FAILURES.labels(operation, "unavailable").inc()
            raise
        except FileNotFoundError as exc:
            raise ObjectMissing(f"not in the artifact store: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - botocore, aiohttp and OS errors alike
            answer = _forbidden_answer(exc)
            if answer is not None:
                STORE_FAILURES.labels(operation, "forbidden").inc()
                raise _forbidden(self, _key_of(fn, args, kwargs), answer) from None
            STORE_FAILURES.labels(operation, "unavailable").inc()
            raise StoreUnavailable(f"artifact store {self.url}: {type(exc).__name__}: {exc}") from None

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def retried(fn, what):
    """``fn`` for ``retrying.patiently``: each call after its first counts in
    ``tunix_store_retries_total{what}``."""
    calls = []

    def call():
        if calls:
            STORE_RETRIES.labels(what).inc()
        calls.append(1)
        return fn()

    return call


def _uploaded(size):
    STORE_UPLOADS.inc()
    STORE_BYTES.labels("up").inc(size)


class _Hashing:
    """A write-only file wrapper that counts and hashes what goes through."""

    def __init__(self, raw):
        self.raw, self.size, self.digest = raw, 0, hashlib.sha256()

    def write(self, data):
        self.size += len(data)
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self):
        pass


class _HashingReader:
    def __init__(self, raw):
        self.raw, self.size, self.digest = raw, 0, hashlib.sha256()

    def read(self, n=-1):
        data = self.raw.read(n)
        self.size += len(data)
        self.digest.update(data)
        return data


class ArtifactStore:
    """The artifact store at ``url`` (see the module docstring); an ``s3://``
    one on the server ``endpoint_url`` (None: AWS) in ``region`` (None:
    botocore's default), as ``get_store`` takes them from the settings."""

    def __init__(self, url, endpoint_url=None, region=None):
        self.url = url.rstrip("/")
        self.fs, self.root = _filesystem(self.url, endpoint_url, region)
        self.root = self.root.rstrip("/")
        self.is_local = self.url.startswith("file://") or "://" not in self.url

    def path(self, key):
        return posixpath.join(self.root, key)

    def uri(self, key):
        return f"{self.url}/{key}"

    @_errors_are_unavailable
    def ping(self):
        """Raises ``StoreUnavailable`` unless the store answers."""
        if self.is_local:
            os.makedirs(self.root, exist_ok=True)
        else:
            self.fs.ls(self.root.split("/", 1)[0], detail=False)

    @contextlib.contextmanager
    def _writer(self, key):
        """A file to write ``key`` through; the object appears only when it is
        complete (a local file is renamed into place, an S3 multipart upload
        completes on close)."""
        if self.is_local:
            final = self.path(key)
            os.makedirs(posixpath.dirname(final), exist_ok=True)
            with atomic_write(final) as fh:
                yield fh
        else:
            with self.fs.open(self.path(key), "wb", block_size=S3_BLOCK_SIZE) as fh:
                yield fh

    @_errors_are_unavailable
    def upload_tree(self, folder, key, arcname):
        """Stream ``folder`` as an uncompressed tar (members under ``arcname/``)
        to ``key``; returns ``(size, sha256)``.  Memory holds one S3 part at
        most, never the checkpoint."""
        with self._writer(key) as raw:
            out = _Hashing(raw)
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(str(folder), arcname=arcname,
                        filter=lambda info: None if info.issym() or info.islnk() else info)
        _uploaded(out.size)
        return out.size, out.digest.hexdigest()

    @_errors_are_unavailable
    def download_tree(self, key, into, sha256=None):
        """Stream the tar ``key`` into folder ``into``; with ``sha256``, check
        it (``StoreUnavailable`` on a mismatch, nothing left extracted)."""
        os.makedirs(into, exist_ok=True)
        with self.fs.open(self.path(key), "rb", block_size=CHUNK) as raw:
            src = _HashingReader(raw)
            with tarfile.open(fileobj=src, mode="r|") as tar:
                tar.extractall(into, filter="data")
            while src.read(CHUNK):
                pass  # the tar's trailing padding, for the checksum
        STORE_BYTES.labels("down").inc(src.size)
        if sha256 is not None and src.digest.hexdigest() != sha256:
            raise StoreUnavailable(f"{self.uri(key)}: sha256 {src.digest.hexdigest()} is not the recorded {sha256}")
        return src.size

    @_errors_are_unavailable
    def put_json(self, key, obj):
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        with self._writer(key) as fh:
            fh.write(data)
        _uploaded(len(data))

    @_errors_are_unavailable
    def get_json(self, key):
        with self.fs.open(self.path(key), "rb") as fh:
            data = fh.read()
        STORE_BYTES.labels("down").inc(len(data))
        return json.loads(data)

    @_errors_are_unavailable
    def put_file(self, local, key):
        with open(local, "rb") as src, self._writer(key) as dst:
            shutil.copyfileobj(src, dst, CHUNK)
            size = src.tell()
        _uploaded(size)

    @_errors_are_unavailable
    def put_gzipped(self, local, key):
        """Stream the file ``local`` gzipped to ``key``; returns the object's
        size.  Level 1: a long log's upload costs seconds, not a minute, and
        logs still shrink about eightfold."""
        with open(local, "rb") as src, self._writer(key) as raw:
            out = _Hashing(raw)
            with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
                shutil.copyfileobj(src, gz, CHUNK)
        _uploaded(out.size)
        return out.size

    @_errors_are_unavailable
    def get_file(self, key, local):
        with self.fs.open(self.path(key), "rb", block_size=CHUNK) as src, atomic_write(local) as dst:
            shutil.copyfileobj(src, dst, CHUNK)
            size = src.tell()
        STORE_BYTES.labels("down").inc(size)

    @_errors_are_unavailable
    def open(self, key):
        """A binary file to stream ``key`` from (``ObjectMissing`` when absent)."""
        return self.fs.open(self.path(key), "rb", block_size=CHUNK)

    @_errors_are_unavailable
    def delete(self, key):
        """Delete ``key``; an object already gone counts as deleted."""
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            pass

    @_errors_are_unavailable
    def exists(self, key):
        return self.fs.exists(self.path(key))

    @_errors_are_unavailable
    def stat(self, key):
        """``{"size", "etag"}`` of the object ``key`` as ``list`` reports it
        (``ObjectMissing`` when absent)."""
        entry = self.fs.info(self.path(key))
        if entry.get("type") == "directory":
            raise FileNotFoundError(key)
        etag = (entry.get("ETag") or entry.get("etag")
                or f"{entry.get('size')}-{entry.get('mtime') or entry.get('LastModified')}")
        return {"size": entry.get("size"), "etag": str(etag).strip('"')}

    @_errors_are_unavailable
    def list(self, prefix):
        """``{key: {"size", "etag"}}`` of the objects under ``prefix``."""
        base = self.path(prefix).rstrip("/")
        try:
            entries = self.fs.ls(base, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for entry in entries:
            if entry.get("type") == "directory":
                continue
            name = entry["name"].rstrip("/")
            key = name[len(self.root) + 1:] if name.startswith(self.root + "/") else name
            etag = entry.get("ETag") or entry.get("etag") or f"{entry.get('size')}-{entry.get('mtime') or entry.get('LastModified')}"
            out[key] = {"size": entry.get("size"), "etag": str(etag).strip('"')}
        return out

    @_errors_are_unavailable
    def objects(self, prefix):
        """``{key: {"size", "modified"}}`` of every object under ``prefix``, at
        any depth (``modified`` as ``walk`` gives it)."""
        base = self.path(prefix).rstrip("/")
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for name, entry in found.items():
            if entry.get("type") == "directory":
                continue
            name = name.rstrip("/")
            key = name[len(self.root) + 1:] if name.startswith(self.root + "/") else name
            modified = entry.get("mtime") or entry.get("LastModified") or entry.get("created")
            out[key] = {"size": entry.get("size"),
                        "modified": modified.timestamp() if hasattr(modified, "timestamp") else modified}
        return out

    @_errors_are_unavailable
    def folders(self, prefix):
        """The names of the folders right under ``prefix`` (``runs``: the run ids with objects)."""
        try:
            entries = self.fs.ls(self.path(prefix).rstrip("/"), detail=True)
        except FileNotFoundError:
            return []
        return [posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory"]

    def walk(self, prefix):
        """``{key: modified}`` of every object under ``prefix``, at any depth;
        ``modified`` is seconds since the epoch (None when the store says not)."""
        return {key: meta["modified"] for key, meta in self.objects(prefix).items()}


_stores = {}


def get_store(settings=None):
    """The artifact store of ``ARTIFACTS_URL`` (one per URL, server and region, and process)."""
    settings = settings or get_settings()
    where = (settings.artifacts_url, settings.store_endpoint, settings.aws_region)
    store = _stores.get(where)
    if store is None:
        store = _stores[where] = ArtifactStore(*where)
    return store
