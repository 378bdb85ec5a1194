"""Named queries and migrations, as parsed from ``tasks/sql``."""

import re

from tasks import sql
from tasks.sql import QUERIES, _load, _parse, migrations, query_files

#: A registry module's call of a named query: ``fetch_one(conn, "get_run", ...)``.
_CALL = re.compile(r'\b(?:fetch_one|fetch_all|fetch_tuples|fetch_value|fetch_column|execute|execute_values)'
                   r'\(\s*conn,\s*"(\w+)"')


def test_a_query_runs_from_its_name_line_to_the_next_without_its_description():
    # Given two named queries, each with a description and a multi-line body
    text = (
        "-- A file comment, before any name.\n"
        "\n"
        "-- name: first\n"
        "-- Says what the first one does.\n"
        "-- over two lines.\n"
        "SELECT 1\n"
        "FROM t;\n"
        "\n"
        "-- name: second\n"
        "-- Second.\n"
        "UPDATE t SET x = %(x)s;\n"
    )
    # When the text is parsed
    queries = _parse(text)
    # Then each name maps to its statement alone, comments and blank ends stripped
    assert queries == {"first": "SELECT 1\nFROM t;", "second": "UPDATE t SET x = %(x)s;"}


def test_text_before_the_first_name_is_no_query():
    assert _parse("-- header\nSELECT 'orphan';\n") == {}


def test_a_name_line_needs_the_exact_form():
    # Given lines that look like names but are not ("--name:", trailing words)
    queries = _parse("--name: a\nSELECT 1;\n-- name: b c\nSELECT 2;\n-- name: real\nSELECT 3;\n")
    # Then only the well-formed one starts a query
    assert list(queries) == ["real"]


def test_each_registry_module_runs_only_the_queries_of_its_own_file():
    # Given the registry's modules, each beside the query file of its name
    modules = sorted((sql.HERE.parent / "registry").glob("*.py"))
    aggregates = {path.stem for path in modules} - {"__init__", "cursor"}
    assert aggregates == {path.stem for path in query_files()}
    for module in modules:
        if module.stem not in aggregates:
            continue
        called = set(_CALL.findall(module.read_text()))
        # Then every name it calls is parsed from its own file
        assert called, f"{module.name} calls no named query?"
        own = _parse((sql.HERE / f"{module.stem}.sql").read_text())
        assert called <= set(own), f"{module.name} calls {sorted(called - set(own))} of another file"
    # And every statement is non-empty, with no comment left in
    for name, statement in QUERIES.items():
        assert statement, name
        assert not any(line.startswith("--") for line in statement.splitlines()), name


def test_a_query_name_written_twice_is_an_error_naming_both_places(tmp_path):
    import pytest

    # Given two files that both name a query "q"
    (tmp_path / "a.sql").write_text("-- name: q\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- name: q\nSELECT 2;\n")
    # Then loading them is refused, naming both files
    with pytest.raises(ValueError, match=r"'q' is named in both a.sql and b.sql"):
        _load(sorted(tmp_path.glob("*.sql")))
    # And so is one file that names it twice
    with pytest.raises(ValueError, match=r"c.sql names the query 'q' twice"):
        _parse("-- name: q\nSELECT 1;\n-- name: q\nSELECT 2;\n", "c.sql")


def test_the_migrations_are_no_named_queries():
    assert query_files() and all(path.parent == sql.HERE for path in query_files())
    assert sql.MIGRATIONS_DIR not in {path.parent for path in query_files()}


def test_the_transition_query_is_guarded_by_the_allowed_from_statuses():
    statement = QUERIES["transition"]
    assert statement.startswith("UPDATE tunix_runs")
    assert "status = ANY(%(from_statuses)s)" in statement
    assert statement.rstrip().endswith("RETURNING *;")


def test_migrations_apply_in_version_order_with_unique_versions_from_one():
    # Given the shipped migrations
    found = migrations()
    versions = [version for version, _, _ in found]
    # Then versions are 1, 2, 3, ... in order, and each name is its file's stem
    assert versions == list(range(1, len(found) + 1))
    for version, name, text in found:
        assert name.startswith(f"{version:04d}_")
        assert (sql.MIGRATIONS_DIR / f"{name}.sql").read_text() == text
        assert text.strip()


def test_the_status_constraint_of_the_latest_migration_lists_every_lifecycle_status():
    # Given the last migration that defines the status CHECK constraint
    from tasks import lifecycle

    texts = [text for _, _, text in migrations() if "tunix_runs_status_check" in text]
    assert texts
    listed = re.findall(r"'(\w+)'", texts[-1].split("tunix_runs_status_check CHECK")[-1].split(")")[0])
    # Then it names exactly the lifecycle's statuses
    assert sorted(listed) == sorted(lifecycle.ALL)


def test_no_query_spells_a_run_status_by_hand_and_a_set_name_is_spelled_from_the_lifecycle():
    from tasks import lifecycle

    text = "\n".join(path.read_text() for path in query_files())
    # Given the query files without their comments
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    # Then no run status is written as a literal there: a query names a set of the lifecycle
    assert [s for s in lifecycle.ALL if f"'{s}'" in code] == []
    assert ":HELD" in code
    # And the parsed statement lists the set's statuses
    assert "status IN ('running', 'cancel_requested')" in QUERIES["heartbeat"]


def test_a_set_the_lifecycle_does_not_know_is_refused_when_the_queries_are_parsed():
    import pytest

    with pytest.raises(ValueError, match="no status set 'HELF'"):
        sql._parse("-- name: q\nSELECT 1 FROM tunix_runs WHERE status IN :HELF")
    # And a cast is not a set
    assert sql._parse("-- name: q\nSELECT '{}'::jsonb")["q"] == "SELECT '{}'::jsonb"


def test_the_admission_rule_of_the_latest_migration_counts_the_lifecycles_waiting_and_deferred_runs():
    # Given the last migration that defines admission's rule (SQL functions: no :SET is spelled there)
    from tasks import lifecycle

    texts = [text for _, _, text in migrations() if "FUNCTION tunix_admission_room" in text]
    assert texts
    code = "\n".join(line for line in texts[-1].splitlines() if not line.lstrip().startswith("--"))
    # Then the room counts lifecycle.WAITING and the rule looks for lifecycle.DEFERRED, and nothing else
    (waiting,), (deferred,) = lifecycle.WAITING, lifecycle.DEFERRED
    assert re.findall(r"status = '(\w+)'", code) == [waiting.value, deferred.value]
    assert "status IN" not in code
    # And the submit and an admission pass both ask it
    assert "tunix_admits_at_once(" in QUERIES["submit_run"]
    assert "tunix_admission_room(" in QUERIES["runs_to_admit"]
