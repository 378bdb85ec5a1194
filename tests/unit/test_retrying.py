"""The one retry helper (tasks/retrying.py): what it retries, for how long."""

import time

import pytest

from tasks.retrying import patiently


class Flaky(Exception):
    pass


def failing(times, error=Flaky):
    calls = []

    def fn():
        calls.append(time.monotonic())
        if len(calls) <= times:
            raise error("not yet")
        return "done"

    return fn, calls


def test_it_retries_the_named_errors_with_backoff_until_the_call_succeeds():
    fn, calls = failing(3)
    assert patiently(fn, 5, Flaky, first_delay_s=0.01, max_delay_s=0.04) == "done"
    waits = [b - a for a, b in zip(calls, calls[1:])]
    assert len(calls) == 4 and waits[0] >= 0.01 and waits[2] >= 0.04 * 0.9  # 0.01, 0.02, 0.04


def test_other_errors_are_raised_at_once():
    fn, calls = failing(3, error=KeyError)
    with pytest.raises(KeyError):
        patiently(fn, 5, Flaky, first_delay_s=0.01)
    assert len(calls) == 1


def test_after_its_patience_the_last_error_is_raised_and_the_last_try_is_at_the_deadline():
    fn, calls = failing(1000)
    started = time.monotonic()
    with pytest.raises(Flaky):
        patiently(fn, 0.5, Flaky, first_delay_s=0.2, max_delay_s=5)
    # 0.2 then 0.3 (cut to the deadline): the whole patience is used, then a last try at its end
    assert len(calls) == 3 and 0.45 <= calls[-1] - started <= 0.8
