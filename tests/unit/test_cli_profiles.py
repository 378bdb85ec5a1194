"""The CLI's profiles (``tunix_cli/profiles.py``): where the file is, that it
reads back what was written, that it is private and replaced atomically,
and what a command uses (flags over the environment over the profile);
then ``tunix login``/``whoami``/``logout`` against scripted answers.  The
same against a live API with users: tests/e2e/test_cli_users.py."""

import os
import stat

import httpx
import pytest
from click.testing import CliRunner

from tunix_cli import accounts, cli, client as api, profiles

TOKEN = "tnx_s3cr3t-Token_value"
ME = {"name": "alice", "role": "member", "via": "token", "token_id": "7", "auth": "users"}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean environment whose config folder is under tmp_path."""
    for name in ("TUNIX_URL", "TUNIX_TOKEN", "TUNIX_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# --------------------------------------------------------------------------- the file

def test_the_file_is_under_xdg_config_home_else_under_home_dot_config(tmp_path):
    assert profiles.config_path({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"}) == "/x/cfg/tunix/config.toml"
    # A relative or empty XDG_CONFIG_HOME is ignored, as the XDG spec says
    assert profiles.config_path({"XDG_CONFIG_HOME": "rel", "HOME": "/h"}) == "/h/.config/tunix/config.toml"
    assert profiles.config_path({"HOME": "/h"}) == "/h/.config/tunix/config.toml"


@pytest.mark.parametrize("value", ['plain', 'with "quotes"', "back\\slash", "new\nline\ttab", "bell\x07del\x7f",
                                   "ünïcødé ✓", "[profiles.x]\nurl = 'y'", ""])
def test_any_string_reads_back_as_itself(tmp_path, value):
    path = str(tmp_path / "config.toml")
    profiles.save_profile(path, "p", url="http://a", token=value, user=value)
    assert profiles.load(path) == {"p": {"url": "http://a", "token": value, "user": value}}


def test_several_profiles_live_side_by_side_and_one_key_goes_without_the_others(tmp_path):
    path = str(tmp_path / "config.toml")
    profiles.save_profile(path, "default", url="http://a:1", token="t1", user="root")
    profiles.save_profile(path, "work", url="https://b", token="t2", user="alice")
    profiles.save_profile(path, "team.prod", url="https://c", token="t3")  # a name TOML must quote
    profiles.save_profile(path, "default", token=None, user=None)  # logout: the token goes, the URL stays
    assert profiles.load(path) == {"default": {"url": "http://a:1"},
                                   "work": {"url": "https://b", "token": "t2", "user": "alice"},
                                   "team.prod": {"url": "https://c", "token": "t3"}}


def test_the_file_is_0600_and_its_folder_0700_whatever_the_umask(tmp_path):
    path = str(tmp_path / "cfg" / "tunix" / "config.toml")
    old = os.umask(0)
    try:
        profiles.save_profile(path, "default", url="http://a", token=TOKEN)
        profiles.save_profile(path, "other", url="http://b", token=TOKEN)  # rewritten: still 0600
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(os.path.dirname(path)) == 0o700
    assert profiles.loose_mode(path) is None
    os.chmod(path, 0o644)
    assert profiles.loose_mode(path) == 0o644


def test_the_file_is_private_from_its_first_byte_and_replaced_whole(tmp_path, monkeypatch):
    # Given a file with one profile
    path = str(tmp_path / "config.toml")
    profiles.save_profile(path, "default", url="http://a", token="old")
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        # The new content sits complete in a 0600 sibling before the rename
        seen.append((os.path.dirname(src) == os.path.dirname(dst), mode(src), open(src).read()))
        real_replace(src, dst)

    monkeypatch.setattr(profiles.os, "replace", replace)
    profiles.save_profile(path, "default", token="new")
    assert seen[0][0] and seen[0][1] == 0o600 and 'token = "new"' in seen[0][2]

    # When the write fails half way, the old file stays as it was and no temporary is left
    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(profiles.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        profiles.save_profile(path, "default", token="lost")
    assert profiles.load(path)["default"]["token"] == "new"
    assert sorted(os.listdir(tmp_path)) == ["config.toml", "config.toml.lock"]


def test_a_broken_file_or_a_bad_name_is_a_clear_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[profiles.default]\ntoken = "abc\n')
    with pytest.raises(profiles.ProfileError) as caught:
        profiles.load(str(path))
    assert "abc" not in str(caught.value) and str(path) in str(caught.value)
    with pytest.raises(profiles.ProfileError, match="bad profile name"):
        profiles.save_profile(str(tmp_path / "x.toml"), "a b", token="t")


# --------------------------------------------------------------------------- precedence

@pytest.fixture
def saved(tmp_path):
    path = str(tmp_path / "config.toml")
    profiles.save_profile(path, "default", url="http://default:8000", token="t-default")
    profiles.save_profile(path, "work", url="https://work", token="t-work")
    return path


def test_without_flags_or_environment_the_default_profile_is_used(saved):
    found = profiles.resolve(environ={}, path=saved)
    assert (found.url, found.token, found.profile) == ("http://default:8000", "t-default", "default")
    assert (found.url_from, found.token_from, found.withheld) == ("profile", "profile", False)


def test_tunix_profile_picks_one_and_the_flag_beats_it(saved):
    assert profiles.resolve(environ={"TUNIX_PROFILE": "work"}, path=saved).token == "t-work"
    assert profiles.resolve(profile="default", environ={"TUNIX_PROFILE": "work"}, path=saved).token == "t-default"


def test_the_environment_beats_the_profile_and_flags_beat_the_environment(saved):
    environ = {"TUNIX_URL": "http://default:8000/", "TUNIX_TOKEN": "t-env"}
    found = profiles.resolve(environ=environ, path=saved)
    assert (found.url, found.token, found.url_from, found.token_from) == ("http://default:8000", "t-env", "env",
                                                                          "env")
    found = profiles.resolve(url="http://flag", token="t-flag", environ=environ, path=saved)
    assert (found.url, found.token, found.url_from, found.token_from) == ("http://flag", "t-flag", "flag", "flag")
    # An empty variable counts as unset, as click counted it
    assert profiles.resolve(environ={"TUNIX_TOKEN": ""}, path=saved).token == "t-default"


def test_a_profiles_token_is_never_sent_to_another_url(saved):
    found = profiles.resolve(environ={"TUNIX_URL": "http://elsewhere"}, path=saved)
    assert found.url == "http://elsewhere" and found.token is None and found.withheld
    assert "t-default" not in repr(found)  # and never shown in a repr either
    # A token given with it goes, though
    assert profiles.resolve(url="http://elsewhere", token="t-flag", environ={}, path=saved).token == "t-flag"


def test_a_profile_named_but_missing_is_an_error_and_no_file_is_no_profile(saved, tmp_path):
    with pytest.raises(profiles.ProfileError, match="no profile 'nope'.*tunix login --profile nope"):
        profiles.resolve(profile="nope", environ={}, path=saved)
    found = profiles.resolve(environ={}, path=str(tmp_path / "none.toml"))
    assert (found.url, found.token, found.url_from) == (profiles.DEFAULT_URL, None, "default")
    # What the CLI read before profiles still works alone
    found = profiles.resolve(environ={"TUNIX_URL": "http://x", "TUNIX_TOKEN": "t"}, path=str(tmp_path / "none"))
    assert (found.url, found.token) == ("http://x", "t")


# --------------------------------------------------------------------------- the commands

@pytest.fixture
def api_calls(monkeypatch):
    """Every client the CLI makes answers from a script; returns the requests seen."""
    seen = []

    def handler(request):
        seen.append(request)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "a valid token is "
                                                       "required", "fields": []}})
        if request.url.path == "/api/tunix/me":
            return httpx.Response(200, json=ME)
        if request.url.path == "/api/tunix/tokens" and request.method == "POST":
            return httpx.Response(201, json={"token_id": "9", "user": "alice", "label": "", "prefix": "tnx_abcd",
                                             "created_at": "2026-05-01T00:00:00+00:00", "created_by": "alice",
                                             "expires_at": None, "revoked_at": None, "last_used_at": None,
                                             "token": "tnx_made_now"})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no", "fields": []}})

    real = api.Client

    class Scripted(real):
        def __init__(self, *args, **kwargs):
            kwargs["transport"] = httpx.MockTransport(handler)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(api, "Client", Scripted)
    return seen


def run(*args, input=None):
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


def test_login_checks_the_token_saves_the_profile_and_never_shows_the_token(env, api_calls):
    result = run("login", "--url", "http://api.test/", "--token", "-", input=TOKEN + "\n")
    assert result.exit_code == 0, result.output
    assert "as alice (member)" in result.output and TOKEN not in result.output
    path = profiles.config_path()
    assert path.startswith(env["XDG_CONFIG_HOME"]) and mode(path) == 0o600
    assert profiles.load(path) == {"default": {"url": "http://api.test", "token": TOKEN, "user": "alice"}}
    assert api_calls[-1].url.path == "/api/tunix/me" and TOKEN not in str(api_calls[-1].url)

    # whoami uses the saved profile: the header, never the URL, carries the token
    who = run("whoami")
    assert who.exit_code == 0 and "alice" in who.output and "member" in who.output and "http://api.test" in who.output
    assert api_calls[-1].headers["Authorization"] == f"Bearer {TOKEN}" and TOKEN not in str(api_calls[-1].url)
    assert TOKEN not in who.output

    # logout forgets the token, keeps the URL
    assert run("logout").exit_code == 0
    assert profiles.load(path) == {"default": {"url": "http://api.test"}}


def test_a_refused_token_is_not_saved_and_the_error_does_not_repeat_it(env, api_calls):
    result = run("login", "--profile", "work", "--url", "http://api.test", "--token", "tnx_wrong_one")
    assert result.exit_code == cli.EXIT["api_error"]
    assert "HTTP 401" in result.output and "tnx_wrong_one" not in result.output
    assert not os.path.exists(profiles.config_path())


def test_a_second_profile_is_picked_by_flag_or_tunix_profile(env, api_calls, monkeypatch):
    profiles.save_profile(profiles.config_path(), "default", url="http://other.test", token="t-other")
    assert run("login", "--profile", "work", "--url", "http://api.test", "--token", TOKEN).exit_code == 0
    assert run("--profile", "work", "whoami").exit_code == 0
    monkeypatch.setenv("TUNIX_PROFILE", "work")
    assert run("whoami", "--json").exit_code == 0
    assert api_calls[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    missing = run("--profile", "nope", "whoami")
    assert missing.exit_code == cli.EXIT["usage"] and "no profile 'nope'" in missing.output


def test_a_made_token_is_alone_on_stdout_with_a_note_on_stderr(env, api_calls):
    profiles.save_profile(profiles.config_path(), "default", url="http://api.test", token=TOKEN)
    result = run("tokens", "create")  # click >= 8.2 keeps stdout and stderr apart
    assert result.exit_code == 0
    assert result.stdout == "tnx_made_now\n"
    assert "shown this once" in result.stderr and "tnx_made_now" not in result.stderr


def test_the_prompt_does_not_echo_and_no_terminal_is_a_usage_error(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    asked = []
    monkeypatch.setattr(accounts.sys, "stdin", Tty())
    monkeypatch.setattr(accounts.getpass, "getpass", lambda prompt: asked.append(prompt) or f" {TOKEN} ")
    assert accounts._read_token(None, "http://api.test") == TOKEN and asked == ["Token for http://api.test: "]

    class Pipe:
        def isatty(self):
            return False

    monkeypatch.setattr(accounts.sys, "stdin", Pipe())
    with pytest.raises(Exception, match="--token -"):
        accounts._read_token(None, "http://api.test")
