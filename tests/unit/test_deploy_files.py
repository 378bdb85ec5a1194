"""The compose stack's pieces, checked without Docker: the Prometheus config
and alert rules (promtool), the Grafana dashboard, the compose file."""

import json
import pathlib
import re
import shutil
import subprocess
import warnings

import pytest
import yaml

from app import observability
from tasks import metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

#: Every series the platform exports, by name (histograms add _bucket/_sum/_count).
EXPORTED = {
    metrics.RUNS_TOTAL._name + "_total", metrics.RUNS_DURATION._name, metrics.QUEUE_WAIT._name,
    metrics.DB_WRITE_LATENCY._name, metrics.RUNS_RECOVERED._name + "_total", metrics.RUNS_RETRIED._name + "_total",
    observability.HTTP_REQUESTS._name + "_total", observability.HTTP_LATENCY._name,
    "tunix_runs_in_state", "tunix_queue_oldest_pending_age_seconds", "tunix_workers_alive",
    "tunix_queue_depth", "tunix_queue_in_flight", metrics.BUILD_INFO._name,
    metrics.STORE_UPLOADS._name + "_total", metrics.STORE_FAILURES._name + "_total",
    metrics.STORE_RETRIES._name + "_total", metrics.STORE_BYTES._name + "_total",
}


def _series(expr):
    return {name for name in re.findall(r"\b(tunix_[a-z_]+)", expr)}


def _known(name):
    suffixes = ("", "_bucket", "_sum", "_count")
    return any(name == base + suffix for base in EXPORTED for suffix in suffixes)


def promtool():
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found (Debian package 'prometheus'; `make test` installs it): SKIPPING rule checks"
        warnings.warn(message)
        pytest.skip(message)
    return path


