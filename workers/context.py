"""The run a worker thread is executing, as claimed by the registry middleware.

Set in ``before_process_message`` and cleared after, so the actor reads the
claimed row instead of querying it again.  The actor hands its result back
the same way (``set_result``) and returns None: dramatiq logs a warning for
every message whose actor returns a value without a results backend (two
log lines per run through a pipe to the launch, with dramatiq-pg's INFO
line: measured in the load benchmark's profile).
"""

import threading

_local = threading.local()


def set_current_run(run):
    _local.run = run


def current_run():
    return getattr(_local, "run", None)


def clear_current_run():
    _local.run = None


def set_result(result):
    _local.result = result


def take_result():
    """The result the actor set for the current message (once)."""
    result = getattr(_local, "result", None)
    _local.result = None
    return result
