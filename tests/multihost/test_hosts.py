"""The multi-host harness itself: three hosts in network namespaces, the API on
one, a worker launch on each of the two others, PostgreSQL and S3 only over
the links; a partition of one worker host and its recovery."""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import requests

from hosts import TIMINGS, Hosts, _ip, _link_names, _netns_names, launch_on, start_api_on
from support import DRY, ROOT, ApiClient, alive, wait_for

#: Short, so a cut host is seen lost within seconds (the API and the reapers use it too).
HEARTBEAT_TIMEOUT_S = 3


def _fleet_hosts(api):
    response = api.get("/api/tunix/workers")
    assert response.status_code == 200, response.text
    return {h["hostname"]: h for h in response.json()["hosts"]}


def _alive(api, hostname):
    host = _fleet_hosts(api).get(hostname)
    return bool(host) and any(w["state"] == "alive" for w in host["workers"])


def _all_lost(api, hostname):
    host = _fleet_hosts(api).get(hostname)
    return bool(host) and all(w["state"] == "lost" for w in host["workers"])


def test_hosts_see_only_their_network(netlab, hosts):
    api, worker = hosts("probe-a", "probe-b")
    out = api.run(["ip", "-o", "-4", "addr"]).stdout
    assert f"{api.address}/24" in out and f"{netlab.gateway}/" not in out
    reach = textwrap.dedent("""
        import socket, sys
        try:
            socket.create_connection((sys.argv[1], 9), timeout=1)
        except OSError as exc:
            print(type(exc).__name__)
    """)
    # A neighbour answers (refused: nothing listens); the outside world is unreachable.
    assert worker.run(["python3", "-c", reach, api.address]).stdout.strip() == "ConnectionRefusedError"
    assert worker.run(["python3", "-c", reach, "192.0.2.1"]).stdout.strip() == "OSError"
    netlab.cut("probe-a")
    assert netlab.is_cut("probe-a")
    assert worker.run(["python3", "-c", reach, api.address]).stdout.strip() == "TimeoutError"
    netlab.restore("probe-a")
    assert worker.run(["python3", "-c", reach, api.address]).stdout.strip() == "ConnectionRefusedError"


def test_fleet_across_hosts(netlab, hosts, net_database_url, s3, net_log_dir):
    started = time.monotonic()
    api_host, host_a, host_b = hosts("api", "worker-a", "worker-b")
    TIMINGS["hosts_s"] = time.monotonic() - started

    env = dict(HEARTBEAT_TIMEOUT_S=HEARTBEAT_TIMEOUT_S, REAPER_INTERVAL_S=1, **s3.env)
    started = time.monotonic()
    launches, errors = {}, []

    def launch(host):
        try:
            launches[host.name] = launch_on(host, net_database_url, net_log_dir, workers=1, threads=2, **env)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=launch, args=(h,)) for h in (host_a, host_b)]
    for t in threads:
        t.start()
    api_process = start_api_on(api_host, net_database_url, net_log_dir, threads=8, **env)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    TIMINGS["services_s"] = time.monotonic() - started

    # The test process (root namespace) reaches the API over the bridge.
    api = ApiClient(api_process.url)
    assert requests.get(launches["worker-a"].metrics_url, timeout=5).status_code == 200

    response = api.submit(dict(DRY))
    assert response.status_code == 202, response.text
    run = api.wait_final(response.json()["run_id"], timeout=30)
    assert run["status"] == "completed", run
    assert run["worker_id"].split(":")[0] in ("worker-a", "worker-b"), run["worker_id"]

    wait_for(lambda: _alive(api, "worker-a") and _alive(api, "worker-b"), 20, interval=0.2,
             message="both worker hosts alive in the fleet view")

    # A partition: worker-a stops heartbeating, worker-b keeps on.
    cut_at = time.monotonic()
    netlab.cut("worker-a")
    try:
        wait_for(lambda: _all_lost(api, "worker-a"), 20, interval=0.2, message="worker-a lost")
        TIMINGS["cut_to_lost_s"] = time.monotonic() - cut_at
        assert _alive(api, "worker-b")
        # The fleet still works: worker-b completes a run while worker-a is cut off.
        run = api.wait_final(api.submit(dict(DRY)).json()["run_id"], timeout=30)
        assert run["status"] == "completed" and run["worker_id"].startswith("worker-b:"), run
    finally:
        netlab.restore("worker-a")
    restored_at = time.monotonic()
    wait_for(lambda: _alive(api, "worker-a"), 40, interval=0.2, message="worker-a alive again")
    TIMINGS["restore_to_alive_s"] = time.monotonic() - restored_at
    print("\nmultihost timings:", json.dumps({k: round(v, 2) for k, v in TIMINGS.items()}))


def test_s3_round_trip_from_a_host(hosts, s3, net_log_dir):
    host = hosts("store-client")
    code = textwrap.dedent("""
        import s3fs, sys
        fs = s3fs.S3FileSystem(config_kwargs={"connect_timeout": 2, "retries": {"max_attempts": 2}})
        path = sys.argv[1]
        fs.pipe(path, b"from a namespace")
        print(fs.cat(path).decode())
    """)
    env = host.env("postgresql://unused@/", **s3.env)
    out = host.run([sys.executable, "-c", code, f"{s3.bucket}/from-host/{host.name}.txt"], env=env)
    assert out.stdout.strip() == "from a namespace", out.stderr
    assert s3.fs().cat(f"{s3.bucket}/from-host/{host.name}.txt") == b"from a namespace"


def test_leftovers_of_a_crashed_session_are_removed(netlab):
    """A session SIGKILLed with a host and a process in it: the next ``Hosts`` on its slot
    kills the process and deletes the namespace, veth and bridge before using the slot."""
    code = textwrap.dedent("""
        import subprocess, sys, time
        import hosts
        net = hosts.Hosts()
        host = net.add("crashed")
        subprocess.Popen(host.command(["sleep", "300"]), start_new_session=True)
        print(net.slot, host.netns, host.veth, net.bridge, flush=True)
        time.sleep(300)
    """)
    crashed = subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT / "tests"), stdout=subprocess.PIPE,
                               text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"),
                                                                                            str(ROOT)])))
    try:
        slot, netns, veth, bridge = crashed.stdout.readline().split()
        assert int(slot) != netlab.slot  # the session's slot is held: the crashed one took another
        sleeper = wait_for(lambda: _ip("netns", "pids", netns).stdout.split(), 10, message="the sleeper")
    finally:
        crashed.kill()
        crashed.wait()
    assert netns in _netns_names() and {veth, bridge} <= set(_link_names())
    assert list(pathlib.Path(tempfile.gettempdir()).glob(f"tunix-net{slot}-*"))
    started = time.monotonic()
    again = Hosts(slot=int(slot))
    try:
        TIMINGS["leftover_cleanup_s"] = time.monotonic() - started
        assert netns not in _netns_names() and veth not in _link_names()
        assert not any(alive(int(pid)) for pid in sleeper)
        assert [p.name for p in pathlib.Path(tempfile.gettempdir()).glob(f"tunix-net{slot}-*")] == [again.root.name]
    finally:
        again.teardown()
    assert bridge not in _link_names()
