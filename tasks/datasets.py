"""Operator commands for datasets (run where ``ARTIFACTS_URL`` and the store's
credentials are set, as for the API)::

    python -m tasks.datasets put FILE [KEY]   validate FILE, then upload it as datasets/<KEY>.jsonl
    python -m tasks.datasets list             the datasets the API lists, with origin, size, etag

``put`` checks the whole file first (a malformed line is named, nothing is
uploaded; exit status 2), refuses a key that a built-in or shipped dataset
owns (the store's object would never be used), warns when this machine's
``$DATA_DIR/datasets`` has the key (it wins here), and prints the object's
URI, size and ETag.  KEY defaults to FILE's stem.  The upload is atomic: a
worker sees the old object or the new one, never a part.
"""

import argparse
import json
import pathlib
import sys

from . import artifacts, catalog
from .datasets_jsonl import validate_jsonl
from .errors import StoreUnavailable
from .settings import get_settings, settings_at_start


def put(path, key=None, settings=None, out=sys.stdout):
    """Validate ``path`` and upload it as the store's ``datasets/<key>.jsonl``;
    returns the object's ``{"uri", "size", "etag", "examples"}``.

    Raises:
      ValueError: a bad key, a key a built-in or shipped dataset owns, or a
        malformed file (``line N: ...``).
      OSError: ``path`` cannot be read.
      StoreUnavailable: the store did not take it.
    """
    settings = settings or get_settings()
    path = pathlib.Path(path)
    key = key or path.stem
    if not catalog.DATASET_KEY.match(key):
        raise ValueError(f"key {key!r} does not match {catalog.DATASET_KEY.pattern}")
    local = catalog.local_datasets(settings).get(key)
    if local is not None and local.origin in ("builtin", "shipped"):
        raise ValueError(f"{key!r} is a {local.origin} dataset: a store object under that key would never be used")
    try:
        examples = validate_jsonl(path)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if local is not None:
        print(f"warning: {local.path} has the key {key!r} and wins over the store's object on this machine",
              file=sys.stderr)
    store = artifacts.get_store(settings)
    object_key = artifacts.dataset_key(key)
    store.put_file(str(path), object_key)
    meta = store.stat(object_key)
    return {"key": key, "uri": store.uri(object_key), "size": meta["size"], "etag": meta["etag"],
            "examples": examples}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tasks.datasets", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    put_cmd = commands.add_parser("put", help="validate a JSONL file and upload it to the artifact store")
    put_cmd.add_argument("file")
    put_cmd.add_argument("key", nargs="?", help="dataset key (default: the file's stem)")
    commands.add_parser("list", help="the datasets the API lists")
    args = parser.parse_args(argv)
    settings = settings_at_start()
    if args.command == "put":
        try:
            done = put(args.file, args.key, settings)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except StoreUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(done))
        return 0
    try:
        catalog.store_listing(settings).refresh()
    except StoreUnavailable as exc:
        print(f"warning: the artifact store's datasets are not listed: {exc}", file=sys.stderr)
    for dataset in catalog.datasets(settings).values():
        print(json.dumps(dataset.listing()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
