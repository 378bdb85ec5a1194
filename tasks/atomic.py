"""``atomic_write``: the one way a file is written that a reader (another
thread, process or host on a shared folder) may open at any moment.

The content goes to a temporary sibling (``<path>.tmp-<hex>``: every
listing of the store and the caches skips such names) and is renamed over
``path`` only once it is complete, so a reader sees the old file or the new
one, never a part; a failure leaves no temporary file behind.
"""

import contextlib
import os
import uuid


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """A file object to write ``path``'s new content into (``mode`` "wb" or "w")."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
