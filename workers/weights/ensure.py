"""A real preset's weights, made ready once per host and once per fleet.

``ensure(spec, settings)`` is what a worker calls before it starts a
training on a model with ``requires_weights``; it returns the folder the
training loads (the job file's ``run.weights_dir``):

1. ``$WEIGHTS_DIR/<weights_subdir>`` when ``WEIGHTS_DIR`` is set and that
   folder exists: an operator's own copy (Google's original weights, say)
   always wins, and is used as it is;
2. otherwise ``$DATA_DIR/models/<weights_subdir>`` (``Settings.models_dir``)
   when it is complete: its ``weights.json`` is readable and names files that
   are there with their recorded sizes;
3. otherwise, under an exclusive ``flock`` on ``$DATA_DIR/models/.<subdir>.lock``
   (so concurrent first uses on one host do the work once: the others wait,
   then find the folder complete), a copy from the artifact store::

       models/<weights_subdir>/<first 16 hex of the GGUF's sha256>/model.safetensors
                                                                   tokenizer.model
                                                                   weights.json

   every file checked against the sha256 in ``weights.json`` (a mismatched
   object is refused: the host converts its own copy and writes the store's
   again); ``weights.json`` is written last, so its presence means complete;
4. otherwise the conversion (``python -m workers.weights.convert``, in a
   subprocess, so this long-lived worker does not keep its ~3 GB of peak
   memory), whose three files are then uploaded for the other hosts.

Every install is a rename of a complete staging folder.  A model without a
packaged source (none but ``gemma3-270m`` today) gets None: the training
then looks for it itself and fails with ``WeightsNotFound``.
"""

import contextlib
import fcntl
import glob
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import uuid

from tasks.errors import ObjectMissing, RunFailed, StoreUnavailable

from ..monitor import beating
from . import convert as conversion

logger = logging.getLogger(__name__)

#: The catalog models whose weights install with the project (model_id -> GGUF sha256).
PACKAGED = {conversion.MODEL_ID: conversion.SOURCE_SHA256}

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
#: Seconds between two calls of ``ensure``'s ``beat`` while it waits, downloads
#: or converts (a run's heartbeat: the reaper takes a run silent for
#: ``HEARTBEAT_TIMEOUT_S``, 30 s by default, from its worker; a conversion takes ~40-60 s).
BEAT_S = 2.0


class WeightsUnavailable(RunFailed):
    """Raised in a worker when a model's weights could not be made ready:
    the conversion failed its checks (exit 2, message from its error line)
    or could not run.  Not retried: the run fails with it."""

    code = "weights_invalid"


def store_prefix(spec, source_sha256):
    """The artifact store folder of ``spec``'s converted weights from the source ``source_sha256``."""
    return f"models/{spec.weights_subdir}/{source_sha256[:16]}"


def user_folder(spec, settings):
    """``$WEIGHTS_DIR/<subdir>`` when WEIGHTS_DIR is set and the folder exists, else None."""
    root = settings.weights_dir
    folder = os.path.join(root, spec.weights_subdir) if root else None
    return folder if folder and os.path.isdir(folder) else None


def read_manifest(folder):
    """The folder's ``weights.json``, or None when it is missing or unreadable."""
    try:
        with open(os.path.join(folder, conversion.MANIFEST_FILE), encoding="utf-8") as fh:
            manifest = json.load(fh)
        return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None
    except (OSError, ValueError):
        return None


