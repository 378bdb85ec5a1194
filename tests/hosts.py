"""Several hosts on one machine: Linux network namespaces on a private bridge.

``Hosts`` makes a bridge in the root namespace (the *gateway*,
``10.77.<slot>.1/24``) and, per host, a network namespace whose ``eth0`` is a
veth plugged into the bridge (``10.77.<slot>.10``, ``.11``, ...; loopback up).
Hosts reach each other and the gateway, nothing else: a namespace has no
default route and the root namespace does not forward.  Services meant for
"the network" (PostgreSQL, the S3 server) run in the root namespace and listen
on the gateway address, so a host reaches them only over its link; the test
process (root namespace) reaches every host directly.

    net = Hosts()                     # claims a free slot, cleans its leftovers, makes the bridge
    api = net.add("api")              # a Host: .name .netns .address .data_dir
    api.run(["ip", "addr"])           # subprocess.run inside the namespace
    proc = api.popen(cmd, env, log)   # a support.Process inside it (own process group)
    net.cut("worker-a")               # the host's link goes down: a partition
    net.restore("worker-a")
    net.teardown()                    # kills what runs in the namespaces, deletes them and the bridge

Names carry a fixed prefix and the slot (netns ``tnx<slot>-<host>``, bridge
``tnx<slot>br``, veths ``tnx<slot>h<i>``).  A slot is held by an flock on
``/tmp/tunix-netlab-<slot>.lock`` for the life of the ``Hosts``, so
concurrent sessions on one machine take different slots (and subnets), and
whatever a crashed session left on a slot nobody holds is removed before the
slot is used again.  Needs root (CAP_NET_ADMIN) and iproute2's ``ip``:
``require_netns()`` says why not, the fixtures skip with that reason.
"""

import contextlib
import fcntl
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from support import Process, _wait_http, process_env
from workers import processes

PREFIX = "tnx"
SUBNET = "10.77"
SLOTS = 32
HOST_BASE = 10  # the first host is .10
LOCK_DIR = pathlib.Path("/tmp")
#: Seconds the tier's fixtures and steps took (tests/multihost prints them).
TIMINGS = {}


