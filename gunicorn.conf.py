"""gunicorn's settings for the API: keep-alive and the log format.

gunicorn reads ``./gunicorn.conf.py`` from its working directory by default,
so every way the API is started (``make run``, ``workers/stack.py``, compose,
the tests) picks this up without a flag.  With ``LOG_FORMAT=json`` its error
log and the API's own loggers write one JSON object per line
(``tasks/log_format.py``); with ``text`` nothing changes.
"""

from tasks.log_format import check, gunicorn_logconfig
from tasks.settings import settings_at_start

# Read here, in gunicorn's master before it forks: a bad variable stops the
# API with its message and status 2, not gunicorn's traceback.
_settings = settings_at_start()

# Seconds an idle kept-alive connection stays open (gunicorn's default: 2).
# gunicorn closes one idle past this, and one that sent nothing 5 s after
# being accepted as soon as this much longer passes: a client whose next
# request crossed the close got "Remote end closed connection without
# response" (CI: 2 of 1,280 submits in tests/e2e/test_load_http.py, under
# coverage on 2 busy cores).  Longer than the common proxies' idle timeout
# (60 s on AWS's load balancers), so a proxy in front closes first, as it
# should; an idle connection costs the API a poller entry, not a thread.
keepalive = 75

# The longest request line gunicorn reads (its maximum; default 4094): a
# shared history view keeps its filters in the URL (many tag= and status=),
# and a line over the limit gets gunicorn's own HTML 414, not the API's JSON
# (a plain schemathesis run sent a 6,135-byte query string and counted the
# 414 against us).  Bounded: a line is read into memory before the API sees it.
limit_request_line = 8190

if check(_settings.log_format) == "json":
    logconfig_dict = gunicorn_logconfig(_settings.hostname)
