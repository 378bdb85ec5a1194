"""Say this worker process is alive, busy or idle, every few seconds
(``tunix_workers``), so the fleet can be counted from PostgreSQL
(``tunix_workers_alive``) and a silent fleet alerted on."""

import logging
import os
import threading

from dramatiq.middleware import Middleware

from tasks import db, registry

logger = logging.getLogger(__name__)

#: Seconds between beats (at most: three beats fit in HEARTBEAT_TIMEOUT_S).
INTERVAL_S = 5


class WorkerHeartbeat(Middleware):
    def __init__(self, pool, worker_id, hostname, heartbeat_timeout_s):
        self.pool = pool
        # A live worker must never look silent: the reaper ends a silent
        # worker's sessions (workers/reaper.py).
        self.interval_s = min(INTERVAL_S, heartbeat_timeout_s / 3)
        self.worker_id = worker_id
        self.hostname = hostname
        self._stop = threading.Event()

    def _beat(self):
        with db.connection(self.pool) as conn:
            registry.worker_heartbeat(conn, self.worker_id, self.hostname, os.getpid())

    def _loop(self):
        while True:
            try:
                self._beat()
            except Exception as exc:  # the database may be restarting
                logger.warning("worker heartbeat failed: %s", exc)
            if self._stop.wait(self.interval_s):
                return

    def after_worker_boot(self, broker, worker):
        threading.Thread(target=self._loop, name="worker-heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker, worker):
        self._stop.set()
        try:
            with db.connection(self.pool) as conn:
                registry.worker_gone(conn, self.worker_id)
        except Exception as exc:
            logger.warning("could not deregister worker %s: %s", self.worker_id, exc)
