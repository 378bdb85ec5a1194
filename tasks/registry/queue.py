"""dramatiq-pg's queue (``dramatiq.queue``, ``tasks/sql/queue.sql``): the
transactional outbox, acks and nacks without their NOTIFY, and the reaper's
reads and repairs of messages that went missing or unheard."""

from psycopg2.extras import Json

from ..metrics import timed_write
from ..sql.cursor import execute, execute_values, fetch_all, fetch_column


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
    if outcome == "done":
        execute(conn, "ack_message", **message_key(message))
    elif outcome == "rejected":
        # A rejected message keeps its body as dramatiq left it (its options
        # say why), as upstream's nack writes it.
        from dramatiq_pg.utils import tidy4json

        execute(conn, "nack_message", message=Json(tidy4json(message)), **message_key(message))
    else:
        raise ValueError(f"a message is settled done or rejected, not {outcome!r}")


def message_key(message):
    """The parameters that name a message in ``dramatiq.queue``."""
    return dict(message_id=message.message_id, queue_name=message.queue_name)


def unqueued_pending_runs(conn, min_age_s, limit=500):
    return fetch_all(conn, "unqueued_pending_runs", min_age_s=min_age_s, limit=limit)


def nudge_passed_over(conn, min_age_s):
    """Ids of the messages announced again (see the query)."""
    return fetch_column(conn, "nudge_passed_over", min_age_s=min_age_s)
