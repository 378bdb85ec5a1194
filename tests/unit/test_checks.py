"""The shipped instruction set and its check: generated here, scored by a program."""

import json

import pytest

from tasks import catalog, checks, instruction_sets
from tasks.datasets_jsonl import validate_jsonl


def test_the_shipped_json_person_set_is_exactly_what_its_generator_writes():
    shipped = (catalog.SHIPPED_DIR / "json-person.jsonl").read_text(encoding="utf-8")
    assert shipped == instruction_sets.jsonl(instruction_sets.json_person())
    assert validate_jsonl(str(catalog.SHIPPED_DIR / "json-person.jsonl")) == instruction_sets.SIZE


def test_every_reference_answer_passes_its_own_check_and_names_what_the_prompt_says():
    for record in instruction_sets.json_person():
        score = checks.json_person(record["prompt"], record["completion"], record["completion"])
        assert score == {"format": True, "correct": True}
        answer = json.loads(record["completion"])
        assert answer["name"] in record["prompt"] and answer["city"] in record["prompt"]
        assert str(answer["age"]) in record["prompt"]


REF = '{"name": "Mei Kim", "age": 71, "city": "Kazan"}'


@pytest.mark.parametrize("completion, expected", [
    (REF, (True, True)),
    ('  {"city": "Kazan", "age": 71, "name": "Mei Kim"}\n', (True, True)),
    ('{"name": "Mei Kim", "age": 70, "city": "Kazan"}', (True, False)),
    ('{"name": "Mei Kim", "age": "71", "city": "Kazan"}', (False, False)),
    ('{"name": "Mei Kim", "age": true, "city": "Kazan"}', (False, False)),
    ('{"name": "Mei Kim", "age": 71}', (False, False)),
    ('{"name": "Mei Kim", "age": 71, "city": "Kazan", "job": "nurse"}', (False, False)),
    ('Sure! {"name": "Mei Kim", "age": 71, "city": "Kazan"}', (False, False)),
    ("Mei Kim is 71 and lives in Kazan.", (False, False)),
    ("", (False, False)),
])
def test_the_json_person_check_wants_exactly_the_shape(completion, expected):
    score = checks.json_person("", completion, REF)
    assert (score["format"], score["correct"]) == expected


def test_rates_and_which_datasets_have_a_check():
    assert checks.rates([{"format": True, "correct": False}, {"format": True, "correct": True}]) == \
        {"format_rate": 1.0, "correct_rate": 0.5}
    assert checks.rates([]) == {"format_rate": None, "correct_rate": None}
    assert checks.check_of("json-person") == ("json_person", checks.json_person)
    assert checks.check_of("text-sft") == (None, None)
