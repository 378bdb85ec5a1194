# Two images from one file, each a build target of docker-compose.yml:
#
#   api     the API (gunicorn) and the one-shot migration: app/ and tasks/ on
#           the platform's own dependencies, without the training stack
#           (setup.cfg's `train` extra: no jax, tunix, flax, orbax).  It reads
#           checkpoints from the artifact store (ARTIFACTS_URL), no disk shared
#           with the workers.
#   worker  the worker launch (`python -m workers`): the same dependencies
#           plus the `train` extra, and workers/.  JAX on the CPU.
#   worker-gpu  the same worker with JAX's CUDA 12 backend (`jax[cuda12]`:
#           jax-cuda12-plugin and jax-cuda12-pjrt at jaxlib's version, and
#           NVIDIA's CUDA, cuDNN and NCCL wheels, pinned in
#           constraints-gpu.txt).  No CUDA toolkit in the image: the host
#           needs an NVIDIA driver for CUDA 12 (525.60.13 or newer) and the
#           NVIDIA Container Toolkit (docker-compose.yml's `gpu` profile).
#
#   docker build --target api -t tunix-rt-api .
#   docker build --target worker -t tunix-rt-worker .
#   docker build --target worker-gpu -t tunix-rt-worker-gpu .
#
# The worker is the last stage: a plain `docker build .` builds it.

# ---------------------------------------------------------------- base
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

WORKDIR /srv/tunix-rt

# PostgreSQL refuses to run as root, and so should the services.
RUN useradd --create-home --uid 10001 tunix \
 && mkdir -p /data \
 && chown tunix:tunix /data

# Dependencies first (layers that only change with setup.cfg): install the
# pinned requirements of an empty skeleton of the packages, then drop it.
COPY setup.cfg pyproject.toml README.md constraints.txt ./

# ---------------------------------------------------------------- api-deps
# The `server` extra (install_requires alone is the client: `tunix`); no
# `local` (the images use a PostgreSQL server, no embedded one), no `train`.
FROM base AS api-deps
RUN mkdir -p app tasks \
 && touch app/__init__.py tasks/__init__.py \
 && pip install -c constraints.txt '.[server]' \
 && pip uninstall -y tunix-rt \
 && rm -rf app tasks build *.egg-info

# ---------------------------------------------------------------- worker-deps
# The API's layer (the `server` extra, installed there) plus the training
# stack (the `train` extra) on top of it.
FROM api-deps AS worker-deps
RUN mkdir -p app tasks workers \
 && touch app/__init__.py tasks/__init__.py workers/__init__.py \
 && pip install -c constraints.txt '.[train]' \
 && pip uninstall -y tunix-rt \
 && rm -rf app tasks workers build *.egg-info

# ---------------------------------------------------------------- api
FROM api-deps AS api
# Only what the API and the migration run, and the `tunix` command
# (`docker compose exec api tunix list`): no workers/, no tests.
COPY app ./app
COPY tasks ./tasks
COPY tunix_cli ./tunix_cli
# Read by gunicorn from its working directory (LOG_FORMAT).
COPY gunicorn.conf.py ./
RUN pip install --no-deps . && rm -rf build *.egg-info \
 && python -c "import sys, app; app.create_app(); \
bad = sorted(m for m in ('jax', 'jaxlib', 'flax', 'tunix', 'orbax', 'optax', 'workers') if m in sys.modules); \
sys.exit(f'the API imported {bad}' if bad else 0)"
USER tunix
# No VOLUME: the API keeps nothing on disk (checkpoints come from the store).
EXPOSE 8000
# The same command as docker-compose.yml's (--timeout: SYNC_TIMEOUT_S + 60).
CMD ["sh", "-c", "t=${SYNC_TIMEOUT_S:-300}; exec gunicorn --worker-class gthread --workers 1 --threads \"${API_THREADS:-256}\" --bind 0.0.0.0:8000 --timeout \"$(( ${t%.*} + 60 ))\" --no-control-socket 'app:create_app()'"]

# ---------------------------------------------------------------- worker-gpu-deps
# The worker's layers plus JAX's CUDA 12 backend, in a layer of its own
# (~3 GB of NVIDIA wheels) that only changes with the pins.  A plugin whose
# version is not jaxlib's fails the build, not the first training (checked
# from the packages' metadata: loading the plugin needs the host's driver,
# which a build does not have).
FROM worker-deps AS worker-gpu-deps
COPY constraints-gpu.txt ./
RUN pip install -c constraints.txt -c constraints-gpu.txt 'jax[cuda12]==0.10.2' \
 && python -c "from importlib.metadata import version as v; \
found = {p: v(p) for p in ('jax', 'jaxlib', 'jax-cuda12-plugin', 'jax-cuda12-pjrt')}; \
assert len(set(found.values())) == 1, found; print(found)"

# ---------------------------------------------------------------- worker-gpu
# The worker stage's steps, on the GPU layers.  `device: gpu` trains on the
# GPU (JAX picks CUDA when it finds one; `auto` does too); without a usable
# GPU a `device: gpu` training fails at once with DeviceUnavailable, and
# `device: cpu` still runs on the CPU.
FROM worker-gpu-deps AS worker-gpu
COPY app ./app
COPY tasks ./tasks
COPY workers ./workers
COPY gunicorn.conf.py ./
RUN pip install --no-deps . && rm -rf build *.egg-info
USER tunix
VOLUME ["/data"]
EXPOSE 9191
CMD ["python", "-m", "workers"]

# ---------------------------------------------------------------- worker
FROM worker-deps AS worker
COPY app ./app
COPY tasks ./tasks
COPY workers ./workers
COPY gunicorn.conf.py ./
RUN pip install --no-deps . && rm -rf build *.egg-info
USER tunix
# The scratch folder (runs' job files, logs, orbax's checkpoints while they
# are written, the JAX compilation cache): a cache, refilled from the store.
VOLUME ["/data"]
EXPOSE 9191
CMD ["python", "-m", "workers"]
