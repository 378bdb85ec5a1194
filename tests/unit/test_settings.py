"""Settings own every variable: bad values are named, booleans are strict,
the README's table is generated from them, and no module reads one of them
from the environment by itself."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from tasks import settings as settings_mod
from tasks.settings import Settings, SettingsError, get_settings

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_a_bad_value_stops_with_an_error_naming_the_variable_its_value_and_what_it_accepts(monkeypatch):
    # Given a worker count that is no number and a port out of range
    monkeypatch.setenv("WORKERS", "abc")
    monkeypatch.setenv("PORT", "70000")
    # When the settings are read
    with pytest.raises(SettingsError) as info:
        get_settings()
    # Then the error names each variable and its value, and says what it accepts
    message = str(info.value)
    assert "WORKERS='abc'" in message and "valid integer" in message
    assert "PORT='70000'" in message and "less than or equal to 65535" in message


# "true" once left reads open: only the exact string 1 turned the check on.
@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("on", True),
                                             ("0", False), ("false", False), ("no", False), ("off", False),
                                             ("", False)])
def test_booleans_accept_the_usual_words(monkeypatch, value, expected):
    monkeypatch.setenv("API_TOKEN_READS", value)
    assert get_settings().api_token_reads is expected


@pytest.mark.parametrize("value", ["maybe", "2", "tru", "y"])
def test_a_boolean_refuses_anything_else(monkeypatch, value):
    monkeypatch.setenv("API_TOKEN_READS", value)
    with pytest.raises(SettingsError, match="API_TOKEN_READS.*expected 1, true, yes or on"):
        get_settings()


def test_settings_are_built_once_and_again_only_when_a_variable_changes(monkeypatch):
    monkeypatch.setenv("WORKERS", "3")
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("WORKERS", "4")
    assert get_settings() is not first and get_settings().workers == 4
    monkeypatch.delenv("WORKERS")
    assert get_settings().workers == 2


@pytest.mark.parametrize("program, variable, value, accepts", [
    (["-m", "workers"], "WORKERS", "abc", "valid integer"),
    (["-m", "workers"], "TUNIX_METRICS", "maybe", "expected 1, true, yes or on"),
    (["-m", "workers.stack"], "PORT", "70000", "less than or equal to 65535"),
    (["-m", "tasks.migrate"], "DB_POOL_MAX", "0", "greater than or equal to 1"),
    (["-m", "gunicorn", "--bind", "127.0.0.1:0", "app:create_app()"], "API_TOKEN_READS", "tru", "expected 1"),
], ids=["worker-launch", "worker-launch-boolean", "make-run", "migrate", "api"])
def test_a_program_with_a_bad_variable_stops_at_start_naming_it(program, variable, value, accepts):
    # Given a program started with a bad value (and nothing it could reach: no database)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({variable: value, "PYTHONPATH": str(ROOT), "DATA_DIR": "/nonexistent/tunix-settings-test"})
    # When it starts
    done = subprocess.run([sys.executable, *program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    # Then it stops at once, status 2, with one line naming the variable, its value and what it accepts
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert f"{variable}={value!r}" in done.stderr and accepts in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_fields_are_set_by_name_in_code_and_a_replace_is_validated_too():
    settings = Settings(database_url="postgresql://x/y", workers=3)
    assert (settings.database_url, settings.workers) == ("postgresql://x/y", 3)
    assert settings.replace(data_dir="rel").data_dir == str(pathlib.Path("rel").resolve())
    with pytest.raises(ValueError):
        settings.replace(workers=0)


def test_the_readmes_configuration_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    assert settings_mod.markdown_table() in readme, "run: python -m tasks.settings --markdown, paste into README"


def test_no_module_reads_a_settings_variable_from_the_environment_itself():
    # The variables Settings owns, and every read of an environment variable by name elsewhere
    owned = {f.validation_alias for f in Settings.model_fields.values()}
    read = re.compile(r"""(?:environ\.get|getenv|environ\[)\(?\s*["']([A-Z][A-Z0-9_]*)["']""")
    offenders = []
    for folder in ("app", "tasks", "workers", "tunix_cli"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "tasks" / "settings.py":
                continue
            for name in read.findall(path.read_text()):
                if name in owned:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []
