"""dramatiq-pg with this project's fixes, on real PostgreSQL.

Each test uses a queue of its own, so no other consumer ever sees its messages.
"""

import time
import uuid

import dramatiq
import pytest
from dramatiq_pg.broker import PostgresConsumer

from tasks import db
from tasks.broker import TunixBroker, TunixConsumer
from tasks.settings import Settings

from support import connect, free_port, scalar


@pytest.fixture
def queue():
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def broker(registry_url, pool, consumer_pool):
    return TunixBroker(settings=Settings(database_url=registry_url), pool=pool, consumer_pool=consumer_pool,
                       results=False, middleware=[])


def message(queue_name, message_id=None, arg="x"):
    msg = dramatiq.Message(queue_name=queue_name, actor_name="noop", args=(arg,), kwargs={}, options={})
    return msg.copy(message_id=message_id) if message_id else msg


def next_message(consumer, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = next(consumer)
        if msg is not None:
            return msg
    raise AssertionError(f"no message within {timeout}s")


def states(conn, queue_name):
    with conn.cursor() as cur:
        cur.execute("SELECT state::text, count(*) FROM dramatiq.queue WHERE queue_name = %s GROUP BY 1",
                    (queue_name,))
        return dict(cur.fetchall())


def advisory_locks_of(conn, backend_pid):
    return scalar(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s",
                  (backend_pid,))


def test_enqueued_messages_are_consumed_then_acked_as_done(conn, broker, queue):
    # Given three messages enqueued
    sent = [broker.enqueue(message(queue, arg=str(i))) for i in range(3)]
    assert states(conn, queue) == {"queued": 3}
    # When a TunixConsumer takes them
    consumer = broker.consume(queue, prefetch=10, timeout=0)
    assert isinstance(consumer, TunixConsumer)
    try:
        got = [next_message(consumer) for _ in range(3)]
        # Then it gets each once, as sent, and they are marked consumed
        assert sorted(m.message_id for m in got) == sorted(m.message_id for m in sent)
        assert sorted(m.args[0] for m in got) == ["0", "1", "2"]
        assert states(conn, queue) == {"consumed": 3}
        # When they are acked
        for m in got:
            consumer.ack(m)
        # Then they are done and nothing is left in processing
        assert states(conn, queue) == {"done": 3}
        assert consumer.in_processing == set()
    finally:
        consumer.close()


def test_a_take_is_prepared_once_per_session_and_survives_losing_it(conn, broker, queue):
    # Given a consumer that took one message (its take prepared on its connection)
    for i in range(3):
        broker.enqueue(message(queue, arg=str(i)))
    consumer = broker.consume(queue, prefetch=5, timeout=0)
    try:
        first = next_message(consumer)
        consumer.ack(first)
        assert "take_message" in consumer._consume_conn.prepared
        # When the session loses its prepared statements (a pooler, an operator's DEALLOCATE)
        consumer._consume_conn.cursor().execute("DEALLOCATE ALL")
        # Then the next takes (with the acked message's lock release) still work, each once
        got = [next_message(consumer), next_message(consumer)]
        assert sorted(m.args[0] for m in [first] + got) == ["0", "1", "2"]
        assert states(conn, queue) == {"done": 1, "consumed": 2}
        assert advisory_locks_of(conn, consumer._consume_conn.get_backend_pid()) == 2
    finally:
        consumer.close()


def test_an_ack_marks_the_message_done_and_leaves_its_body_as_enqueued(conn, broker, queue):
    # Given a message taken by a consumer
    sent = broker.enqueue(message(queue, arg="as-sent"))
    consumer = broker.consume(queue, prefetch=1, timeout=0)
    try:
        taken = next_message(consumer)
        before = scalar(conn, "SELECT message FROM dramatiq.queue WHERE message_id = %s", (sent.message_id,))
        # When it is acked after processing changed it in memory (as dramatiq's middleware do)
        taken.options["retries"] = 1
        consumer.ack(taken)
        # Then it is done, its body untouched (upstream wrote it back, for nothing here reads it)
        assert states(conn, queue) == {"done": 1}
        assert scalar(conn, "SELECT message FROM dramatiq.queue WHERE message_id = %s", (sent.message_id,)) == before
    finally:
        consumer.close()


def test_a_nacked_message_is_rejected(conn, broker, queue):
    # Given a message taken by a consumer
    broker.enqueue(message(queue))
    consumer = broker.consume(queue, prefetch=1, timeout=0)
    try:
        # When it is nacked (dramatiq gave it up)
        consumer.nack(next_message(consumer))
        # Then it is rejected, never to be delivered again
        assert states(conn, queue) == {"rejected": 1}
    finally:
        consumer.close()


def test_enqueueing_the_same_message_id_again_replaces_it(conn, broker, queue):
    # Given a message enqueued under a run's id
    run_id = str(uuid.uuid4())
    broker.enqueue(message(queue, run_id, arg="first"))
    # When it is published again
    broker.enqueue(message(queue, run_id, arg="second"))
    # Then there is still one message, queued, with the newer content
    assert states(conn, queue) == {"queued": 1}
    assert scalar(conn, "SELECT message->'args'->>0 FROM dramatiq.queue WHERE message_id = %s", (run_id,)) == "second"


def test_a_message_held_by_one_consumer_is_not_given_to_another(conn, broker, queue, registry_url):
    # Given one message and two consumers, each with its own pool (as two processes)
    broker.enqueue(message(queue))
    other_pool = db.make_pool(registry_url, 4, exclusive=False)
    first = broker.consume(queue, prefetch=5, timeout=0)
    second = TunixConsumer(pool=other_pool, queue_name=queue, prefetch=5, timeout=0)
    try:
        # When the first takes it
        taken = next_message(first)
        # Then the second finds nothing to take, before or after the ack
        assert [next(second) for _ in range(3)] == [None, None, None]
        first.ack(taken)
        assert [next(second) for _ in range(3)] == [None, None, None]
    finally:
        first.close()
        second.close()
        other_pool.closeall()


def test_enqueue_tries_once_so_a_request_is_answered_promptly(queue):
    # Given a broker whose database is unreachable
    dead = db.make_pool(f"postgresql://nobody@127.0.0.1:{free_port()}/none", 2)
    broker = TunixBroker(settings=Settings(), pool=dead, results=False, middleware=[])
    # When a message is enqueued
    started = time.monotonic()
    with pytest.raises(Exception):
        broker.enqueue(message(queue))
    # Then it fails at once, where upstream retries with back-off for minutes
    assert time.monotonic() - started < 3


def ack_while_queue_is_long(consumer_cls, url, queue_name, acked=12, queued=30):
    """Enqueue `queued` messages, take and ack `acked` of them one at a time;
    return (advisory locks the consumer's session holds, messages still queued)."""
    pool = db.make_pool(url, 4, exclusive=False)  # its own pool: session locks die with it
    broker = TunixBroker(settings=Settings(database_url=url), pool=pool, results=False, middleware=[])
    for i in range(queued):
        broker.enqueue(message(queue_name, arg=str(i)))
    consumer = consumer_cls(pool=pool, queue_name=queue_name, prefetch=queued, timeout=0)
    observer = connect(url)
    try:
        for _ in range(acked):
            consumer.ack(next_message(consumer))
        pid = consumer._consume_conn.get_backend_pid()
        return advisory_locks_of(observer, pid), states(observer, queue_name).get("queued", 0)
    finally:
        observer.close()
        consumer.close()
        pool.closeall()


def test_acked_messages_release_their_advisory_locks_while_the_queue_is_still_long(registry_url):
    # Given a long queue, of which 12 messages are taken and acked one after another
    ours, ours_queued = ack_while_queue_is_long(TunixConsumer, registry_url, f"test-{uuid.uuid4().hex[:10]}")
    upstream, upstream_queued = ack_while_queue_is_long(PostgresConsumer, registry_url,
                                                        f"test-{uuid.uuid4().hex[:10]}")
    # Then, with messages still queued, our consumer holds at most the last
    # acked message's lock (released on its next turn) ...
    assert ours_queued == upstream_queued == 18
    assert ours <= 1
    # ... where upstream's holds one per acked message until the queue is empty
    # (a long backlog filled PostgreSQL's lock table)
    assert upstream == 12


def test_taking_the_next_message_releases_the_previous_acks_lock(conn, broker, queue):
    # Given a consumer that took and acked one message of two
    for i in range(2):
        broker.enqueue(message(queue, arg=str(i)))
    consumer = broker.consume(queue, prefetch=5, timeout=0)
    try:
        consumer.ack(next_message(consumer))
        pid = consumer._consume_conn.get_backend_pid()
        assert advisory_locks_of(conn, pid) == 1
        # When it takes the next
        next_message(consumer)
        # Then the acked one's lock is gone; only the new message's is held
        assert advisory_locks_of(conn, pid) == 1
        assert consumer.unlock_q.empty()
    finally:
        consumer.close()


def full_turns(consumer, turns=3):
    """Seconds `turns` turns take while the consumer holds its prefetch."""
    consumer.in_processing.add("busy")
    started = time.monotonic()
    for _ in range(turns):
        assert next(consumer) is None
    elapsed = time.monotonic() - started
    consumer.in_processing.clear()
    return elapsed


def test_a_full_consumer_comes_back_promptly_and_keeps_no_back_off(consumer_pool, queue):
    # Given our consumer, holding as many messages as it may
    consumer = TunixConsumer(pool=consumer_pool, queue_name=queue, prefetch=1, timeout=0)
    try:
        # When it is asked for more, three times
        elapsed = full_turns(consumer)
        # Then each turn returns at once-ish and no back-off builds up
        assert elapsed < 0.5
        assert consumer.misses == 0
        # And once it has room, it polls with a clean counter
        next(consumer)
        assert consumer.misses == 0
    finally:
        consumer.close()


def test_upstreams_full_consumer_backs_off_and_never_resets(consumer_pool, queue):
    # The behaviour TunixConsumer replaces: every full turn grows the back-off
    # (up to 1 s), and having room again does not reset it.
    consumer = PostgresConsumer(pool=consumer_pool, queue_name=queue, prefetch=1, timeout=0)
    try:
        full_turns(consumer)
        assert consumer.misses == 3
        next(consumer)
        assert consumer.misses == 3
    finally:
        consumer.close()


@pytest.mark.parametrize(("consumer_cls", "fast"), [(TunixConsumer, True), (PostgresConsumer, False)],
                         ids=["tunix", "upstream"])
def test_a_notify_already_read_off_the_socket_is_taken_at_once(broker, queue, consumer_cls, fast):
    # Given a consumer listening (1 s poll) on an empty queue
    consumer = consumer_cls(pool=broker.consumer_pool, queue_name=queue, prefetch=5, timeout=1000)
    try:
        consumer.get_listen_conn()
        # When a message is enqueued and its NOTIFY has reached the socket
        broker.enqueue(message(queue))
        time.sleep(0.2)
        started = time.monotonic()
        taken = next(consumer)
        elapsed = time.monotonic() - started
        # Then ours takes it at once; upstream's health check reads the NOTIFY
        # and then it waits its whole poll on an empty socket
        if fast:
            assert taken is not None and elapsed < 0.5
        else:
            assert elapsed >= 0.9
    finally:
        consumer.close()


def test_an_ack_sends_no_notify_and_takes_no_second_connection_in_the_consumer(conn, broker, queue, registry_url):
    # Given a session listening where upstream's ack notifies, and a message taken
    listener = connect(registry_url)
    listener.autocommit = True
    listener.cursor().execute(f'LISTEN "dramatiq.{queue}.ack"')
    broker.enqueue(message(queue))
    consumer = broker.consume(queue, prefetch=5, timeout=0)
    try:
        taken = next_message(consumer)
        # When it is acked from a worker thread (which holds no connection)
        consumer.ack(taken)
        # Then it is done, and nobody was notified: its commit took no NOTIFY lock
        assert states(conn, queue) == {"done": 1}
        time.sleep(0.2)
        listener.poll()
        assert listener.notifies == []
        # And the ack's connection came from the shared pool, not the consumer's own
        assert consumer.work_pool is broker.pool and consumer.pool is broker.consumer_pool
    finally:
        consumer.close()
        listener.close()
