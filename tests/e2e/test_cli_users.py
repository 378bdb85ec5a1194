"""``tunix login``, ``whoami``, ``users`` and ``tokens`` (the installed
console script) against a live API with users: the first admin made on the
server side, a member made through the CLI, two profiles, a token revoked
and refused; and no token anywhere it should not be (the API's access log,
the CLI's output but where a token is made).

A user turns authentication on for the whole database, so this module has
its own database and API (never the session's shared ``live_api``)."""

import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from support import start_api

TUNIX = str(pathlib.Path(sys.executable).parent / "tunix")


class Stack:
    def __init__(self, url, database_url, api, log_path, home):
        self.url, self.database_url, self.api, self.log_path, self.home = url, database_url, api, log_path, home
        self.outputs = []  # every (args, stdout, stderr) the CLI printed

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNIX_")}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "xdg"), COLUMNS="160", **extra)
        return env

    def tunix(self, *args, input=None, **env):
        result = subprocess.run([TUNIX, *args], capture_output=True, text=True, timeout=60, input=input,
                                env=self.env(**env))
        self.outputs.append((args, result.stdout, result.stderr))
        return result


@pytest.fixture(scope="module")
def stack(databases, tmp_path_factory, log_dir):
    data_dir = tmp_path_factory.mktemp("cli-users")
    url = databases.create()
    api = start_api(url, data_dir, log_dir, threads=4)
    port = api.url.rsplit(":", 1)[1]
    s = Stack(api.url, url, api, pathlib.Path(log_dir) / f"api-{port}.log", tmp_path_factory.mktemp("home"))
    yield s
    s.api.stop()


def test_login_users_tokens_and_a_revoked_token_refused_with_no_token_leaked(stack):
    # Given the first admin, made on the server side (its token alone on stdout)
    made = subprocess.run([sys.executable, "-m", "tasks.users_admin", "create-user", "root"], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, DATABASE_URL=stack.database_url))
    assert made.returncode == 0, made.stderr
    root_token = made.stdout.strip()
    assert root_token and "\n" not in root_token and root_token not in made.stderr

    # When root logs in (the token piped in): the default profile, 0600, checked against /me
    login = stack.tunix("login", "--url", stack.url, "--token", "-", input=root_token + "\n")
    assert login.returncode == 0, login.stderr
    assert "as root (admin)" in login.stdout
    config = stack.home / "xdg" / "tunix" / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and root_token in config.read_text()
    who = stack.tunix("whoami", "--json")
    assert who.returncode == 0, who.stderr
    me = json.loads(who.stdout)
    assert (me["name"], me["role"], me["url"], me["profile"]) == ("root", "admin", stack.url, "default")

    # root makes alice: her token alone on stdout, a note on stderr
    alice = stack.tunix("users", "create", "alice")
    assert alice.returncode == 0, alice.stderr
    alice_token = alice.stdout.strip()
    assert alice.stdout == alice_token + "\n" and alice_token.startswith("tnx_")
    assert "shown this once" in alice.stderr and alice_token not in alice.stderr
    listed = stack.tunix("users", "list")
    assert listed.returncode == 0 and "alice" in listed.stdout and "member" in listed.stdout

    # alice logs in as a second profile; root's stays the default
    assert stack.tunix("login", "--profile", "alice", "--url", stack.url, "--token", alice_token).returncode == 0
    who = stack.tunix("--profile", "alice", "whoami")
    assert who.returncode == 0 and "alice" in who.stdout and "member" in who.stdout and stack.url in who.stdout
    assert json.loads(stack.tunix("whoami", "--json", TUNIX_PROFILE="alice").stdout)["name"] == "alice"
    assert json.loads(stack.tunix("whoami", "--json").stdout)["name"] == "root"

    # alice is no admin: the API's 403, its message, the CLI's refusal exit
    refused = stack.tunix("--profile", "alice", "users", "list")
    assert refused.returncode == 5 and "needs an admin" in refused.stderr and "HTTP 403" in refused.stderr

    # alice makes a second token for a script (TOKEN=$(tunix tokens create)) and lists hers
    script = stack.tunix("--profile", "alice", "tokens", "create", "--label", "ci", "--expires-in-days", "7")
    assert script.returncode == 0, script.stderr
    script_token = script.stdout.strip()
    mine = json.loads(stack.tunix("--profile", "alice", "tokens", "list", "--json").stdout)
    assert {t["label"] for t in mine} == {"first", "ci"} and all(t["token"] is None for t in mine)
    table = stack.tunix("--profile", "alice", "tokens", "list")
    assert table.returncode == 0 and "ci" in table.stdout and "live" in table.stdout
    every = json.loads(stack.tunix("tokens", "list", "--all", "--json").stdout)
    assert {t["user"] for t in every} == {"root", "alice"}

    # When the script's token is revoked, it is refused: 401, the CLI's refusal exit
    script_id = next(t["token_id"] for t in mine if t["label"] == "ci")
    assert stack.tunix("--profile", "alice", "tokens", "revoke", script_id).returncode == 0
    dead = stack.tunix("whoami", TUNIX_TOKEN=script_token)
    assert dead.returncode == 5 and "HTTP 401" in dead.stderr, dead.stderr
    # ... while alice's own still works, and root sees the revocation in the audit trail
    assert stack.tunix("--profile", "alice", "whoami").returncode == 0
    trail = json.loads(stack.tunix("audit", "--user", "alice", "--json").stdout)["data"]
    assert "users.revoke_token" in {e["action"] for e in trail}, trail

    # logout forgets alice's token; her profile then sends none (401)
    assert stack.tunix("logout", "--profile", "alice").returncode == 0
    assert alice_token not in config.read_text() and root_token in config.read_text()
    assert stack.tunix("--profile", "alice", "whoami").returncode == 5

    # No token in the API's access log, nor in any CLI output but the one that made it
    log = stack.log_path.read_text()
    access = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"path"' in line]
    assert {"method": "DELETE", "path": f"/api/tunix/tokens/{script_id}", "status": 200, "user": "alice"}.items() \
        <= next(e for e in access if e["method"] == "DELETE").items()  # the access log is there, and read
    assert any(e["path"] == "/api/tunix/me" and e["status"] == 401 for e in access)
    makers = {("users", "create", "alice"): alice_token, ("--profile", "alice", "tokens", "create", "--label", "ci",
                                                          "--expires-in-days", "7"): script_token}
    for token in (root_token, alice_token, script_token):
        assert token not in log
        for args, stdout, stderr in stack.outputs:
            assert token not in stderr, (args, stderr)
            assert token not in stdout or makers.get(tuple(args)) == token, (args, stdout)
