"""The Dramatiq broker: dramatiq-pg on the registry's PostgreSQL.

Importing this module makes nothing.  ``get_broker()`` makes the process'
broker and its pool from the settings on its first call, as dramatiq's own
``get_broker`` does (the API's factory calls it); ``set_broker`` puts another
in its place (a worker's boot, ``workers/boot.py``, with the worker's
middleware and the actors).  Neither opens a connection until one is used.
The API builds the actors' messages by name (``tasks/actors.py``) and never
declares an actor.

Fixes to dramatiq-pg 0.12, each measured on this project's machine:

* Prefetch is per queue (``consume``): dry runs take hundreds at a time, so a
  backlog drains at hundreds per second; trainings take only as many as a
  process may run, so a busy process does not sit on runs another could start.
* A consumer at its prefetch limit takes its next turn after 20 ms: upstream
  backs off up to 1 s and never resets its counter, so after its first full
  prefetch every poll slept up to 1 s (~24 msg/s), and an ack (which dramatiq
  handles between turns) waited as long.
* NOTIFYs already read off the socket by the listen connection's health
  check are taken at once: upstream waited its full 1 s poll for them.
* A listen connection opened again after a broken one (a database restart)
  rescans the queue: upstream lost the NOTIFYs sent while nothing listened.
* Acked messages' advisory locks are released with the consumer's next
  take, in the same round trip, or in one statement once ``UNLOCK_BATCH``
  wait or the consumer is idle: upstream releases them only when the queue is
  empty, so a long backlog piled up one lock per message until PostgreSQL's
  lock table was full and every new connection failed; and each release was
  a transaction of its own.
* A take is one statement on an autocommit connection: upstream wraps each in
  BEGIN/COMMIT, three round trips, and every worker process races for every
  message (each one's listener hears each NOTIFY).  Counted in the server's
  log (``log_statement=all``), 2 worker processes, 200 dry runs: 16.5
  statements per run before, 5.3 after, with the claim and the end (its ack
  in the same round trip) on autocommit connections too
  (``workers/middleware/run_registry.py``).
* The pool is bounded and blocking (``tasks.db.BlockingPool``): more threads
  than connections wait instead of failing their acks.
* Consumers keep their two connections (consume, listen) from a pool of
  their own: upstream's consumer thread takes its listen connection while
  holding its consume connection, and the shared pool gives a thread one
  connection at a time (``tasks.db``).
* Acks and nacks send no NOTIFY: upstream notifies ``dramatiq.<queue>.ack``
  on every ack, which nothing here listens to, and PostgreSQL serialises the
  commits of notifying transactions on one database-wide lock (pgbench here:
  a 1-row INSERT 6,918 tps at 16 clients, with a NOTIFY 1,424).  The one
  NOTIFY a run costs is its enqueue, which wakes a consumer.  An ack writes
  the state only: upstream also writes the message's body back, which nothing
  here reads and which cost the worker a JSON dump a run.
* The take and the lock release are named, prepared statements
  (``take_message``, ``unlock_messages`` in ``tasks/sql/queue.sql``), as the
  claim and the finish are: every worker process tries each announced
  message, and the server parsed and planned each try
  (``pg_stat_statements``, 2 processes, 1 client: 2 takes a run, ~0.05 ms
  of planning each, now ~0).
* A queue's messages in flight are counted per process, not per consumer:
  dramatiq replaces a consumer that failed (a database restart) while the
  old one's messages still run, and upstream's fresh count let a process
  start more trainings than ``TRAIN_CONCURRENCY`` (and an ack through the new
  consumer raised ``KeyError``).
* No delay queues: actors never retry or delay (``max_retries=0``), and each
  delay queue would cost a consumer and two connections per process.
* ``enqueue`` tries once (upstream retries for minutes), and writes through
  the same statement as every other enqueue (``tunix_enqueue``, migration
  0017).  The platform does not call it: every move that queues a run
  writes its message in the move's own transaction
  (``tasks.registry.enqueue_messages``, ``submit_run``); it is there for
  dramatiq's ``Actor.send``.
"""

import threading
import time
from queue import Empty

import dramatiq
from dramatiq.middleware import Retries, ShutdownNotifications, TimeLimit
from dramatiq_pg import PostgresBroker
from dramatiq_pg.broker import PostgresConsumer, message_lock
from dramatiq.errors import ConnectionError as DramatiqConnectionError
from dramatiq_pg.utils import raise_connection_error, wait_for_notifies
from dramatiq_pg.utils import tidy4json

from . import db
from .errors import DatabaseUnavailable, Overloaded
from .sql.cursor import execute_prepared
from .sample_spec import SAMPLES_QUEUE  # noqa: F401  (a queue, as DRY_QUEUE and TRAIN_QUEUE)
from .settings import get_settings

