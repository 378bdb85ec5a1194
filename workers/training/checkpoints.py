"""Checkpoints: the save hook, the stop-and-checkpoint on SIGTERM, resume.

The tunix trainer saves model and optimizer state (orbax) under
``<run_dir>/checkpoints`` every ``checkpoint_every_steps`` steps, at the end
and on SIGTERM, keeping the last three (not at step 1, orbax's default: a
full Gemma 3 270M checkpoint is 3 GB and made the first steps of a full
fine-tuning 1.6x slower than the same loop without the platform); periodic
saving is asynchronous, so a periodic checkpoint event may come before its
files are final (the SIGTERM one never does).  Each checkpoint's orbax custom
metadata holds ``{"tunix_rt": {"step": S, "loss": L}}``, the training loss of
its step.  A periodic checkpoint event of step S may come before the progress
event of step S (tunix reports a step's metrics one step late).  A process
started again on the same run_dir restores the latest checkpoint (model and
optimizer state, so also the learning-rate schedule's position) and goes on
from it: tunix skips the batches already trained, and the data order is a
function of the seed, so the resumed run sees the same batches and reports
the same losses, bit for bit, as an uninterrupted one.
"""

import os

from tasks.artifacts import Scratch

from .errors import Terminated
from .events import Checkpoint, finite_or_none

#: Checkpoints kept in the scratch folder (the latest ones): the worker
#: uploads each to the artifact store, whose retention is ``CHECKPOINT_KEEP``.
MAX_TO_KEEP = 3


def checkpoint_dir(run_dir):
    return str(Scratch.at(run_dir).checkpoints)


def manager_options(every_steps):
    import orbax.checkpoint as ocp

    policies = ocp.checkpoint_managers
    # Orbax's default policy adds InitialSavePolicy (a save at the first step).
    policy = policies.AnySavePolicy([policies.FixedIntervalPolicy(every_steps),
                                     policies.PreemptionCheckpointingPolicy()])
    return ocp.CheckpointManagerOptions(save_interval_steps=every_steps, max_to_keep=MAX_TO_KEEP,
                                        save_decision_policy=policy)


def restored_record(trainer):
    """What this program recorded with the restored checkpoint (see ``install_save_hook``)."""
    return (getattr(trainer, "_restored_custom_metadata", None) or {}).get("tunix_rt") or {}


def _loss_of_step(trainer, session, step):
    """The training loss of ``step`` when it is known here, else None."""
    if session.last_step == step and session.last_loss is not None:
        return session.last_loss  # already reported (the end, a stop)
    # In the loop tunix saves step S right after the update, while the
    # loss of S still waits in its one-step-late buffer.
    pending = getattr(trainer, "_prev_buffered_train_metrics", None)
    if pending is not None and pending.step + 1 == step:
        return finite_or_none(pending.loss)
    return None


def install_save_hook(trainer, session):
    """Wrap the trainer's checkpoint save: record each step's loss with it
    and report each periodic save as a checkpoint event (``session`` is the
    run's ``session.Session``)."""
    manager = trainer.checkpoint_manager
    original_save = manager.save
    orbax_manager = getattr(manager, "_checkpoint_manager", None)

    def save_and_report(step, model, optimizer=None, save_only_lora_params=False, force=False,
                        custom_metadata=None):
        # Record the step's loss with the checkpoint, so a resume that finds
        # the run already at its last step can still report it.  Only for
        # a save that will happen: reading the loss waits for the step.
        metadata = dict(custom_metadata or {})
        if force or orbax_manager is None or orbax_manager.should_save(step):
            metadata["tunix_rt"] = {"step": int(step), "loss": _loss_of_step(trainer, session, int(step))}
        saved = original_save(step, model, optimizer, save_only_lora_params=save_only_lora_params,
                              force=force, custom_metadata=metadata)
        if saved and not session.stopping:
            session.on_event(Checkpoint(step=int(step), path=session.checkpoint_dir))
        return saved

    manager.save = save_and_report


def stop_and_checkpoint(trainer, session):
    """After SIGTERM, between two steps: report and checkpoint the last step,
    wait for the save, then raise ``Terminated``."""
    path, start_step, total_steps = session.checkpoint_dir, session.start_step, session.total_steps
    step = int(trainer.train_steps)
    if step == start_step:
        # No step done by this process: nothing new to save (a restored
        # checkpoint, if any, is still the latest).
        where = f"the checkpoint of step {start_step} is unchanged" if start_step else "nothing saved"
        raise Terminated(f"SIGTERM before the first step; {where}")
    session.stopping = True
    # What tunix does at the end of a loop: emit the last step's progress
    # (buffered one step late), save the step unless already saved (force),
    # wait for every asynchronous save (orbax's close waits), close.
    trainer.close()
    step_dir = os.path.join(path, str(step))
    if not os.path.isdir(step_dir):
        raise RuntimeError(f"SIGTERM: the checkpoint of step {step} was not written to {step_dir}")
    session.on_event(Checkpoint(step=step, path=path, final=True, reason="sigterm"))
    session.log(f"SIGTERM: stopped after step {step} of {total_steps}; checkpoint of step {step} saved in {step_dir}")
    raise Terminated(f"SIGTERM: stopped after step {step} of {total_steps}; checkpoint of step {step} saved")
