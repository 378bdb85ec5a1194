"""The vendored uPlot (``app/static/vendor/uplot``) is the pinned release:
each file's sha256 is the one ``VERSION`` records, and the console loads it."""

import hashlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENDOR = ROOT / "app" / "static" / "vendor" / "uplot"


def pinned():
    """``{file name: sha256}`` and the version, from ``VERSION``."""
    text = (VENDOR / "VERSION").read_text()
    version = re.search(r"^version (\S+)$", text, re.M).group(1)
    hashes = dict(re.findall(r"^(\S+) ([0-9a-f]{64})$", text, re.M))
    return version, hashes


def test_every_vendored_file_matches_its_pinned_sha256():
    # Given the pins
    version, hashes = pinned()
    # Then they name the script, its styles and the licence, and nothing else lies beside them
    assert set(hashes) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    assert {p.name for p in VENDOR.iterdir()} == {*hashes, "VERSION"}
    # And each file is, byte for byte, the pinned one
    for name, sha in hashes.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == sha, name
    # And the script is the version pinned, under its MIT licence
    assert (VENDOR / "uPlot.iife.min.js").read_text().startswith(f"/*! https://github.com/leeoniya/uPlot (v{version}) */")
    assert "The MIT License" in (VENDOR / "LICENSE").read_text()


def test_the_console_shell_loads_the_vendored_files_before_its_modules():
    html = (ROOT / "app" / "templates" / "console.html").read_text()
    script = html.index("vendor/uplot/uPlot.iife.min.js")
    assert "vendor/uplot/uPlot.min.css" in html
    assert script < html.index("js/main.js")
