"""A small tmpfs for the full-disk tests: the kernel's own ENOSPC, on a
filesystem of a size the test chooses.

Mounting needs root (or CAP_SYS_ADMIN), as here and in CI; where ``mount`` is
refused the test is skipped with a reason that says so loudly.
"""

import contextlib
import errno
import os
import subprocess

import pytest


@contextlib.contextmanager
def mounted(path, size_kb):
    """A tmpfs of ``size_kb`` KiB mounted at ``path`` (created) for the block."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot mount a tmpfs for the full-disk tests (needs root or "
                    f"CAP_SYS_ADMIN): {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        # Lazy: a process of the test may still hold a file open there.
        subprocess.run(["umount", "-l", str(path)], check=False)


def try_mount(path, size_kb):
    """Mount a tmpfs of ``size_kb`` KiB at ``path`` (created); False where
    mounting is refused.  The caller unmounts it (``umount -l``)."""
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def fill(path, leave=0):
    """Write the ballast file ``path`` until its disk refuses a single 4 KiB
    block, then give ``leave`` bytes back; returns the bytes it holds."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12):
            block = b"\0" * chunk
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        if leave:
            written = max(0, written - leave)
            os.ftruncate(fd, written)
    finally:
        os.close(fd)
    return written
