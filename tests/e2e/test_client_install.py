"""``pip install tunix-rt`` is the client alone: the ``tunix`` command and
its Python client, on any Python from 3.11, pulling no server package.

* In this venv: importing ``tunix_cli`` (the CLI, the client, every command
  module) loads no third-party package outside the client's requirements
  (setup.cfg's ``install_requires`` and what they require).
* In a clean Python 3.12 virtualenv (pyenv's 3.12.1): ``pip install`` of a
  copy of the project, as a user would (build isolation included), from the
  wheels ``make test-tools`` downloaded into ``.venv/client-wheels`` with
  ``--no-index`` (nothing is downloaded here); then ``tunix --version`` and
  ``tunix list`` against a live API, ``import tunix_cli`` and its
  ``py.typed``, no database, JAX, S3, broker or web-server package in
  ``pip list``, and a server script (``tunix-worker``) saying which extra it
  needs instead of a traceback.  Skipped, saying why, without Python 3.12
  or the wheels.
"""

import configparser
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

from support import start_api

ROOT = pathlib.Path(__file__).resolve().parents[2]
WHEELS = pathlib.Path(os.environ.get("TUNIX_CLIENT_WHEELS", ROOT / ".venv" / "client-wheels"))
#: The interpreter of the clean install (pyenv's 3.12.1, or TUNIX_PY312).
PY312 = os.environ.get("TUNIX_PY312") or os.path.join(
    os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"), "versions", "3.12.1", "bin", "python")
#: Distributions the client must not pull: the database, JAX, S3, the broker, the web server.
SERVER_PACKAGES = ("psycopg2-binary", "psycopg2", "pgserver", "jax", "jaxlib", "flax", "google-tunix", "s3fs",
                   "botocore", "aiobotocore", "dramatiq", "dramatiq-pg", "flask", "gunicorn", "swagger-ui-py",
                   "prometheus-client", "pydantic-settings", "psutil")
#: What the project's copy needs to build: its packages and metadata.
PROJECT_FILES = ("setup.cfg", "pyproject.toml", "README.md", "app", "tasks", "workers", "tunix_cli")


def _name(requirement):
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _client_requirements():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _closure(names):
    """The distributions ``names`` need, transitively (extras and markers
    that do not apply left out), from this venv's metadata."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in importlib.metadata.requires(name) or ():
            head, _, marker = requirement.partition(";")
            if marker.strip() and ("extra" in marker or not _marker_holds(marker)):
                continue
            todo.append(_name(head))
    return seen


def _marker_holds(marker):
    from packaging.markers import Marker  # pip's vendored copy is not public; packaging is in the venv

    return Marker(marker).evaluate()


IMPORT_CLIENT = """
import json, sys
before = set(sys.modules)
import tunix_cli, tunix_cli.cli, tunix_cli.accounts, tunix_cli.profiles, tunix_cli.client
print(json.dumps(sorted({m.split(".")[0] for m in set(sys.modules) - before})))
"""


def test_the_client_requires_ranges_only_and_imports_nothing_outside_them():
    # Given setup.cfg's install_requires: compatible ranges, none of the server's packages
    requirements = _client_requirements()
    assert requirements and all(re.search(r">=[^,]+,<", r) for r in requirements), requirements
    assert not {_name(r) for r in requirements} & set(SERVER_PACKAGES)
    allowed = _closure({_name(r) for r in requirements}) | {"tunix-rt"}
    # When the client and every command module are imported (a fresh interpreter)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", IMPORT_CLIENT], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    # Then every third-party module it loaded belongs to one of those distributions
    owners = importlib.metadata.packages_distributions()
    third_party = {m: {_name(d) for d in owners[m]} for m in loaded if m in owners}
    outside = {m: dists for m, dists in third_party.items() if not dists & allowed}
    assert not outside, f"tunix_cli imports packages the client does not require: {outside}"
    assert {"click", "httpx", "pydantic", "yaml"} <= set(third_party)


def test_the_extras_are_ranges_and_constraints_txt_pins_each_inside_its_range():
    from packaging.requirements import Requirement

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    pinned = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    pinned = {_name(name): version.strip() for name, version in pinned.items()}
    for extra, lines in config["options.extras_require"].items():
        for line in (line.strip() for line in lines.splitlines()):
            if not line or line.startswith("#"):
                continue
            requirement = Requirement(line)
            # Given each extra's requirement: a range, never an exact pin (constraints.txt holds those)
            assert re.search(r">=[^,]+,<", line) and "==" not in line, (extra, line)
            # Then the tested version (constraints.txt, what `make install` uses) is inside it
            if _name(line) == "setuptools":
                continue  # pip freeze leaves it out of constraints.txt
            version = pinned.get(_name(line))
            assert version is not None, f"{line} ({extra}) is not in constraints.txt"
            assert requirement.specifier.contains(version, prereleases=True), (extra, line, version)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory):
    if not os.access(PY312, os.X_OK):
        pytest.skip(f"no Python 3.12 at {PY312} (pyenv install 3.12.1, or TUNIX_PY312=...)")
    if not (WHEELS / ".done").exists():
        pytest.skip(f"no client wheels in {WHEELS}: make test-tools downloads them (make client-wheels)")
    root = tmp_path_factory.mktemp("client-install")
    # A copy of the project: pip builds in the source tree, which is shared
    project = root / "tunix-rt"
    project.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, project / name)
    venv = root / "venv"
    subprocess.run([PY312, "-m", "venv", str(venv)], check=True, timeout=120)
    # No pip configuration of this machine (its find-links, indexes, constraints): the wheels alone
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "COVERAGE", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    started = time.monotonic()
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--find-links", str(WHEELS),
                                str(project)], capture_output=True, text=True, timeout=300, env=env)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    venv_env = dict(env, PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    return venv, venv_env, time.monotonic() - started


def test_pip_install_on_python_312_is_the_client_alone_and_it_lists_runs(client_venv, databases, tmp_path,
                                                                         log_dir):
    venv, env, install_s = client_venv
    pip, tunix = str(venv / "bin" / "pip"), str(venv / "bin" / "tunix")
    # Then pip list holds no database, JAX, S3, broker or web-server package
    listed = subprocess.run([pip, "list", "--format", "json"], capture_output=True, text=True, timeout=60, env=env)
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert "tunix-rt" in names and {"click", "httpx", "pydantic", "pyyaml"} <= names, names
    assert not names & set(SERVER_PACKAGES), sorted(names & set(SERVER_PACKAGES))
    # And the client imports, typed (py.typed ships, with the answers' models it returns), on 3.12
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import sys, pathlib, tunix_cli, tasks.wire; print(sys.version_info[:2]); "
                            "print(all((pathlib.Path(m.__file__).parent / 'py.typed').exists() "
                            "for m in (tunix_cli, tasks.wire)))"],
                           capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert probe.returncode == 0 and probe.stdout.split("\n")[:2] == ["(3, 12)", "True"], probe.stdout + probe.stderr
    # And `tunix --version` says the package's version
    version = subprocess.run([tunix, "--version"], capture_output=True, text=True, timeout=60, env=env)
    assert version.returncode == 0 and "0.1.0" in version.stdout, version.stdout + version.stderr
    # And a server script says which extra it needs: one line, exit 1, no traceback
    worker = subprocess.run([str(venv / "bin" / "tunix-worker")], capture_output=True, text=True, timeout=60,
                            env=env, cwd=tmp_path)
    assert worker.returncode == 1 and "Traceback" not in worker.stderr, worker.stderr
    assert "pip install 'tunix-rt[server]'" in worker.stderr, worker.stderr
    # When `tunix list` asks a live API (the server side runs from this repository's venv)
    url = databases.create()
    api = start_api(url, tmp_path, log_dir, threads=4)
    try:
        submitted = subprocess.run([tunix, "submit", "--dataset-key", "synthetic", "--model-id", "llama3-tiny"],
                                   capture_output=True, text=True, timeout=60, env=dict(env, TUNIX_URL=api.url),
                                   cwd=tmp_path)
        assert submitted.returncode == 0, submitted.stderr
        shown = subprocess.run([tunix, "list", "--json"], capture_output=True, text=True, timeout=60,
                               env=dict(env, TUNIX_URL=api.url), cwd=tmp_path)
    finally:
        api.stop()
    # Then it lists the run the client submitted
    assert shown.returncode == 0, shown.stderr
    assert [r["run_id"] for r in json.loads(shown.stdout)["data"]] == [submitted.stdout.strip()]
    print(f"client install on Python 3.12: {install_s:.1f}s, {len(names)} packages")
