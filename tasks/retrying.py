"""``patiently``: the one retry helper, on tenacity.

For the writes a short outage must not cost a run (a worker's final status,
a training's last log lines, a manifest in the artifact store): ``fn()`` is
tried again while it raises one of ``errors``, with exponential back-off
(``first_delay_s``, doubling, at most ``max_delay_s``), for up to
``patience_s`` seconds; then its last error.  The last wait is cut to the
deadline and a last try made at it, so the outage gets the whole patience,
not the back-off's last multiple below it.
"""

import logging
import time

import tenacity

logger = logging.getLogger(__name__)

#: The longest wait between two tries: once an outage ends, a patient write
#: lands within this long (the reaper waits it out before it takes a run).
MAX_DELAY_S = 5.0


def patiently(fn, patience_s, errors, *, first_delay_s=0.25, max_delay_s=MAX_DELAY_S, what="the call"):
    """``fn()``, retried on ``errors`` (an exception class or a tuple) for up to ``patience_s`` seconds."""
    started = time.monotonic()
    # The first try outside tenacity: it is the one that almost always
    # succeeds, and tenacity's machinery (a Retrying, its actions) cost a
    # worker ~20-40 us a call, three calls a run.
    try:
        return fn()
    except errors as exc:
        first = exc

    def remaining():
        return patience_s - (time.monotonic() - started)

    if remaining() <= 0:
        raise first
    delay = min(first_delay_s, remaining())
    _say(what, first, delay)
    time.sleep(delay)

    def wait(state):
        # tenacity's attempt n is the call's (n + 1)th try: the back-off goes on from the first wait.
        backoff = min(max_delay_s, first_delay_s * 2 ** state.attempt_number)
        return max(0.0, min(backoff, remaining()))

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(errors), wait=wait, stop=lambda state: remaining() <= 0,
        before_sleep=lambda state: _say(what, state.outcome.exception(), state.next_action.sleep), reraise=True)
    return retrying(fn)


def _say(what, exc, delay):
    logger.warning("%s failed (%s); trying again in %.2fs", what, exc, delay)
