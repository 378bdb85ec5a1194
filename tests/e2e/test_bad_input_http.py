"""Every bad submit over HTTP: the status, the one error shape, the field
named, and no row written."""

import pytest

from support import DRY, count_runs


def body(**changes):
    out = dict(DRY)
    out.update(changes)
    return out


#: id -> (JSON body, expected field names).
INVALID = {
    "unknown field": (body(epochs=3), ["epochs"]),
    "missing dataset_key": ({"model_id": "llama3-tiny"}, ["dataset_key"]),
    "missing both": ({}, ["dataset_key", "model_id"]),
    "string for int": (body(num_epochs="3"), ["num_epochs"]),
    "string true for bool": (body(dry_run="true"), ["dry_run"]),
    "int for bool": (body(dry_run=1), ["dry_run"]),
    "fraction for int": (body(batch_size=2.5), ["batch_size"]),
    "bool for int": (body(max_steps=True), ["max_steps"]),
    "string for float": (body(learning_rate="0.1"), ["learning_rate"]),
    "learning_rate zero": (body(learning_rate=0), ["learning_rate"]),
    "learning_rate above one": (body(learning_rate=1.5), ["learning_rate"]),
    "num_epochs zero": (body(num_epochs=0), ["num_epochs"]),
    "num_epochs above max": (body(num_epochs=1001), ["num_epochs"]),
    "batch_size zero": (body(batch_size=0), ["batch_size"]),
    "batch_size above max": (body(batch_size=4097), ["batch_size"]),
    "max_seq_length below min": (body(max_seq_length=7), ["max_seq_length"]),
    "max_seq_length above max": (body(max_seq_length=32769), ["max_seq_length"]),
    "max_steps zero": (body(max_steps=0), ["max_steps"]),
    "max_steps above max": (body(max_steps=10_000_001), ["max_steps"]),
    "seed negative": (body(seed=-1), ["seed"]),
    "seed above max": (body(seed=2**31), ["seed"]),
    "time_limit_s zero": (body(time_limit_s=0), ["time_limit_s"]),
    "time_limit_s over the operator max": (body(time_limit_s=10**9), ["time_limit_s"]),
    "checkpoint_every_steps zero": (body(checkpoint_every_steps=0), ["checkpoint_every_steps"]),
    "device unknown": (body(device="tpu"), ["device"]),
    "dataset_key uppercase": (body(dataset_key="Synthetic"), ["dataset_key"]),
    "dataset_key path": (body(dataset_key="../etc/passwd"), ["dataset_key"]),
    "dataset_key empty": (body(dataset_key=""), ["dataset_key"]),
    "model_id with space": (body(model_id="llama 3"), ["model_id"]),
    "unknown model": (body(model_id="no-such-model"), ["model_id"]),
    "unknown dataset": (body(dataset_key="no-such-dataset"), ["dataset_key"]),
    "several at once": (body(batch_size=0, seed="x", colour="blue"), ["batch_size", "colour", "seed"]),
    "a list body": ([DRY], ["body"]),
    "unknown method": (body(method="ppo"), ["method"]),
    "dpo on prompt/completion pairs": (body(method="dpo", dataset_key="text-sft"), ["dataset_key"]),
    "grpo on the synthetic set": (body(method="grpo"), ["dataset_key"]),
    "dpo settings under sft": (body(dpo={"beta": 0.1}), ["dpo"]),
    "grpo settings under dpo": (body(method="dpo", grpo={"beta": 0.1}), ["grpo"]),
    "dpo beta zero": (body(method="dpo", dpo={"beta": 0}), ["dpo.beta"]),
    "dpo unknown loss": (body(method="dpo", dpo={"loss": "ipo"}), ["dpo.loss"]),
    "unknown reward": (body(method="grpo", grpo={"reward": [{"name": "vibes"}]}), ["grpo.reward.0.name"]),
    "no reward": (body(method="grpo", grpo={"reward": []}), ["grpo.reward"]),
    "one generation": (body(method="grpo", grpo={"num_generations": 1}), ["grpo.num_generations"]),
}


def assert_refused(response, status, code, fields=()):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], list)
    assert all(set(f) == {"field", "message"} and f["message"] for f in error["fields"])
    assert sorted({f["field"] for f in error["fields"]}) == sorted(fields)


@pytest.fixture
def no_row_written(db_conn):
    """Asserts, after the test, that the registry holds as many runs as before."""
    before = count_runs(db_conn)
    yield
    assert count_runs(db_conn) == before


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_request_is_422_naming_each_bad_field_and_writes_nothing(api, no_row_written, case, mode):
    # Given a request with one kind of mistake (and the registry's row count)
    payload, fields = INVALID[case]
    # When it is submitted
    response = api.submit(payload, mode=mode)
    # Then it is refused naming exactly the bad fields; no row was written (checked on teardown)
    assert_refused(response, 422, "validation_error", fields)