def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    # Given the repository's rules; When promtool checks them and runs their tests; Then both succeed
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(DEPLOY / "prometheus/alerts.yml")], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    assert f"SUCCESS: {len(rules)} rules found" in check.stdout
    tests = subprocess.run([tool, "test", "rules", "alerts_test.yml"], cwd=DEPLOY / "prometheus",
                           capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_prometheus_config_is_valid_and_discovers_every_worker_replica(tmp_path):
    # Given the scrape config with its rule file where the container mounts it
    tool = promtool()
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    shutil.copy(DEPLOY / "prometheus/alerts.yml", tmp_path / "alerts.yml")
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    # When promtool checks it
    check = subprocess.run([tool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                           text=True)
    # Then it is valid, and workers are found by DNS (one record per replica), not a fixed list
    assert check.returncode == 0, check.stdout + check.stderr
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["tunix-workers"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert jobs["tunix-workers"]["dns_sd_configs"][0]["port"] == 9191
    assert jobs["tunix-api"]["dns_sd_configs"][0]["port"] == 8000


def test_alert_rules_cover_the_four_situations_and_use_only_exported_series():
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    names = {rule["alert"] for rule in rules}
    assert {"TunixNoWorkersWithPendingRuns", "TunixOldestPendingRunTooOld", "TunixHighFailureRatio",
            "TunixDbWriteLatencyHigh"} <= names
    for rule in rules:
        unknown = {s for s in _series(rule["expr"]) if not _known(s)}
        assert not unknown, (rule["alert"], unknown)


def test_dashboard_has_the_promised_panels_on_exported_series_only():
    # Given the provisioned dashboard
    dashboard = json.loads((DEPLOY / "grafana/dashboards/tunix.json").read_text())
    panels = dashboard["panels"]
    # Then it has one panel per promised view, each with queries on the Prometheus data source
    titles = " | ".join(p["title"].lower() for p in panels)
    for words in ("status", "queue depth", "oldest pending", "queue wait", "duration", "db write", "workers alive",
                  "error rate"):
        assert words in titles or words.replace("db write", "registry write") in titles, words
    for panel in panels:
        # the data source of the import's input (provisioned: the variable of that name, the default Prometheus)
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            unknown = {s for s in _series(target["expr"]) if not _known(s)}
            assert not unknown, (panel["title"], unknown)
            # and every series is scoped to the chosen hosts
            assert target["expr"].count('instance=~"$instance"') == len(re.findall(r"\btunix_[a-z_]+", target["expr"]))
    # Importable into another Grafana: one data source input, and a host variable over the scraped targets
    assert [(i["name"], i["type"], i["pluginId"]) for i in dashboard["__inputs"]] == \
        [("DS_PROMETHEUS", "datasource", "prometheus")]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query" and variables["instance"]["includeAll"]
    assert "label_values(up" in variables["instance"]["query"]["query"]
    # and the provisioning points Grafana at it
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/tunix.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_file_scales_workers_and_mounts_the_observability_config():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "api", "worker", "prometheus", "grafana"} <= set(services)
    worker = services["worker"]
    # `--scale worker=N` needs no fixed name and no host port
    assert "container_name" not in worker and "ports" not in worker
    assert worker["restart"] == "unless-stopped"
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


# --------------------------------------------------------------------------
# The artifact store in compose, and the two images


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _default(value):
    """What a compose ``${VAR:-default}`` gives when VAR is unset."""
    match = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-(.*)\}", str(value))
    return match.group(1) if match else str(value)


def _volumes(service):
    """``(source or None for an anonymous volume, target)`` of each of a service's mounts."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append((volume.get("source"), volume["target"]))
        else:
            parts = volume.split(":")
            mounts.append((parts[0], parts[1]) if len(parts) > 1 else (None, parts[0]))
    return mounts


def test_compose_file_has_an_s3_store_that_api_and_workers_use_instead_of_a_shared_volume():
    compose = _compose()
    services = compose["services"]
    # Given an S3 service pinned by tag, with its own volume and a health check
    store = services["seaweedfs"]
    image, _, tag = store["image"].partition(":")
    assert image == "chrislusf/seaweedfs" and tag and tag != "latest", store["image"]
    assert store["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert "8333" in " ".join(store["healthcheck"]["test"])
    store_volumes = {source for source, _ in _volumes(store)}
    assert store_volumes and store_volumes <= set(compose["volumes"])
    command = store["command"]
    bucket = _default(next(arg.split("=", 1)[1] for arg in command if arg.startswith("-bucket=")))
    assert command[0] == "mini" and "-dir=/data" in command
    # the store's only identity, from the environment
    keys = {name: _default(store["environment"][name]) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    assert all(keys.values())
    # Then the API, the migration and every worker reach that bucket with those keys
    for name in ("api", "worker", "migrate"):
        env = {key: _default(value) for key, value in services[name]["environment"].items()}
        assert env["ARTIFACTS_URL"].startswith(f"s3://{bucket}/"), (name, env["ARTIFACTS_URL"])
        assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333", name
        assert env["AWS_REGION"]
        for key, value in keys.items():
            assert env[key] == value, (name, key)
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["seaweedfs"]["condition"] == "service_healthy", name
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    # and no volume is shared: the API has none, each worker replica an anonymous scratch volume of its own
    assert _volumes(services["api"]) == [] and _volumes(services["migrate"]) == []
    assert _volumes(services["worker"]) == [(None, "/data")]
    named = {}
    for name, service in services.items():
        for source, _ in _volumes(service):
            if source and not source.startswith(("./", "/")):
                named.setdefault(source, set()).add(name)
    assert {source: users for source, users in named.items() if len(users) > 1} == {}
    assert "tunix-data" not in compose["volumes"]


def test_compose_builds_the_api_and_the_workers_from_their_own_targets():
    services = _compose()["services"]
    stages = _dockerfile_stages()
    for name, target in (("api", "api"), ("migrate", "api"), ("worker", "worker")):
        build = services[name]["build"]
        assert build["target"] == target and target in stages, name
        assert (ROOT / build["context"] / "Dockerfile").exists()
    assert services["api"]["image"] != services["worker"]["image"]


def _dockerfile_stages():
    """``{stage: (parent, [instruction, ...])}`` of the Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.IGNORECASE)
        if match:
            current = match.group(2) or f"stage-{len(stages)}"
            stages[current] = (match.group(1), [])
        else:
            stages[current][1].append(line)
    return stages


def _chain(stages, name):
    """Every instruction a stage's image is built with, its parents' first."""
    lines = []
    while name in stages:
        parent, own = stages[name]
        lines = own + lines
        name = parent
    return lines


def _train_extra():
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.extras_require"]["train"].splitlines()
    return {re.split(r"[=<>!~\[ ]", line.strip())[0] for line in lines if line.strip() and not line.startswith("#")}