def _ip(*args, check=True, timeout=30):
    return subprocess.run(["ip", *args], check=check, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def require_netns():
    """None when network namespaces can be made here, else why not (a skip reason)."""
    if not sys.platform.startswith("linux"):
        return "multi-host tests need Linux network namespaces"
    if os.geteuid() != 0:
        return "multi-host tests need root (ip netns add, veth, bridge): run them as root, as CI does"
    if not shutil.which("ip"):
        return "multi-host tests need iproute2's `ip` (apt-get install iproute2)"
    probe = f"{PREFIX}probe{os.getpid()}"
    try:
        result = _ip("netns", "add", probe, check=False)
        if result.returncode != 0:
            return f"cannot create a network namespace: {result.stderr.strip()}"
        result = _ip("link", "add", f"{PREFIX}p{os.getpid() % 100000}", "type", "bridge", check=False)
        if result.returncode != 0:
            return f"cannot create a bridge: {result.stderr.strip()}"
        _ip("link", "del", f"{PREFIX}p{os.getpid() % 100000}", check=False)
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def _netns_names():
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_names():
    out = _ip("-o", "link", "show", check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            names.append(parts[1].strip().split("@")[0])
    return names


def _kill_netns_processes(netns, grace=5):
    """SIGTERM, then SIGKILL, every process inside ``netns``."""
    def pids():
        out = _ip("netns", "pids", netns, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        found = pids()
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids() and time.monotonic() < deadline:
            time.sleep(0.1)


class Host:
    """One network namespace on the bridge (``net.add(name)`` makes one)."""

    def __init__(self, network, name, index, data_dir):
        self.network = network
        self.name = name
        self.index = index
        self.netns = f"{network.prefix}-{name}"
        self.veth = f"{network.prefix}h{index}"  # the root side, on the bridge
        self.address = f"{network.subnet}.{HOST_BASE + index}"
        self.data_dir = pathlib.Path(data_dir)
        self.processes = []

    def __repr__(self):
        return f"<Host {self.name} {self.address} ({self.netns})>"

    def command(self, cmd):
        """``cmd`` as run inside the namespace (``ip netns exec`` then execs it: same pid)."""
        return ["ip", "netns", "exec", self.netns, *map(str, cmd)]

    def run(self, cmd, check=True, timeout=60, **kwargs):
        """``subprocess.run`` inside the namespace (text output captured unless told otherwise)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(cmd), check=check, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)

    def python(self, code, env=None, check=True, timeout=60):
        """``python -c code`` (this interpreter) inside the namespace."""
        return self.run([sys.executable, "-c", code], check=check, timeout=timeout,
                        env=env if env is not None else dict(os.environ))

    def popen(self, cmd, env, log_path):
        """A ``support.Process`` inside the namespace: its own process group, stopped by
        ``.stop()`` (SIGTERM to the process, SIGKILL to its group), else at teardown."""
        process = Process(self.command(cmd), env, str(log_path))
        self.processes.append(process)
        return process

    def env(self, database_url, **extra):
        """A service's environment on this host: its own DATA_DIR, WORKER_HOSTNAME (the
        fleet view groups by it), metrics on this host's address."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        extra.setdefault("WORKER_HOSTNAME", self.name)
        extra.setdefault("METRICS_ADDR", self.address)
        extra.setdefault("NO_PROXY", "*")
        return process_env(database_url, self.data_dir, **extra)

    def stop_processes(self):
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


class Hosts:
    """A bridge and the hosts on it; see the module docstring."""

    def __init__(self, root=None, slot=None):
        self._lock = None
        self.slot = self._claim(slot)
        self.prefix = f"{PREFIX}{self.slot}"
        self.subnet = f"{SUBNET}.{self.slot}"
        self.cidr = f"{self.subnet}.0/24"
        self.gateway = f"{self.subnet}.1"
        self.bridge = f"{self.prefix}br"
        # The hosts' DATA_DIRs (``<root>/<host>/data``); a folder made here is removed at
        # teardown (and one a crashed session left on this slot, now).
        self._own_root = root is None
        if self._own_root:
            for stale in pathlib.Path(tempfile.gettempdir()).glob(f"tunix-net{self.slot}-*"):
                shutil.rmtree(stale, ignore_errors=True)
        self.root = pathlib.Path(root or tempfile.mkdtemp(prefix=f"tunix-net{self.slot}-"))
        self.hosts = {}
        self._next_index = 0
        self.setup_s = None
        started = time.monotonic()
        try:
            self.cleanup_leftovers()
            # nf_call_*: host-to-host frames skip the machine's firewall (br_netfilter would
            # send them through FORWARD, which Docker, for one, sets to DROP).
            _ip("link", "add", self.bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0",
                "nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.teardown()
            raise
        self.setup_s = time.monotonic() - started

    # ------------------------------------------------------------------ slots

    def _claim(self, wanted):
        for slot in ([wanted] if wanted is not None else range(SLOTS)):
            lock = open(LOCK_DIR / f"tunix-netlab-{slot}.lock", "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self._lock = lock
            return slot
        raise RuntimeError(f"every network slot is held by another session (0..{SLOTS - 1})")

    def cleanup_leftovers(self):
        """Remove this slot's namespaces (and what runs in them), veths and bridge."""
        for netns in _netns_names():
            if netns.startswith(self.prefix + "-"):
                _kill_netns_processes(netns)
                _ip("netns", "del", netns, check=False)
        for link in _link_names():
            if link == self.bridge or link.startswith(self.prefix + "h"):
                _ip("link", "del", link, check=False)

    # ------------------------------------------------------------------ hosts

    def add(self, name):
        """A new host ``name`` on the bridge (``eth0`` at the next address, loopback up)."""
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise ValueError(f"host names are letters, digits and dashes: {name!r}")
        index = self._next_index
        if HOST_BASE + index > 254:
            raise ValueError("too many hosts")
        self._next_index += 1
        host = Host(self, name, index, self.root / name / "data")
        self.hosts[name] = host
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        _ip("link", "set", host.veth, "master", self.bridge)
        _ip("link", "set", host.veth, "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        return host

    def remove(self, name):
        """Stop ``name``'s processes and delete its namespace (its veth goes with it)."""
        host = self.hosts.pop(name)
        host.stop_processes()
        _kill_netns_processes(host.netns)
        _ip("netns", "del", host.netns, check=False)
        _ip("link", "del", host.veth, check=False)

    def __getitem__(self, name):
        return self.hosts[name]

    def cut(self, name):
        """Take ``name``'s link down: it reaches nothing off-host, nothing reaches it
        (connections stay open, packets are lost, as in a real partition)."""
        _ip("link", "set", self.hosts[name].veth, "down")

    def restore(self, name):
        _ip("link", "set", self.hosts[name].veth, "up")

    def is_cut(self, name):
        out = _ip("link", "show", self.hosts[name].veth).stdout
        return "UP" not in out.split("<", 1)[1].split(">", 1)[0].split(",")

    # ------------------------------------------------------------------ teardown

    def teardown(self):
        """Stop every host's processes, delete the namespaces, veths and bridge; release the slot.
        Safe to call twice and after a failed setup."""
        if self._lock is None:
            return
        try:
            for host in reversed(list(self.hosts.values())):
                with contextlib.suppress(Exception):
                    host.stop_processes()
            self.cleanup_leftovers()
        finally:
            self.hosts.clear()
            self._lock.close()
            self._lock = None
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()


# --------------------------------------------------------------------------
# Services on a host


def start_api_on(host, database_url, log_dir, port=8000, threads=16, **env):
    """The API under gunicorn in ``host``'s namespace, bound to its address; ``.url``
    is reachable from the test process (and from the other hosts)."""
    cmd = processes.api_command(port, threads, host=host.address, graceful_timeout_s=10)
    env.setdefault("SYNC_TIMEOUT_S", 30)
    env.setdefault("API_THREADS", threads)
    process = host.popen(cmd, host.env(database_url, **env), os.path.join(log_dir, f"api-{host.name}.log"))
    process.url = f"http://{host.address}:{port}"
    try:
        _wait_http(process.url + "/readyz", process.proc, process.log_path)
    except BaseException:
        process.stop()
        raise
    return process


def launch_on(host, database_url, log_dir, workers=1, threads=2, metrics_port=9191, **env):
    """A worker launch (``python -m workers``) in ``host``'s namespace, its metrics on the
    host's address; returned once they answer (``.metrics_url``)."""
    env = host.env(database_url, WORKERS=workers, WORKER_THREADS=threads, METRICS_PORT=metrics_port, **env)
    process = host.popen(processes.workers_command(), env, os.path.join(log_dir, f"workers-{host.name}.log"))
    process.metrics_url = f"http://{host.address}:{metrics_port}/metrics"
    try:
        _wait_http(process.metrics_url, process.proc, process.log_path)
    except BaseException:
        process.stop()
        raise
    return process


__all__ = ["Host", "Hosts", "launch_on", "require_netns", "start_api_on"]
