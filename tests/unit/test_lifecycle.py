"""The run lifecycle table (``tasks/lifecycle.py``), pair by pair.

The expected moves are written out here, independently of the table, so a
change to the table is a change to this file too.
"""

import itertools

import pytest

from tasks import lifecycle
from tasks.lifecycle import RunStatus as S

#: (from, to) pairs the lifecycle allows; every other pair is refused.
ALLOWED = {
    # claim
    ("pending", "running"),
    # admit (a deferred sweep trial gets its message)
    ("deferred", "pending"),
    ("deferred", "cancelled"),
    # cancel
    ("running", "cancel_requested"),
    ("pending", "cancelled"),
    ("running", "cancelled"),
    ("cancel_requested", "cancelled"),
    # finish
    ("running", "completed"),
    ("cancel_requested", "completed"),
    ("pending", "failed"),
    ("running", "failed"),
    ("cancel_requested", "failed"),
    ("running", "timeout"),
    ("cancel_requested", "timeout"),
    # resume (a user), hand back (a worker shutting down) or recover (the reaper)
    ("running", "pending"),
    ("failed", "pending"),
    ("cancelled", "pending"),
    ("timeout", "pending"),
}

STATUSES = ["deferred", "pending", "running", "cancel_requested", "completed", "failed", "cancelled", "timeout"]
PAIRS = list(itertools.product(STATUSES, STATUSES))


def test_the_lifecycle_lists_exactly_the_expected_statuses():
    # Given the status enum
    # Then it holds exactly the statuses the database constraint knows, in one list
    assert sorted(lifecycle.ALL) == sorted(STATUSES)
    assert set(lifecycle.TRANSITIONS) == set(S)


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_a_run_may_move_between_two_statuses_only_when_the_table_allows_it(current, target):
    # Given a run in status `current`
    # When it is asked to move to `target`
    allowed = lifecycle.can_move(current, target)
    # Then the move is allowed exactly for the expected pairs
    assert allowed == ((current, target) in ALLOWED)
    assert (S(current) in lifecycle.allowed_from(target)) == allowed


def test_only_a_pending_run_can_be_claimed_so_a_duplicate_message_executes_once():
    # Given every status
    # When we ask which can become running
    # Then only pending can
    assert lifecycle.allowed_from(S.RUNNING) == {S.PENDING}


def test_completed_is_never_left_and_failed_cancelled_and_timeout_only_by_resume():
    # Given the final statuses
    # Then completed has no way out, and the others only lead back to pending
    assert lifecycle.FINAL == {S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT}
    for final in lifecycle.FINAL:
        exits = {target for target in S if lifecycle.can_move(final, target)}
        assert exits == (set() if final is S.COMPLETED else {S.PENDING})
    assert lifecycle.RESUMABLE == {S.FAILED, S.CANCELLED, S.TIMEOUT}


def test_active_statuses_are_those_that_are_not_final():
    assert lifecycle.ACTIVE == {S.DEFERRED, S.PENDING, S.RUNNING, S.CANCEL_REQUESTED}
    assert lifecycle.ACTIVE.isdisjoint(lifecycle.FINAL)


def test_no_status_may_move_to_itself():
    for status in S:
        assert not lifecycle.can_move(status, status)


def test_an_unknown_status_is_refused_loudly():
    # Given a status the lifecycle does not know
    # When it is used
    # Then a ValueError is raised instead of a silent False
    with pytest.raises(ValueError):
        lifecycle.can_move("pending", "paused")
    with pytest.raises(ValueError):
        lifecycle.allowed_from("exploded")


def test_a_status_prints_as_its_plain_value():
    assert str(S.CANCEL_REQUESTED) == "cancel_requested"
    assert S("running") is S.RUNNING


#: Every named move, written out: name -> (the statuses it starts from, its target).
MOVES = {
    "claim": ({"pending"}, "running"),
    "finish": ({"running", "cancel_requested"}, "completed"),
    "fail": ({"running", "cancel_requested"}, "failed"),
    "time_out": ({"running", "cancel_requested"}, "timeout"),
    "request_cancel": ({"running"}, "cancel_requested"),
    "stop_early": ({"running"}, "cancel_requested"),
    "admit": ({"deferred"}, "pending"),
    "cancel_pending": ({"pending", "deferred"}, "cancelled"),
    "cancel": ({"running", "cancel_requested"}, "cancelled"),
    "hand_back": ({"running"}, "pending"),
    "recover": ({"running"}, "pending"),
    "lose": ({"running", "cancel_requested"}, "failed"),
    "exhaust": ({"pending"}, "failed"),
    "reject": ({"pending", "running", "cancel_requested"}, "failed"),
    "resume": ({"failed", "cancelled", "timeout"}, "pending"),
}


def test_every_named_move_starts_where_it_should_and_goes_where_it_should():
    assert {name: ({s.value for s in m.sources}, m.target.value) for name, m in lifecycle.MOVES.items()} == MOVES


def test_the_pairs_table_is_exactly_what_the_named_moves_make():
    # Given the moves, the pairs they make are the lifecycle's pairs and no other
    made = {(source, target) for sources, target in MOVES.values() for source in sources}
    assert made == ALLOWED


def test_only_the_claim_takes_an_attempt_and_only_hand_back_and_resume_touch_the_budget():
    assert [m.name for m in lifecycle.MOVES.values() if m.claims] == ["claim"]
    assert {m.name: m.budget for m in lifecycle.MOVES.values() if m.budget} == {
        "hand_back": "give_back", "resume": "renew"}
    assert {m.name for m in lifecycle.MOVES.values() if m.ends} == {
        "finish", "fail", "time_out", "cancel_pending", "cancel", "lose", "exhaust", "reject"}


def test_a_worker_ends_each_final_status_by_a_move_that_reaches_it():
    for status, move in lifecycle.ENDINGS.items():
        assert move.target is status and S.RUNNING in move.sources


def test_an_unknown_move_is_named_in_the_error():
    with pytest.raises(ValueError, match="no move is called 'finsh'"):
        lifecycle.move("finsh")


def test_every_status_has_a_meaning():
    assert set(lifecycle.MEANING) == set(S) and all(lifecycle.MEANING.values())
