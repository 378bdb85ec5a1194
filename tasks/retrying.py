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

import tenacity

logger = logging.getLogger(__name__)

#: The longest wait between two tries: once an outage ends, a patient write
#: lands within this long (the reaper waits it out before it takes a run).
MAX_DELAY_S = 5.0


def patiently(fn, patience_s, errors, *, first_delay_s=0.25, max_delay_s=MAX_DELAY_S, what="the call"):
    """``fn()``, retried on ``errors`` (an exception class or a tuple) for up to ``patience_s`` seconds."""
    backoff = tenacity.wait_exponential(multiplier=first_delay_s, exp_base=2, min=first_delay_s, max=max_delay_s)

    def wait(state):
        return max(0.0, min(backoff(state), patience_s - state.seconds_since_start))

    def say(state):
        logger.warning("%s failed (%s); trying again in %.2fs", what, state.outcome.exception(),
                       state.next_action.sleep)

    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(errors), wait=wait,
                                 stop=tenacity.stop_after_delay(patience_s), before_sleep=say, reraise=True)
    return retrying(fn)
