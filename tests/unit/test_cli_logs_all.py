"""``tunix logs RUN --all``: the whole log as the API streams it
(``GET /api/tunix/runs/{id}/logs/full``), against scripted answers."""

import json

import httpx
from click.testing import CliRunner

from tunix_cli import Client, cli

TEXT = b"first line\nsecond \xc3\xa9 line\n" + b"x" * 100_000 + b"\nno newline at the end"


def fake_client(monkeypatch, status=200, body=TEXT):
    seen = []

    def handler(request):
        seen.append(request.url.path)
        if status != 200:
            return httpx.Response(status, json={"error": {"code": "run_not_found", "message": "no run", "fields": []}})
        return httpx.Response(200, content=body, headers={"Content-Type": "text/plain; charset=utf-8"})

    client = Client("http://api.test", transport=httpx.MockTransport(handler), patience_s=0)
    monkeypatch.setattr(cli, "_client", lambda ctx, **kwargs: client)
    return seen


def test_logs_all_prints_the_whole_log_byte_for_byte(monkeypatch):
    seen = fake_client(monkeypatch)
    result = CliRunner().invoke(cli.main, ["logs", "r-1", "--all"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == TEXT
    assert seen == ["/api/tunix/runs/r-1/logs/full"]


def test_logs_all_as_json_numbers_every_line(monkeypatch):
    fake_client(monkeypatch)
    result = CliRunner().invoke(cli.main, ["logs", "r-1", "--all", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["line"] for line in lines] == [1, 2, 3, 4]
    assert lines[1]["text"] == "second é line" and lines[3]["text"] == "no newline at the end"


def test_logs_all_of_an_unknown_run_exits_with_the_apis_error(monkeypatch):
    fake_client(monkeypatch, status=404)
    result = CliRunner().invoke(cli.main, ["logs", "nope", "--all"])
    assert result.exit_code == cli.EXIT["api_error"], result.output


def test_logs_all_and_follow_together_are_a_usage_error(monkeypatch):
    fake_client(monkeypatch)
    result = CliRunner().invoke(cli.main, ["logs", "r-1", "--all", "-f"])
    assert result.exit_code == cli.EXIT["usage"]
