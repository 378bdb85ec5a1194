"""dramatiq-pg's queue (``dramatiq.queue``, ``tasks/sql/queue.sql``): the
transactional outbox, acks and nacks without their NOTIFY, and the reaper's
reads and repairs of messages that went missing or unheard."""

from psycopg2.extras import Json

from ..metrics import timed_write
from .cursor import execute, execute_values, fetch_all, fetch_column


def enqueue_messages(conn, messages):
    """Write dramatiq ``messages`` ``(queue_name, message_id, message_json)``
    in ``conn``'s transaction: they are delivered once it commits (the
    transactional outbox; the commit's NOTIFY wakes a consumer)."""
    with timed_write("enqueue"):
        execute_values(conn, "enqueue_messages", [(q, mid, Json(m)) for q, mid, m in messages],
                       template="(%s, %s::uuid, %s::jsonb)")


def settle_message(conn, message, outcome="done"):
    """Mark a processed dramatiq message ``done`` (acked) or ``rejected``
    (nacked), in ``conn``'s transaction; no NOTIFY (``tasks/broker.py``)."""
    query = {"done": "ack_message", "rejected": "nack_message"}[outcome]
    execute(conn, query, **message_params(message))


def message_params(message):
    """The parameters of ``ack_message`` and ``nack_message``."""
    from dramatiq_pg.utils import tidy4json

    return dict(message=Json(tidy4json(message)), message_id=message.message_id, queue_name=message.queue_name)


def unqueued_pending_runs(conn, min_age_s, limit=500):
    return fetch_all(conn, "unqueued_pending_runs", min_age_s=min_age_s, limit=limit)


def nudge_passed_over(conn, min_age_s):
    """Ids of the messages announced again (see the query)."""
    return fetch_column(conn, "nudge_passed_over", min_age_s=min_age_s)
