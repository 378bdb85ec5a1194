"""Short database outages: writes that wait for the server, a reaper that
does not count the outage as the workers' silence."""

import types

import pytest

from tasks import db, retrying
from tasks.errors import DatabaseUnavailable
from workers import reaper as reaper_module
from workers.reaper import Reaper


class Clock:
    """time.monotonic and time.sleep, without waiting."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(db.time, "monotonic", c.monotonic)
    monkeypatch.setattr(db.time, "sleep", c.sleep)
    monkeypatch.setattr(reaper_module.time, "monotonic", c.monotonic)
    return c


def failing(times, result="written"):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= times:
            raise DatabaseUnavailable("database unavailable: server closed the connection")
        return result
    fn.calls = calls
    return fn


def test_a_write_waits_for_the_database_with_back_off(clock):
    fn = failing(times=4)
    assert retrying.patiently(fn, 60, db.UNAVAILABLE) == "written"
    assert len(fn.calls) == 5
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0]


def test_back_off_is_capped(clock):
    fn = failing(times=8)
    retrying.patiently(fn, 600, db.UNAVAILABLE, max_delay_s=5)
    assert max(clock.sleeps) == 5 and clock.sleeps[-3:] == [5, 5, 5]


def test_past_its_patience_the_last_error_is_raised(clock):
    fn = failing(times=1000)
    with pytest.raises(DatabaseUnavailable):
        retrying.patiently(fn, 10, db.UNAVAILABLE)
    assert sum(clock.sleeps) <= 10
    assert len(fn.calls) > 3


def test_other_errors_are_not_retried(clock):
    calls = []

    def fn():
        calls.append(1)
        raise ValueError("a bug, not an outage")
    with pytest.raises(ValueError):
        retrying.patiently(fn, 60, db.UNAVAILABLE)
    assert calls == [1] and clock.sleeps == []


def make_reaper(outcomes):
    """A reaper whose passes fail while ``outcomes`` (one per pass) says the database is down."""
    settings = types.SimpleNamespace(heartbeat_timeout_s=30, reaper_interval_s=5)
    reaper = Reaper(pool=None, settings=settings)
    reaper.recovered, reaper.ended = [], []
    state = {}

    def database():
        if state["pass"] == "down":
            raise DatabaseUnavailable("database unavailable")

    def recover_lost():
        database()
        reaper.recovered.append(1)
        return {"requeued": 0}

    def republish_orphans():
        database()
        return 0

    def end_silent_sessions():
        database()
        reaper.ended.append(1)
        return 0

    def run_pass(real=reaper.run_pass):
        state["pass"] = outcomes.pop(0)
        return real()
    reaper.recover_lost = recover_lost
    reaper.republish_orphans = republish_orphans
    reaper.end_silent_sessions = end_silent_sessions
    reaper.forget_dead_workers = lambda: database() or 0
    reaper.fail_lost_jobs = lambda: database() or 0
    reaper.finish_checkpoint_deletions = lambda: database() or 0
    reaper.admit_deferred = lambda: database() or 0
    reaper.prune = lambda: {}  # logs its own failures: not a pass' (tests/integration/test_retention.py)
    reaper.run_pass = run_pass
    return reaper


def test_lost_runs_are_not_recovered_until_the_database_answered_for_a_heartbeat_timeout(clock):
    passes = ["up", "down", "down"] + ["up"] * 9
    reaper = make_reaper(list(passes))
    seen = []
    for _ in passes:
        before = len(reaper.recovered)
        reaper.run_pass()
        seen.append(len(reaper.recovered) - before)
        clock.now += 5
    # up: recovers; down twice: quiet; then quiet from the first pass that
    # writes again (+15 s) for the 30 s heartbeat timeout and a patient
    # writer's last back-off (5 s), and recovering again from +50 s.
    assert retrying.MAX_DELAY_S == 5
    assert seen == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]


def test_orphans_are_republished_during_the_quiet_time(clock):
    reaper = make_reaper(["down", "up", "up"])
    reaper.run_pass()
    clock.now += 5
    assert reaper.run_pass() == (None, 0)
    assert reaper.recovered == []
    # (and no silent worker's session is ended: every worker looks silent after an outage)
    assert reaper.ended == []
