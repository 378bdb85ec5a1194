"""The Python client's own logic, against scripted answers (httpx's
MockTransport): what it retries and how, what a broken stream or download
leaves.  The client against the live API: tests/e2e/test_cli.py."""

import hashlib
import json

import httpx
import pytest

from tunix_cli import ApiError, Client, Unreachable

RUN = {"run_id": "6f0c4c36-3a39-4d5e-9b5e-0d1f2f0c0a11", "status": "pending", "mode": "async", "dry_run": True,
       "dataset_key": "synthetic", "model_id": "llama3-tiny", "config": {}, "attempts": 0}


def client_for(handler, **kwargs):
    return Client("http://api.test", transport=httpx.MockTransport(handler), patience_s=kwargs.pop("patience_s", 5),
                  **kwargs)


def test_a_submit_is_retried_after_a_503_with_the_same_idempotency_key():
    keys = []

    def handler(request):
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            return httpx.Response(503, headers={"Retry-After": "0"},
                                  json={"error": {"code": "overloaded", "message": "busy", "fields": []}})
        return httpx.Response(202, json=RUN)

    run = client_for(handler).submit({"dataset_key": "synthetic", "model_id": "llama3-tiny"})
    assert run.run_id == RUN["run_id"]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_an_api_error_carries_its_code_and_fields():
    def handler(request):
        return httpx.Response(422, json={"error": {"code": "validation_error", "message": "1 invalid field(s)",
                                                   "fields": [{"field": "batch_size", "message": "too big"}]}})

    with pytest.raises(ApiError) as caught:
        client_for(handler).submit({})
    assert caught.value.status == 422 and caught.value.code == "validation_error"
    assert caught.value.fields == [{"field": "batch_size", "message": "too big"}]
    assert "batch_size: too big" in str(caught.value)


def test_no_answer_within_the_patience_is_unreachable():
    def handler(request):
        raise httpx.ConnectError("connection refused")

    with pytest.raises(Unreachable, match="did not answer"):
        client_for(handler, patience_s=0.5).get(RUN["run_id"])


def _sse(*events):
    return "".join(f"id: {e['seq']}\nevent: log\ndata: {json.dumps(e)}\n\n" if "seq" in e else
                   f"event: status\ndata: {json.dumps(e)}\n\n" for e in events)


def _line(seq):
    return {"seq": seq, "stream": "stdout", "line": f"line {seq}", "at": "2026-12-02T00:00:00+00:00"}


def test_a_followed_stream_that_breaks_off_resumes_after_the_last_line_seen():
    asked = []

    def handler(request):
        asked.append(request.headers.get("Last-Event-ID"))
        if len(asked) == 1:  # the API went away after two lines
            return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, text=_sse(_line(1), _line(2)))
        if len(asked) == 2:
            raise httpx.ConnectError("restarting")
        # A server that resent line 2 would not duplicate it either
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"},
                              text=_sse(_line(2), _line(3), {"run_id": RUN["run_id"], "status": "completed"}))

    lines = [line.seq for line in client_for(handler).logs(RUN["run_id"], follow=True)]
    assert lines == [1, 2, 3]
    assert asked == ["0", "2", "2"]


def test_a_download_whose_checksum_differs_leaves_no_file(tmp_path):
    data = b"x" * 3000

    def handler(request):
        return httpx.Response(200, content=data, headers={"Content-Length": str(len(data)),
                                                          "X-Checkpoint-SHA256": "0" * 64})

    with pytest.raises(ApiError, match="sha256"):
        client_for(handler).download(RUN["run_id"], 10, tmp_path / "ckpt.tar")
    assert list(tmp_path.iterdir()) == []


def test_a_download_that_matches_is_written_whole(tmp_path):
    data = b"y" * 3000
    seen = []

    def handler(request):
        return httpx.Response(200, content=data, headers={"Content-Length": str(len(data)),
                                                          "X-Checkpoint-SHA256": hashlib.sha256(data).hexdigest()})

    size = client_for(handler).download(RUN["run_id"], 10, tmp_path / "ckpt.tar",
                                        on_chunk=lambda done, total: seen.append((done, total)))
    assert size == 3000 and (tmp_path / "ckpt.tar").read_bytes() == data and seen[-1] == (3000, 3000)
