"""One worker launch as a process tree: started, serving metrics, stopped whole."""

import pathlib

from support import metric, wait_for


def process_group(pgid):
    """Pids of the live processes in process group ``pgid``."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after ')'
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def test_a_launch_runs_its_worker_processes_and_sigterm_stops_every_one(databases, worker_launch):
    # Given a launch of two worker processes on a database of its own
    launch = worker_launch(workers=2, threads=2, url=databases.create())
    # Then its process group holds the launcher, dramatiq's main process and two workers
    wait_for(lambda: len(process_group(launch.pid)) >= 4, timeout=30, message="4 processes in the launch")
    # And its metrics page answers in the Prometheus format
    samples = launch.metrics()
    assert metric(samples, "tunix_runs_total") == 0
    # When it is told to stop (SIGTERM to the launcher, as a supervisor does)
    code = launch.stop()
    # Then it exits cleanly and no process of the group is left
    assert code == 0, launch.log()
    assert process_group(launch.pid) == []
    assert "Killing worker process" not in launch.log()  # a graceful stop, not the hard kill

