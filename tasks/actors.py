"""The actors, as both sides know them: a name, a queue and dramatiq's
options.  The API builds their messages by name and writes them; a worker
declares them with their bodies at boot (``workers/actors.py``), so this
module needs no broker to be imported and loads no worker code.

A message carries a run id only: the run's configuration is in the
registry, where the worker middleware claims it before the actor runs.
"""

import dataclasses

import dramatiq
from dramatiq_pg.utils import tidy4json

from .broker import DRY_QUEUE, SAMPLES_QUEUE, TRAIN_QUEUE, get_broker


@dataclasses.dataclass(frozen=True)
class ActorSpec:
    actor_name: str
    queue_name: str
    #: dramatiq's actor options (validated against ``broker.base_middleware``).
    options: dict

    def message(self, job_id):
        """The message of ``job_id`` (a run, sample or export id), as
        ``actor.message(str(job_id))`` builds it, with the job id as its
        message id: publishing the same job again replaces its message
        instead of adding a second one."""
        return dramatiq.Message(queue_name=self.queue_name, actor_name=self.actor_name, args=(str(job_id),),
                                kwargs={}, options={}, message_id=str(job_id))


execute_dry_run = ActorSpec("execute_dry_run", DRY_QUEUE, {"max_retries": 0})

# notify_shutdown: a worker told to stop interrupts the training (which
# checkpoints) and hands the run back instead of waiting hours for it.
execute_training = ActorSpec("execute_training", TRAIN_QUEUE, {"max_retries": 0, "notify_shutdown": True})

# notify_shutdown: a worker told to stop ends the generation at once; the
# sample ends failed (``WorkerStopped``), and the user asks again.
execute_sample = ActorSpec("execute_sample", SAMPLES_QUEUE, {"max_retries": 0, "notify_shutdown": True})

# On the samples queue (the inference-like jobs'): a worker told to stop ends
# the export at once; it ends failed (``worker_stopped``), and the user asks again.
execute_export = ActorSpec("execute_export", SAMPLES_QUEUE, {"max_retries": 0, "notify_shutdown": True})


def message_for(run_id, dry_run):
    """The run's message; its message id is the run id."""
    return (execute_dry_run if dry_run else execute_training).message(run_id)


def outbox_rows(runs):
    """``(queue_name, message_id, message)`` rows to write the messages of
    ``runs``, ``(run_id, dry_run)`` pairs, in the caller's transaction
    (``registry.submit_run``, ``registry.enqueue_messages``)."""
    return [_outbox_row(message_for(run_id, dry_run)) for run_id, dry_run in runs]


def _outbox_row(message):
    """``(queue_name, message_id, message)``: ``message`` as the outbox writes
    it, the broker's enqueue hooks run as ``broker.enqueue`` would run them."""
    get_broker().emit_before("enqueue", message, None)
    return message.queue_name, message.message_id, tidy4json(message)


def sample_outbox_row(sample_id):
    """The ``(queue_name, message_id, message)`` row of a sample request's
    message (its id is the sample id), written in the transaction that
    inserts the sample (``registry.submit_sample``)."""
    return _outbox_row(execute_sample.message(sample_id))


def export_outbox_row(export_id):
    """The ``(queue_name, message_id, message)`` row of an export request's
    message (its id is the export id), written in the transaction that
    inserts the export (``registry.submit_export``)."""
    return _outbox_row(execute_export.message(export_id))
