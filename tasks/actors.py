"""The actors.  A message carries a run id only: the run's configuration is
in the registry, where the worker middleware claims it before the actor runs.
"""

import dramatiq

from .broker import DRY_QUEUE, SAMPLES_QUEUE, TRAIN_QUEUE, broker


def _execute(run_id):
    # NOTE: imported at call time so the API process, which only sends these
    # messages, never loads worker code (subprocess runner, JAX plumbing).
    from workers import context, runner

    # Handed to the registry middleware, not returned (see workers/context.py).
    context.set_result(runner.execute(run_id))


@dramatiq.actor(queue_name=DRY_QUEUE, max_retries=0, broker=broker)
def execute_dry_run(run_id):
    return _execute(run_id)


# notify_shutdown: a worker told to stop interrupts the training (which
# checkpoints) and hands the run back instead of waiting hours for it.
@dramatiq.actor(queue_name=TRAIN_QUEUE, max_retries=0, notify_shutdown=True, broker=broker)
def execute_training(run_id):
    return _execute(run_id)


def message_for(run_id, dry_run):
    """The run's message.  Its message id is the run id, so publishing the
    same run again replaces its message instead of adding a second one."""
    actor = execute_dry_run if dry_run else execute_training
    return actor.message(str(run_id)).copy(message_id=str(run_id))


def publish(run_id, dry_run):
    """Send the run's message (one transaction of its own): for the reaper and
    a worker handing a run back.  The API writes its messages in the
    transaction of the change that queues the run (``outbox_rows``)."""
    return broker.enqueue(message_for(run_id, dry_run))


def outbox_rows(runs):
    """``(queue_name, message_id, message)`` rows to write the messages of
    ``runs``, ``(run_id, dry_run)`` pairs, in the caller's transaction
    (``registry.submit_run``, ``registry.enqueue_messages``)."""
    return [_outbox_row(message_for(run_id, dry_run)) for run_id, dry_run in runs]


def _outbox_row(message):
    """``(queue_name, message_id, message)``: ``message`` as the outbox writes
    it, the broker's enqueue hooks run as ``broker.enqueue`` would run them."""
    from dramatiq_pg.utils import tidy4json

    broker.emit_before("enqueue", message, None)
    return message.queue_name, message.message_id, tidy4json(message)


# notify_shutdown: a worker told to stop ends the generation at once; the
# sample ends failed (``WorkerStopped``), and the user asks again.
@dramatiq.actor(queue_name=SAMPLES_QUEUE, max_retries=0, notify_shutdown=True, broker=broker)
def execute_sample(sample_id):
    # NOTE: imported at call time, as ``_execute`` (the API only sends these).
    from workers.sampling import worker

    worker.execute(sample_id)


def sample_outbox_row(sample_id):
    """The ``(queue_name, message_id, message)`` row of a sample request's
    message (its id is the sample id), written in the transaction that
    inserts the sample (``registry.submit_sample``)."""
    return _outbox_row(execute_sample.message(str(sample_id)).copy(message_id=str(sample_id)))


# On the samples queue (the inference-like jobs'): a worker told to stop ends
# the export at once; it ends failed (``worker_stopped``), and the user asks again.
@dramatiq.actor(queue_name=SAMPLES_QUEUE, max_retries=0, notify_shutdown=True, broker=broker)
def execute_export(export_id):
    # NOTE: imported at call time, as ``_execute`` (the API only sends these).
    from workers.exporting import worker

    worker.execute(export_id)


def export_outbox_row(export_id):
    """The ``(queue_name, message_id, message)`` row of an export request's
    message (its id is the export id), written in the transaction that
    inserts the export (``registry.submit_export``)."""
    return _outbox_row(execute_export.message(str(export_id)).copy(message_id=str(export_id)))
