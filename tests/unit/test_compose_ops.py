"""The compose file's operations side (issue 22), checked without Docker
(``docker compose config`` where the plugin exists): the API published on
127.0.0.1 unless told otherwise, API_TOKEN and LOG_FORMAT passed through,
the workers' health checks, the `gpu` and `monitoring` profiles, and who migrates."""

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _default(value):
    match = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?-(.*)\}", str(value))
    return (match.group(1), match.group(2)) if match else (None, str(value))


def test_the_api_listens_on_loopback_by_default_and_takes_its_token_and_log_format_from_the_environment():
    services = _compose()["services"]
    # Given the API's published port: API_BIND, 127.0.0.1 unless set
    (port,) = services["api"]["ports"]
    bind, host_port, container_port = port.rsplit(":", 2)
    assert _default(bind) == ("API_BIND", "127.0.0.1") and (host_port, container_port) == ("8000", "8000")
    # And API_TOKEN / LOG_FORMAT from `.env` or the shell
    api = services["api"]["environment"]
    assert _default(api["API_TOKEN"]) == ("API_TOKEN", "")
    for name in ("api", "worker", "worker-gpu", "migrate"):
        assert _default(services[name]["environment"]["LOG_FORMAT"]) == ("LOG_FORMAT", "text"), name
        assert _default(services[name]["environment"]["GIT_COMMIT"])[0] == "GIT_COMMIT", name
    # And nothing else is published on every interface
    for name, service in services.items():
        for published in service.get("ports", []):
            bind, _, _ = published.rsplit(":", 2)
            assert _default(bind)[1] == "127.0.0.1", (name, published)


def test_every_worker_has_a_health_check_on_its_metrics_port():
    services = _compose()["services"]
    for name in ("worker", "worker-gpu"):
        check = services[name]["healthcheck"]
        port = services[name]["environment"]["METRICS_PORT"]
        assert check["test"][0] == "CMD" and f"127.0.0.1:{port}/metrics" in " ".join(check["test"]), name
        assert check["interval"] and check["retries"] >= 3 and check["start_period"]


def test_monitoring_and_gpu_are_profiles_a_plain_up_leaves_out():
    services = _compose()["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"] == services["grafana"]["profiles"]
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    plain = {name for name, service in services.items() if "profiles" not in service}
    assert plain == {"postgres", "seaweedfs", "migrate", "api", "worker"}
    # The monitoring profile mounts the deploy/ configs that exist
    mounts = [v.split(":")[0] for name in ("prometheus", "grafana") for v in services[name]["volumes"]]
    for source in mounts:
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def test_docker_compose_config_accepts_the_file_with_each_profile():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` here: the YAML checks above stand in for it")
    for profiles in ([], ["--profile", "gpu"], ["--profile", "monitoring"]):
        result = subprocess.run([docker, "compose", *profiles, "config", "--quiet"], cwd=ROOT, capture_output=True,
                                text=True)
        assert result.returncode == 0, (profiles, result.stderr)


def test_only_the_migrate_service_migrates():
    services = _compose()["services"]
    # The API and every worker start with AUTO_MIGRATE=0, after the migrate service completed
    for name in ("api", "worker", "worker-gpu"):
        assert services[name]["environment"]["AUTO_MIGRATE"] == "0", name
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    # And the migrate service applies them (AUTO_MIGRATE left alone: `tasks.migrate` applies what is pending)
    assert services["migrate"]["command"] == ["python", "-m", "tasks.migrate"]
    assert "AUTO_MIGRATE" not in services["migrate"]["environment"]

