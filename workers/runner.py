"""Execute one claimed run: a dry run in-process, a training in a subprocess.

The training runs as ``python -m workers.training JOB`` so JAX state (and
tunix's process-wide metric listeners) never live in the worker.  The job
file is the run's stored spec, unchanged, plus where this execution is placed
(``workers/training/spec.py``).  It reports on stdout in lines
``@@tunix {json}``; everything else it prints is log.

It runs under a lifeline (``python -m workers.lifeline -- ...``, see
``lifeline_argv``): a cancel or a time limit SIGTERMs both (the training
checkpoints its last step and exits 143), and if this worker dies the
lifeline stops the training the same way, SIGKILL after ``KILL_GRACE_S``
whatever it is doing, so no training outlives its worker.

The attempt's scratch folder (``tasks.artifacts.Scratch``) is removed once
its checkpoints, the manifest and its whole log (``_AttemptLog``; the
registry keeps a run's first ``MAX_LOG_LINES``, ``workers/monitor.py``) are
in the artifact store (``_clean_up``).
A full disk, wherever it shows (``workers/disk.py``), fails the attempt at
once with ``DiskFull``: waiting would free nothing.  So does a store that
refuses our credentials (``StoreForbidden``, a 403): a training whose
checkpoints or manifest the store refused never ends ``completed``.
"""

import collections
import contextlib
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from tasks import artifacts, catalog, db, registry, retrying
from tasks.artifacts import Scratch, get_store
from tasks.atomic import atomic_write
from tasks.broker import get_pool
from tasks.datasets_jsonl import validate_jsonl
from tasks.errors import (
    DiskFull,
    InvalidDataset,
    RunCancelled,
    RunFailed,
    RunLost,
    RunTimedOut,
    StoreForbidden,
    StoreUnavailable,
    TrainingFailed,
    UnknownDataset,
    UnknownModel,
)
from tasks.lifecycle import RunStatus
from tasks.run_spec import RunSpec
from tasks.settings import get_settings

from . import dataset_cache
from .checkpoint_sync import CheckpointSync
from .context import current_run
from .disk import disk_full, is_no_space
from .monitor import FLUSH_INTERVAL_S, LOST, RunMonitor, beating
# The training's event lines: their prefix (the sampling program's too) and their one parser.
from .training.events import EVENT_PREFIX, parse_event  # noqa: F401 - EVENT_PREFIX is re-exported

logger = logging.getLogger(__name__)

#: Lines of stdout and stderr kept in a run's result or error.
TAIL_LINES = 50
#: Seconds a training gets to exit after SIGTERM before SIGKILL (the
#: worker's stop and the lifeline's, see ``lifeline_argv``).
KILL_GRACE_S = 10
#: The same on a full disk, where the checkpoint SIGTERM asks for cannot be
#: recorded anyway: the training took 8.6 to 9.5 s to fail its last save and
#: exit (orbax, ``tests/e2e/test_scratch_disk_http.py``, 2 cores).
DISK_FULL_GRACE_S = 2

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent


def execute(run_id):
    run = current_run()
    if run is None or str(run["id"]) != str(run_id):
        # Called outside the middleware (a test, a script): read it.
        with db.connection(get_pool()) as conn:
            run = registry.get_run(conn, run_id)
    settings = get_settings()
    dataset, model = resolve(run["config"], settings)
    if run["dry_run"]:
        return dry_run(run, dataset, model, get_store(settings), settings.store_patience_s)
    scratch = _scratch(run, settings)
    try:
        return train(run, dataset, model, scratch, settings)
    except BaseException as exc:
        if not scratch.job.exists():
            # It failed before the training started (train() cleans up after
            # one): nothing in the folder is more than a copy of the store's.
            scratch.remove()
        if isinstance(exc, OSError) and is_no_space(exc):
            raise disk_full(scratch.path, "preparing the training's files", exc) from None
        raise


