"""A curve longer than asked for (``app/curves.trim``: fewer points than one
bucket's four) keeps its ends, then its lowest and highest points."""

from app.curves import trim

STEPS = [1, 2, 3, 4]
VALUES = [1.0, 9.0, 0.5, 1.0]
ELAPSED = [0.0, 1.0, 2.0, 3.0]


def test_a_curve_within_its_points_is_left_whole():
    assert trim(STEPS, VALUES, ELAPSED, 4) == (STEPS, VALUES, ELAPSED)


def test_fewer_points_keep_the_ends_then_the_lowest_then_the_highest():
    assert trim(STEPS, VALUES, ELAPSED, 2) == ([1, 4], [1.0, 1.0], [0.0, 3.0])
    assert trim(STEPS, VALUES, ELAPSED, 3) == ([1, 3, 4], [1.0, 0.5, 1.0], [0.0, 2.0, 3.0])
