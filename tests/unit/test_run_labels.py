"""A run's name, tags and notes (issue #21, "runs you can find"): how the
run spec and the edit (``RunUpdate``) validate them, and that they stay out
of the stored spec the training reads."""

import pytest

from tasks.run_spec import MAX_TAGS, RunSpec, RunUpdate, ValidationError, field_errors
from tasks.settings import Settings

BASE = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


def problems(model, body):
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return [(e["field"], e["message"]) for e in field_errors(info.value)]


def test_a_name_and_tags_are_the_runs_columns_not_its_stored_spec():
    # Given a request with a name and tags
    spec = RunSpec.model_validate({**BASE, "name": "lr sweep, take 2", "tags": ["baseline", "lr:1e-4", "a=b"]})
    # Then they are scheduling-like: the registry's columns
    assert spec.scheduling() == {"priority": 0, "name": "lr sweep, take 2", "tags": ["baseline", "lr:1e-4", "a=b"]}
    # And neither the resolved spec nor the stored JSON carries them
    stored = spec.resolved(Settings(run_time_limit_s=3600, default_time_limit_s=3600))
    assert "name" not in stored and "tags" not in stored
    assert "name" not in spec.as_stored() and "tags" not in spec.as_stored()
    # And a stored spec reads back without them
    assert RunSpec.stored(stored).tags == [] and RunSpec.stored(stored).name is None


def test_a_request_without_a_name_or_tags_has_none():
    spec = RunSpec.model_validate(BASE)
    assert (spec.name, spec.tags) == (None, [])


@pytest.mark.parametrize("body, field", [
    ({"name": ""}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "two\nlines"}, "name"),
    ({"name": "nul\x00"}, "name"),
    ({"name": 3}, "name"),
    ({"tags": "baseline"}, "tags"),
    ({"tags": ["baseline", "baseline"]}, "tags"),
    ({"tags": [f"t{i}" for i in range(MAX_TAGS + 1)]}, "tags"),
    ({"tags": [""]}, "tags.0"),
    ({"tags": ["ok", "has space"]}, "tags.1"),
    ({"tags": ["x" * 65]}, "tags.0"),
    ({"tags": ["comma,tag"]}, "tags.0"),
    ({"tags": [7]}, "tags.0"),
])
def test_a_bad_name_or_tag_is_refused_naming_it(body, field):
    assert field in [f for f, _ in problems(RunSpec, {**BASE, **body})]


def test_the_longest_name_and_the_most_tags_are_accepted():
    spec = RunSpec.model_validate({**BASE, "name": "é" * 200,
                                   "tags": ["x" * 64] + [f"t{i}" for i in range(MAX_TAGS - 1)]})
    assert len(spec.name) == 200 and len(spec.tags) == MAX_TAGS


def test_a_repeated_tag_says_so():
    assert problems(RunSpec, {**BASE, "tags": ["a", "a"]}) == [("tags", "each tag at most once")]


def test_an_edit_names_what_it_changes_and_no_more():
    # A null name clears it; tags and notes as sent
    assert RunUpdate.model_validate({"name": None}).given() == {"name": None}
    assert RunUpdate.model_validate({"tags": [], "notes": ""}).given() == {"tags": [], "notes": ""}
    assert RunUpdate.model_validate({"notes": "n" * 10_000}).given() == {"notes": "n" * 10_000}


@pytest.mark.parametrize("body, field", [
    ({}, "body"),
    ({"owner": "x"}, "owner"),
    ({"tags": None}, "tags"),
    ({"notes": None}, "notes"),
    ({"notes": "n" * 10_001}, "notes"),
    ({"notes": "nul\x00"}, "notes"),
    ({"tags": ["a", "a"]}, "tags"),
    ({"name": "x" * 201}, "name"),
])
def test_a_bad_edit_is_refused_naming_the_field(body, field):
    assert field in [f for f, _ in problems(RunUpdate, body)]