def _scratch(run, settings):
    """The attempt's scratch folder, created (``DiskFull`` when there is no room for it)."""
    scratch = Scratch(settings.runs_dir, run["id"], run["attempts"])
    try:
        return scratch.create()
    except OSError as exc:
        if is_no_space(exc):
            raise disk_full(scratch.path, "creating the run's scratch folder", exc) from None
        raise


def resolve(config, settings):
    """The run's dataset (as a local file) and model.

    A key this machine does not have (``catalog.local_datasets``) is looked
    for in the artifact store, asked directly rather than through the API's
    cached listing, and its object used through this host's cache
    (``workers/dataset_cache.py``)."""
    key = config["dataset_key"]
    model = catalog.get_model(config["model_id"])
    if model is None:
        known = ", ".join(catalog.models())
        raise UnknownModel(f"unknown model {config['model_id']!r}; known models: {known}", field="model_id")
    dataset = catalog.local_datasets(settings).get(key)
    if dataset is None and catalog.DATASET_KEY.match(key):
        store = get_store(settings)
        dataset = dataset_cache.local_copy(catalog.store_object_dataset(store, artifacts.dataset_key(key)), store,
                                           settings)
    if dataset is None:
        raise UnknownDataset(f"unknown dataset {key!r}", field="dataset_key")
    return dataset, model


def read_spec(run):
    """The run's stored spec, read as the training reads it (``RunSpec.stored``)."""
    try:
        return RunSpec.stored(run["config"])
    except ValueError as exc:  # pydantic's ValidationError and IncompleteSpec
        raise RunFailed(f"the run's stored config is not a run spec: {exc}") from None


def placement(run, dataset, model, scratch=None):
    """Where and on what this execution runs: the job file's ``run`` part
    (a dry run has no scratch folder: ``run_dir`` None)."""
    return {"run_id": str(run["id"]), "run_dir": str(scratch.path) if scratch else None, "dataset_kind": dataset.kind,
            "dataset_path": dataset.path,
            "effective_max_seq_length": min(run["config"]["max_seq_length"], model.max_seq_length)}


def job_file(run, dataset, model, scratch):
    """The training's job file: the stored spec as it was stored, and the placement."""
    return {"spec": run["config"], "run": placement(run, dataset, model, scratch)}


def _write_json(path, data):
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=2, sort_keys=True, default=str))


def dry_run(run, dataset, model, store, patience_s):
    """Validate and resolve everything a training would use; train nothing.
    The manifest goes to the artifact store, where every host sees it, and
    nowhere else: a dry run writes nothing on the worker's disk."""
    spec = read_spec(run)
    where = placement(run, dataset, model)
    examples = None
    if dataset.examples is not None:
        examples = dataset.examples  # validated as it was cached
    elif dataset.kind == "jsonl":
        try:
            examples = validate_jsonl(dataset.path)
        except (ValueError, OSError) as exc:
            raise InvalidDataset(f"dataset {dataset.key!r} ({dataset.path}): {exc}", field="dataset_key") from None
    manifest = {"run_id": str(run["id"]), "dry_run": True, "spec": spec.as_stored(), "run": where,
                "dataset": dict(dataset.to_json(), examples=examples), "model": model.to_json()}
    key = artifacts.manifest_key(run["id"])
    retrying.patiently(artifacts.retried(lambda: store.put_json(key, manifest), "manifest"), patience_s,
                       StoreUnavailable, what="an artifact store call")
    return {"kind": "dry_run", "manifest": store.uri(key), "dataset_key": dataset.key, "model_id": model.model_id,
            "param_count": model.param_count, "effective_max_seq_length": where["effective_max_seq_length"]}