def is_complete(folder, spec):
    """True when ``folder`` holds a readable manifest for ``spec`` and every
    file it names, at its recorded size (no checksum: that is done once,
    when a copy is installed)."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("model_id") != spec.model_id:
        return False
    files = manifest["files"]
    if not {conversion.MODEL_FILE, spec.tokenizer_file} <= set(files):
        return False
    for name, meta in files.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or os.path.getsize(path) != meta.get("size"):
            return False
    return True


def ensure(spec, settings, say=None, beat=None, convert_argv=None):
    """The folder ``spec``'s training loads its weights from (see the module
    docstring); None for a model this module cannot provide.

    ``say(line)`` receives the lines worth showing in the run's log (a
    download, a conversion).  ``convert_argv`` replaces the converter's
    command line (tests); it is given ``--out FOLDER``.  ``beat()`` is
    called every ``BEAT_S`` seconds from another thread while the slow path
    (lock, download, conversion) runs: the run's heartbeat.

    Raises:
      WeightsUnavailable: the conversion failed (its message says why).
    """
    say = say or (lambda line: logger.info("%s", line))
    if not spec.requires_weights:
        return None
    mine = user_folder(spec, settings)
    if mine is not None:
        return mine
    source_sha256 = PACKAGED.get(spec.model_id)
    if source_sha256 is None:
        return None
    folder = os.path.join(settings.models_dir, spec.weights_subdir)
    if is_complete(folder, spec):
        return folder
    os.makedirs(settings.models_dir, exist_ok=True)
    with beating(beat, BEAT_S), _locked(os.path.join(settings.models_dir, f".{spec.weights_subdir}.lock"), say, spec):
        if is_complete(folder, spec):
            return folder  # another worker of this host made it while we waited
        _clear_leftovers(folder)
        from tasks.artifacts import get_store

        store = get_store(settings)
        prefix = store_prefix(spec, source_sha256)
        if _download(store, prefix, folder, spec, source_sha256, say):
            return folder
        _convert(folder, spec, say, convert_argv)
        _upload(store, prefix, folder, say)
    return folder


@contextlib.contextmanager
def _locked(path, say, spec):
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"model {spec.model_id}: another worker of this host is preparing its weights; waiting")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clear_leftovers(folder):
    """An incomplete folder (a file deleted by hand) and the staging folders
    of conversions or downloads that were killed: only a lock holder writes
    them, and it holds the lock now."""
    base = pathlib.Path(folder)
    if base.exists():
        shutil.rmtree(base, ignore_errors=True)
    for stale in glob.glob(str(base.with_name(f".{base.name}.*"))):
        if not stale.endswith(".lock"):
            shutil.rmtree(stale, ignore_errors=True)


# --------------------------------------------------------------------------
# the artifact store


def _download(store, prefix, folder, spec, source_sha256, say):
    """Install the store's copy into ``folder``; False when there is none, it
    cannot be read, or a file is not the one its manifest names (refused)."""
    manifest_key = f"{prefix}/{conversion.MANIFEST_FILE}"
    try:
        if not store.exists(manifest_key):
            return False
    except StoreUnavailable as exc:
        say(f"model {spec.model_id}: the artifact store cannot be read ({exc}); converting here")
        return False
    staging = pathlib.Path(folder).with_name(f".{pathlib.Path(folder).name}.dl-{uuid.uuid4().hex[:12]}")
    staging.mkdir()
    try:
        # The manifest as stored (byte for byte), then the files it names, each checked.
        store.get_file(manifest_key, str(staging / conversion.MANIFEST_FILE))
        manifest = read_manifest(staging)
        files = manifest["files"] if manifest else None
        if (not files or manifest.get("model_id") != spec.model_id
                or (manifest.get("source") or {}).get("gguf_sha256") != source_sha256
                or set(files) != {conversion.MODEL_FILE, spec.tokenizer_file}):
            say(f"model {spec.model_id}: the artifact store's {manifest_key} is not a manifest of these weights; "
                "converting here")
            return False
        say(f"model {spec.model_id}: downloading its converted weights from {store.uri(prefix)}")
        for name, meta in files.items():
            store.get_file(f"{prefix}/{name}", str(staging / name))
            found = conversion.sha256_file(staging / name)
            if found != meta.get("sha256"):
                say(f"model {spec.model_id}: refused the artifact store's {prefix}/{name}: sha256 {found} is not "
                    f"its manifest's {meta.get('sha256')}; converting here")
                return False
        os.replace(staging, folder)
    except (StoreUnavailable, ObjectMissing) as exc:
        say(f"model {spec.model_id}: download from the artifact store failed ({exc}); converting here")
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"model {spec.model_id}: weights installed in {folder} (sha256 checked)")
    return True


def _upload(store, prefix, folder, say):
    """Put the folder's files in the store, the manifest last; a failure only
    costs the other hosts a conversion of their own."""
    try:
        manifest = read_manifest(folder)
        for name in manifest["files"]:
            store.put_file(os.path.join(folder, name), f"{prefix}/{name}")
        store.put_file(os.path.join(folder, conversion.MANIFEST_FILE), f"{prefix}/{conversion.MANIFEST_FILE}")
        say(f"converted weights uploaded to {store.uri(prefix)} for the other hosts")
    except StoreUnavailable as exc:
        say(f"could not upload the converted weights to the artifact store ({exc}); other hosts will convert")


# --------------------------------------------------------------------------
# the conversion


def _convert(folder, spec, say, convert_argv=None):
    say(f"model {spec.model_id}: converting its weights from the package {conversion.SOURCE_PACKAGE}=="
        f"{conversion.SOURCE_VERSION} into {folder} (once per host; about a minute)")
    argv = [*(convert_argv or [sys.executable, "-m", "workers.weights.convert"]), "--out", folder]
    # The converter's environment, built from this process' (not a read of a setting).
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    # Not under a test suite's coverage tracer (slower, and not this process' code).
    env.pop("COVERAGE_PROCESS_CONFIG", None)
    env.pop("COVERAGE_PROCESS_START", None)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            cwd=str(PROJECT_ROOT), env=env, start_new_session=True)
    lines = []
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith(("assembling", "dequantizing", "smoke test", "converted into")):
                say(line)
        proc.wait()
    finally:
        # Interrupted (dramatiq's time limit, a shutdown): the converter goes too.
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        error = next((line for line in reversed(lines) if line.startswith("error:")), None)
        message = error[len("error:"):].strip() if error else f"the conversion exited with status {proc.returncode}"
        raise WeightsUnavailable(f"model {spec.model_id}: {message}", exit_code=proc.returncode,
                                 output_tail=lines[-20:])
    if not is_complete(folder, spec):
        raise WeightsUnavailable(f"model {spec.model_id}: the conversion exited 0 but {folder} is not complete",
                                 exit_code=0, output_tail=lines[-20:])
