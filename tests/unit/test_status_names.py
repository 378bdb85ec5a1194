"""A run's status is spelled in one place: a guard against the next drift.

``tasks/lifecycle.py`` names every status.  Besides it, only the migrations
(the database's CHECK), the console's style (``app/static/console.css``, one
rule per status) and the tests may spell one.  The rest says
``RunStatus.RUNNING`` or a set (``lifecycle.HELD``), the named SQL says
``:HELD``, and the console takes the list, the sets and the names from its
bootstrap (``app/console.py``).  So a new status touches the lifecycle, a
migration and a style, and nothing else.

Only a whole string literal counts (``'running'``, ``"cancel_requested"``):
prose, log messages and comments may use the words.  Samples and exports
have statuses of their own spelled the same (``tasks/jobs.py``); a line
that compares one carries the comment ``not a run status``.
"""

import ast
import json
import pathlib
import re

from tasks import lifecycle

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Where the code that could spell a status lives.
SCANNED = ("tasks", "app", "workers", "tunix_cli")
#: The places a status may be spelled, and why.
ALLOWED = {
    "tasks/lifecycle.py": "the one place the statuses live",
    "tasks/sql/migrations": "the database's CHECK, as each migration left it",
    "app/static/console.css": "the console's style: one rule per status",
    "tasks/jobs.py": "a sample's and an export's own statuses (JobStatus), not a run's",
    "workers/pgembed.py": "the embedded PostgreSQL's state (running or stopped), not a run's",
}
#: Files still to be moved onto the lifecycle by other changes of issue #20.
PENDING = {}
#: A line comparing a sample's or an export's status says so.
MARK = "not a run status"

NAMES = frozenset(lifecycle.ALL)
_QUOTED = re.compile(r"""(["'`])(%s)\1""" % "|".join(map(re.escape, sorted(NAMES))))


def _python(text):
    """(line, literal) for each str constant that is exactly a status name."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
            yield node.lineno, node.value


def _quoted(text, comment):
    """(line, literal) for each quoted status name outside a ``comment`` line comment."""
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split(comment, 1)[0] if comment else line
        for match in _QUOTED.finditer(code):
            yield number, match.group(0)


READERS = {
    ".py": _python,
    ".js": lambda text: _quoted(text, None),  # "//" is in URLs too; a comment quoting a status is rare
    ".html": lambda text: _quoted(text, None),
    ".sql": lambda text: _quoted(text, "--"),
    ".css": lambda text: _quoted(text, None),
}


def _allowed(path, places):
    return any(path == place or path.startswith(place + "/") for place in places)


def spellings(roots=SCANNED, skip=(*ALLOWED, *PENDING)):
    """``path:line: literal`` for each status name spelled outside ``skip``."""
    found = []
    for root in roots:
        base = ROOT / root
        for file in sorted(base.rglob("*")) if base.is_dir() else [base]:
            read = READERS.get(file.suffix)
            path = file.relative_to(ROOT).as_posix()
            if read is None or "__pycache__" in file.parts or _allowed(path, skip):
                continue
            text = file.read_text(encoding="utf-8")
            lines = text.splitlines()
            for number, literal in read(text):
                if MARK not in lines[number - 1]:
                    found.append(f"{path}:{number}: {literal}")
    return found


def test_no_status_name_is_spelled_outside_the_lifecycle_migrations_and_style():
    found = spellings()
    assert not found, ("a run status is spelled here; use tasks/lifecycle.py (RunStatus, its sets), :SETS in "
                       "the SQL, or the console's bootstrap:\n" + "\n".join(found))


def test_the_files_still_pending_are_the_only_ones_that_spell_a_status():
    # An entry of PENDING that no longer spells one is stale: remove it.
    for path in PENDING:
        assert spellings(roots=(path,), skip=ALLOWED), f"{path} spells no status any more: remove it from PENDING"


def test_the_guard_sees_a_literal_and_not_prose():
    assert list(_python("x = 'running'\ny = f'{n} running'\n# 'failed'\n'''The run is 'failed'.'''")) == [
        (1, "running")]
    assert [m for _, m in _quoted('if (s === "cancel_requested") x("a timeout");', None)] == ['"cancel_requested"']
    assert list(_quoted("WHERE status = 'pending' -- not 'running'", "--")) == [(1, "'pending'")]


def test_the_styled_statuses_are_the_lifecycles():
    # One rule per status in the console's style: none missing, none left over.
    css = (ROOT / "app/static/console.css").read_text(encoding="utf-8")
    styled = set(re.findall(r'\[data-status="([a-z_]+)"\]', css))
    assert styled == NAMES


def test_the_dashboard_names_only_lifecycle_statuses_and_leaves_out_the_final_ones():
    # The dashboard is data Grafana reads as it is, so it spells statuses; they must be the lifecycle's, and
    # its "runs in each status" panel shows every status but the final ones, so a new active one shows itself.
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/tunix.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "tunix_runs" in t["expr"]]
    named = set()
    for expr in exprs:
        for values in re.findall(r'status[!=]~?"([^"]*)"', expr):
            named |= set(values.split("|"))
    assert named and named <= NAMES
    excluded = [re.search(r'status!~"([^"]*)"', e) for e in exprs if "tunix_runs_in_state" in e]
    assert {frozenset(m.group(1).split("|")) for m in excluded if m} == {frozenset(map(str, lifecycle.FINAL))}