class _Stream(threading.Thread):
    """Drain one pipe of the training: log file, tail, registry, events.

    It never stops before the pipe ends: a training whose pipe is not read
    blocks on its next line (64 KiB of pipe, a few hundred steps), while the
    runner's heartbeats go on, until the run's time limit, losing every step
    since its last checkpoint.  Seen before this: a full disk failed the log
    write, this thread died, and a run hung 45 s (its whole time limit) at
    step 1170 (``tests/e2e/test_scratch_disk_http.py``).  So a failed write
    closes the log file and is kept in ``error`` (the runner fails the
    attempt with it: ``write_error``); a failing handler is logged; the lines
    go on to the tail and the registry either way.

    ``on_event`` gets each ``@@tunix`` line as a typed event
    (``workers/training/events.py``: ``parse_event``), an ``Unknown`` one
    included; a line that is no event (malformed JSON) is a log line."""

    def __init__(self, pipe, log_path, on_line, on_event=None):
        super().__init__(daemon=True)
        self.pipe, self.log_path, self.on_line, self.on_event = pipe, log_path, on_line, on_event
        self.tail = collections.deque(maxlen=TAIL_LINES)
        #: The ``OSError`` that stopped the log file's writes, None while there is none.
        self.error = None

    def run(self):
        log = self._open()
        try:
            for line in self.pipe:
                line = line.rstrip("\n")
                try:
                    event = parse_event(line) if self.on_event is not None else None
                    if event is not None:
                        self.on_event(event)
                        continue
                    self.tail.append(line)
                    self.on_line(line)
                except Exception:  # noqa: BLE001 - a line lost, never the drain
                    logger.exception("training output line not handled: %r", line[:200])
                if log is not None:
                    log = self._write(log, line)
        finally:
            if log is not None:
                self._close(log)

    def _open(self):
        try:
            return open(self.log_path, "a", encoding="utf-8")
        except OSError as exc:
            self.error = exc
            return None

    def _write(self, log, line):
        """Write one line; the file, or None once a write failed."""
        try:
            log.write(line + "\n")
            log.flush()
            return log
        except OSError as exc:
            self.error = exc
            logger.warning("%s: not written from here on (the lines still reach the registry): %s",
                           self.log_path, exc)
            self._close(log)
            return None

    @staticmethod
    def _close(log):
        try:
            log.close()
        except OSError:
            pass  # the buffered rest of a failed write: already counted in ``error``

    def write_error(self):
        """The ``DiskFull`` to fail the attempt with when this stream's log
        could not be written for want of space; None otherwise."""
        if self.error is None or not is_no_space(self.error):
            return None
        return disk_full(self.log_path.parent, f"writing the training's log {self.log_path.name}", self.error)


