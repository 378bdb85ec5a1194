"""The broker's fixes that need no database: per-queue prefetch, no delay
queues, the middleware list."""

import pytest
from dramatiq.middleware import Retries, TimeLimit

from tasks import db
from tasks.broker import DRY_QUEUE, TIME_LIMIT_GRACE_S, TRAIN_QUEUE, TunixBroker, TunixConsumer, base_middleware
from tasks.settings import Settings


@pytest.fixture
def broker():
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", dry_prefetch=123, train_concurrency=3)
    pool = db.make_pool(settings.database_url, 4)  # opens no connection
    return TunixBroker(settings=settings, pool=pool, results=False, middleware=base_middleware(settings))


def test_the_dry_queue_is_consumed_with_the_dry_prefetch(broker):
    consumer = broker.consume(DRY_QUEUE, prefetch=16)
    assert isinstance(consumer, TunixConsumer)
    assert consumer.prefetch == 123


def test_the_training_queue_is_consumed_one_training_per_slot(broker):
    assert broker.consume(TRAIN_QUEUE, prefetch=16).prefetch == 3


def test_any_other_queue_keeps_dramatiqs_prefetch(broker):
    assert broker.consume("elsewhere", prefetch=16).prefetch == 16


def test_a_replaced_consumer_counts_the_messages_its_predecessor_still_runs(broker):
    # Given a training consumer holding its queue's whole concurrency
    first = broker.consume(TRAIN_QUEUE)
    first.in_processing.update({"run-1", "run-2", "run-3"})
    # When dramatiq replaces it (after a connection error) while those still run
    second = broker.consume(TRAIN_QUEUE)
    # Then the new one is full too: it takes no fourth training
    assert next(second) is None
    # And a message acked through the new consumer is released from the count
    second.in_processing.remove("run-1")
    assert len(first.in_processing) == 2
    # And other queues keep counts of their own
    assert broker.consume(DRY_QUEUE).in_processing == set()


def test_declaring_a_queue_declares_no_delay_queue(broker):
    # Given a fresh broker
    # When a queue is declared (twice)
    broker.declare_queue(DRY_QUEUE)
    broker.declare_queue(DRY_QUEUE)
    # Then it is known once, and no delay queue exists (each would cost a consumer)
    assert broker.get_declared_queues() == {DRY_QUEUE}
    assert broker.get_declared_delay_queues() == set()


def test_a_delayed_enqueue_is_refused(broker):
    import dramatiq

    message = dramatiq.Message(queue_name=DRY_QUEUE, actor_name="a", args=("x",), kwargs={}, options={})
    with pytest.raises(ValueError, match="delay"):
        broker.enqueue(message, delay=1000)


def test_runs_are_never_retried_and_the_time_limit_outlasts_the_longest_run():
    # Given the operator's longest run
    settings = Settings(run_time_limit_s=7200)
    middleware = base_middleware(settings)
    # Then dramatiq retries nothing, and its hard limit fires only after the worker's own
    retries = next(m for m in middleware if isinstance(m, Retries))
    assert retries.max_retries == 0
    limit = next(m for m in middleware if isinstance(m, TimeLimit))
    assert limit.time_limit == (7200 + TIME_LIMIT_GRACE_S) * 1000


def test_the_actors_take_no_retries_and_use_their_own_queues():
    from tasks import actors

    assert actors.execute_dry_run.queue_name == DRY_QUEUE
    assert actors.execute_training.queue_name == TRAIN_QUEUE
    for actor in (actors.execute_dry_run, actors.execute_training):
        assert actor.options["max_retries"] == 0
