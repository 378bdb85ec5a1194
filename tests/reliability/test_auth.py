"""Bearer-token authentication on a real API process (``API_TOKEN``)."""

import requests

from support import DRY, connect, start_api
from reliability_support import census

TOKEN = "s3cret-token-for-tests"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
WRONG = [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
         {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN}]
OPEN_ALWAYS = ["/healthz", "/readyz", "/metrics", "/openapi.json"]


def post(base, path, headers, **kwargs):
    return requests.post(base + path, headers=headers, timeout=30, **kwargs)


def get(base, path, headers):
    return requests.get(base + path, headers=headers, timeout=30)


def assert_401(response):
    assert response.status_code == 401, (response.request.url, response.status_code, response.text)
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_api_token_guards_every_mutation_and_reads_only_when_asked(databases, data_dir, log_dir, report):
    url = databases.create()
    conn = connect(url)
    api = start_api(url, data_dir, log_dir, API_TOKEN=TOKEN)
    try:
        base = api.url
        # Given a pending run, made with the token (no worker runs it)
        made = post(base, "/api/tunix/run?mode=async", RIGHT, json=DRY)
        assert made.status_code == 202, made.text
        run_id = made.json()["run_id"]
        mutations = [("/api/tunix/run?mode=async", {"json": DRY}),
                     ("/api/tunix/runs/batch", {"json": {"runs": [DRY, DRY]}}),
                     (f"/api/tunix/runs/{run_id}/cancel", {}),
                     (f"/api/tunix/runs/{run_id}/resume", {})]
        # When every mutating endpoint is called without the right token, it is refused, writing nothing
        refused = 0
        for path, kwargs in mutations:
            for headers in WRONG:
                assert_401(post(base, path, headers, **kwargs))
                refused += 1
        assert census(conn) == {"rows": 1, "final": 0, "attempts": 0, "by_status": {"pending": 1}}
        # And with it, each does its work
        assert post(base, "/api/tunix/run?mode=async", RIGHT, json=DRY).status_code == 202
        assert post(base, "/api/tunix/runs/batch", RIGHT, json={"runs": [DRY, DRY]}).status_code == 202
        assert post(base, f"/api/tunix/runs/{run_id}/cancel", RIGHT).status_code == 200
        assert post(base, f"/api/tunix/runs/{run_id}/resume", RIGHT).status_code == 202
        assert census(conn)["rows"] == 4
        # And reads stay open
        reads = ["/api/tunix/runs", f"/api/tunix/runs/{run_id}", f"/api/tunix/runs/{run_id}/status",
                 f"/api/tunix/runs/{run_id}/metrics", "/api/tunix/datasets", "/api/tunix/models"]
        for path in reads + OPEN_ALWAYS:
            assert get(base, path, {}).status_code == 200, path
    finally:
        api.stop()
    # Given API_TOKEN_READS=true (it once left reads open: only 1 counted): reads need the token too;
    # probes, metrics and the schema stay open
    api = start_api(url, data_dir, log_dir, API_TOKEN=TOKEN, API_TOKEN_READS="true")
    try:
        for path in reads:
            for headers in WRONG:
                assert_401(get(api.url, path, headers))
            assert get(api.url, path, RIGHT).status_code == 200, path
        for path in OPEN_ALWAYS:
            assert get(api.url, path, {}).status_code == 200, path
        assert_401(post(api.url, "/api/tunix/run?mode=async", {}, json=DRY))
        report(f"API_TOKEN: {len(mutations)} mutating endpoints x {len(WRONG)} missing/wrong tokens -> "
               f"{refused} x 401, no row written; right token -> 2xx; {len(reads)} reads open, and 401 without "
               f"the token under API_TOKEN_READS=true; {len(OPEN_ALWAYS)} probe/metrics/schema paths always open")
    finally:
        api.stop()
        conn.close()
