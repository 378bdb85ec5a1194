"""A worker's disk running out of space: recognise it, say where.

A full scratch disk shows up in four places, each its own way: the runner's
write of the training's log (an ``OSError`` with ``errno.ENOSPC``), the
training's own orbax save (its ``error: ...`` line on stderr, only text by
then), the upload's hard-linked snapshot (``OSError``), and a local store's
write (``StoreUnavailable``, whose message carries the ``OSError``'s text).
Each becomes one ``DiskFull`` naming the folder and what is free on its
filesystem (``shutil.disk_usage``), so a user reads "the disk of this
worker is full", not a training traceback or a hang.
"""

import errno
import os
import shutil

from tasks.errors import DiskFull

#: The errnos that mean "no space": a full filesystem, a quota reached.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Their texts (``os.strerror``), as they reach us inside another error's message.
NO_SPACE_TEXTS = tuple(os.strerror(code) for code in sorted(NO_SPACE_ERRNOS))


def is_no_space(error):
    """Whether ``error`` (an exception or a message) says a disk is full."""
    if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
        return True
    text = str(error)
    return any(t in text for t in NO_SPACE_TEXTS)


def usage(folder):
    """``(free, total)`` bytes of the filesystem holding ``folder`` (or its
    nearest existing parent: the folder itself may not exist yet, or be
    gone); ``(None, None)`` when even that cannot be read."""
    path = os.path.abspath(folder)
    while True:
        try:
            found = shutil.disk_usage(path)
            return found.free, found.total
        except OSError:
            parent = os.path.dirname(path)
            if parent == path:
                return None, None
            path = parent


def size(n):
    """``n`` bytes for a person: ``12.0 KiB``."""
    if n is None:
        return "unknown"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def disk_full(folder, what, cause):
    """The ``DiskFull`` error for ``what`` (say, "writing the training's log")
    that failed in ``folder`` because of ``cause``."""
    free, total = usage(folder)
    message = (f"disk full: {what} failed in {folder}: {size(free)} free of {size(total)} on its filesystem "
               f"({' '.join(str(cause).split())})")
    return DiskFull(message, folder=str(folder), free_bytes=free, total_bytes=total, code=DiskFull.code)
