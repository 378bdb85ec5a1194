"""Objects an app makes once, on first use, and keeps in ``app.extensions``
(not at import, nor in ``create_app``: gunicorn forks after it, and each app
of a test process keeps its own)."""

import threading

from flask import current_app

_lock = threading.Lock()


def once(name, make):
    """The current app's ``name``, made by ``make(settings)`` the first time."""
    ext = current_app.extensions
    if name not in ext:
        with _lock:
            if name not in ext:
                ext[name] = make(current_app.config["SETTINGS"])
    return ext[name]
