"""The shipped preference set (json-person-prefs): generated here, its property checked by a program."""

import collections
import json

from tasks import catalog, checks, instruction_sets
from tasks.datasets_jsonl import load_jsonl, validate_jsonl


def test_the_shipped_preference_set_is_exactly_what_its_generator_writes():
    # Given the file in the repository
    path = catalog.SHIPPED_DIR / "json-person-prefs.jsonl"
    # Then it is the generator's output, byte for byte, and a valid set of preference pairs
    assert path.read_text(encoding="utf-8") == instruction_sets.jsonl(instruction_sets.json_person_prefs())
    assert validate_jsonl(str(path)) == instruction_sets.SIZE
    assert {r.kind for r in load_jsonl(str(path))} == {"preference"}
    # And the listing describes it (a shipped set with its own words), checked by json_person
    assert "json-person-prefs" in instruction_sets.DESCRIPTIONS
    assert checks.check_of("json-person-prefs") == ("json_person", checks.json_person)


def test_the_preference_pairs_ask_json_persons_questions_with_its_answers_as_the_chosen():
    # Given both generated sets
    sft, prefs = instruction_sets.json_person(), instruction_sets.json_person_prefs()
    # Then record for record the prompts are the same and the chosen answer is json-person's completion
    # (so the same every-10th pairs are held out of either)
    assert [(r["prompt"], r["completion"]) for r in sft] == [(r["prompt"], r["chosen"]) for r in prefs]


def test_every_chosen_passes_the_check_and_every_rejected_fails_it():
    # Given the generated pairs
    kinds = collections.Counter()
    for record in instruction_sets.json_person_prefs():
        # Then the chosen is the exact object, the rejected is not correct
        chosen = checks.json_person(record["prompt"], record["chosen"], record["chosen"])
        rejected = checks.json_person(record["prompt"], record["rejected"], record["chosen"])
        assert chosen == {"format": True, "correct": True}, record
        assert rejected["correct"] is False, record
        # And the rejected answer names the same person (plausible: it reads the prompt), its facts or shape off
        assert json.loads(record["chosen"])["name"] in record["rejected"]
        kinds["wrong facts" if rejected["format"] else "wrong shape"] += 1
    # And both ways of failing occur: the wrong shape (prose, keys, types) and well-formed JSON with wrong facts
    assert kinds["wrong shape"] > 200 and kinds["wrong facts"] > 50, kinds
