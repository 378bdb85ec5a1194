"""Every alert rule has a ``promtool test rules`` case in which it fires
(``deploy/prometheus/alerts_test.yml``; promtool runs them in
``tests/unit/test_deploy_files.py``), and the API and the workers have a
scrape-health (``up``/``absent``) alert."""

import pathlib

import yaml

PROMETHEUS = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _rules():
    return [rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not():
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    fires, quiet = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _rules()}
    assert names - fires == set(), "alerts never seen firing in alerts_test.yml"
    assert names - quiet == set(), "alerts never seen quiet in alerts_test.yml"
    assert (fires | quiet) <= names, "tests of alerts that do not exist"


def test_the_api_and_the_workers_each_have_an_absent_up_alert():
    exprs = {rule["alert"]: rule["expr"] for rule in _rules()}
    for job in ("tunix-api", "tunix-workers"):
        assert any(f'absent(up{{job="{job}"}}' in expr for expr in exprs.values()), job
    # the jobs named are the scrape config's
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert {"tunix-api", "tunix-workers"} <= {job["job_name"] for job in config["scrape_configs"]}
