"""A full disk under the runner's pieces, without a training: the drain of
the training's output and the checkpoint uploads, on a real tmpfs (its
kernel's ENOSPC) and against real PostgreSQL.  The whole path, with real
trainings, is ``tests/e2e/test_scratch_disk_http.py``."""

import os
import threading

import pytest

import tmpfs
from tasks import registry
from tasks.artifacts import ArtifactStore, Scratch
from tasks.errors import DiskFull
from tasks.run_service import RunService
from tasks.settings import get_settings
from workers.checkpoint_sync import CheckpointSync
from workers.disk import is_no_space
from workers.runner import EVENT_PREFIX, _clean_up, _Stream

#: orbax's own words when its save hit a full disk: the training's last
#: stderr line, as seen in ``test_a_checkpoint_that_finds_the_disk_full...``.
ORBAX_ERROR = ("ValueError: RESOURCE_EXHAUSTED: Error writing \"opt_state.1.inner_state.0.mu.value/0.0.0\" in OCDBT "
               "database at local file \"/d/runs/x/a1/checkpoints/10.orbax-checkpoint-tmp/optimizer_state.orbax-"
               "checkpoint-tmp/ocdbt.process_0/\": Failed writing: \"/d/runs/x/a1/checkpoints/...\": Failed to write "
               "1873 bytes to file 4: No space left on device [os_error_code='28']")


def test_a_disk_full_is_recognised_in_each_of_its_forms():
    assert is_no_space(OSError(28, os.strerror(28)))
    assert is_no_space(ORBAX_ERROR)
    assert is_no_space("artifact store file:///x: OSError: [Errno 28] No space left on device")
    assert not is_no_space(OSError(13, "Permission denied"))
    assert not is_no_space("ValueError: a NaN loss")


def test_the_drain_goes_on_reading_when_its_log_cannot_be_written(tmp_path):
    with tmpfs.mounted(tmp_path / "disk", 256) as disk:
        # Given a drain whose log file is on a disk that is full
        tmpfs.fill(disk / "ballast")
        read, write = os.pipe()
        lines, events = [], []
        stream = _Stream(os.fdopen(read, "r"), disk / "stdout.log", lines.append, events.append)
        stream.start()
        # When the training writes 4 MiB of lines and events, 60 times what the pipe holds
        line, event = "x" * 100, EVENT_PREFIX + '{"event": "progress", "step": 1}'
        writer = threading.Thread(target=lambda: _write_lines(write, [line, event] * 20_000))
        writer.start()
        writer.join(30)
        # Then the writer was never blocked: the drain read it all
        assert not writer.is_alive(), "the training would block on its pipe: the drain stopped reading"
        stream.join(10)
        assert not stream.is_alive()
        assert len(lines) == 20_000 and len(events) == 20_000
        # And it kept the failed write, which the runner turns into a DiskFull naming the folder
        assert is_no_space(stream.error)
        full = stream.write_error()
        assert isinstance(full, DiskFull) and full.code == "disk_full"
        assert f"in {disk}: " in str(full) and "free of 256.0 KiB" in str(full), str(full)
        assert full.details["folder"] == str(disk) and full.details["free_bytes"] < 4096


def _write_lines(fd, lines):
    with os.fdopen(fd, "w") as out:
        for text in lines:
            out.write(text + "\n")


def new_run(conn):
    """A training submitted as the API submits one: pending with its message (the queue is empty)."""
    return RunService(get_settings()).submit(conn, {"dataset_key": "synthetic", "model_id": "llama3-tiny",
                                                    "dry_run": False})


def fake_step(scratch, step, size):
    folder = scratch.step_dir(step)
    (folder / "model_params").mkdir(parents=True)
    (folder / "model_params" / "data").write_bytes(os.urandom(size))
    (folder / "commit_success.txt").write_text("ok")
    return folder


def test_a_full_store_disk_stops_the_uploads_at_once_and_the_folder_keeps_its_only_copy(conn, pool, tmp_path):
    with tmpfs.mounted(tmp_path / "store", 512) as root:
        # Given a local store on a disk with room for one small checkpoint, not for a big one
        store = ArtifactStore(f"file://{root}")
        run = registry.claim(conn, new_run(conn)["id"], "w:1")
        scratch = Scratch(tmp_path / "runs", run["id"], 1).create()
        settings = get_settings().replace(store_patience_s=60)
        lines = []
        sync = CheckpointSync(pool, store, run, scratch, settings, say=lines.append)
        fake_step(scratch, 10, 64 << 10)
        assert sync.upload_pending(force=True) and sync.recorded == [10]
        fake_step(scratch, 20, 1 << 20)
        # When the next upload finds the store's disk full
        assert not sync.upload_pending(force=True)
        # Then the sync holds a DiskFull naming the store's folder and its free space
        assert isinstance(sync.error, DiskFull), sync.error
        assert str(root) in str(sync.error) and "free of 512.0 KiB" in str(sync.error)
        # And finish() does not wait out its minute of store patience for it
        recorded = sync.finish()
        assert recorded == [10] and sync.unuploaded() == [20]
        assert "step(s) [20] not uploaded" in lines[-1]
        # And the folder stays: it holds step 20's only copy
        _clean_up(scratch, sync, True, False, say=lines.append)
        assert scratch.finalised_steps() == [10, 20]
        assert lines[-1] == (f"scratch folder {scratch.path} kept: checkpoint(s) of step(s) [20] "
                             "not in the artifact store")


def test_a_recorded_attempts_folder_is_removed_and_an_earlier_attempts_once_superseded(conn, pool, tmp_path):
    store = ArtifactStore(f"file://{tmp_path}/artifacts")
    # Given attempt 1 recorded its steps and ended, its folder left behind (its worker died)
    run = registry.claim(conn, new_run(conn)["id"], "w:1")
    first = Scratch(tmp_path / "runs", run["id"], 1).create()
    sync = CheckpointSync(pool, store, run, first, get_settings())
    fake_step(first, 10, 1024)
    assert sync.upload_pending(force=True)
    (first.stdout_log).write_text("a log\n")
    registry.transition(conn, run["id"], "recover", attempt=1)
    run2 = registry.claim(conn, run["id"], "w:2")
    # When attempt 2 starts on the same host
    second = Scratch(tmp_path / "runs", run["id"], run2["attempts"]).create()
    sync2 = CheckpointSync(pool, store, run2, second, get_settings())
    assert sync2.restore() == 10
    # Then attempt 1's folder is gone, logs and all
    assert not first.path.exists() and second.finalised_steps() == [10]
    # And once attempt 2 ended with everything recorded, its folder goes too, and the run's
    fake_step(second, 20, 1024)
    assert sync2.finish() == [20]
    _clean_up(second, sync2, True, False, say=pytest.fail)
    assert not second.path.exists() and not second.run_root.exists()