def test_the_api_image_installs_no_training_stack_and_the_worker_image_does():
    stages = _dockerfile_stages()
    train = _train_extra()
    assert {"jax", "google-tunix", "orbax-checkpoint", "flax"} <= train
    api_lines, worker = _chain(stages, "api"), " ".join(_chain(stages, "worker"))
    # What the API's build installs: every pip install of its stages
    installs = " ".join(step for line in api_lines if line.upper().startswith("RUN")
                        for step in re.split(r"&&|;", line) if "pip install" in step)
    assert installs
    # never names the `train` extra, nor any package of it; and workers/ is not copied
    assert "[train" not in installs and not re.search(r"\[[^\]]*\btrain\b", installs)
    assert not [package for package in train if re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", installs)]
    assert not [line for line in api_lines if re.match(r"(COPY|ADD)\s.*\bworkers\b", line, re.IGNORECASE)]
    # The worker's does
    assert ".[train]" in worker and "COPY workers" in worker


API_IMPORT_CHECK = r"""
import importlib, pkgutil, sys

BLOCKED = ("jax", "jaxlib", "flax", "tunix", "orbax", "optax", "safetensors", "workers")

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the API image")

sys.meta_path.insert(0, Block())
import app, tasks
app.create_app()
for package in (app, tasks):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
print("ok")
"""


def test_the_api_and_every_shared_module_import_without_the_training_stack(tmp_path):
    # Given an interpreter where jax, tunix, flax, orbax, optax and workers/ cannot be imported
    # (what the API image lacks); When the API is created and every module of app/ and tasks/ imported
    env = {key: value for key, value in __import__("os").environ.items() if not key.startswith("COVERAGE")}
    env.update(DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    env.pop("DATABASE_URL", None)
    result = subprocess.run([__import__("sys").executable, "-c", API_IMPORT_CHECK], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    # Then nothing needed them
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


# --------------------------------------------------------------------------
# The GPU worker: a build target and a compose profile


def _pins(path):
    """``{package: version}`` of a constraints file (every line ``name==version``)."""
    pins = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and not re.search(r"[<>=!~;,\s]", version), (path, line)
            pins[name.lower()] = version
    return pins


def test_the_gpu_worker_image_is_the_worker_with_jax_cuda12_at_jaxlibs_version():
    stages = _dockerfile_stages()
    # Given the worker-gpu target; a plain `docker build .` still builds the CPU worker (the last stage)
    assert {"worker-gpu-deps", "worker-gpu"} <= set(stages)
    assert list(stages)[-1] == "worker"
    # Then it builds on the worker's dependencies (the pinned project with its `train` extra)
    assert stages["worker-gpu-deps"][0] == "worker-deps" and stages["worker-gpu"][0] == "worker-gpu-deps"
    chain = " ".join(_chain(stages, "worker-gpu"))
    assert ".[train]" in chain and "-c constraints.txt" in chain
    # plus jax[cuda12] at the version constraints.txt pins for jax and jaxlib, under the GPU pins
    pins, gpu = _pins("constraints.txt"), _pins("constraints-gpu.txt")
    assert pins["jax"] == pins["jaxlib"]
    assert f"'jax[cuda12]=={pins['jax']}'" in chain and "-c constraints-gpu.txt" in chain
    assert "COPY constraints-gpu.txt" in chain
    assert gpu["jax-cuda12-plugin"] == gpu["jax-cuda12-pjrt"] == pins["jaxlib"]
    assert {name for name in gpu if name.startswith("nvidia-")} >= {"nvidia-cudnn-cu12", "nvidia-cublas-cu12",
                                                                    "nvidia-nccl-cu12", "nvidia-cuda-runtime-cu12"}
    assert not set(gpu) & set(pins), "a GPU pin must not contradict constraints.txt"
    # And its own steps are the CPU worker's: the same code, user, volume, port and command
    assert stages["worker-gpu"][1] == stages["worker"][1]


def test_compose_gpu_profile_runs_the_gpu_worker_on_one_reserved_nvidia_gpu():
    compose = _compose()
    services, stages = compose["services"], _dockerfile_stages()
    gpu, cpu = services["worker-gpu"], services["worker"]
    # Given the GPU worker: only in the `gpu` profile; a plain `docker compose up` is unchanged
    assert gpu["profiles"] == ["gpu"] and "profiles" not in cpu
    assert gpu["build"]["target"] == "worker-gpu" in stages
    assert (ROOT / gpu["build"]["context"] / "constraints-gpu.txt").exists()
    assert gpu["image"] not in (cpu["image"], services["api"]["image"])
    # Then each replica reserves one NVIDIA GPU
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    # And it is configured as the CPU worker is (the same store, database, scratch volume, metrics), one training
    # at a time on its GPU, JAX not taking the GPU's memory at start
    env, cpu_env = gpu["environment"], cpu["environment"]
    shared = {k: v for k, v in cpu_env.items() if k not in ("WORKERS", "WORKER_QUEUES")}
    assert {k: env.get(k) for k in shared} == shared
    assert env["TRAIN_CONCURRENCY"] == "1" and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert "WORKER_QUEUES" not in env  # it serves every queue, trainings included
    for key in ("command", "depends_on", "volumes", "tmpfs", "expose", "restart", "stop_grace_period"):
        assert gpu[key] == cpu[key], key
    assert "container_name" not in gpu and "ports" not in gpu
    # and Prometheus finds its replicas under the workers' name
    assert "worker" in gpu["networks"]["default"]["aliases"]
    # And the CPU workers can leave trainings to it (an empty list: every queue)
    assert _default(cpu_env["WORKER_QUEUES"]) == ""
