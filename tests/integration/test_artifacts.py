"""The artifact store and recorded checkpoints against real PostgreSQL: the
layout, streaming round trips, fencing, retention and its garbage collection."""

import hashlib
import os
import uuid

import pytest

from tasks import artifacts, registry
from tasks.artifacts import ArtifactStore, Scratch
from tasks.errors import ObjectMissing
from tasks.run_service import RunService
from tasks.settings import get_settings
from workers.checkpoint_sync import CheckpointSync, collect_garbage, sweep_orphans


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(f"file://{tmp_path}/artifacts")


def new_run(conn):
    """A training submitted as the API submits one: pending with its message (the queue is empty)."""
    return RunService(get_settings()).submit(conn, {"dataset_key": "synthetic", "model_id": "llama3-tiny",
                                                    "dry_run": False})


def fake_step(scratch, step, loss, size=64 * 1024):
    """A folder shaped like an orbax step orbax finalised."""
    folder = scratch.step_dir(step)
    (folder / "model_params").mkdir(parents=True)
    (folder / "model_params" / "data").write_bytes(os.urandom(size))
    (folder / "_CHECKPOINT_METADATA").write_text(
        '{"custom_metadata": {"tunix_rt": {"step": %d, "loss": %r}}}' % (step, loss))
    (folder / "commit_success.txt").write_text("ok")
    return folder


def test_the_layout_is_one_place_and_rejects_what_is_not_a_run_id():
    run_id = uuid.uuid4()
    assert artifacts.checkpoint_key(run_id, 40, 2) == f"runs/{run_id}/checkpoints/40.a2.tar"
    assert artifacts.manifest_key(run_id) == f"runs/{run_id}/manifest.json"
    assert artifacts.dataset_key("my-set") == "datasets/my-set.jsonl"
    with pytest.raises(ValueError):
        artifacts.manifest_key("../../etc")


def test_a_folder_streams_to_the_store_and_back_with_its_checksum(store, tmp_path):
    # Given a step folder
    scratch = Scratch(tmp_path / "runs", uuid.uuid4(), attempt=1).create()
    folder = fake_step(scratch, 7, 1.25, size=3 << 20)
    # When it is uploaded, then downloaded elsewhere
    size, sha256 = store.upload_tree(folder, "x/7.tar", arcname="7")
    with store.open("x/7.tar") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == sha256
    into = tmp_path / "elsewhere"
    assert store.download_tree("x/7.tar", str(into), sha256=sha256) == size
    # Then the same files arrive, and no temporary object is left in the store
    assert (into / "7" / "model_params" / "data").read_bytes() == (folder / "model_params" / "data").read_bytes()
    assert list(store.list("x")) == ["x/7.tar"]
    # And a missing object is ObjectMissing, a wrong checksum refused
    with pytest.raises(ObjectMissing):
        store.download_tree("x/8.tar", str(into))
    with pytest.raises(Exception, match="sha256"):
        store.download_tree("x/7.tar", str(tmp_path / "third"), sha256="0" * 64)


def test_only_the_runs_current_attempt_records_a_checkpoint(conn, store, pool):
    # Given a run on its second attempt
    run = new_run(conn)
    first = registry.claim(conn, run["id"], "w:1")
    registry.transition(conn, run["id"], "recover", attempt=first["attempts"])
    second = registry.claim(conn, run["id"], "w:2")
    args = dict(run_id=run["id"], step=10, uri="file:///x", object_key="k", size_bytes=1, sha256="s")
    # When the first (stale) attempt records step 10, then the current one
    stale = registry.record_checkpoint(conn, attempt=first["attempts"], **args)
    current = registry.record_checkpoint(conn, attempt=second["attempts"], **args)
    # Then only the current attempt's record exists
    assert stale is None and current["attempt"] == 2
    assert [c["step"] for c in registry.list_checkpoints(conn, run["id"])] == [10]


def test_a_recorded_checkpoints_loss_fills_its_steps_metric_and_the_progress_event_still_wins(conn):
    # Given a training whose checkpoint of step 20 (loss 1.25) is recorded before its step-20 metric was flushed
    run = registry.claim(conn, new_run(conn)["id"], "w:1")
    args = dict(run_id=run["id"], attempt=1, uri="file:///x", object_key="k", size_bytes=1, sha256="s")
    registry.record_checkpoint(conn, step=20, loss=1.25, **args)
    registry.record_checkpoint(conn, step=30, loss=None, **args)
    # Then the metrics hold step 20's loss (a resume after a kill starts at step 21), not an unknown loss
    assert [(m["step"], m["loss"]) for m in registry.get_metrics(conn, run["id"])] == [(20, 1.25)]
    # And the progress event of that step, when it comes, replaces it whole
    registry.record_activity(conn, run["id"], metrics=[(20, 1.25, 3e-3, 0.5, 1)])
    assert [(m["step"], m["learning_rate"]) for m in registry.get_metrics(conn, run["id"])] == [(20, 3e-3)]


