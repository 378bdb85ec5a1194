"""The sweep's document and the API agree on which sweeps are valid: each
body here is accepted (202) exactly when ``/openapi.json``'s ``SweepSpec``
allows it, else refused with a 422 naming a field, in this process on real
PostgreSQL.  The bodies are the rules across fields, among them what plain
schemathesis runs found documented and refused (a grid of datasets a base's
method cannot train on; grpo settings swept under method dpo) or the other
way round.  And the document stays one schemathesis can generate from
(jsonschema_rs's canonical form is not ``raw``: six conditions across fields
made it raw, and the plain run generated no sweep).
"""

import jsonschema
import jsonschema_rs
import pytest
from jsonschema_rs import canonical


BASE = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}
PREFS = dict(BASE, dataset_key="json-person-prefs", method="dpo")

CASES = {
    "a grid": {"grid": {"seed": [1, 2]}},
    "a log-uniform range over a number within its limits": {
        "random": {"count": 2, "space": {"learning_rate": {"log_uniform": [1e-5, 1]}}}},
    "a range over a field that is not a number": {"random": {"count": 1, "space": {"model_id": {"uniform": [0, 1]}}}},
    "a range past a number's limits": {"random": {"count": 1, "space": {"learning_rate": {"uniform": [-1, 1]}}}},
    "a time limit drawn past the operator's maximum": {
        "random": {"count": 1, "space": {"time_limit_s": {"uniform": [6.0e307, 1.2e308]}}}},
    "a time limit drawn within it": {"random": {"count": 1, "space": {"time_limit_s": {"uniform": [60, 600]}}}},
    "an object and its own field swept together": {"grid": {"lora": [None, {"rank": 4}], "lora.rank": [8]}},
    "dpo settings under sft": {"grid": {"dpo.beta": [0.1]}},
    "dpo settings under dpo": {"base": PREFS, "grid": {"dpo.beta": [0.1, 0.2]}},
    "grpo settings swept under dpo": {"base": PREFS, "grid": {"grpo.beta": [0.1]}},
    "null settings beside a grid of methods, on a dataset only one takes": {
        "grid": {"method": ["sft", "dpo"], "dpo": [None]}, "base": dict(BASE, dataset_key="json-person")},
    "a method swept to the base's own": {"base": PREFS, "grid": {"method": ["dpo"], "dpo.beta": [0.1]}},
    "a grid of methods on a dataset one of them cannot take": {"grid": {"method": ["sft", "dpo"]}},
    "a grid of datasets a base's method cannot take": {"base": dict(BASE, method="grpo", dataset_key="arithmetic"),
                                                       "grid": {"dataset_key": ["arithmetic", "json-person"]}},
    "a grid of datasets the base's method takes": {"grid": {"dataset_key": ["synthetic", "text-sft"]}},
    "a method swept to one that cannot take the base's dataset": {"grid": {"method": ["dpo"]}},
    "a method drawn with another's settings": {"random": {"count": 1, "space": {
        "method": {"choice": ["sft", "dpo"]}, "dpo.beta": {"uniform": [0.1, 1]}}}},
    "the base's settings with a grid of methods": {"base": dict(PREFS, dpo={"beta": 0.2}),
                                                   "grid": {"method": ["dpo", "sft"]}},
    "a method's metric with a method that does not record it": {"base": PREFS, "grid": {"method": ["dpo", "sft"]},
                                                                "metric": "reward_margin"},
    "a method's metric with that method": {"base": PREFS, "grid": {"seed": [1]}, "metric": "reward_margin"},
    "kl on an sft base": {"grid": {"seed": [1]}, "metric": "kl"},
    "a field both in the grid and the random space (drawn, with a warning)": {
        "grid": {"seed": [1, 2]}, "random": {"count": 1, "space": {"seed": {"choice": [3]}}}},
}


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def document(client):
    return client.get("/openapi.json").get_json()


def bundled(document, name):
    text = jsonschema_rs.canonical.json.to_string(document["components"]["schemas"])
    defs = __import__("json").loads(text.replace("#/components/schemas/", "#/$defs/"))
    return dict(defs[name], **{"$defs": defs})


@pytest.mark.parametrize("case", CASES)
def test_the_document_allows_a_sweep_exactly_when_the_api_accepts_it(client, document, case):
    body = dict({"name": case, "base": BASE}, **CASES[case])
    valid = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/SweepSpec", "components": document["components"]}).is_valid(body)
    response = client.post("/api/tunix/sweeps", json=body)
    assert response.status_code in (202, 422), response.get_data(as_text=True)
    assert (response.status_code == 202) == valid, (valid, response.get_json())
    if response.status_code == 422:
        assert response.get_json()["error"]["fields"], response.get_json()
    else:
        both = set(body.get("grid") or {}) & set((body.get("random") or {}).get("space") or {})
        assert [w.split(" ")[0] for w in response.get_json()["warnings"]] == sorted(both)


def test_the_sweep_document_is_one_schemathesis_can_generate_from(document):
    schema = jsonschema_rs.canonicalize(bundled(document, "SweepSpec"), draft=jsonschema_rs.Draft202012)
    assert schema.kind is not canonical.CanonicalKind.RAW