class _AttemptLog:
    """The attempt's whole log (``Scratch.log``): the training's stdout and
    stderr lines as they came, and the runner's own, stored gzipped when the
    attempt ends (``_store_log``): the registry keeps only the first
    ``MAX_LOG_LINES`` of a run.  A failed write (a full disk) stops this file,
    never the caller: ``_Stream``'s files fail the attempt on a full disk, and
    the registry still gets every line.  Not flushed per line: it is read
    only once closed."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        #: The ``OSError`` that stopped the writes, None while there is none.
        self.error = None
        try:
            self._file = open(path, "a", encoding="utf-8", errors="replace")
        except OSError as exc:
            self._file, self.error = None, exc

    def write(self, line):
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line + "\n")
            except OSError as exc:
                self.error = exc
                self._close()

    def close(self):
        with self._lock:
            self._close()

    def _close(self):
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                self.error = self.error or exc


#: What a training never needs: it talks to neither the database nor the
#: store nor the API (the worker does, around it), and it runs the user's
#: configuration and datasets.  Before, ``/proc/<pid>/environ`` of every
#: training held ``DATABASE_URL`` and the store's keys.
SECRET_VARIABLES = frozenset({
    "DATABASE_URL", "API_TOKEN", "TUNIX_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE",
})
#: ... nor any other variable named like a credential (an operator's own).
SECRET_SUFFIXES = ("_PASSWORD", "_SECRET", "_SECRET_KEY", "_TOKEN", "_ACCESS_KEY", "_API_KEY", "_CREDENTIALS")


def is_secret(name):
    upper = name.upper()
    return upper in SECRET_VARIABLES or upper.endswith(SECRET_SUFFIXES)


def training_env(settings):
    # The training's own environment, built from this process' (not a read
    # of a setting): JAX's cache variables are JAX's, and only defaulted here.
    env = {name: value for name, value in os.environ.items() if not is_secret(name)}
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(settings.data_dir, "jax-cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    # The training must not write into the worker's metrics files.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # Nor run under the test suite's coverage tracer (the suite's workers
    # inherit it): a training is ~40% slower traced (measured here: two tiny
    # trainings 62 s traced, 45 s not).  tests/training traces the training's
    # own code by running it directly.
    env.pop("COVERAGE_PROCESS_CONFIG", None)
    env.pop("COVERAGE_PROCESS_START", None)
    return env


def lifeline_argv():
    """The supervisor every training runs under (``workers/lifeline.py``).

    If this worker dies (even SIGKILL), the lifeline gets SIGTERM from the
    kernel (``PR_SET_PDEATHSIG``, which it sets itself, checking that this
    process is still its parent) or sees its parent gone; it SIGTERMs the
    training (which checkpoints its last step and exits) and SIGKILLs it
    ``KILL_GRACE_S`` later, whatever it is doing, so it never runs on unowned
    while the reaper gives the run to another worker.  If the lifeline itself
    dies, the kernel SIGKILLs the training.  Nothing runs in the forked child
    of this (threaded) process before exec.
    """
    return [sys.executable, "-m", "workers.lifeline", "--grace", str(KILL_GRACE_S), "--parent", str(os.getpid()),
            "--"]


def stop_process_group(proc, grace_s=KILL_GRACE_S):
    """SIGTERM the training's process group (the lifeline and the training);
    SIGKILL it after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def train(run, dataset, model, scratch, settings):
    """Run the training subprocess to its end, a cancel, or its time limit.

    Its checkpoints go through the artifact store (``CheckpointSync``): the
    latest recorded one is restored before it starts, each step orbax
    finalises is uploaded and recorded while it trains, the last ones once
    it exited."""
    with contextlib.ExitStack() as ending:
        return _train(run, dataset, model, scratch, settings, ending)


