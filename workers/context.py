"""The run a worker thread is executing, as claimed by the registry middleware.

Set in ``before_process_message`` and cleared after, so the actor reads the
claimed row instead of querying it again.
"""

import threading

_local = threading.local()


def set_current_run(run):
    _local.run = run


def current_run():
    return getattr(_local, "run", None)


def clear_current_run():
    _local.run = None