def test_retention_keeps_the_latest_and_the_best_and_an_interrupted_pass_is_finished(conn, store, pool, tmp_path):
    # Given a training that recorded 7 steps, its best loss at step 20
    settings = get_settings().replace(checkpoint_keep=3, store_patience_s=5)
    run = registry.claim(conn, new_run(conn)["id"], "w:1")
    scratch = Scratch(tmp_path / "runs", run["id"], run["attempts"]).create()
    sync = CheckpointSync(pool, store, run, scratch, settings)
    losses = {10: 3.0, 20: 0.5, 30: 2.0, 40: 1.9, 50: 1.8, 60: 1.7, 70: 1.6}
    # GC waits: mark nothing until every step is there
    sync.settings = settings.replace(checkpoint_keep=100)
    for step, loss in losses.items():
        fake_step(scratch, step, loss)
    assert sync.upload_pending(force=True)
    assert sorted(sync.recorded) == sorted(losses)
    # When a retention pass is interrupted after marking, before deleting
    registry.mark_checkpoints_for_deletion(conn, run["id"], 3)
    listed = [c["step"] for c in registry.list_checkpoints(conn, run["id"])]
    # Then the listing already shows only what is kept
    assert listed == [20, 50, 60, 70]
    # When one object was deleted before the interruption, and the pass runs again
    store.delete(artifacts.checkpoint_key(run["id"], 30, 1))
    assert collect_garbage(pool, store, run["id"], 3) == 3
    # Then exactly the promised steps remain, each row with its object, nothing else
    rows = registry.list_checkpoints(conn, run["id"])
    assert [c["step"] for c in rows] == [20, 50, 60, 70]
    assert sorted(store.list(artifacts.checkpoints_prefix(run["id"]))) == sorted(c["object_key"] for c in rows)
    assert registry.checkpoints_being_deleted(conn, run["id"]) == []
    # And a pass run once more changes nothing
    assert collect_garbage(pool, store, run["id"], 3) == 0


def test_objects_no_row_names_are_swept(conn, store, pool, tmp_path):
    # Given a recorded step, and an upload whose worker died before recording it
    run = registry.claim(conn, new_run(conn)["id"], "w:1")
    scratch = Scratch(tmp_path / "runs", run["id"], run["attempts"]).create()
    sync = CheckpointSync(pool, store, run, scratch, get_settings())
    fake_step(scratch, 10, 1.0)
    assert sync.upload_pending(force=True)
    store.upload_tree(fake_step(scratch, 20, 0.9), artifacts.checkpoint_key(run["id"], 20, 1), arcname="20")
    # When the orphans are swept
    assert sweep_orphans(pool, store, run["id"]) == 1
    # Then only the recorded object is left
    assert list(store.list(artifacts.checkpoints_prefix(run["id"]))) == [artifacts.checkpoint_key(run["id"], 10, 1)]


def test_a_resume_restores_the_latest_recorded_step_alone(conn, store, pool, tmp_path):
    # Given steps 10 and 20 recorded by attempt 1, and a step 30 it finalised but never recorded
    run = registry.claim(conn, new_run(conn)["id"], "w:1")
    scratch_a = Scratch(tmp_path / "host-a", run["id"], attempt=1).create()
    sync = CheckpointSync(pool, store, run, scratch_a, get_settings())
    for step in (10, 20):
        fake_step(scratch_a, step, 1.0)
    assert sync.upload_pending(force=True)
    fake_step(scratch_a, 30, 0.1)
    registry.transition(conn, run["id"], "recover", attempt=1)
    run2 = registry.claim(conn, run["id"], "w:2")
    # When attempt 2 starts on another host, and on the first host
    lines = []
    for root in ("host-b", "host-a"):
        scratch = Scratch(tmp_path / root, run["id"], run2["attempts"]).create()
        step = CheckpointSync(pool, store, run2, scratch, get_settings(), say=lines.append).restore()
        # Then each has step 20 alone, as recorded, in a folder of its own attempt
        assert step == 20 and scratch.finalised_steps() == [20]
        assert scratch.path != scratch_a.path
    assert "restored the checkpoint of step 20" in lines[0]
    # And on the first host attempt 1's folder is gone: superseded, its steps recorded
    assert scratch_a.finalised_steps() == [] and not scratch_a.path.exists()


def test_a_stale_attempt_saving_on_the_same_host_cannot_reach_the_current_attempts_steps(conn, store, pool,
                                                                                       tmp_path):
    # Given attempt 2 of a run restored on a host where attempt 1 (frozen, then thawed) still trains
    run = registry.claim(conn, new_run(conn)["id"], "w:1")
    sync = CheckpointSync(pool, store, run, Scratch(tmp_path, run["id"], 1).create(), get_settings())
    fake_step(sync.scratch, 10, 1.0)
    assert sync.upload_pending(force=True)
    registry.transition(conn, run["id"], "recover", attempt=1)
    run2 = registry.claim(conn, run["id"], "w:2")
    current = Scratch(tmp_path, run["id"], run2["attempts"]).create()
    assert CheckpointSync(pool, store, run2, current, get_settings()).restore() == 10
    # When the stale attempt's training saves newer steps into its own folder
    fake_step(sync.scratch, 310, 0.5)
    fake_step(sync.scratch, 320, 0.4)
    # Then the current attempt's folder holds the recorded step alone: orbax resumes there from step 10
    assert current.finalised_steps() == [10]
    # And the stale attempt's uploads are refused, their objects deleted again
    assert sync.upload_pending(force=True)
    assert sync.recorded == [10]
    assert [c["step"] for c in registry.list_checkpoints(conn, run["id"])] == [10]
    assert list(store.list(artifacts.checkpoints_prefix(run["id"]))) == [artifacts.checkpoint_key(run["id"], 10, 1)]
