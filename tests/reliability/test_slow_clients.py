"""Clients that trickle their bodies do not block the API (gunicorn, as
deployed, with 2 API slots).

Before: a request took its ``API_ACTIVE`` slot before its body was read, so
as many slow clients as slots stopped every other request (each waited
``DB_POOL_WAIT_S`` and got 503).  Now the body is read first, within
``BODY_READ_TIMEOUT_S``: the slow ones hold a thread each, no slot, and get
408 at their deadline; everyone else is served meanwhile.
"""

import json
import socket
import threading
import time

import requests

from support import DRY, start_api

SLOTS = 2
SLOW_CLIENTS = 6
DEADLINE_S = 3


def trickle(host, port, answers, stop):
    """A submit whose body arrives a byte every 0.3 s (it would take 30 s)."""
    body = json.dumps(DRY).encode()
    sock = socket.create_connection((host, port), timeout=30)
    try:
        head = (f"POST /api/tunix/run?mode=async HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body) + 100}\r\n\r\n").encode()
        sock.sendall(head)
        started = time.monotonic()
        sock.settimeout(0.3)
        received = b""
        for i in range(100):
            try:
                sock.sendall(body[i:i + 1] or b" ")
            except OSError:
                break
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            received += chunk
            if b"\r\n\r\n" in received:
                break
        sock.settimeout(5)
        while b"}" not in received.split(b"\r\n\r\n", 1)[-1]:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        answers.append((time.monotonic() - started, received.decode(errors="replace")))
    finally:
        sock.close()


def test_slow_bodies_hold_no_slot_and_end_408_at_their_deadline(database_url, data_dir, log_dir, report):
    api = start_api(database_url, data_dir, log_dir, threads=16, API_ACTIVE=SLOTS, DB_POOL_WAIT_S=2,
                    BODY_READ_TIMEOUT_S=DEADLINE_S)
    host, port = api.url.split("//")[1].split(":")
    answers, stop = [], threading.Event()
    try:
        # Given more slow clients than API slots, trickling their bodies
        threads = [threading.Thread(target=trickle, args=(host, int(port), answers, stop)) for _ in range(SLOW_CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(0.8)
        # When others use the API meanwhile
        served = []
        for _ in range(10):
            t0 = time.monotonic()
            listing = requests.get(f"{api.url}/api/tunix/runs", params={"limit": 1}, timeout=10)
            submit = requests.post(f"{api.url}/api/tunix/run", params={"mode": "async"}, json=DRY, timeout=10)
            served.append((listing.status_code, submit.status_code, time.monotonic() - t0))
            time.sleep(0.1)
        # Then they are served at once: no slot is held by a slow body
        assert all(codes[:2] == (200, 202) for codes in served), served
        slowest = max(s for *_, s in served)
        assert slowest < 1.5, served
        # And each slow client gets a 408 JSON error at its deadline, not later
        for t in threads:
            t.join(timeout=DEADLINE_S + 20)
        assert len(answers) == SLOW_CLIENTS, answers
        for seconds, text in answers:
            assert text.startswith("HTTP/1.1 408"), text[:300]
            assert json.loads(text.split("\r\n\r\n", 1)[1])["error"]["code"] == "body_timeout"
            assert DEADLINE_S - 0.5 < seconds < DEADLINE_S + 3, seconds
        report(f"{SLOW_CLIENTS} clients trickling bodies on {SLOTS} API slots: {len(served)} listing+submit pairs "
               f"served meanwhile (slowest pair {slowest:.2f}s); the slow ones got 408 after "
               f"{min(s for s, _ in answers):.1f}-{max(s for s, _ in answers):.1f}s (deadline {DEADLINE_S}s)")
    finally:
        stop.set()
        api.stop()
