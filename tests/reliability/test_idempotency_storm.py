"""An idempotency storm: every submit sent twice, the two copies racing.

1,000 async submits from 50 client threads: 500 distinct ``Idempotency-Key``
values, each sent twice with the same body, the two copies next to each other
in the queue of work so they usually race on the unique index.  A worker
launch executes the runs as they come.
"""

import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import requests

from support import DRY, connect, start_api
from reliability_support import Stopwatch, census, wait_all_final

KEYS = 500
CLIENTS = 50


def test_500_keys_sent_twice_concurrently_make_500_runs_each_executed_once(databases, data_dir, log_dir,
                                                                           worker_launch, report):
    url = databases.create()
    conn = connect(url)
    api = start_api(url, data_dir, log_dir)
    worker_launch(workers=1, threads=8, url=url)
    local = threading.local()

    def send(key, body):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.post(f"{api.url}/api/tunix/run", params={"mode": "async"}, json=body,
                                headers={"Idempotency-Key": key}, timeout=30)
        return key, response.status_code, response.json()

    try:
        # Given 500 keys, each with a body of its own
        keys = {f"storm-{i:04d}-{url[-6:]}": dict(DRY, seed=i) for i in range(KEYS)}
        # When each is sent twice, 50 clients at once
        since = Stopwatch()
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(lambda kb: send(*kb), [kb for kb in keys.items() for _ in range(2)]))
        storm_s = since()
        # Then each pair got one 202 (the run created) and one 200 (the same run, replayed)
        by_key = defaultdict(list)
        for key, status, body in answers:
            by_key[key].append((status, body))
        assert len(by_key) == KEYS
        statuses = defaultdict(int)
        for key, pair in by_key.items():
            assert sorted(status for status, _ in pair) == [200, 202], (key, pair)
            assert pair[0][1]["run_id"] == pair[1][1]["run_id"], (key, pair)
            assert pair[0][1]["config"]["seed"] == keys[key]["seed"]
            for status, _ in pair:
                statuses[status] += 1
        run_ids = {pair[0][1]["run_id"] for pair in by_key.values()}
        assert len(run_ids) == KEYS
        # And exactly 500 runs exist, each executed once
        c = wait_all_final(conn, timeout=60)
        assert c["rows"] == KEYS and c["by_status"] == {"completed": KEYS} and c["attempts"] == KEYS, c
        with conn.cursor() as cur:
            cur.execute("SELECT id::text FROM tunix_runs")
            assert {r[0] for r in cur.fetchall()} == run_ids
        # And a key sent again with another body is refused, naming the run it made
        key = next(iter(keys))
        _, status, body = send(key, dict(keys[key], seed=10**6))
        assert status == 409 and body["error"]["code"] == "idempotency_conflict", body
        assert body["error"]["run_id"] == by_key[key][0][1]["run_id"]
        # and so is the same body in the other mode
        other_mode = requests.post(f"{api.url}/api/tunix/run", params={"mode": "sync"}, json=keys[key],
                                   headers={"Idempotency-Key": key}, timeout=30)
        assert other_mode.status_code == 409, other_mode.text
        assert census(conn)["rows"] == KEYS
        report(f"idempotency storm: {len(answers)} submits ({KEYS} keys x 2) from {CLIENTS} threads in "
               f"{storm_s:.1f}s: {statuses[202]} x 202 + {statuses[200]} x 200, every pair the same run id; "
               f"{c['rows']} runs, {c['by_status']['completed']} completed, {c['attempts'] - KEYS} duplicated; "
               f"same key + another body (or mode) -> 409")
    finally:
        api.stop()
        conn.close()
