"""The API killed (SIGKILL, its whole process group) in the middle of a burst
of submits, then restarted: no run lost, none run twice.

A run whose row was committed but whose message was never published (the
kill landed between the two) is published again by the reaper once it is
``ORPHAN_AGE_S`` old; a client that got no answer may not know its run id,
but the run still executes exactly once.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from support import DRY, connect, metric, start_api
from reliability_support import Stopwatch, census, ids_in_registry, kill_group, wait_all_final

SUBMITS = 300
CLIENTS = 10
#: Answers received before the kill.
KILL_AFTER = 100


def test_api_sigkilled_mid_burst_every_run_ends_once(databases, data_dir, log_dir, worker_launch, report):
    url = databases.create()
    conn = connect(url)
    # Given a worker launch whose reaper republishes lost messages after 2 s
    launch = worker_launch(workers=1, threads=4, url=url, ORPHAN_AGE_S=2, REAPER_INTERVAL_S=1)
    api = start_api(url, data_dir, log_dir)
    accepted, outcomes = [], {"202": 0, "other": 0, "error": 0}
    lock = threading.Lock()
    answered = threading.Semaphore(0)
    local = threading.local()

    def submit(i):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        try:
            response = session.post(f"{api.url}/api/tunix/run", params={"mode": "async"}, json=dict(DRY, seed=i),
                                    timeout=10)
        except requests.RequestException:
            with lock:
                outcomes["error"] += 1
            return
        finally:
            answered.release()
        with lock:
            if response.status_code == 202:
                outcomes["202"] += 1
                accepted.append(response.json()["run_id"])
            else:
                outcomes["other"] += 1

    # When 10 clients submit 300 runs and the API is killed after 100 answers
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(submit, i) for i in range(SUBMITS)]
        for _ in range(KILL_AFTER):
            assert answered.acquire(timeout=30)
        kill_group(api.pid)
        for future in futures:
            future.result()
    api.stop()
    rows_at_kill = census(conn)["rows"]
    # And the API is started again
    since_restart = Stopwatch()
    api = start_api(url, data_dir, log_dir)
    restart_s = since_restart()
    try:
        # Then every run in the registry ends completed, each executed once
        c = wait_all_final(conn, timeout=60)
        assert c["by_status"] == {"completed": c["rows"]}, c
        assert c["attempts"] == c["rows"], c
        assert c["rows"] == rows_at_kill
        # And every run a client was told about exists
        assert outcomes["other"] == 0, outcomes
        assert ids_in_registry(conn, accepted) == len(accepted) == outcomes["202"]
        # and reads well through the restarted API
        assert requests.get(f"{api.url}/api/tunix/runs/{accepted[-1]}", timeout=10).json()["status"] == "completed"
        republished = metric(launch.metrics(), "tunix_runs_recovered_total", outcome="republished")
        report(f"API SIGKILL after {KILL_AFTER} of {SUBMITS} submits ({CLIENTS} clients): "
               f"{outcomes['202']} answered 202, {outcomes['error']} got none (in flight or refused); "
               f"{c['rows']} runs committed ({c['rows'] - outcomes['202']} without an answer), "
               f"{c['by_status'].get('completed', 0)} completed, "
               f"{c['attempts'] - c['rows']} duplicated, {len(accepted) - ids_in_registry(conn, accepted)} lost; "
               f"{int(republished)} republished by the reaper; API back in {restart_s:.1f}s")
    finally:
        api.stop()
        conn.close()
