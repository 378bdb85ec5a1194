"""The operators' console scripts (``tunix-worker``, ``tunix-migrate``,
``tunix-admin``, ``tunix-stack``): each the server module's ``main``, and a
clear line instead of a traceback when the extra it needs is not installed.

``pip install tunix-rt`` is the client alone (setup.cfg), yet pip installs
every console script a package declares: it ignores an entry point's
``[extra]`` (the entry points specification lets installers ignore it), and
setuptools writes no check of its own.  So the server scripts are there in
a client install, and this module turns their ``ModuleNotFoundError`` for a
missing third-party package into ``tunix-worker: needs the server extra:
pip install 'tunix-rt[server]' (no module named 'dramatiq')`` and exit 1.
"""

import importlib
import sys

#: The project's own packages: a missing one is a broken install, not a missing extra.
OWN = frozenset({"app", "tasks", "workers", "tunix_cli"})


def _run(script, target, extras):
    """Import ``target`` (``module:function``) and call it; exit 1 with one
    line naming ``extras`` when a package it imports is not installed."""
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.split(".")[0] in OWN:
            raise
        print(f"{script}: needs the {' and '.join(extras)} extra{'s' if len(extras) > 1 else ''}: "
              f"pip install 'tunix-rt[{','.join(extras)}]' (no module named {exc.name!r})", file=sys.stderr)
        return 1
    return getattr(module, function)()


def worker():
    """``tunix-worker``: a worker launch (``workers/launch.py``)."""
    return _run("tunix-worker", "workers.launch:main", ("server",))


def migrate():
    """``tunix-migrate``: the schema's migrations (``tasks/migrate.py``)."""
    return _run("tunix-migrate", "tasks.migrate:main", ("server",))


def admin():
    """``tunix-admin``: the first admin and users from the database (``tasks/users_admin.py``)."""
    return _run("tunix-admin", "tasks.users_admin:main", ("server",))


def stack():
    """``tunix-stack``: the whole system on one machine (``workers/stack.py``)."""
    return _run("tunix-stack", "workers.stack:main", ("server", "local"))