def _train(run, dataset, model, scratch, settings, ending):
    """``train``; ``ending`` holds the heartbeat of the work after the training exited."""
    pool = get_pool()
    store = get_store(settings)
    monitor = RunMonitor(pool, run)
    log = _AttemptLog(scratch.log)

    def say(stream, line):
        log.write(line)
        monitor.line(stream, line)

    sync = CheckpointSync(pool, store, run, scratch, settings, say=lambda line: say("system", line))
    restored_step = sync.restore()
    from .weights.ensure import ensure as ensure_weights

    job = job_file(run, dataset, model, scratch)
    # A real preset's weights, ready once per host and fleet (converted from
    # the packaged GGUF on first use): the run's heartbeat goes on meanwhile.
    job["run"]["weights_dir"] = ensure_weights(model, settings, say=lambda line: say("system", line),
                                               beat=monitor.flush)
    _write_json(scratch.job, job)
    #: The last event of each kind (``event.kind``: an ``Unknown`` one's
    #: raw ``event`` key, so a result this version cannot type still counts).
    events = {}

    def on_event(event):
        events[event.kind] = event
        monitor.event(event)

    started = time.monotonic()
    time_limit_s = run["config"].get("time_limit_s") or settings.default_time_limit_s
    proc = subprocess.Popen(
        [*lifeline_argv(), sys.executable, "-m", "workers.training", str(scratch.job)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        cwd=str(PROJECT_ROOT), env=training_env(settings), start_new_session=True,
    )
    out = _Stream(proc.stdout, scratch.stdout_log, lambda line: say("stdout", line), on_event)
    err = _Stream(proc.stderr, scratch.stderr_log, lambda line: say("stderr", line))
    out.start(), err.start()
    sync.start()
    stopped = None
    try:
        # Wait in short slices: dramatiq's TimeLimit interrupts this thread
        # with an exception, which must reach the finally below.
        next_flush = 0.0
        while proc.poll() is None:
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + FLUSH_INTERVAL_S
                status = monitor.flush()
                if status == RunStatus.CANCEL_REQUESTED:
                    early = monitor.stopper and monitor.stopper.reason
                    stopped = RunCancelled(f"early stopped: {early}" if early
                                           else "cancelled by request while training")
                    break
                if status == LOST:
                    stopped = RunLost("this attempt was recovered by the reaper; another worker runs the run")
                    break
            # A full disk is not waited out: no step could be saved; nor a
            # store that refused a checkpoint (StoreForbidden): none would be stored.
            full = out.write_error() or err.write_error() or sync.error
            if full is not None:
                stopped = full
                break
            if now - started > time_limit_s:
                stopped = RunTimedOut(f"time limit of {time_limit_s}s exceeded")
                break
            time.sleep(0.1)
    finally:
        # From here to train's return (the last checkpoints, the log, the
        # summary: seconds, or a store's or the database's whole patience)
        # the run's heartbeat goes on: silent, the reaper would take back a
        # finished training and train it again.
        ending.enter_context(beating(monitor.flush, FLUSH_INTERVAL_S))
        # SIGTERM first: the training saves a checkpoint and exits.
        stop_process_group(proc, DISK_FULL_GRACE_S if isinstance(stopped, (DiskFull, StoreForbidden))
                           else KILL_GRACE_S)
        out.join(5), err.join(5)
        # Its last checkpoint is recorded before the run's status moves (a
        # hand-back, a cancel): the next attempt, anywhere, resumes from it.
        # A lost attempt's would be refused (fencing): it uploads nothing.
        lost = isinstance(stopped, RunLost)
        recorded = sync.finish(upload=not lost)
        # A store that refused us (a checkpoint, the manifest) fails the
        # attempt below, whatever the training did: never `completed`
        # without its checkpoints.
        refused = sync.error if isinstance(sync.error, StoreForbidden) else None
        try:
            manifest_stored = _store_manifest(store, run, scratch, settings.store_patience_s)
        except StoreForbidden as exc:
            manifest_stored, refused = False, refused or exc
        if refused is not None and not lost:
            say("system", f"attempt failed: {refused}")
        if not recorded and restored_step is None and not lost:
            say("system", "no checkpoint was recorded for this run")
        # The log last, with every line above in it (a lost attempt's too:
        # its key names its attempt, which no other attempt writes); a store
        # whose outage just cost the manifest is tried once, not waited out again.
        try:
            log_stored = _store_log(store, run, log, settings.store_patience_s if manifest_stored else 0)
        except StoreForbidden as exc:
            log_stored = False
            if refused is None and not lost:
                monitor.line("system", f"attempt failed: {exc}")
            refused = refused or exc
        _clean_up(scratch, sync, manifest_stored, lost, say=lambda line: monitor.line("system", line),
                  log_stored=log_stored)
        monitor.close()
    tails = {"stdout_tail": list(out.tail), "stderr_tail": list(err.tail)}
    checkpoints = {"restored_step": restored_step, "recorded_steps": recorded,
                   "upload_s": [round(s, 3) for s in sync.upload_s]}
    # A training that finished its last step while the stop was on its way
    # (it exits 0 with its result: SIGTERM is only acted on between steps)
    # completed: what happened wins (tasks/lifecycle.py).  A lost attempt
    # is never recorded here, finished or not.
    finished = proc.returncode == 0 and bool(events.get("result"))
    if refused is not None and (stopped is None or finished) and not isinstance(stopped, RunLost):
        # Found once the training exited (its last uploads, the manifest), or
        # a finished training's: a refused key wins over `completed`.
        stopped = refused
    if stopped is not None and (isinstance(stopped, (RunLost, StoreForbidden)) or not finished):
        stopped.exit_code = proc.returncode
        stopped.details = dict(stopped.details or {}, **tails, progress=monitor.progress, checkpoints=checkpoints)
        raise stopped
    if proc.returncode != 0:
        message = next((line for line in reversed(err.tail) if line.startswith("error:")), None)
        message = message[len("error:"):].strip() if message else f"training exited with status {proc.returncode}"
        full = sync.error
        if is_no_space(message):
            # Its own save found the disk full (orbax's error, a line of text by now).
            full = disk_full(scratch.path, "the training's checkpoint save", message)
        if full is not None:
            full.exit_code = proc.returncode
            full.details.update(tails, progress=monitor.progress, checkpoints=checkpoints)
            raise full
        raise TrainingFailed(message, exit_code=proc.returncode, checkpoints=checkpoints, **tails)
    result = events["result"].to_dict() if events.get("result") is not None else {}
    if not result:
        raise TrainingFailed("training exited 0 without reporting a result", exit_code=0, **tails)
    result.update(kind="training", exit_code=0, wall_s=round(time.monotonic() - started, 3),
                  checkpoints=dict(checkpoints, note=None if recorded or restored_step is not None
                                   else "no checkpoint was recorded for this run"),
                  summary=store.uri(artifacts.summary_key(run["id"])), **tails)
    _store_summary(store, run, result, settings.store_patience_s)
    return result


def _clean_up(scratch, sync, manifest_stored, lost, say, log_stored=True):
    """Remove the attempt's scratch folder once what matters in it is in the
    store: every finalised checkpoint (a lost attempt's never will be:
    fencing refuses them, and no attempt restores from a folder), the
    manifest and the whole log (``log_stored``; the registry holds its first
    ``MAX_LOG_LINES``); the job file is the stored spec plus the placement
    the manifest records.  Otherwise
    it stays, saying why: it holds its checkpoints' only copy (a store
    outage); the run's next attempt on this host removes it
    (``CheckpointSync.restore``)."""
    unuploaded = [] if lost else sync.unuploaded()
    if unuploaded or not manifest_stored or not log_stored:
        what = (f"checkpoint(s) of step(s) {unuploaded}" if unuploaded
                else "the manifest" if not manifest_stored else "the log")
        say(f"scratch folder {scratch.path} kept: {what} not in the artifact store")
        return
    scratch.remove()


def _store_manifest(store, run, scratch, patience_s):
    """What the training read (``<scratch>/manifest.json``), into the store;
    False when it could not be stored (True: stored, or none written).
    ``StoreForbidden`` (a refused key) is raised, not waited out."""
    try:
        manifest = json.loads(scratch.manifest.read_text())
    except (OSError, ValueError):
        return True  # it never got as far as writing one
    try:
        retrying.patiently(artifacts.retried(lambda: store.put_json(artifacts.manifest_key(run["id"]), manifest),
                                             "manifest"), patience_s, StoreUnavailable, what="an artifact store call")
    except StoreUnavailable as exc:
        logger.warning("run %s: manifest not stored: %s", run["id"], exc)
        return False
    return True


def _store_log(store, run, log, patience_s):
    """The attempt's whole log (``_AttemptLog``), closed, gzipped into the
    store (``artifacts.log_key``); False when it could not be stored (True:
    stored, or no file to store).  ``StoreForbidden`` (a refused key) is
    raised, not waited out, as for the manifest."""
    log.close()
    if not log.path.exists():
        return True  # never opened (a full disk): the registry's lines are all there is
    key = artifacts.log_key(run["id"], run["attempts"])
    try:
        retrying.patiently(artifacts.retried(lambda: store.put_gzipped(log.path, key), "log"), patience_s,
                           StoreUnavailable, what="an artifact store call")
    except StoreUnavailable as exc:
        logger.warning("run %s: log not stored: %s", run["id"], exc)
        return False
    return True


def _store_summary(store, run, result, patience_s):
    # An outage costs the summary (the result is in the registry); a refused
    # key (StoreForbidden) fails the attempt, as anywhere else.
    summary = {"run_id": str(run["id"]), "attempt": run["attempts"], "status": RunStatus.COMPLETED.value, "result": result}
    try:
        retrying.patiently(artifacts.retried(lambda: store.put_json(artifacts.summary_key(run["id"]), summary),
                                             "summary"), patience_s, StoreUnavailable, what="an artifact store call")
    except StoreUnavailable as exc:
        logger.warning("run %s: summary not stored: %s", run["id"], exc)