#: Seconds dramatiq's TimeLimit allows past the operator's maximum, so the
#: worker's own, graceful limit (checkpoint, then ``timeout``) fires first.
TIME_LIMIT_GRACE_S = 300

#: Seconds a consumer at its prefetch limit waits before its next turn.
FULL_POLL_S = 0.02

#: Acked messages whose locks a consumer keeps before it releases them in one statement.
UNLOCK_BATCH = 64



#: Queue of dry runs: short, many.
DRY_QUEUE = "tunix-dry"
#: Queue of real trainings: long, one JAX subprocess each.
TRAIN_QUEUE = "tunix-train"
#: Queue of sample requests (``SAMPLES_QUEUE``, named in ``tasks/sample_spec.py``).
#: Sample requests one worker process holds at once: one generates, the rest
#: are left to other processes.
SAMPLES_PREFETCH = 1


class TunixConsumer(PostgresConsumer):
    def __init__(self, *, pool, work_pool=None, **kwargs):
        super().__init__(pool=pool, **kwargs)
        #: Locks whose release failed (a lost connection): tried again with the next.
        self._unreleased = []
        #: Where acks (from worker threads) take their connection; ``pool``
        #: holds only this consumer's own two.
        self.work_pool = work_pool or pool

    def _settle(self, message, outcome):
        # Upstream's ack/nack, less the NOTIFY (see module doc).  Runs in the
        # worker thread, which holds no other connection by then.  A message
        # whose run's final status was recorded was marked done in that
        # same transaction (workers/middleware/run_registry.py): nothing to write.
        from . import registry  # NOTE: not at import: it loads prometheus_client (tasks.metrics)

        self.unlock_q.put_nowait(message)
        if not getattr(message, "tunix_settled", False):
            try:
                with db.connection(self.work_pool) as conn:
                    registry.settle_message(conn, message, outcome)
            except (DatabaseUnavailable, Overloaded) as exc:
                # dramatiq tries an ack again on its ConnectionError only.
                raise DramatiqConnectionError(str(exc)) from exc
        self.in_processing.discard(message.message_id)

    def ack(self, message):
        self._settle(message, "done")

    def nack(self, message):
        self._settle(message, "rejected")

    def get_consume_conn(self):
        conn = super().get_consume_conn()
        if not conn.autocommit:
            conn.autocommit = True  # each take is one statement (see module doc)
        return conn

    def _unlocks(self):
        """The advisory locks of the messages acked since the last release."""
        locks, self._unreleased = self._unreleased, []
        while True:
            try:
                locks.append(message_lock(self.unlock_q.get(block=False)))
            except Empty:
                return locks

    def purge_locks(self):
        locks = self._unlocks()
        if locks:
            try:
                execute_prepared(self.get_consume_conn(), "unlock_messages", locks=locks)
            except BaseException:
                self._unreleased = locks + self._unreleased
                raise

    @raise_connection_error
    def consume_one(self, message):
        if message.message_id in self.in_processing:
            return False
        locks = self._unlocks()
        try:
            # One round trip: the releases, then the take (whose row count
            # is the answer), both prepared (see module doc).
            names = ("unlock_messages", "take_message") if locks else "take_message"
            taken = execute_prepared(self.get_consume_conn(), names, locks=locks,
                                     message_id=message.message_id, lock=message_lock(message))
        except BaseException:
            self._unreleased = locks + self._unreleased
            raise
        return taken == 1

    def __next__(self):
        # A long backlog releases its locks in batches (see module doc).
        if self.unlock_q.qsize() >= UNLOCK_BATCH and self._consume_conn is not None:
            self.purge_locks()
        if len(self.in_processing) >= self.prefetch:
            # Full: come back soon rather than after upstream's growing
            # back-off (up to 1 s, and its counter never reset): dramatiq
            # handles acks only between turns, so a long sleep here delays
            # both the ack and the next message (measured: +1.2-1.6 s pickup
            # for each training on a one-slot training queue).
            time.sleep(FULL_POLL_S)
            return None
        self.misses = 0
        return super().__next__()

    @raise_connection_error
    def poll_for_notify(self):
        previous = self._listen_conn
        conn = self.get_listen_conn()
        if previous is not None and conn is not previous:
            # A new listen connection after a broken one (the database
            # restarted): NOTIFYs sent while nothing listened are lost, and
            # upstream rescans the queue only when a consumer starts, so a
            # message published then waited for the random rescan (measured:
            # a run pending > 50 s after a 10 s outage).  Rescan now.
            self.notifies += self.fetch_pending_notifies()
            return
        # get_listen_conn's health check (conn.poll()) may already have read
        # NOTIFYs off the socket; upstream then select()s on an empty socket
        # for a full second before seeing them.
        if conn.notifies:
            self.notifies += conn.notifies[:]
            conn.notifies[:] = []
            return
        self.notifies += wait_for_notifies(conn, self.timeout)


