"""What this installation can run: datasets and models.

Datasets are the built-in synthetic one, the JSONL files shipped in
``tasks/data/`` and any ``<key>.jsonl`` an operator drops into
``$DATA_DIR/datasets/`` (same format; see the README).  Models are listed in
``tasks/models.py``.
"""

import os
import pathlib
import re
from dataclasses import asdict, dataclass

from .models import MODELS, get_model  # noqa: F401  (re-exported)
from .settings import get_settings

#: What a dataset key (and so a dataset file's stem) may look like.
DATASET_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

SHIPPED_DIR = pathlib.Path(__file__).parent / "data"


@dataclass(frozen=True)
class Dataset:
    key: str
    kind: str  # "synthetic" or "jsonl"
    description: str
    path: str = None

    def to_json(self):
        return asdict(self)


SYNTHETIC = Dataset(
    key="synthetic",
    kind="synthetic",
    description="Generated counting sequences; the loss falls within a few dozen steps.",
)


def _jsonl(path, origin):
    return Dataset(key=path.stem, kind="jsonl", description=f"JSONL prompt/completion pairs ({origin})",
                   path=str(path))


#: (folders' modification times) -> the datasets found then.
_cache = {}


def _mtimes(folders):
    stamps = []
    for folder in folders:
        try:
            stamps.append(os.stat(folder).st_mtime_ns)
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def datasets(settings=None):
    """Every dataset by key; an operator's file never shadows a shipped one.

    Read again only when a folder changed (a file dropped, renamed or
    removed changes its folder's mtime): every submit validates against this,
    and listing both folders cost ~6% of the API's time under load."""
    settings = settings or get_settings()
    folders = (SHIPPED_DIR, pathlib.Path(settings.datasets_dir))
    key = (folders, _mtimes(folders))
    found = _cache.get(key)
    if found is not None:
        return dict(found)
    found = {SYNTHETIC.key: SYNTHETIC}
    for folder, origin in zip(folders, ("shipped", "operator")):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.jsonl")):
            if DATASET_KEY.match(path.stem) and path.stem not in found:
                found[path.stem] = _jsonl(path, origin)
    _cache.clear()
    _cache[key] = found
    return dict(found)


def get_dataset(key, settings=None):
    return datasets(settings).get(key)


def models():
    return MODELS
