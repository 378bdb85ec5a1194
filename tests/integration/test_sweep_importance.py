"""``GET /api/tunix/sweeps/{id}/importance`` in this process on real
PostgreSQL: a sweep's trials made completed with recorded eval losses, as a
worker leaves them."""

import uuid

import jsonschema
import pytest

BASE = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}
LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3]


@pytest.fixture
def client(make_client):
    return make_client()


def submit(client, body):
    response = client.post("/api/tunix/sweeps", json=body)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


def conforms(client, answer):
    components = client.get("/openapi.json").get_json()["components"]
    jsonschema.validate(answer, {"$ref": "#/components/schemas/SweepImportance", "components": components})


def finish(conn, run_id, status="completed", eval_loss=None, loss=None):
    """The trial ended with ``status``, having recorded ``loss`` and ``eval_loss`` at step 10."""
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_runs SET status = %s, started_at = created_at, completed_at = now() "
                    "WHERE id = %s", (status, run_id))
        if loss is not None:
            cur.execute("INSERT INTO tunix_run_metrics (run_id, step, loss, attempt) VALUES (%s, 10, %s, 1)",
                        (run_id, loss))
        if eval_loss is not None:
            cur.execute("INSERT INTO tunix_run_evals (run_id, step, eval_loss, examples, attempt) "
                        "VALUES (%s, 10, %s, 4, 1)", (run_id, eval_loss))


def test_the_parameter_that_determines_the_eval_loss_ranks_first(conn, client):
    # Given a 4 x 2 x 2 grid whose completed trials' eval loss grows with the learning rate only
    # (the batch size and the device move it by a hair)
    sweep = submit(client, {"name": "importance", "base": BASE, "grid": {
        "learning_rate": LEARNING_RATES, "batch_size": [2, 4], "device": ["auto", "cpu"]}})
    runs = sweep["runs"]
    assert len(runs) == 16
    for r in runs[:-1]:
        t = r["trial"]
        finish(conn, r["run_id"], eval_loss=1.0 + LEARNING_RATES.index(t["learning_rate"])
               + 0.01 * (t["batch_size"] == 4) + 0.001 * (t["device"] == "cpu"))
    # ... and one failed trial whose eval loss would say the opposite
    finish(conn, runs[-1]["run_id"], status="failed", eval_loss=-100.0)
    # When its importance is asked
    response = client.get(f"/api/tunix/sweeps/{sweep['sweep_id']}/importance")
    # Then the learning rate ranks first, strongly and positively correlated, over the 15 completed trials
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["sweep_id"] == sweep["sweep_id"] and answer["metric"] == "eval_loss" and answer["mode"] == "min"
    assert answer["trials"] == 15
    assert [p["param"] for p in answer["params"]][0] == "learning_rate"
    first = answer["params"][0]
    assert first["kind"] == "numeric" and first["correlation"] > 0.9 and first["p_value"] < 1e-4
    assert first["importance"] > 0.5 and first["values"] == 4
    assert {p["param"]: p["kind"] for p in answer["params"]} == {
        "learning_rate": "numeric", "batch_size": "numeric", "device": "categorical"}
    assert sum(p["importance"] for p in answer["params"]) == pytest.approx(1)
    assert answer["explanation"].startswith(
        "importance: |Spearman rank correlation| of each parameter with eval_loss over 15 completed trials")
    # And the answer is what the document says
    conforms(client, answer)


def test_a_sweep_ranked_on_the_training_loss_is_measured_on_it_and_too_few_trials_say_so(conn, client):
    # Given a sweep ranked on the training loss, two of its trials completed
    sweep = submit(client, {"name": "few", "base": BASE, "metric": "loss",
                            "grid": {"learning_rate": LEARNING_RATES}})
    for i, r in enumerate(sweep["runs"][:2]):
        finish(conn, r["run_id"], loss=2.0 - i)
    answer = client.get(f"/api/tunix/sweeps/{sweep['sweep_id']}/importance").get_json()
    # Then nothing is measured yet, and the answer says why
    assert answer["trials"] == 2 and answer["metric"] == "loss"
    assert answer["params"] == [{"param": "learning_rate", "kind": "numeric", "importance": None, "strength": None,
                                 "correlation": None, "p_value": None, "values": 2}]
    assert answer["explanation"] == "importance needs at least 3 completed trials with loss; 2 so far"
    conforms(client, answer)
    # When a third completes, the learning rate is measured on the training loss
    finish(conn, sweep["runs"][2]["run_id"], loss=0.5)
    answer = client.get(f"/api/tunix/sweeps/{sweep['sweep_id']}/importance").get_json()
    assert answer["trials"] == 3 and answer["params"][0]["correlation"] == pytest.approx(-1)


@pytest.mark.parametrize("sweep_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_sweep_is_a_404(client, sweep_id):
    response = client.get(f"/api/tunix/sweeps/{sweep_id}/importance")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"]


def test_the_document_describes_the_answer_with_its_schema(client):
    doc = client.get("/openapi.json").get_json()
    operation = doc["paths"]["/api/tunix/sweeps/{sweep_id}/importance"]["get"]
    assert operation["operationId"] == "getSweepImportance"
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SweepImportance"}
    assert {"200", "404"} <= set(operation["responses"])
    params = doc["components"]["schemas"]["ParamImportance"]
    assert set(params["required"]) == {"param", "kind", "importance", "strength", "correlation", "p_value", "values"}