def test_malformed_json_is_400_and_writes_nothing(api, no_row_written):
    # Given a JSON body cut short
    # When it is submitted
    response = api.submit(mode="async", data='{"dataset_key": "synthetic",',
                          headers={"Content-Type": "application/json"})
    # Then it is a 400, not a validation error
    assert_refused(response, 400, "malformed_json")


@pytest.mark.parametrize("body", ["null", "[]", '"a string"', "42"])
def test_valid_json_that_is_not_an_object_is_422_and_writes_nothing(api, no_row_written, body):
    # Given well-formed JSON of the wrong shape
    response = api.submit(mode="async", data=body, headers={"Content-Type": "application/json"})
    # Then it is a validation error on the body, not "malformed"
    assert_refused(response, 422, "validation_error", ["body"])


def test_a_text_plain_body_is_415_and_writes_nothing(api, no_row_written):
    # Given a valid JSON text sent as text/plain
    response = api.submit(mode="async", data='{"dataset_key": "synthetic", "model_id": "llama3-tiny"}',
                          headers={"Content-Type": "text/plain"})
    # Then the content type alone refuses it
    assert_refused(response, 415, "unsupported_media_type")


def test_a_body_over_one_mebibyte_is_413_and_writes_nothing(api, no_row_written):
    # Given a valid request padded past 1 MiB with an unknown field
    padded = '{"dataset_key": "synthetic", "model_id": "llama3-tiny", "pad": "' + "x" * (1024 * 1024) + '"}'
    response = api.submit(mode="async", data=padded, headers={"Content-Type": "application/json"})
    # Then it is refused for its size
    assert_refused(response, 413, "request_entity_too_large")


def test_an_unknown_mode_is_422_and_writes_nothing(api, no_row_written):
    # Given a valid body and a mode that is neither sync nor async
    response = api.submit(DRY, mode="bogus")
    # Then the mode is the field named
    assert_refused(response, 422, "validation_error", ["mode"])


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_an_unknown_model_is_422_listing_the_known_models_and_writes_nothing(api, no_row_written, mode):
    # Given a model id that matches the pattern but names no model of the catalog
    # When it is submitted
    response = api.submit(body(model_id="no-such-model"), mode=mode)
    # Then it is refused at submit, naming model_id and listing every known model
    assert_refused(response, 422, "validation_error", ["model_id"])
    known = [m["model_id"] for m in api.get("/api/tunix/models").json()["data"]]
    assert response.json()["error"]["fields"] == [
        {"field": "model_id", "message": f"unknown model 'no-such-model'; known models: {', '.join(known)}"}]


def test_a_batch_with_one_unknown_model_is_422_naming_its_index_and_writes_nothing(api, no_row_written):
    # Given a batch of three runs, the second naming an unknown model
    runs = [DRY, body(model_id="no-such-model"), DRY]
    # When it is submitted
    response = api.http.post(api.url("/api/tunix/runs/batch"), json={"runs": runs}, timeout=30)
    # Then the whole batch is refused, naming that run's model_id; none of the three was written
    assert_refused(response, 422, "validation_error", ["runs.1.model_id"])
    assert "known models: llama3-tiny" in response.json()["error"]["fields"][0]["message"]


def test_a_valid_request_does_write_one_row(api, workers, db_conn):
    # The counterpart of the tests above: the row count does move on success.
    # Given the registry's row count
    before = count_runs(db_conn)
    # When a valid run is submitted
    assert api.submit(DRY, mode="sync").status_code == 200
    # Then exactly one row was added
    assert count_runs(db_conn) == before + 1


def test_a_method_on_a_dataset_of_the_wrong_kind_says_which_kind_it_needs(api, no_row_written):
    # Given DPO asked on prompt/completion pairs, and GRPO on them
    dpo = api.submit(body(method="dpo", dataset_key="text-sft"))
    grpo = api.submit(body(method="grpo", dataset_key="text-sft"))
    # Then each is a 422 on dataset_key whose message names the kind the method needs and the one it got
    assert_refused(dpo, 422, "validation_error", ["dataset_key"])
    assert dpo.json()["error"]["fields"][0]["message"] == (
        "method dpo needs preference pairs ({prompt, chosen, rejected}); dataset 'text-sft' holds "
        "prompt/completion pairs")
    assert "method grpo needs prompts with answers ({prompt, answer})" in grpo.json()["error"]["fields"][0]["message"]
    # And the datasets listing says each dataset's kind and the methods that take it
    listed = {d["key"]: d for d in api.get("/api/tunix/datasets").json()["data"]}
    assert (listed["text-sft"]["data_kind"], listed["text-sft"]["methods"]) == ("completion", ["sft"])
    assert (listed["synthetic"]["data_kind"], listed["synthetic"]["methods"]) == ("completion", ["sft"])
