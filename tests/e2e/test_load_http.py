"""A team's load on one API: concurrent submits on a small pool never stall,
overload is answered 503 at once, and a run costs one NOTIFY.

Each test module here has a database of its own, an API under gunicorn with
the pool it names and a worker launch of 2 processes."""

import collections
import select
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tasks import artifacts
from tasks.artifacts import ArtifactStore
from support import DRY, ApiClient, connect, scalar, start_api, wait_for

CLIENTS = 64
PER_CLIENT = 20


@pytest.fixture(scope="module")
def storm_db(databases):
    return databases.create()


@pytest.fixture(scope="module")
def storm_workers(worker_launch, storm_db):
    return worker_launch(workers=2, threads=8, url=storm_db)


@pytest.fixture(scope="module")
def storm_api(storm_db, data_dir, log_dir, storm_workers):
    # 4 connections for 96 threads (72 may wait: 64 sync submits at once fit):
    # before, 16 requests holding a connection while asking the same pool for
    # a second one deadlocked a pool of 16.
    process = start_api(storm_db, data_dir, log_dir, threads=96, DB_POOL_MAX=4, SYNC_TIMEOUT_S=60)
    yield process
    process.stop()


def storm(base, clients, per_client, sync_every=0):
    """Each client submits ``per_client`` dry runs, one after another (every
    ``sync_every``-th one sync); returns ``[(mode, status, seconds, body)]``
    (a 503's body carries its ``Retry-After`` header as ``retry_after``)."""
    barrier = threading.Barrier(clients)

    def client(c):
        out = []
        with requests.Session() as http:
            barrier.wait()
            for i in range(per_client):
                mode = "sync" if sync_every and i % sync_every == sync_every - 1 else "async"
                t = time.monotonic()
                r = http.post(f"{base}/api/tunix/run", params={"mode": mode}, json=dict(DRY, seed=c * 1000 + i),
                              timeout=120)
                body = r.json()
                if r.status_code == 503:
                    body["retry_after"] = r.headers.get("Retry-After")
                out.append((mode, r.status_code, time.monotonic() - t, body))
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [answer for answers in pool.map(client, range(clients)) for answer in answers]


def assert_each_completed_exactly_once(conn, ids, data_dir):
    wait_for(lambda: scalar(conn, "SELECT count(*) FROM tunix_runs WHERE id = ANY(%s::uuid[]) "
                                  "AND status = 'completed'", (ids,)) == len(ids),
             timeout=180, interval=0.25, message=f"{len(ids)} runs completed")
    with conn.cursor() as cur:
        cur.execute("SELECT id::text, status, attempts, result FROM tunix_runs WHERE id = ANY(%s::uuid[])", (ids,))
        rows = cur.fetchall()
    assert len(rows) == len(ids)
    assert {status for _, status, _, _ in rows} == {"completed"}
    # Claimed once each, and one message each, done
    assert {attempts for _, _, attempts, _ in rows} == {1}
    assert scalar(conn, "SELECT count(*) FROM dramatiq.queue WHERE message_id = ANY(%s::uuid[]) AND state = 'done'",
                  (ids,)) == len(ids)
    # And the actor recorded exactly one execution of each: its manifest, for that run
    for run_id, _, _, result in rows:
        store = ArtifactStore(f"file://{data_dir}/artifacts")  # the default ARTIFACTS_URL
        assert result["manifest"] == store.uri(artifacts.manifest_key(run_id))
        assert store.get_json(artifacts.manifest_key(run_id))["run_id"] == run_id


def test_64_clients_on_a_pool_of_4_are_all_accepted_promptly_and_each_run_executes_once(
        storm_api, storm_db, data_dir):
    # When 64 clients each submit 20 async dry runs as fast as they are answered
    answers = storm(storm_api.url, CLIENTS, PER_CLIENT)
    # Then every answer is 202, within a few seconds
    codes = collections.Counter(status for _, status, _, _ in answers)
    assert codes == {202: CLIENTS * PER_CLIENT}, codes
    slowest = max(seconds for _, _, seconds, _ in answers)
    assert slowest < 5, f"slowest submit took {slowest:.1f}s"
    # And every run completes, executed exactly once
    ids = [body["run_id"] for _, _, _, body in answers]
    assert len(set(ids)) == len(ids)
    conn = connect(storm_db)
    try:
        assert_each_completed_exactly_once(conn, ids, data_dir)
        # And the API's pool never timed out
        assert "tunix_db_pool_timeouts_total 0.0" in requests.get(storm_api.url + "/metrics", timeout=10).text
    finally:
        conn.close()


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_the_same_storm_with_sync_submits_mixed_in_answers_each_sync_submit_completed(storm_api, storm_db, data_dir):
    # When 64 clients submit 20 dry runs each, every fourth one sync
    answers = storm(storm_api.url, CLIENTS, PER_CLIENT, sync_every=4)
    # Then every async one is 202 and every sync one 200 completed
    sync = [(status, body["status"]) for mode, status, _, body in answers if mode == "sync"]
    assert len(sync) == CLIENTS * PER_CLIENT // 4
    assert set(sync) == {(200, "completed")}, collections.Counter(sync)
    assert {status for mode, status, _, _ in answers if mode == "async"} == {202}
    conn = connect(storm_db)
    try:
        assert_each_completed_exactly_once(conn, [body["run_id"] for _, _, _, body in answers], data_dir)
    finally:
        conn.close()


