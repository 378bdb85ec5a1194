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
first only when the number is right too.  The default reward of a run
(``tasks/run_spec.DEFAULT_REWARD``) is ``final_answer + 0.5 answer_format``.
"""

import re

#: An "answer is N" (N an integer, maybe negative, maybe with thousands
#: commas; "answer is: N" and a bold "**N**" count too).
_ANSWER = re.compile(r"answer is[:\s]*\**\s*(-?\d[\d,]*)", re.IGNORECASE)
#: The taught form, on a line of its own.
_FORM = re.compile(r"The answer is -?\d[\d,]*\.")
#: Characters past which ``length_penalty`` starts to cost.
LENGTH_BUDGET = 64


def final_answer_of(completion):
    """The integer (a string, commas removed) of the first ``answer is N`` in
    ``completion``, or None.  The first: a completion that goes on to answer
    questions of its own (a base model continuing a Q/A pattern does) is
    judged by the answer it gave first, and listing several answers does not
    pay."""
    found = _ANSWER.search(completion or "")
    return found.group(1).replace(",", "") if found else None


def _as_int(text):
    try:
        return int(str(text).strip().replace(",", ""))
    except ValueError:
        return None


def final_answer(prompt, completion, answer):
    """1.0 when the completion's answer (its first ``... answer is N``) is
    ``answer`` (compared as integers: "07" is 7; as text when ``answer`` is
    not an integer), else 0.0."""
    got = final_answer_of(completion)
    if got is None:
        return 0.0
    want = _as_int(answer)
    if want is None:
        return 1.0 if got == str(answer).strip().replace(",", "") else 0.0
    return 1.0 if _as_int(got) == want else 0.0


def answer_format(prompt, completion, answer):
    """How close the completion is to the form ``The answer is N.``, whatever
    the number: 1.0 when it is the whole completion; 0.5 when it is the
    first line and more lines follow (the form learnt, the stop not yet);
    0.25 when a later line is the form, or a line is ``A:`` and the form (a
    base model continuing the prompt's Q/A pattern echoes the question
    first); else 0.0.  The steps give a policy that rarely meets the whole
    form a gradient towards it.  Only whole lines count: the form quoted
    inside other text earns nothing (a policy rewarded for the form anywhere
    learnt to echo the prompt's order with a number in it: ``Answer in the
    form "The answer is 8."``)."""
    lines = [line.strip() for line in (completion or "").strip().split("\n")]
    if _FORM.fullmatch(lines[0]):
        return 1.0 if len(lines) == 1 else 0.5
    return 0.25 if any(_FORM.fullmatch(re.sub(r"^A:\s*", "", line)) for line in lines) else 0.0


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
