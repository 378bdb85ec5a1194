"""A following log stream closes at ``SSE_MAX_STREAM_S`` even when its run
goes on, so no stream holds an API thread for ever (a run nobody trains, as
in a fuzzing run with no worker, used to keep one open until the client gave
up).  The CLI and the console open it again from the last line they saw:
``tests/e2e/test_cli.py`` follows a stream across an API restart, which ends
it the same way.

Real processes: PostgreSQL and gunicorn, no worker (the run stays pending).
"""

import time

import requests

from support import ApiClient, start_api

MAX_STREAM_S = 1.5


def test_a_following_stream_of_a_run_that_goes_on_closes_at_its_limit(databases, data_dir, log_dir):
    api = start_api(databases.create(), data_dir, log_dir, SSE_MAX_STREAM_S=MAX_STREAM_S)
    try:
        client = ApiClient(api.url)
        # Given a run that stays pending (no worker)
        response = client.submit({"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": True},
                                 mode="async")
        assert response.status_code == 202, response.text
        run_id = response.json()["run_id"]
        # When its log is followed
        started = time.monotonic()
        with requests.get(f"{api.url}/api/tunix/runs/{run_id}/logs", params={"follow": "1"}, stream=True,
                          timeout=30) as stream:
            assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
            body = b"".join(stream.iter_content(None))
        took = time.monotonic() - started
        # Then the server closes it once SSE_MAX_STREAM_S have passed, with no final status (the run goes on)
        assert MAX_STREAM_S - 0.1 <= took < MAX_STREAM_S + 10, took
        assert b"event: status" not in body, body
        assert client.get(f"/api/tunix/runs/{run_id}/status").json()["status"] == "pending"
        # And without follow it closes at once, as before
        started = time.monotonic()
        response = requests.get(f"{api.url}/api/tunix/runs/{run_id}/logs", params={"follow": "0"}, timeout=30)
        assert response.status_code == 200 and time.monotonic() - started < MAX_STREAM_S
    finally:
        api.stop()
