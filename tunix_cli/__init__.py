"""The ``tunix`` command line and the Python client under it.

* ``client.py``: ``Client``, the API over HTTP (typed answers, retries that
  are safe, a log stream that resumes by ``Last-Event-ID``);
* ``models.py``: the API's answers as pydantic models (the OpenAPI document
  describes its responses with them);
* ``cli.py``: the commands (click), tables and progress bars (rich).
"""

from .client import ApiError, Client, Unreachable, WaitTimeout

__all__ = ["ApiError", "Client", "Unreachable", "WaitTimeout"]
