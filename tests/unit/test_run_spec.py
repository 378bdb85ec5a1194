"""``RunSpec``: the one schema of a run, from the request to the training."""

import math

import pytest

from tasks.models import MODELS
from tasks.run_spec import IncompleteSpec, RunSpec, ValidationError, field_errors
from tasks.settings import Settings

BASE = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}

#: field -> (smallest accepted, largest accepted, just below, just above); None: no bound that side.
BOUNDS = {
    "num_epochs": (1, 1000, 0, 1001),
    "batch_size": (1, 4096, 0, 4097),
    "max_seq_length": (8, 32768, 7, 32769),
    "max_steps": (1, 10_000_000, 0, 10_000_001),
    "seed": (0, 2**31 - 1, -1, 2**31),
    "checkpoint_every_steps": (1, 10_000_000, 0, 10_000_001),
    "time_limit_s": (1, None, 0, None),
}

INT_FIELDS = sorted(BOUNDS)


def errors_of(body):
    with pytest.raises(ValidationError) as info:
        RunSpec.model_validate(body)
    return field_errors(info.value)


def fields_of(body):
    return sorted({e["field"] for e in errors_of(body)})


def settings(**overrides):
    values = dict(run_time_limit_s=6 * 3600, default_time_limit_s=3600)
    values.update(overrides)
    return Settings(**values)


def test_a_minimal_request_gets_every_documented_default():
    # Given only the two required fields
    config = RunSpec.model_validate(BASE)
    # Then every other field has its documented default
    assert config.model_dump() == {
        "dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": True, "learning_rate": 2e-5,
        "num_epochs": 3, "batch_size": 8, "max_seq_length": 2048, "max_steps": None, "seed": None,
        "device": "auto", "time_limit_s": None, "checkpoint_every_steps": 10, "lora": None, "sample_held_out": 8,
        "method": "sft", "dpo": None, "grpo": None, "priority": 0, "name": None, "tags": [],
    }


@pytest.mark.parametrize("missing", ["dataset_key", "model_id"])
def test_a_request_without_a_required_field_names_it(missing):
    # Given a body lacking a required field
    body = {k: v for k, v in BASE.items() if k != missing}
    # When it is validated
    # Then the error names that field
    assert fields_of(body) == [missing]


@pytest.mark.parametrize("field", INT_FIELDS)
def test_each_bounded_integer_accepts_its_limits_and_refuses_one_past_them(field):
    low, high, below, above = BOUNDS[field]
    # Given the smallest and largest accepted values
    # Then both validate and are kept as given
    for value in (low, high):
        if value is not None:
            assert getattr(RunSpec.model_validate({**BASE, field: value}), field) == value
    # And one step past either limit is refused, naming the field
    for value in (below, above):
        if value is not None:
            assert fields_of({**BASE, field: value}) == [field]


@pytest.mark.parametrize("value", [1e-12, 0.5, 1.0])
def test_a_learning_rate_in_the_half_open_unit_interval_is_accepted(value):
    assert RunSpec.model_validate({**BASE, "learning_rate": value}).learning_rate == value


@pytest.mark.parametrize("value", [0.0, -1e-5, 1.000001, math.inf, -math.inf, math.nan])
def test_a_learning_rate_outside_the_half_open_unit_interval_is_refused(value):
    assert fields_of({**BASE, "learning_rate": value}) == ["learning_rate"]


def test_an_integer_learning_rate_is_a_number_and_is_accepted():
    # Given JSON's 1 (an integer) for a float field
    # Then it is the number 1.0: strict mode refuses strings and booleans, not integers
    assert RunSpec.model_validate({**BASE, "learning_rate": 1}).learning_rate == 1.0


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", ["3", 3.5, True], ids=["string", "fraction", "bool"])
def test_an_integer_field_refuses_strings_fractions_and_booleans(field, value):
    # Given a value that a lax parser would coerce to an integer
    # When it is validated
    # Then strict mode refuses it and names the field
    assert fields_of({**BASE, field: value}) == [field]


@pytest.mark.parametrize("field", INT_FIELDS)
def test_an_integer_field_takes_an_integral_number_written_with_a_fraction(field):
    # Given, say, 8.0, which JSON Schema (and so the OpenAPI document) counts as an integer
    smallest = BOUNDS[field][0] or 1
    spec = RunSpec.model_validate({**BASE, field: float(smallest)})
    # Then it is the integer 8
    assert getattr(spec, field) == smallest and type(getattr(spec, field)) is int


