"""A training's checkpoints between the worker's scratch folder and the
artifact store (``tasks/artifacts.py``).

* Before the training starts, ``restore`` puts the run's latest *recorded*
  step, downloaded from the store, alone into the scratch folder, so orbax
  restores it on whatever host claimed the run.  Only recorded steps exist:
  whatever else a folder on this host holds (a step a dead attempt finalised
  but never recorded) is removed first.  A store that cannot be reached is
  tried for ``STORE_PATIENCE_S``, then the attempt fails with
  ``StoreUnavailable``: a run never starts from step 0 silently.
* While it trains, a thread uploads each step once orbax has finalised it
  (renamed into place, ``commit_success.txt``) in this attempt's own scratch
  folder, streaming a tar, and then
  records it in ``tunix_checkpoints``.  A failed upload is tried again with
  back-off while the training goes on; a step that never uploaded is not
  recorded.  The record is fenced by the attempt (a stale attempt's upload is
  deleted again, and its object name carries its attempt, so it could not
  have overwritten a newer one).  A full disk (the snapshot's, or a local
  store's) is not waited out: it is kept in ``error`` (a ``DiskFull``),
  which the runner turns into the attempt's failure at once.  Nor is a store
  that refuses our credentials (``StoreForbidden``: a 403, an expired key):
  kept in ``error`` the same way, never retried as an outage, so a training
  never completes with its checkpoints refused.
* ``finish`` uploads what is left once the training exited (the checkpoint
  of a stop), then applies retention: ``CHECKPOINT_KEEP`` latest steps plus
  the lowest-loss one.  Deleting is idempotent: mark the row (it leaves every
  listing), delete the object (one already gone counts as deleted), delete
  the row.
"""

import json
import logging
import threading
import time

from tasks import artifacts, db, registry
from tasks.errors import DatabaseUnavailable, ObjectMissing, Overloaded, StoreForbidden, StoreUnavailable
from tasks.metrics import STORE_RETRIES

from .disk import disk_full, is_no_space

logger = logging.getLogger(__name__)

#: Seconds between looks at the scratch folder for newly finalised steps:
#: orbax deletes a step once it has saved newer ones (it keeps three,
#: ``workers/training/checkpoints.py``), at the fastest a tiny model's ~1 s.
POLL_S = 0.1
#: Back-off between tries of a failed upload (doubling up to the maximum).
FIRST_RETRY_S, MAX_RETRY_S = 0.5, 10.0


def step_loss(step_dir):
    """The training loss the training recorded with a step (orbax custom metadata)."""
    try:
        meta = json.loads((step_dir / "_CHECKPOINT_METADATA").read_text())
        return ((meta.get("custom_metadata") or {}).get("tunix_rt") or {}).get("loss")
    except (OSError, ValueError, AttributeError):
        return None


def collect_garbage(pool, store, run_id, keep):
    """Retention for one run; returns how many checkpoints were deleted.  Safe
    to interrupt anywhere and to run again (or concurrently)."""
    with db.connection(pool) as conn:
        registry.mark_checkpoints_for_deletion(conn, run_id, keep)
        doomed = registry.checkpoints_being_deleted(conn, run_id)
    for _, step, key in doomed:
        store.delete(key)  # first the object: a row never names a missing object
        with db.connection(pool) as conn:
            registry.delete_checkpoint_row(conn, run_id, step)
    return len(doomed)


def sweep_orphans(pool, store, run_id, below_attempt=None):
    """Delete the run's checkpoint objects no row names: an upload whose
    worker died before it recorded it, or a stale attempt's.  With
    ``below_attempt``, only those of earlier attempts (which can record
    nothing any more: an upload of the current one may be on its way to its
    row); returns how many."""
    listed = store.list(artifacts.checkpoints_prefix(run_id))
    with db.connection(pool) as conn:
        known = registry.all_checkpoint_keys(conn, run_id)
    orphans = []
    for key in listed:
        attempt = artifacts.checkpoint_attempt(key)
        if key in known or attempt is None or (below_attempt is not None and attempt >= below_attempt):
            continue
        orphans.append(key)
    for key in orphans:
        store.delete(key)
    return len(orphans)


