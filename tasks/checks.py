"""Programs that score a completion: each shipped instruction set's own check.

A check takes ``(prompt, completion, reference)`` and answers ``{"format":
bool, "correct": bool}``: ``format`` when the completion has the shape the
set teaches, ``correct`` when it also says what the reference says.  The
training samples a dataset's held-out prompts at its start (the base model)
and its end (``workers/training/held_out_samples.py``) and reports each
check's rates, so a fine-tune's effect is a number anyone can recount.
Pure Python: the API lists the checks, the training runs them.
"""

import json

#: The keys (and their types) a ``json-person`` answer must have, exactly.
PERSON_FIELDS = {"name": str, "age": int, "city": str}


def json_person(prompt, completion, reference):
    """A JSON object with exactly ``name`` (string), ``age`` (integer) and
    ``city`` (string), nothing before or after it; correct when equal to the
    reference's."""
    try:
        answer = json.loads(completion.strip())
    except ValueError:
        return {"format": False, "correct": False}
    shaped = (isinstance(answer, dict) and set(answer) == set(PERSON_FIELDS)
              and all(type(answer[k]) is t for k, t in PERSON_FIELDS.items()))  # noqa: E721 - bool is no int here
    return {"format": shaped, "correct": shaped and answer == json.loads(reference)}


#: Check name -> function.
CHECKS = {"json_person": json_person}
#: Shipped dataset key -> the name of its check (datasets without one have none).
DATASET_CHECKS = {"json-person": "json_person", "json-person-prefs": "json_person"}


def check_of(dataset_key):
    """``(name, function)`` of the dataset's check, or ``(None, None)``."""
    name = DATASET_CHECKS.get(dataset_key)
    return (name, CHECKS[name]) if name else (None, None)


def rates(scores):
    """``{"format_rate", "correct_rate"}`` of a list of check answers (None for none)."""
    if not scores:
        return {"format_rate": None, "correct_rate": None}
    n = len(scores)
    return {"format_rate": sum(s["format"] for s in scores) / n, "correct_rate": sum(s["correct"] for s in scores) / n}
