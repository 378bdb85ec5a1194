"""Rewards of a GRPO run: named, tested functions; a run names them, never
sends code (nothing a user writes runs in a worker).

A reward takes ``(prompt, completion, answer)`` (``answer``: the dataset
record's reference, a string) and returns a float.  A run's reward is the
weighted sum of the terms it names (``RunSpec.grpo.reward``: ``[{"name",
"weight"}]``), ``weighted_sum`` below.  Pure Python: the API validates the
names, the training calls the functions.

The shipped prompt set (``tasks/data/arithmetic.jsonl``) asks for an answer
in the form ``The answer is N.``, so ``final_answer`` and ``answer_format``
are the measurable pair: the second is met once the format is learnt, the
first only when the number is right too.
"""

import re

#: The last "answer is N" of a completion (N an integer, maybe negative, maybe
#: with thousands commas).
_ANSWER = re.compile(r"answer is\s*(-?[\d,]*\d)", re.IGNORECASE)
#: A whole completion in the taught form.
_FORMAT = re.compile(r"^\s*The answer is -?[\d,]*\d\.\s*$")
#: Characters past which ``length_penalty`` starts to cost.
LENGTH_BUDGET = 64


def final_answer_of(completion):
    """The integer after the last ``answer is`` in ``completion`` (a string), or None."""
    found = _ANSWER.findall(completion or "")
    return found[-1].replace(",", "") if found else None


def final_answer(prompt, completion, answer):
    """1.0 when the completion's final answer (``... answer is N``) equals
    ``answer``, else 0.0."""
    got = final_answer_of(completion)
    return 1.0 if got is not None and got == str(answer).strip().replace(",", "") else 0.0


def answer_format(prompt, completion, answer):
    """1.0 when the whole completion is ``The answer is N.``, else 0.0."""
    return 1.0 if _FORMAT.match(completion or "") else 0.0


def length_penalty(prompt, completion, answer):
    """0.0 up to ``LENGTH_BUDGET`` characters, then -1.0 per budget's length
    beyond it (a completion of twice the budget costs -1.0), at most -1.0."""
    over = max(len(completion or "") - LENGTH_BUDGET, 0)
    return -min(over / LENGTH_BUDGET, 1.0)


#: Name -> function.  A run names these in ``grpo.reward``.
REWARDS = {
    "final_answer": final_answer,
    "answer_format": answer_format,
    "length_penalty": length_penalty,
}


def weighted_sum(terms):
    """One reward function from ``[(name, weight)]``: the weighted sum of the
    named rewards.  KeyError for an unknown name (the API refused it first)."""
    functions = [(REWARDS[name], float(weight)) for name, weight in terms]

    def reward(prompt, completion, answer):
        return sum(weight * fn(prompt, completion, answer) for fn, weight in functions)

    return reward
