"""``LOG_FORMAT``: how every process of the platform writes its log lines.

``text`` (the default) is ``<time> <LEVEL> <logger>: <message>``, or the
format the process' own framework uses (dramatiq, gunicorn).  ``json`` is
one JSON object per line, for shipping logs from many hosts::

    {"timestamp": "2025-01-01T12:00:00.123+00:00", "level": "INFO", "logger": "tunix.workers",
     "message": "...", "host": "worker-3", "pid": 4242, "run_id": "..."}

``run_id`` is there on lines logged while a worker thread processes a run;
``exception`` holds the traceback when there is one.  The formatter is
python-json-logger's; each entry point applies it: the worker launch
(``workers/launch.py``, its reaper included), its dramatiq processes
(``workers/dramatiq_json.py``), ``make run``'s supervisor (``workers/stack.py``)
and the API under gunicorn (``gunicorn.conf.py``).
"""

import logging
import socket
import sys
import threading

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

#: The values ``LOG_FORMAT`` may take.
FORMATS = ("text", "json")
#: The ``text`` format of the processes that set up their own logging.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def check(log_format):
    """``log_format`` if it is one of ``FORMATS``.

    Raises:
      ValueError: it is not (a typo must not silently log text).
    """
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    return log_format


class JsonFormatter(_JsonFormatter):
    """One JSON object per record: timestamp (UTC, ISO 8601), level, logger,
    message, host, pid, the record's extras (``run_id``) and ``exception``."""

    def __init__(self, host=None):
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(process)d",
            rename_fields={"levelname": "level", "name": "logger", "process": "pid", "exc_info": "exception"},
            static_fields={"host": host or socket.gethostname()},
            timestamp=True,
        )

    def process_log_record(self, log_data):
        # The timestamp first: what a reader of a raw line looks for.
        return {"timestamp": log_data.pop("timestamp", None), **log_data}


class RunIdFilter(logging.Filter):
    """Adds ``run_id`` to the records of a thread that processes a run:
    ``current_run_id()`` answers it, or None."""

    def __init__(self, current_run_id):
        super().__init__()
        self.current_run_id = current_run_id

    def filter(self, record):
        if getattr(record, "run_id", None) is None:
            run_id = self.current_run_id()
            if run_id is not None:
                record.run_id = str(run_id)
        return True


def use_json(handlers, host=None, current_run_id=None):
    """Give ``handlers`` (made by whoever set up this process' logging: us,
    dramatiq, gunicorn) the JSON formatter, and the run id filter when
    ``current_run_id`` is given."""
    formatter = JsonFormatter(host)
    for handler in handlers:
        handler.setFormatter(formatter)
        if current_run_id is not None:
            handler.addFilter(RunIdFilter(current_run_id))


def log_stray_output():
    """Route to the log what would bypass it as plain text: warnings, and
    uncaught exceptions of threads and of the process (so that with
    ``json`` every line of a process' output is a JSON object)."""
    logging.captureWarnings(True)
    uncaught = logging.getLogger("tunix.uncaught")

    def log_uncaught(exc_type, exc, tb):
        uncaught.critical("uncaught %s", exc_type.__name__, exc_info=(exc_type, exc, tb))

    def log_uncaught_in_thread(args):
        if args.exc_type is SystemExit:
            return
        uncaught.error("uncaught %s in thread %s", args.exc_type.__name__,
                       args.thread.name if args.thread else "?",
                       exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = log_uncaught
    threading.excepthook = log_uncaught_in_thread


def configure(log_format, host=None, level=logging.INFO, stream=None):
    """Set up the logging of a process that owns it (the worker launch, the
    stack): one handler on the root logger, ``stream`` (stderr) by default."""
    check(log_format)
    logging.basicConfig(level=level, format=TEXT_FORMAT, stream=stream or sys.stderr)
    if log_format == "json":
        use_json(logging.getLogger().handlers, host)
        log_stray_output()


def gunicorn_logconfig(host=None):
    """A ``logconfig_dict`` for gunicorn with ``LOG_FORMAT=json``: its error
    log (and the API's own loggers, through the root) as JSON on stderr.
    The access log stays off, as it is without this dict."""
    formatter = {"()": JsonFormatter, "host": host}
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "handlers": {"json": handler},
        "root": {"level": "INFO", "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
