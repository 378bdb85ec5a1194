"""Every refusal the API can make before touching the database, through
Flask's test client: the status and the one error shape."""

import pytest

from app import MAX_BODY_BYTES, create_app
from app.errors import ApiError, error_response
from tasks.errors import DatabaseUnavailable, InvalidTransition, Overloaded, RunNotFound

VALID = {"dataset_key": "synthetic", "model_id": "llama3-tiny"}


@pytest.fixture(scope="module")
def app():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("API_TOKEN", raising=False)  # these tests are about errors, not auth
        yield _app()


def _app():
    # No database here: neither users nor the audit trail (app/auth.py, app/audit.py).
    app = create_app({"TESTING": False, "USERS_AUTH": False, "AUDIT": False})

    # Routes raising each platform error, to check the one handler.
    @app.get("/_raise/<name>")
    def _raise(name):
        raise {
            "not_found": RunNotFound("r1"),
            "transition": InvalidTransition("r1", "completed", "running"),
            "db": DatabaseUnavailable("database unavailable: gone"),
            "busy": Overloaded("server busy: no free connection within 5s (maxconn=16)"),
            "api": ApiError(418, "teapot", "short and stout", [{"field": "spout", "message": "here"}]),
            "bug": RuntimeError("secret internals"),
        }[name]

    return app


@pytest.fixture
def client(app):
    return app.test_client()


def assert_error(response, status, code, fields=()):
    """The response is `status` with the one error shape, naming `fields`."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert {"code", "message", "fields"} <= set(error)
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], list)
    for field in error["fields"]:
        assert set(field) == {"field", "message"} and field["message"]
    named = {f["field"] for f in error["fields"]}
    assert set(fields) <= named, f"{fields} not all in {named}"
    return error


def test_a_body_that_is_not_json_is_415(client):
    response = client.post("/api/tunix/run?mode=async", data="dataset_key=synthetic", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_a_request_without_a_content_type_is_415(client):
    assert_error(client.post("/api/tunix/run", data=b"{}"), 415, "unsupported_media_type")


def test_malformed_json_is_400(client):
    response = client.post("/api/tunix/run", data='{"dataset_key": ', content_type="application/json")
    assert_error(response, 400, "malformed_json")


def test_a_body_over_one_mebibyte_is_413(client):
    # Given a syntactically valid JSON body one byte over the limit
    padding = " " * (MAX_BODY_BYTES + 1 - len('{"a": ""}'))
    body = '{"a": "' + padding + '"}'
    assert len(body.encode()) == MAX_BODY_BYTES + 1
    # Then it is refused for its size, not its content
    assert_error(client.post("/api/tunix/run", data=body, content_type="application/json"), 413,
                 "request_entity_too_large")


@pytest.mark.parametrize("body", [[1, 2], "text", 3, True], ids=["list", "string", "number", "bool"])
def test_json_that_is_not_an_object_is_422(client, body):
    assert_error(client.post("/api/tunix/run", json=body), 422, "validation_error", ["body"])


def test_an_unknown_mode_is_422_naming_mode(client):
    assert_error(client.post("/api/tunix/run?mode=bogus", json=VALID), 422, "validation_error", ["mode"])


def test_an_invalid_config_is_422_naming_every_bad_field(client):
    body = dict(VALID, batch_size=0, dry_run="true", extra=1)
    error = assert_error(client.post("/api/tunix/run?mode=async", json=body), 422, "validation_error",
                         ["batch_size", "dry_run", "extra"])
    assert "3" in error["message"]


def test_an_unknown_dataset_is_422_naming_dataset_key(client):
    error = assert_error(client.post("/api/tunix/run", json=dict(VALID, dataset_key="no-such-set")), 422,
                         "validation_error", ["dataset_key"])
    assert "no-such-set" in error["fields"][0]["message"]


def test_a_time_limit_over_the_maximum_is_422_naming_time_limit_s(client):
    body = dict(VALID, time_limit_s=10**9)
    assert_error(client.post("/api/tunix/run", json=body), 422, "validation_error", ["time_limit_s"])


@pytest.mark.parametrize("path", ["/api/tunix/runs/not-a-uuid", "/api/tunix/runs/not-a-uuid/status",
                                  "/api/tunix/runs/1234/status"])
def test_a_malformed_run_id_is_404_not_400(client, path):
    assert_error(client.get(path), 404, "run_not_found")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "limit=-1", "offset=-1", "offset=x"])
def test_a_bad_page_parameter_is_422_naming_it(client, query):
    name = query.split("=")[0]
    assert_error(client.get(f"/api/tunix/runs?{query}"), 422, "validation_error", [name])


@pytest.mark.parametrize("query", ["status=exploded", "mode=bogus"])
def test_a_bad_history_filter_is_422_naming_it(client, query):
    assert_error(client.get(f"/api/tunix/runs?{query}"), 422, "validation_error", [query.split("=")[0]])


def test_an_unknown_route_is_404_in_the_error_shape(client):
    assert_error(client.get("/api/tunix/nothing-here"), 404, "not_found")


def test_a_wrong_method_is_405_in_the_error_shape(client):
    assert_error(client.delete("/api/tunix/runs"), 405, "method_not_allowed")


@pytest.mark.parametrize(("name", "status", "code"), [
    ("not_found", 404, "run_not_found"),
    ("transition", 409, "invalid_transition"),
    ("db", 503, "database_unavailable"),
    ("busy", 503, "overloaded"),
    ("api", 418, "teapot"),
])
def test_each_platform_error_maps_to_its_status_and_code(client, name, status, code):
    response = client.get(f"/_raise/{name}")
    error = assert_error(response, status, code)
    if status == 503:
        # A busy pool frees within a second; an outage lasts longer.
        assert response.headers["Retry-After"] == ("1" if name == "busy" else "5")
    if name == "transition":
        assert error["status"] == "completed"
    if name == "api":
        assert error["fields"] == [{"field": "spout", "message": "here"}]


def test_an_unexpected_error_is_500_without_its_internals(client):
    error = assert_error(client.get("/_raise/bug"), 500, "internal_error")
    assert "secret" not in error["message"]


def test_healthz_answers_without_a_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_error_response_carries_extra_keys_beside_the_shape(app):
    with app.app_context():
        response = error_response(409, "c", "m", None, status="running")
    assert response.get_json() == {"error": {"code": "c", "message": "m", "fields": [], "status": "running"}}