@pytest.mark.parametrize("value", ["true", 1, 0, "yes", None])
def test_dry_run_accepts_only_a_real_boolean(value):
    assert fields_of({**BASE, "dry_run": value}) == ["dry_run"]


@pytest.mark.parametrize("value", ["0.1", True, None])
def test_learning_rate_refuses_strings_booleans_and_null(value):
    assert fields_of({**BASE, "learning_rate": value}) == ["learning_rate"]


@pytest.mark.parametrize("field", ["dataset_key", "model_id"])
@pytest.mark.parametrize("value", [7, None, ["synthetic"]])
def test_string_fields_refuse_other_types(field, value):
    assert fields_of({**BASE, field: value}) == [field]


@pytest.mark.parametrize("value", ["", "Synthetic", "-lead", "_lead", "has space", "dot.ted", "x" * 65, "é"])
def test_a_dataset_key_must_match_its_pattern(value):
    assert fields_of({**BASE, "dataset_key": value}) == ["dataset_key"]


@pytest.mark.parametrize("value", ["a", "0", "ops-set", "under_score", "x" * 64])
def test_a_dataset_key_matching_its_pattern_is_accepted(value):
    assert RunSpec.model_validate({**BASE, "dataset_key": value}).dataset_key == value


@pytest.mark.parametrize("value", ["", "Llama", ".hidden", "a/b", "x" * 65, "a b"])
def test_a_model_id_must_match_its_pattern(value):
    assert fields_of({**BASE, "model_id": value}) == ["model_id"]


def test_every_catalog_model_is_accepted():
    for model_id in MODELS:
        assert RunSpec.model_validate({**BASE, "model_id": model_id}).model_id == model_id


@pytest.mark.parametrize("value", ["no-such-model", "qwen2.5-tiny"])
def test_a_model_id_outside_the_catalog_is_refused_listing_the_known_models(value):
    # Given a model id that matches the pattern but names no catalog model
    # When it is validated
    errors = errors_of({**BASE, "model_id": value})
    # Then the error names the field and lists every known model
    assert errors == [{"field": "model_id",
                       "message": f"unknown model {value!r}; known models: {', '.join(MODELS)}"}]


def test_the_json_schema_lists_the_known_models():
    assert RunSpec.model_json_schema()["properties"]["model_id"]["enum"] == list(MODELS)


@pytest.mark.parametrize("value", ["tpu", "CPU", "", 0])
def test_device_is_one_of_auto_cpu_gpu(value):
    assert fields_of({**BASE, "device": value}) == ["device"]
    for ok in ("auto", "cpu", "gpu"):
        assert RunSpec.model_validate({**BASE, "device": ok}).device == ok


def test_optional_fields_accept_null_explicitly():
    config = RunSpec.model_validate({**BASE, "max_steps": None, "seed": None, "time_limit_s": None})
    assert (config.max_steps, config.seed, config.time_limit_s) == (None, None, None)


def test_an_unknown_field_is_a_mistake_and_is_named():
    # Given a body with a field the schema does not have
    errors = errors_of({**BASE, "epochs": 3})
    # Then it is refused as an unknown field, by name
    assert errors == [{"field": "epochs", "message": "unknown field"}]


def test_every_bad_field_is_reported_at_once():
    # Given three bad fields
    body = {**BASE, "batch_size": 0, "dry_run": "no", "colour": "blue"}
    # Then all three are named in one answer
    assert fields_of(body) == ["batch_size", "colour", "dry_run"]


def test_each_field_error_is_a_field_and_a_message():
    for error in errors_of({"batch_size": "x"}):
        assert set(error) == {"field", "message"}
        assert error["field"] and isinstance(error["message"], str) and error["message"]


def test_a_config_is_frozen():
    config = RunSpec.model_validate(BASE)
    with pytest.raises(ValidationError):
        config.batch_size = 3


def test_resolving_fills_a_seed_when_none_was_given():
    # Given a request without a seed
    config = RunSpec.model_validate(BASE)
    # When it is resolved for storage, many times
    seeds = {config.resolved(settings())["seed"] for _ in range(20)}
    # Then each time a seed in range is chosen, and they are not all the same
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in seeds)
    assert len(seeds) > 1


def test_resolving_keeps_a_given_seed_and_every_other_value():
    body = {**BASE, "seed": 0, "batch_size": 2, "max_steps": 5, "time_limit_s": 60}
    resolved = RunSpec.model_validate(body).resolved(settings())
    assert resolved["seed"] == 0
    assert {k: resolved[k] for k in body} == body


