"""The fleet page (``/fleet``) in Chromium, against a fleet of its own: a
database, an API and two worker launches (one process and one training
slot each) with ``HEARTBEAT_TIMEOUT_S=4``.  Each launch holds a training,
frozen by the test once claimed (``support.freeze_training``); one launch is
then killed outright and the page must show its process lost in time."""

import contextlib
import os
import re
import signal
import time

import pytest

from support import ApiClient, Launch, freeze_training, kill_pids, start_api, wait_for

pytestmark = pytest.mark.browser

HEARTBEAT_TIMEOUT_S = 4
FLEET_ENV = dict(HEARTBEAT_TIMEOUT_S=HEARTBEAT_TIMEOUT_S, REAPER_INTERVAL_S=1, TRAIN_CONCURRENCY=1)
LONG_TRAINING = {"dataset_key": "synthetic", "model_id": "llama3-tiny", "dry_run": False, "max_steps": 100000,
                 "batch_size": 4, "max_seq_length": 32, "device": "cpu"}


@pytest.fixture
def fleet(databases, tmp_path):
    url = databases.create()
    data_dir, log_dir = tmp_path / "data", tmp_path / "logs"
    data_dir.mkdir()
    log_dir.mkdir()
    api = start_api(url, data_dir, str(log_dir), HEARTBEAT_TIMEOUT_S=HEARTBEAT_TIMEOUT_S)
    launches, frozen = [], []
    try:
        for _ in range(2):
            launches.append(Launch(url, data_dir, str(log_dir), workers=1, threads=2, **FLEET_ENV))
        yield ApiClient(api.url), launches, frozen
    finally:
        kill_pids(frozen)
        for launch in launches:
            launch.stop()
        api.stop()


def test_the_fleet_page_shows_both_workers_with_their_runs_then_one_lost(chromium, fleet):
    from playwright.sync_api import expect  # (a machine without playwright skips this module)

    client, launches, frozen = fleet
    # Given two worker launches, each holding a (frozen) training
    held = {}
    for _ in range(2):
        run_id = client.submit(dict(LONG_TRAINING)).json()["run_id"]
        run = wait_for(lambda: (lambda r: r if r["status"] == "running" else None)(client.run(run_id)), 30,
                       message=f"run {run_id} running")
        frozen.extend(freeze_training(run_id))
        held[run["worker_id"]] = run_id
    assert len(held) == 2
    queued = client.submit(dict(LONG_TRAINING)).json()["run_id"]  # no slot free: it waits

    context = chromium.new_context(base_url=client.base, viewport={"width": 1400, "height": 900})
    errors = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # When the console's Fleet link is followed
        page.goto("/")
        page.get_by_role("link", name="Fleet").click()
        expect(page).to_have_url(re.compile(r"/fleet$"))
        expect(page.get_by_role("heading", name="Fleet", level=1)).to_be_visible()
        expect(page.get_by_role("link", name="Fleet")).to_have_attribute("aria-current", "page")
        # Then both processes are shown alive, each with the run it holds, linking to its page
        rows = page.locator('[data-testid="worker-row"]')
        expect(rows).to_have_count(2)
        for worker_id, run_id in held.items():
            row = page.locator(f'[data-testid="worker-row"][data-worker-id="{worker_id}"]')
            expect(row).to_have_attribute("data-state", "alive")
            expect(row.get_by_test_id("worker-state")).to_have_text("alive")
            link = row.locator(f'[data-testid="held-run"][data-run-id="{run_id}"] a.run-link')
            expect(link).to_have_attribute("href", f"/runs/{run_id}")
            expect(row.get_by_test_id("status-badge")).to_have_attribute("data-status", "running")
        # and the heartbeat ages count live
        age = page.locator('[data-testid="heartbeat-age"]').first
        expect(age).not_to_have_text("—")
        # and the train queue shows its backlog of one, two in flight
        train = page.locator('[data-testid="queue-row"][data-kind="train"]')
        expect(train.get_by_test_id("queue-depth")).to_have_text("1")
        expect(train.get_by_test_id("queue-in-flight")).to_have_text("2")
        expect(train.get_by_test_id("queue-oldest")).not_to_have_text("—")
        expect(page.get_by_test_id("heartbeat-timeout")).to_contain_text(f"{HEARTBEAT_TIMEOUT_S}")

        # When one launch is killed outright
        victim = launches[0]
        victim_id = next(w for w in held if _pgid(int(w.rsplit(":", 1)[1])) == victim.pid)
        os.killpg(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # Then the page shows its process lost within HEARTBEAT_TIMEOUT_S (no reload), the other alive
        victim_row = page.locator(f'[data-testid="worker-row"][data-worker-id="{victim_id}"]')
        expect(victim_row).to_have_attribute("data-state", "lost", timeout=(HEARTBEAT_TIMEOUT_S + 5) * 1000)
        took = time.monotonic() - killed_at
        assert took <= HEARTBEAT_TIMEOUT_S + 1.0, f"shown lost {took:.1f}s after the kill"
        expect(victim_row.get_by_test_id("worker-state")).to_have_text("lost")
        survivor_id = next(w for w in held if w != victim_id)
        expect(page.locator(f'[data-testid="worker-row"][data-worker-id="{survivor_id}"]')).to_have_attribute(
            "data-state", "alive")
        expect(page.get_by_test_id("total-lost")).to_have_text("1")
        print(f"fleet page: killed worker shown lost {took:.2f}s after SIGKILL "
              f"(HEARTBEAT_TIMEOUT_S={HEARTBEAT_TIMEOUT_S})")
        # And a held run's link opens its run page
        page.locator(f'[data-testid="worker-row"][data-worker-id="{survivor_id}"] a.run-link').click()
        expect(page).to_have_url(re.compile(f"/runs/{held[survivor_id]}$"))
    finally:
        context.close()
    assert not errors, errors
    assert queued


def _pgid(pid):
    with contextlib.suppress(ProcessLookupError):
        return os.getpgid(pid)
    return None
