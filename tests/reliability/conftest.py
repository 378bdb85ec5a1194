"""The reliability tier: real processes killed, restarted and fed garbage.

Each test says what it tried and what it found in one or more lines
(``report(...)``); the lines are printed again at the end of the session,
under "reliability figures", so ``make test`` shows them.
"""

import os
import shutil
import tempfile

import pytest

from tasks.migrate import migrate
from workers.pgembed import EmbeddedPostgres

_FIGURES = pytest.StashKey[list]()


def _figures(config):
    return config.stash.setdefault(_FIGURES, [])


@pytest.fixture
def report(request):
    """``report(line)``: record one line of figures for the final summary."""

    def say(line):
        _figures(request.config).append((request.node.name, line))
        print(line)

    return say


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures = _figures(config)
    if not figures:
        return
    terminalreporter.section("reliability figures")
    for name, line in figures:
        terminalreporter.write_line(f"{name}: {line}")


@pytest.fixture
def own_pg():
    """``(server, url)``: an embedded PostgreSQL of the test's own, migrated,
    in a temporary folder (even when ``DATABASE_URL`` is set): the test stops
    it, or makes it read-only."""
    root = tempfile.mkdtemp(prefix="tunix-rel-pg-")
    server = EmbeddedPostgres(os.path.join(root, "pg"))
    url = server.start()
    migrate(url)
    yield server, url
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
