"""The CLI's profiles: where ``tunix login`` keeps an API's URL and token.

One TOML file, ``$XDG_CONFIG_HOME/tunix/config.toml`` (else
``~/.config/tunix/config.toml``), one table per profile::

    [profiles.default]
    url = "http://127.0.0.1:8000"
    token = "tnx_..."
    user = "alice"

``--profile`` or ``TUNIX_PROFILE`` picks one; without either, the one named
``default`` (when there is one).  What a command uses (``resolve``): each of
the URL and the token from the command line, else the environment
(``TUNIX_URL``, ``TUNIX_TOKEN``: what the CLI read before profiles, unchanged),
else the profile; the URL last from ``DEFAULT_URL``.  A profile's token goes
only to its own URL: with a URL from the command line or the environment that
is not the profile's, it is left out (``Resolved.withheld`` says so), so a
stray ``TUNIX_URL`` never hands the token to another server.

The file holds tokens, so it is private from its first byte: written whole
to a sibling created with mode 0600 (``O_EXCL``), fsynced, then renamed over
the old one (a reader sees the old file or the new, never a part, and never a
moment of wider permissions), its folder 0700; writers take an ``flock`` on
``config.toml.lock``, so two ``tunix login`` at once both land.  It is read
with the standard ``tomllib`` and written by hand (the format is this fixed
one: tables of strings): ``toml`` in the venv is an unpinned, unmaintained
transitive package, and ``tomli_w`` is not installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
import tomllib
import uuid

#: The URL when nothing names one (``client.DEFAULT_URL``, repeated to keep this module import-light).
DEFAULT_URL = "http://127.0.0.1:8000"
#: The profile used when none is picked.
DEFAULT_PROFILE = "default"
#: A profile's name: what a shell and a TOML key both take without surprises.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: The keys a profile keeps; others read from the file are kept if they are strings.
KEYS = ("url", "token", "user")


class ProfileError(Exception):
    """The config file cannot be read, or names no such profile (never says a token)."""


def config_path(environ=None):
    """``$XDG_CONFIG_HOME/tunix/config.toml``; per the XDG spec, a relative or
    empty ``XDG_CONFIG_HOME`` is ignored, and then ``~/.config`` is used."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return os.path.join(base, "tunix", "config.toml")


def load(path):
    """``{name: {key: value}}`` from the file; ``{}`` when there is none."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        # tomllib's message names a line and column, never the content
        raise ProfileError(f"{path}: {exc}") from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ProfileError(f"{path}: [profiles.NAME] tables expected")
    return {name: {k: v for k, v in p.items() if isinstance(v, str)} for name, p in profiles.items()}


def loose_mode(path):
    """The file's mode when others than its owner may read or write it, else None."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def check_name(name):
    if not NAME_PATTERN.match(name or ""):
        raise ProfileError(f"bad profile name {name!r}: letters, digits, '.', '_' and '-', at most 63")
    return name


# --------------------------------------------------------------------------- writing

def _quote(value):
    """A TOML basic string (``"..."``): backslash, quote and every control
    character escaped, so any string reads back as itself."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(name):
    """A TOML key: bare when it may be, quoted otherwise."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _quote(name)


def dumps(profiles):
    """The file's text for ``{name: {key: str}}`` (keys sorted, ``KEYS`` first)."""
    lines = ["# tunix CLI profiles, written by `tunix login` and `tunix logout`.",
             "# It holds API tokens: keep it private (mode 0600)."]
    for name in sorted(profiles):
        lines += ["", f"[profiles.{_key(name)}]"]
        entries = profiles[name]
        for key in [k for k in KEYS if k in entries] + sorted(k for k in entries if k not in KEYS):
            lines.append(f"{_key(key)} = {_quote(str(entries[key]))}")
    return "\n".join(lines) + "\n"


def write_private(path, text):
    """Replace ``path`` with ``text`` atomically; the file is 0600 from its
    creation (never wider, even for a moment) and its folder 0700."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    with contextlib.suppress(OSError):  # the rename itself survives a crash
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _locked(path):
    import fcntl

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def save_profile(path, name, **values):
    """Set ``values`` (None: remove that key) in profile ``name``, creating
    it; the other profiles stay as they are."""
    check_name(name)
    with _locked(path):
        profiles = load(path)
        profile = profiles.setdefault(name, {})
        for key, value in values.items():
            if value is None:
                profile.pop(key, None)
            else:
                profile[key] = str(value)
        write_private(path, dumps(profiles))
    return profile


# --------------------------------------------------------------------------- resolving

@dataclasses.dataclass(frozen=True)
class Resolved:
    """What a command uses.  ``url_from``/``token_from``: ``flag``, ``env``,
    ``profile``, ``default`` or None (no token).  ``withheld``: the profile's
    token was left out because the URL is not the profile's."""

    url: str
    token: str | None = dataclasses.field(repr=False)
    profile: str | None
    url_from: str
    token_from: str | None
    withheld: bool = False
    path: str | None = None


def _same_url(a, b):
    return a.rstrip("/") == b.rstrip("/")


def resolve(url=None, token=None, profile=None, environ=None, path=None):
    """The URL and token a command uses: flags (``url``, ``token``,
    ``profile``) over the environment (``TUNIX_URL``, ``TUNIX_TOKEN``,
    ``TUNIX_PROFILE``) over the profile.  A profile picked by name
    (flag or environment) must exist; the implicit ``default`` need not."""
    environ = os.environ if environ is None else environ
    path = path or config_path(environ)
    picked = profile or environ.get("TUNIX_PROFILE") or None
    name = picked or DEFAULT_PROFILE
    profiles = load(path)
    if picked is not None and picked not in profiles:
        raise ProfileError(f"no profile {picked!r} in {path} (tunix login --profile {picked})")
    entries = profiles.get(name, {})

    env_url, env_token = environ.get("TUNIX_URL") or None, environ.get("TUNIX_TOKEN") or None
    if url:
        chosen_url, url_from = url, "flag"
    elif env_url:
        chosen_url, url_from = env_url, "env"
    elif entries.get("url"):
        chosen_url, url_from = entries["url"], "profile"
    else:
        chosen_url, url_from = DEFAULT_URL, "default"
    chosen_url = chosen_url.rstrip("/")

    withheld = False
    if token:
        chosen_token, token_from = token, "flag"
    elif env_token:
        chosen_token, token_from = env_token, "env"
    elif entries.get("token"):
        if _same_url(chosen_url, entries.get("url") or DEFAULT_URL):
            chosen_token, token_from = entries["token"], "profile"
        else:
            chosen_token, token_from, withheld = None, None, True
    else:
        chosen_token, token_from = None, None
    return Resolved(chosen_url, chosen_token, name if entries else picked, url_from, token_from, withheld, path)
