"""The multi-host tier: hosts in network namespaces, PostgreSQL and an S3 store
reachable only over their links (helpers: ``tests/hosts.py``, ``tests/s3server.py``).

Session fixtures (one set for the tier, made on first use):

* ``netlab``      the ``Hosts`` network: a bridge whose root-side address is
                  ``netlab.gateway`` (``10.77.<slot>.1``, slot 0 unless another
                  session holds it).  Skips the test, loudly, without root or ``ip``.
* ``net_pg``      an embedded PostgreSQL listening on the gateway address (TCP,
                  password-less from the subnet): ``net_pg.tcp_url()``.
* ``net_databases`` / ``net_database_url``: migrated databases on it, URLs
                  over TCP to the gateway (usable from every host and from here).
* ``s3``          an ``S3Server`` on the gateway address (bucket ``tunix``):
                  ``s3.env`` is what a process needs (AWS_ENDPOINT_URL, keys, region).

Per test:

* ``hosts(*names)``  adds hosts to ``netlab`` and returns them (a ``Host`` for
                  one name, a tuple for several); they are removed, processes
                  stopped, links restored, when the test ends.
* ``s3_server()``  a fresh S3 server of the test's own (loopback unless given
                  an ``ip``; no root needed), to stop and start (an outage);
                  killed at the end.
* ``net_log_dir``  where the tier's process logs go.
"""

import os
import shutil
import socket
import tempfile
import time

import pytest

from hosts import TIMINGS, Hosts, require_netns
from s3server import S3Server
from support import Databases


@pytest.fixture(scope="session")
def netlab():
    reason = require_netns()
    if reason:
        pytest.skip(f"SKIPPED multi-host tier: {reason}")
    net = Hosts()
    TIMINGS["bridge_s"] = net.setup_s
    yield net
    net.teardown()


def _free_port(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def net_pg(netlab):
    """An embedded PostgreSQL on the gateway address (its own cluster, whatever DATABASE_URL says)."""
    from workers.pgembed import EmbeddedPostgres

    root = tempfile.mkdtemp(prefix="tunix-netpg-")
    server = EmbeddedPostgres(os.path.join(root, "pg"), listen=(netlab.gateway,), trust=(netlab.cidr,),
                              port=_free_port(netlab.gateway))
    started = time.monotonic()
    server.start()
    TIMINGS["pg_start_s"] = time.monotonic() - started
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def net_databases(net_pg):
    dbs = Databases(net_pg.tcp_url())
    yield dbs
    dbs.close()  # not dropped: the cluster is the session's, deleted whole (tests/conftest.py's databases)


@pytest.fixture(scope="session")
def net_database_url(net_databases):
    """The tier's migrated database, over TCP to the gateway."""
    started = time.monotonic()
    url = net_databases.create()
    TIMINGS["db_create_s"] = time.monotonic() - started
    return url


@pytest.fixture(scope="session")
def net_log_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("multihost-logs"))


@pytest.fixture(scope="session")
def s3(netlab):
    """The tier's S3 server on the gateway address."""
    root = tempfile.mkdtemp(prefix="tunix-s3-")
    server = S3Server(os.path.join(root, "s3"), ip=netlab.gateway)
    started = time.monotonic()
    server.start()
    TIMINGS["s3_start_s"] = time.monotonic() - started
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3_server(tmp_path):
    """Factory: ``s3_server(ip="127.0.0.1", bucket="tunix")`` starts a server of the test's own
    (no root needed; pass ``ip=netlab.gateway`` for one the hosts reach)."""
    started = []

    def start(ip="127.0.0.1", bucket="tunix"):
        server = S3Server(tmp_path / f"s3-{len(started)}", ip=ip, bucket=bucket)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop(kill=True)


@pytest.fixture
def hosts(netlab):
    """Factory: ``hosts("api", "worker-a")`` adds hosts for this test (removed at its end)."""
    added = []

    def add(*names):
        made = []
        for name in names:
            made.append(netlab.add(name))
            added.append(name)
        return made[0] if len(made) == 1 else tuple(made)

    yield add
    for name in reversed(added):
        netlab.remove(name)
