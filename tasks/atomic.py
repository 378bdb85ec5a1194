"""``atomic_write``: the one way a file is written that a reader (another
thread, process or host on a shared folder) may open at any moment.

The content goes to a temporary sibling (``<path>.tmp-<hex>``, or
``<folder>/.tmp-<hex>`` for a file named by its content: every listing of
the store and the caches skips such names) and is renamed over ``path``
only once it is complete, so a reader sees the old file or the new one,
never a part; a failure leaves no temporary file behind.  Nothing is
fsynced (none of the writers it replaced did): the promise is to readers,
not across a host's crash, after which every writer here can write again.
"""

import contextlib
import os
import uuid


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None, *, name=None):
    """A file object to write ``path``'s new content into (``mode`` "wb" or "w").

    For a file named by its content (a dataset by its checksum,
    ``workers/dataset_cache.py``), ``path`` is its folder and ``name()`` gives
    its name once the content is written.  ``fh.name`` is the temporary file:
    a check may read it (after ``fh.flush()``) and raise to refuse it.
    """
    path = os.fspath(path)
    tmp = os.path.join(path, f".tmp-{uuid.uuid4().hex}") if name else f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh
        os.replace(tmp, os.path.join(path, name()) if name else path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
