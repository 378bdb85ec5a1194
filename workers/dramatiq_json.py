"""dramatiq's command line with ``LOG_FORMAT=json``:
``python -m workers.dramatiq_json workers.boot:boot --processes ...``.

dramatiq sets up logging itself, in its main process and in each worker
process it forks, with a fixed text format (``dramatiq.cli.LOGFORMAT``) and
no hook to change it.  This runs its ``main`` after wrapping those two
set-ups so that each then gives its handlers the JSON formatter
(``tasks/log_format.py``); in a worker process the lines logged while a
thread processes a run carry its ``run_id`` (``workers/context.py``).  The
worker launch runs this instead of ``python -m dramatiq`` only with
``LOG_FORMAT=json``; the arguments are dramatiq's own.
"""

import logging
import sys

import dramatiq.cli

from tasks.log_format import log_stray_output, use_json
from tasks.settings import get_settings

from .context import current_run


def current_run_id():
    run = current_run()
    return run["id"] if run is not None else None


def _then_json(setup, **kwargs):
    def wrapped(*args, **kw):
        logger = setup(*args, **kw)
        use_json(logging.getLogger().handlers, get_settings().hostname, **kwargs)
        log_stray_output()
        return logger

    return wrapped


def main():
    # NOTE: dramatiq.cli looks these up as module globals when it calls
    # them, in the main process and (forked) in each worker process.
    dramatiq.cli.setup_parent_logging = _then_json(dramatiq.cli.setup_parent_logging)
    dramatiq.cli.setup_worker_logging = _then_json(dramatiq.cli.setup_worker_logging, current_run_id=current_run_id)
    dramatiq.cli.setup_fork_logging = _then_json(dramatiq.cli.setup_fork_logging)
    return dramatiq.cli.main()


if __name__ == "__main__":
    sys.exit(main())
