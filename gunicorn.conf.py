"""gunicorn's settings for the API: only its log format.

gunicorn reads ``./gunicorn.conf.py`` from its working directory by default,
so every way the API is started (``make run``, ``workers/stack.py``, compose,
the tests) picks this up without a flag.  With ``LOG_FORMAT=json`` its error
log and the API's own loggers write one JSON object per line
(``tasks/log_format.py``); with ``text`` nothing changes.
"""

from tasks.log_format import check, gunicorn_logconfig
from tasks.settings import get_settings

_settings = get_settings()

if check(_settings.log_format) == "json":
    logconfig_dict = gunicorn_logconfig(_settings.hostname)