def test_resolving_fills_the_default_time_limit_capped_by_the_maximum():
    config = RunSpec.model_validate(BASE)
    assert config.resolved(settings(default_time_limit_s=600))["time_limit_s"] == 600
    assert config.resolved(settings(default_time_limit_s=600, run_time_limit_s=120))["time_limit_s"] == 120


def test_a_time_limit_over_the_operators_maximum_is_refused_at_resolution():
    config = RunSpec.model_validate({**BASE, "time_limit_s": 121})
    with pytest.raises(ValueError, match="120"):
        config.resolved(settings(run_time_limit_s=120))
    assert config.resolved(settings(run_time_limit_s=121))["time_limit_s"] == 121


def test_a_stored_spec_reads_back_as_itself():
    # Given a request resolved for storage
    stored = RunSpec.model_validate({**BASE, "learning_rate": 1}).resolved(settings())
    # When it is read back as the training does
    spec = RunSpec.stored(stored)
    # Then it is exactly what was stored
    assert spec.as_stored() == stored


@pytest.mark.parametrize("field", ["batch_size", "seed", "checkpoint_every_steps"])
def test_a_stored_spec_missing_a_field_is_refused_not_defaulted(field):
    stored = RunSpec.model_validate(BASE).resolved(settings())
    del stored[field]
    with pytest.raises(IncompleteSpec, match=repr(field)):
        RunSpec.stored(stored)


@pytest.mark.parametrize("field", ["seed", "time_limit_s"])
def test_a_stored_spec_needs_the_values_resolved_at_submit(field):
    stored = dict(RunSpec.model_validate(BASE).resolved(settings()), **{field: None})
    with pytest.raises(IncompleteSpec, match=repr(field)):
        RunSpec.stored(stored)


def test_a_stored_spec_is_as_strict_as_a_request():
    stored = dict(RunSpec.model_validate(BASE).resolved(settings()), batch_size="8")
    with pytest.raises(ValidationError):
        RunSpec.stored(stored)


def test_priority_is_a_request_field_the_stored_spec_leaves_to_the_registry():
    # Given a request with a priority
    spec = RunSpec.model_validate({**BASE, "priority": 7})
    # Then it is the run's scheduling, not part of what the training reads
    assert spec.scheduling() == {"priority": 7, "name": None, "tags": []}
    stored = spec.resolved(settings())
    assert "priority" not in stored
    # And the stored spec reads back without it
    assert RunSpec.stored(stored).priority == 0


@pytest.mark.parametrize("priority", [1001, -1001, 1.5, "1", True])
def test_a_priority_out_of_range_or_not_an_integer_is_refused(priority):
    with pytest.raises(ValidationError):
        RunSpec.model_validate({**BASE, "priority": priority})


def test_lora_gets_its_documented_defaults_and_is_stored_resolved():
    # Given a request asking for LoRA with its rank only
    spec = RunSpec.model_validate({**BASE, "lora": {"rank": 4}})
    # Then alpha and the targets take their defaults, and the stored spec carries them all
    stored = spec.resolved(settings())
    assert stored["lora"] == {"rank": 4, "alpha": 16.0, "targets": ["q", "k", "v", "o", "gate", "up", "down"]}
    assert RunSpec.stored(stored).lora.rank == 4


@pytest.mark.parametrize("lora, field", [
    ({"rank": 0}, "lora.rank"),
    ({"rank": 257}, "lora.rank"),
    ({"rank": "8"}, "lora.rank"),
    ({"alpha": 0}, "lora.alpha"),
    ({"targets": []}, "lora.targets"),
    ({"targets": ["q", "q"]}, "lora.targets"),
    ({"targets": ["qkv"]}, "lora.targets.0"),
    ({"dropout": 0.1}, "lora.dropout"),
    ("yes", "lora"),
])
def test_a_bad_lora_field_is_named(lora, field):
    assert fields_of({**BASE, "lora": lora}) == [field]


def test_a_spec_stored_before_lora_and_held_out_samples_reads_back_as_it_trained_then():
    # Given a run stored by the version before LoRA and held-out samples (no such keys)
    stored = RunSpec.model_validate({**BASE, "lora": {"rank": 2}, "sample_held_out": 4}).resolved(settings())
    del stored["lora"], stored["sample_held_out"]
    # Then it still reads back (a queued run survives the upgrade), training every parameter, sampling nothing
    spec = RunSpec.stored(stored)
    assert spec.lora is None and spec.sample_held_out == 0
