"""The held-out split of a dataset (workers/training/data.py)."""

import numpy as np

from workers.training.data import Examples, split_held_out


def examples(n):
    return Examples(np.arange(n * 2, dtype=np.int32).reshape(n, 2), np.ones((n, 2), np.int32), 3)


def test_every_tenth_example_is_held_out_and_never_trained_on():
    train, held = split_held_out(examples(256))
    assert len(held.tokens) == 25 and len(train.tokens) == 231
    held_rows = {tuple(r) for r in held.tokens}
    assert held_rows == {(2 * i, 2 * i + 1) for i in range(9, 256, 10)}
    assert not held_rows & {tuple(r) for r in train.tokens}
    assert train.truncated == 3


def test_a_small_dataset_trains_on_everything():
    train, held = split_held_out(examples(19))
    assert held is None and len(train.tokens) == 19
