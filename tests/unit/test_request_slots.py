"""``app.request_slots.FairSlots``: waiters are served in order of arrival."""

import threading
import time

from app.request_slots import FairSlots


def test_a_freed_slot_goes_to_the_longest_waiter_not_to_a_newcomer():
    # Given one slot, taken, and three threads queued for it one after another
    slots = FairSlots(1)
    assert slots.acquire(timeout=1)
    served, threads = [], []
    for i in range(3):
        def wait(i=i):
            assert slots.acquire(timeout=10)
            served.append(i)
            time.sleep(0.01)
            slots.release()
        t = threading.Thread(target=wait)
        t.start()
        threads.append(t)
        time.sleep(0.05)  # queued in this order
    # When the slot is freed while a newcomer asks too
    slots.release()
    newcomer = slots.acquire(timeout=0)
    for t in threads:
        t.join(10)
    # Then the newcomer did not barge in, and the waiters went in order
    assert newcomer is False
    assert served == [0, 1, 2]


def test_a_waiter_gives_up_after_its_timeout_and_leaves_the_queue():
    slots = FairSlots(1)
    assert slots.acquire(timeout=1)
    started = time.monotonic()
    assert slots.acquire(timeout=0.1) is False
    assert 0.08 < time.monotonic() - started < 2
    # Its place is gone: the freed slot is free again, not handed to nobody
    slots.release()
    assert slots.acquire(timeout=0) is True


def test_free_slots_are_taken_at_once():
    slots = FairSlots(2)
    assert slots.acquire(timeout=0) and slots.acquire(timeout=0)
    assert slots.acquire(timeout=0) is False