class CheckpointSync:
    def __init__(self, pool, store, run, scratch, settings, say=None):
        self.pool, self.store, self.run, self.scratch, self.settings = pool, store, run, scratch, settings
        self.run_id, self.attempt = run["id"], run["attempts"]
        #: ``say(line)``: a line for the run's own log (what a user sees).
        self.say = say or (lambda line: None)
        self.handled = set()  # steps uploaded (recorded or not) or gone
        self.recorded = []  # steps this attempt recorded
        self.upload_s = []  # seconds each upload took
        self._stop = threading.Event()
        self._thread = None
        self._retry_at, self._delay = 0.0, FIRST_RETRY_S
        #: What stopped the uploads for good (a ``DiskFull``, a
        #: ``StoreForbidden``), None while there is none.
        self.error = None

    # ---------------------------------------------------------------- resume

    def restore(self):
        """Put the latest recorded step in place; returns it (None: none).

        Raises:
          StoreUnavailable: the store (or the registry) could not be read
            within ``STORE_PATIENCE_S``.
          StoreForbidden: the store refused our credentials (at once: no
            waiting mends a key).
        """
        deadline = time.monotonic() + self.settings.store_patience_s
        delay = FIRST_RETRY_S
        while True:
            try:
                return self._restore_once()
            except (StoreUnavailable, ObjectMissing, DatabaseUnavailable, Overloaded) as exc:
                if is_no_space(exc):
                    # The download into a full scratch disk: waiting frees nothing.
                    raise disk_full(self.scratch.checkpoints, "restoring the run's latest checkpoint",
                                    exc) from None
                # The last wait is cut to the deadline, so the last try is
                # made at it: the store gets the whole patience, not the
                # back-off's last multiple below it (3.5 s of 5).
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreUnavailable(
                        f"could not restore the run's latest checkpoint from the artifact store within "
                        f"{self.settings.store_patience_s:g}s: {exc}") from None
                wait = min(delay, remaining)
                if isinstance(exc, (StoreUnavailable, ObjectMissing)):
                    STORE_RETRIES.labels("checkpoint_restore").inc()
                logger.warning("run %s: restore failed, trying again in %.1fs: %s", self.run_id, wait, exc)
                time.sleep(wait)
                delay = min(delay * 2, MAX_RETRY_S)

    def _restore_once(self):
        with db.connection(self.pool) as conn:
            latest = registry.latest_checkpoint(conn, self.run_id)
        self.scratch.clear_checkpoints()
        for earlier in self.scratch.earlier_attempts():
            # Superseded: this attempt starts from the store, never from an
            # earlier attempt's files.  Disk only: a stale attempt still
            # saving there cannot reach this attempt's folder, and what it
            # uploads is refused (fencing).
            earlier.remove()
        if self.attempt > 1:
            sweep_orphans(self.pool, self.store, self.run_id, below_attempt=self.attempt)
        if latest is None:
            if self.attempt > 1:
                self.say(f"attempt {self.attempt}: no checkpoint recorded; training starts from step 0")
            return None
        started = time.monotonic()
        try:
            self.store.download_tree(latest["object_key"], str(self.scratch.checkpoints), sha256=latest["sha256"])
        except BaseException:
            self.scratch.clear_checkpoints()
            raise
        self.handled.add(latest["step"])
        self.say(f"attempt {self.attempt}: restored the checkpoint of step {latest['step']} from "
                 f"{latest['uri']} ({latest['size_bytes']} bytes in {time.monotonic() - started:.2f}s)")
        return latest["step"]

    # ---------------------------------------------------------------- uploads

    def start(self):
        self._thread = threading.Thread(target=self._loop, name=f"checkpoints-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(POLL_S):
            try:
                self.upload_pending()
            except Exception:  # noqa: BLE001 - the thread goes on; finish() tries again
                logger.exception("run %s: checkpoint upload failed", self.run_id)

    def upload_pending(self, force=False):
        """Upload and record each finalised step not handled yet; True when
        none is left (False: the store failed, tried again later)."""
        if self.error is not None or (not force and time.monotonic() < self._retry_at):
            return False
        for step in self.scratch.finalised_steps():
            if step in self.handled:
                continue
            try:
                self._upload(step)
            except FileNotFoundError:
                self.handled.add(step)  # orbax deleted it meanwhile (it keeps its latest two)
            except StoreForbidden as exc:
                # Not an outage: no retry mends a refused key.  The runner
                # fails the attempt with it (``error``), as on a full disk.
                self.error = exc
                logger.error("run %s: checkpoint of step %s refused by the artifact store: %s", self.run_id, step,
                             exc)
                return False
            except (OSError, StoreUnavailable) as exc:
                if not is_no_space(exc):
                    # Tried again later, as an unreachable store: the
                    # uploading thread must not die on it.
                    STORE_RETRIES.labels("checkpoint_upload").inc()
                    self._back_off(step, exc)
                    return False
                where = (self.scratch.snapshots if isinstance(exc, OSError)
                         else self.store.path(artifacts.checkpoints_prefix(self.run_id)))
                self.error = disk_full(where, f"uploading the checkpoint of step {step}", exc)
                logger.warning("run %s: %s", self.run_id, self.error)
                return False
            except (DatabaseUnavailable, Overloaded) as exc:
                self._back_off(step, exc)
                return False
        self._delay = FIRST_RETRY_S
        return True

    def _back_off(self, step, exc):
        logger.warning("run %s: checkpoint of step %s not uploaded yet (retry in %.1fs): %s",
                       self.run_id, step, self._delay, exc)
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, MAX_RETRY_S)

    def unuploaded(self):
        """Finalised steps in the scratch folder that are not in the store:
        while there is one, the folder holds its only copy."""
        return [s for s in self.scratch.finalised_steps() if s not in self.handled]

    def _upload(self, step):
        # Hard links first (milliseconds): orbax may delete the step while
        # it uploads, which a retry could not undo.
        step_dir = self.scratch.snapshot(step)
        key = artifacts.checkpoint_key(self.run_id, step, self.attempt)
        started = time.monotonic()
        loss = step_loss(step_dir)
        size, sha256 = self.store.upload_tree(step_dir, key, arcname=str(step))
        self.scratch.drop_snapshot(step)
        self.upload_s.append(time.monotonic() - started)
        with db.connection(self.pool) as conn:
            row = registry.record_checkpoint(conn, run_id=self.run_id, step=step, attempt=self.attempt,
                                             uri=self.store.uri(key), object_key=key, size_bytes=size,
                                             sha256=sha256, loss=loss)
        self.handled.add(step)
        if row is None:
            # Not this attempt's to record (recovered elsewhere), or the step
            # was recorded by an earlier attempt: this object is no one's.
            self.store.delete(key)
            return
        self.recorded.append(step)
        try:
            collect_garbage(self.pool, self.store, self.run_id, self.settings.checkpoint_keep)
        except Exception as exc:  # noqa: BLE001 - retention is retried on the next step and at the end
            logger.warning("run %s: retention deferred: %s", self.run_id, exc)

    def finish(self, upload=True):
        """After the training exited: upload what is left (within
        ``STORE_PATIENCE_S``; nothing with ``upload=False``: an attempt known
        to be stale), then apply retention.  Returns the steps this attempt
        recorded."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not upload:
            return list(self.recorded)
        deadline = time.monotonic() + self.settings.store_patience_s
        # The back-off starts again: after a long outage it had reached
        # MAX_RETRY_S, which would leave the whole patience (5 s in the store
        # tests) two tries, both maybe in the second or so a store that just
        # came back still answers 500 (SeaweedFS before its volume server
        # registered: tests/s3server.py).
        self._delay = FIRST_RETRY_S
        while not self.upload_pending(force=True):
            if self.error is not None:
                # A full disk or a refused key is not waited out (the attempt fails with it).
                self.say(f"checkpoint(s) of step(s) {self.unuploaded()} not uploaded, so not recorded: {self.error}")
                break
            remaining = deadline - time.monotonic()  # the last try at the deadline, as in ``restore``
            if remaining <= 0:
                self.say(f"artifact store unreachable: checkpoint(s) of step(s) {self.unuploaded()} not uploaded, "
                         "so not recorded")
                break
            time.sleep(min(self._delay, remaining))
        try:
            collect_garbage(self.pool, self.store, self.run_id, self.settings.checkpoint_keep)
        except Exception as exc:  # noqa: BLE001 - the reaper finishes marked rows
            logger.warning("run %s: retention deferred: %s", self.run_id, exc)
        return list(self.recorded)
