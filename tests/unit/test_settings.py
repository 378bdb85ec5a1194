"""Settings own every variable: bad values are named, booleans are strict,
the README's table is generated from them, and no module reads one of them
from the environment by itself."""

import pathlib
import re

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
