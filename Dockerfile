# One image for every service of docker-compose.yml: the API (gunicorn), the
# worker launch (`python -m workers`, the training stack included) and the
# one-shot migration.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

WORKDIR /srv/tunix-rt

# Dependencies first (a layer that only changes with setup.cfg): install the
# pinned requirements of an empty skeleton of the packages, then drop it.
COPY setup.cfg pyproject.toml README.md constraints.txt ./
RUN mkdir -p app tasks workers \
 && touch app/__init__.py tasks/__init__.py workers/__init__.py \
 && pip install -c constraints.txt '.[train]' \
 && pip uninstall -y tunix-rt \
 && rm -rf app tasks workers build *.egg-info

# The code (only what the services run: no tests, bench or venv).
COPY app ./app
COPY tasks ./tasks
COPY workers ./workers
# Read by gunicorn from its working directory (LOG_FORMAT).
COPY gunicorn.conf.py ./
RUN pip install --no-deps . && rm -rf build *.egg-info

# PostgreSQL refuses to run as root, and so should the services.
RUN useradd --create-home --uid 10001 tunix \
 && mkdir -p /data \
 && chown tunix:tunix /data
USER tunix
VOLUME ["/data"]

EXPOSE 8000 9191
CMD ["python", "-m", "workers"]