# ---------------------------------------------------------------- a pool of one


def own_stack(databases, data_dir, log_dir, worker_launch, **api_env):
    """A database of its own, a worker launch of 1 process and an API with
    ``api_env``; returns (database url, API process)."""
    url = databases.create()
    worker_launch(workers=1, threads=4, url=url)
    return url, start_api(url, data_dir, log_dir, **api_env)


def fake_running_run(conn):
    """A run that stays running (its heartbeat is in the future, so no reaper
    recovers it) and has no message: a log stream on it stays open."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tunix_runs (id, mode, dry_run, dataset_key, model_id, config, status, attempts, "
                    "started_at, heartbeat_at, worker_id) VALUES (gen_random_uuid(), 'async', false, 'synthetic', "
                    "'llama3-tiny', '{}', 'running', 1, now(), now() + interval '1 hour', 'test:1') RETURNING id::text")
        run_id = cur.fetchone()[0]
    conn.commit()
    return run_id


def test_a_pool_of_one_connection_serves_submits_sync_submits_reads_and_an_open_log_stream(
        databases, data_dir, log_dir, worker_launch):
    url, process = own_stack(databases, data_dir, log_dir, worker_launch, threads=16, DB_POOL_MAX=1,
                             SYNC_TIMEOUT_S=30)
    conn = connect(url)
    try:
        api = ApiClient(process.url)
        # Given a log stream open on a running run (it waits, holding no connection)
        watched = fake_running_run(conn)
        stream = requests.get(api.url(f"/api/tunix/runs/{watched}/logs"), stream=True, timeout=30)
        assert stream.status_code == 200
        # When submits, a sync submit, status and list requests come meanwhile, 4 at a time
        def one(i):
            kind = ("async", "sync", "status", "list")[i % 4]
            if kind in ("async", "sync"):
                r = api.submit(dict(DRY, seed=i), mode=kind)
                return kind, r.status_code, r.json().get("status")
            if kind == "status":
                r = api.get(f"/api/tunix/runs/{watched}/status")
                return kind, r.status_code, r.json().get("status")
            r = api.get("/api/tunix/runs", limit=5)
            return kind, r.status_code, None

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(one, range(40)))
        # Then each is served: 202, 200 completed, 200 running, 200
        assert {a for a in answers if a[0] == "async"} == {("async", 202, "pending")}
        assert {a for a in answers if a[0] == "sync"} == {("sync", 200, "completed")}
        assert {a for a in answers if a[0] == "status"} == {("status", 200, "running")}
        assert {a for a in answers if a[0] == "list"} == {("list", 200, None)}
        # And the stream, still open, delivers what the run then writes, and its end
        with conn.cursor() as cur:
            cur.execute("INSERT INTO tunix_run_logs (run_id, seq, stream, line) VALUES (%s, 1, 'stdout', 'hello')",
                        (watched,))
            cur.execute("UPDATE tunix_runs SET status = 'completed', completed_at = now(), updated_at = now() "
                        "WHERE id = %s", (watched,))
        conn.commit()
        text = b"".join(stream.iter_content(None)).decode()
        assert '"line": "hello"' in text
        assert "event: status" in text and '"status": "completed"' in text
    finally:
        conn.close()
        process.stop()


# ---------------------------------------------------------------- overload


def test_more_requests_than_the_pool_serves_get_503_with_retry_after_and_nothing_half_written(
        databases, data_dir, log_dir, worker_launch):
    # Given an API with one connection, 8 threads and a short pool wait
    url, process = own_stack(databases, data_dir, log_dir, worker_launch, threads=8, DB_POOL_MAX=1,
                             DB_POOL_WAIT_S=0.3)
    holder = connect(url)
    holder.autocommit = False
    observer = connect(url)
    try:
        # And a connection that holds it: inserts into the registry wait for
        # this lock, so the one request that got the connection keeps it
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE tunix_runs IN SHARE ROW EXCLUSIVE MODE")
        released = threading.Timer(3.0, holder.commit)
        released.start()
        # When 32 clients submit at once (more than the pool and the threads allow)
        started = time.monotonic()
        answers = storm(process.url, 32, 1)
        elapsed = time.monotonic() - started
        released.join()
        codes = collections.Counter(status for _, status, _, _ in answers)
        # Then the ones that found no connection in time are answered 503, JSON, with Retry-After ...
        busy = [(seconds, body) for _, status, seconds, body in answers if status == 503]
        assert busy and codes[503] + codes[202] == 32, codes
        assert {(body["error"]["code"], body["retry_after"]) for _, body in busy} == {("overloaded", "1")}
        # ... promptly: none of them waited for the lock (3 s) nor hung
        assert max(seconds for seconds, _ in busy) < 2.5, busy
        assert elapsed < 30
        r = requests.post(process.url + "/api/tunix/run?mode=async", json=DRY, timeout=10)
        assert r.status_code == 202
        # ... and what they asked for was not written: one run per 202, no more
        accepted = [body["run_id"] for _, status, _, body in answers if status == 202] + [r.json()["run_id"]]
        assert scalar(observer, "SELECT count(*) FROM tunix_runs") == len(accepted)
        assert scalar(observer, "SELECT count(*) FROM dramatiq.queue") == len(accepted)
        # And nothing stays pending: every accepted run completes
        wait_for(lambda: scalar(observer, "SELECT count(*) FROM tunix_runs WHERE status = 'completed'")
                 == len(accepted), timeout=60, message="accepted runs completed")
    finally:
        holder.close()
        observer.close()
        process.stop()


# ---------------------------------------------------------------- NOTIFY budget

#: Every channel the platform's commits could notify: dramatiq-pg's enqueue
#: and ack channels and the two the registry used to have.
CHANNELS = ("dramatiq.tunix-dry.enqueue", "dramatiq.tunix-train.enqueue", "dramatiq.tunix-dry.ack",
            "dramatiq.tunix-train.ack", "tunix_run_status", "tunix_run_activity")


def test_a_dry_run_costs_one_notify_its_enqueue(storm_api, storm_db):
    # Given a session listening on every channel a run's commits could notify
    listener = connect(storm_db)
    listener.autocommit = True
    for channel in CHANNELS:
        listener.cursor().execute(f'LISTEN "{channel}"')
    conn = connect(storm_db)
    try:
        # When 10 async and 10 sync dry runs go through the whole system
        api = ApiClient(storm_api.url)
        ids = [api.submit(dict(DRY, seed=i), mode=("async", "sync")[i % 2]).json()["run_id"] for i in range(20)]
        wait_for(lambda: scalar(conn, "SELECT count(*) FROM tunix_runs WHERE id = ANY(%s::uuid[]) "
                                      "AND status = 'completed'", (ids,)) == 20, timeout=60, message="completed")
        heard = collections.Counter()
        while select.select([listener], [], [], 0.5)[0]:  # one poll() reads one socket read
            listener.poll()
            heard.update(n.channel for n in listener.notifies)
            listener.notifies.clear()
        # Then each cost exactly one NOTIFY, its enqueue (claims, finishes and acks cost none)
        assert heard == {"dramatiq.tunix-dry.enqueue": 20}, heard
    finally:
        listener.close()
        conn.close()


# ---------------------------------------------------------------- threads


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_waiting_requests_never_take_the_threads_other_requests_need(databases, data_dir, log_dir):
    url = databases.create()  # no worker: its runs stay pending
    # Given an API of 8 threads (2 kept for requests that do not wait)
    process = start_api(url, data_dir, log_dir, threads=8, SYNC_TIMEOUT_S=8)
    conn = connect(url)
    try:
        api = ApiClient(process.url)
        # And 6 sync submits waiting for runs nobody executes
        with ThreadPoolExecutor(6) as pool:
            waiting = [pool.submit(lambda i: requests.post(api.url("/api/tunix/run?mode=sync"),
                                                           json=dict(DRY, seed=i), timeout=60), i)
                       for i in range(6)]
            wait_for(lambda: scalar(conn, "SELECT count(*) FROM tunix_runs") == 6, timeout=10,
                     message="6 sync submits waiting")
            # When one more sync submit comes
            started = time.monotonic()
            r = requests.post(api.url("/api/tunix/run?mode=sync"), json=DRY, timeout=10)
            # Then it is accepted and answered at once, as after SYNC_TIMEOUT_S: 202 with the pending run
            assert r.status_code == 202 and r.json()["status"] == "pending" and r.headers["Location"]
            assert time.monotonic() - started < 3
            # And a log stream is refused (503, retry), never left hanging
            s = requests.get(api.url(f"/api/tunix/runs/{r.json()['run_id']}/logs"), timeout=10)
            assert s.status_code == 503 and s.headers["Retry-After"]
            assert s.json()["error"]["code"] == "too_many_streams"
            # And reads and async submits are served promptly meanwhile
            started = time.monotonic()
            assert api.get("/api/tunix/runs", limit=3).status_code == 200
            assert api.get(f"/api/tunix/runs/{r.json()['run_id']}/status").status_code == 200
            assert api.submit(DRY, mode="async").status_code == 202
            assert time.monotonic() - started < 3
            # And the waiting ones answer 202 once their SYNC_TIMEOUT_S is up
            assert [f.result().status_code for f in waiting] == [202] * 6
        # And once they are done, a sync submit waits again (its run stays pending: 202 after the timeout)
        started = time.monotonic()
        assert requests.post(api.url("/api/tunix/run?mode=sync"), json=DRY, timeout=30).status_code == 202
        assert time.monotonic() - started >= 7
    finally:
        conn.close()
        process.stop()
