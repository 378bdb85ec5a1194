"""What this installation can run: datasets and models.

Datasets are the built-in synthetic one, the JSONL files shipped in
``tasks/data/`` and any ``<key>.jsonl`` an operator drops into
``$DATA_DIR/datasets/`` (same format; see the README).  Models are listed in
``tasks/models.py``.
"""

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


def datasets(settings=None):
    """Every dataset by key; an operator's file never shadows a shipped one."""
    settings = settings or get_settings()
    found = {SYNTHETIC.key: SYNTHETIC}
    for folder, origin in ((SHIPPED_DIR, "shipped"), (pathlib.Path(settings.datasets_dir), "operator")):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.jsonl")):
            if DATASET_KEY.match(path.stem) and path.stem not in found:
                found[path.stem] = _jsonl(path, origin)
    return found


def get_dataset(key, settings=None):
    return datasets(settings).get(key)


def models():
    return MODELS