class TunixBroker(PostgresBroker):
    def __init__(self, *, settings, consumer_pool=None, **kwargs):
        self.settings = settings
        #: queue name -> ids of its messages this process holds (see module doc).
        self._in_flight = {}
        super().__init__(**kwargs)
        #: The consumers' own connections (see module doc).
        self.consumer_pool = consumer_pool or self.pool

    def consume(self, queue_name, prefetch=1, timeout=30000):
        if queue_name == TRAIN_QUEUE:
            prefetch = self.settings.train_concurrency
        elif queue_name == DRY_QUEUE:
            prefetch = self.settings.dry_prefetch
        elif queue_name == SAMPLES_QUEUE:
            prefetch = SAMPLES_PREFETCH
        consumer = TunixConsumer(pool=self.consumer_pool, work_pool=self.pool, queue_name=queue_name,
                                 prefetch=prefetch, timeout=timeout)
        consumer.in_processing = self._in_flight.setdefault(queue_name, set())
        return consumer

    def declare_queue(self, queue_name):
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues[queue_name] = True
            self.emit_after("declare_queue", queue_name)

    def enqueue(self, message, *, delay=None):
        if delay:
            raise ValueError("tunix-rt queues have no delay queues")
        # NOTE: not upstream's body either: its connection helper
        # (``dramatiq_pg.utils.getconn``) retries a failed connect 10 times
        # with back-off (measured: ~100 s against a dead server).  One more
        # try only for a broken pooled connection, which fails at once.
        from . import registry  # NOTE: not at import: it loads prometheus_client (tasks.metrics)

        self.emit_before("enqueue", message, delay)
        rows = [(message.queue_name, message.message_id, tidy4json(message))]
        for attempt in (1, 2):
            try:
                with db.connection(self.pool) as conn:
                    registry.enqueue_messages(conn, rows)
                break
            except DatabaseUnavailable:
                if attempt == 2:
                    raise
        self.emit_after("enqueue", message, delay)
        return message


def base_middleware(settings):
    """Middleware both the API and the workers need (actor options are
    validated against it).  Workers add theirs in ``workers.boot``."""
    return [
        # Training runs last hours; dramatiq's default would kill them at 10 min.
        TimeLimit(time_limit=(settings.run_time_limit_s + TIME_LIMIT_GRACE_S) * 1000),
        ShutdownNotifications(),
        # A failed run stays failed: a retry would be a second execution.
        Retries(max_retries=0),
    ]


#: Connections of the consumers' own pool: two for each of the three queues,
#: and two for a consumer dramatiq starts while the one it replaces closes.
CONSUMER_CONNECTIONS = 8


def make_broker(settings=None):
    settings = settings or get_settings()
    # A statement that runs away (a plan gone wrong over a grown registry)
    # ends at DB_STATEMENT_TIMEOUT_S instead of holding its connection and
    # its request: the API answers 503, a worker's patient write tries again.
    timeout_ms = round(settings.db_statement_timeout_s * 1000)
    pool = db.make_pool(settings.database_url, settings.db_pool_max, wait_s=settings.db_pool_wait_s,
                        options=f"-c statement_timeout={timeout_ms}" if timeout_ms else None)
    # The consumers' own writes (a message taken, requeued at shutdown) need
    # not wait for the disk: lost in a crash, the message is queued again or
    # republished by the reaper, and the durable claim keeps it from running
    # twice.  The consumer thread takes messages one after another, so each
    # fsync it skips is a message sooner.
    consumer_pool = db.make_pool(settings.database_url, CONSUMER_CONNECTIONS, exclusive=False,
                                 options="-c synchronous_commit=off")
    return TunixBroker(settings=settings, pool=pool, consumer_pool=consumer_pool, results=False,
                       middleware=base_middleware(settings))


_broker = None
_broker_lock = threading.Lock()


def get_broker():
    """The process' broker, made from the settings on the first call."""
    if _broker is None:
        with _broker_lock:
            if _broker is None:
                set_broker(make_broker())
    return _broker


def set_broker(broker):
    """Make ``broker`` the process' broker, and dramatiq's global one (a
    worker's boot, tests); ``None`` forgets it.  Returns it."""
    global _broker
    _broker = broker
    dramatiq.set_broker(broker)
    return broker


def get_pool():
    """The process' connection pool, shared by the broker and the registry."""
    return get_broker().pool
