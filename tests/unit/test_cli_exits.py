"""The CLI's exit statuses come from the lifecycle, and the ones scripts
already read stay what they were."""

import pytest

from tasks import lifecycle
from tunix_cli import cli


def test_every_final_status_has_its_own_exit_and_no_other_status_has_one():
    run_exits = {name: code for name, code in cli.EXIT.items() if name in lifecycle.ALL}
    assert set(run_exits) == {s.value for s in lifecycle.FINAL}
    assert len(set(cli.EXIT.values())) == len(cli.EXIT)


def test_the_documented_exits_are_pinned():
    # README and every script that reads them rely on these numbers.
    assert cli.EXIT == {"completed": 0, "failed": 1, "usage": 2, "cancelled": 3, "timeout": 4, "api_error": 5,
                        "unreachable": 6, "still_running": 7, "interrupted": 130}
    assert cli.EXIT_HELP == ("Exit status: 0 completed, 1 failed, 2 usage, 3 cancelled, 4 timeout, "
                             "5 the API refused the request, 6 the API is unreachable, 7 still running "
                             "(wait --timeout), 130 interrupted.")


@pytest.mark.parametrize("status", lifecycle.ALL)
def test_a_run_exits_with_its_final_status_or_still_running(status):
    class Run:
        pass

    run = Run()
    run.status = status
    expected = cli.EXIT[status] if lifecycle.RunStatus(status) in lifecycle.FINAL else cli.EXIT["still_running"]
    assert cli._exit_for(run) == expected
