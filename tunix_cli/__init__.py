"""The ``tunix`` command line and the Python client under it.

* ``client.py``: ``Client``, the API over HTTP (typed answers, retries that
  are safe, a log stream that resumes by ``Last-Event-ID``);
* its answers are ``tasks/wire.py``'s pydantic models (the API's OpenAPI
  document describes its responses with the same ones);
* ``cli.py``: the commands (click), tables and progress bars (rich);
  ``accounts.py``: login, whoami, users, tokens, audit;
* ``profiles.py``: the config file ``tunix login`` writes (0600, atomic)
  and which URL and token a command uses;
* ``server_scripts.py``: the operators' console scripts (``tunix-worker``,
  ...), which say which extra to install when the server is missing.

``pip install tunix-rt`` installs this package's requirements alone (no
server package, setup.cfg); it and the ``tasks/`` modules it imports (the
answers' models) must import nothing more (tests/e2e/test_client_install.py).
"""

from .client import ApiError, Client, Unreachable, WaitTimeout

__all__ = ["ApiError", "Client", "Unreachable", "WaitTimeout"]
