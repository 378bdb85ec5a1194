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
    assert "SUCCESS: 5 rules found" in check.stdout
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
        assert panel["datasource"]["uid"] == "prometheus"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            unknown = {s for s in _series(target["expr"]) if not _known(s)}
            assert not unknown, (panel["title"], unknown)
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
