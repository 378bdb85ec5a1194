"""The run service as a request uses it (``tasks/run_service.py``): built
from the app's settings, and admission run after a submit's commit."""

import logging

from flask import current_app

from tasks import admission
from tasks.run_service import RunService

from .db import close_db, transaction

logger = logging.getLogger(__name__)


def run_service():
    return RunService(current_app.config["SETTINGS"])


def admit_deferred():
    """Runs were written deferred: admit now those whose turn it is, in a
    transaction of its own after the submit's (a failed pass leaves them to
    the next reaper pass, and never undoes the submit)."""
    try:
        with transaction() as conn:
            admission.admit(conn)
    except Exception:  # noqa: BLE001 - see the docstring
        logger.exception("admission after a submit failed; the next reaper pass admits")
    finally:
        close_db()
