"""The actors' bodies, declared on a worker process' broker at boot
(``workers/boot.py``) under the names, queues and options ``tasks/actors.py``
gives them."""

import dramatiq

from tasks import actors

from . import context, runner
from .exporting import worker as exporting
from .sampling import worker as sampling


def execute_run(run_id):
    # Handed to the registry middleware, not returned (see workers/context.py).
    context.set_result(runner.execute(run_id))


#: Each actor and its body.
BODIES = [
    (actors.execute_dry_run, execute_run),
    (actors.execute_training, execute_run),
    (actors.execute_sample, sampling.execute),
    (actors.execute_export, exporting.execute),
]


def declare(broker):
    """Declare the actors on ``broker``; returns them."""
    return [dramatiq.actor(body, broker=broker, actor_name=spec.actor_name, queue_name=spec.queue_name,
                           **spec.options)
            for spec, body in BODIES]
