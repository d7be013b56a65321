"""The manifests a cluster user applies (``infra/k8s``): every target renders with ``kubectl kustomize``, every
document is valid against the Kubernetes 1.32 schemas (``kubernetes-validate``, strict: unknown fields fail), and
everything a manifest names is defined (claims, Secrets and ConfigMaps with their keys, ServiceAccounts, RBAC,
Services' pods), with the names the pipeline steps use, pinned images and no real secret.

Each check is also run on a planted mistake, so none of them can pass by checking nothing.
"""

from __future__ import annotations

import copy
import posixpath
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from tests.infra import checks
from tests.infra.conftest import INFRA, K8S, OVERLAYS, ROOT, TARGETS, Rendered, copy_with_example_secrets, kustomize

KUBERNETES_VERSION = "1.32"  # a current cluster; kubernetes-validate 1.37 holds the 1.25-1.37 schemas
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
FACEOPS_IMAGE = f"ghcr.io/faceops/faceops-python:{VERSION}"

# The names the pipeline steps (pipelines/platform.py), the service and the monitor read: agreed, hash-free.
ENDPOINT_KEYS = {
    "AWS_ENDPOINT_URL",
    "MLFLOW_TRACKING_URI",
    "FACEOPS_STORE",
    "FACEOPS_DVC_REMOTE",
    "FACEOPS_DATA_REPO",
    "KF_PIPELINES_ENDPOINT",
    "KF_PIPELINES_NAMESPACE",
}
SECRET_KEYS = {
    "faceops-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "faceops-mlflow": {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"},  # optional: a subset
    "faceops-api-keys": {"api-keys"},
    "faceops-database": {"url"},
}


def _validation_errors(docs: list[dict]) -> list[str]:
    errors = []
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
    return errors


# -- every target ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
def test_every_document_is_valid_against_the_kubernetes_schemas(rendered: dict[str, Rendered], target: str) -> None:
    docs = rendered[target].docs
    assert len(docs) >= 10
    assert _validation_errors(docs) == []


@pytest.mark.parametrize("target", TARGETS)
def test_everything_named_is_defined(rendered: dict[str, Rendered], target: str) -> None:
    assert checks.reference_problems(rendered[target].docs) == []


@pytest.mark.parametrize("target", TARGETS)
def test_services_select_pods_and_their_ports(rendered: dict[str, Rendered], target: str) -> None:
    assert checks.service_problems(rendered[target].docs) == []


@pytest.mark.parametrize("target", TARGETS)
def test_images_are_pinned_and_faceops_runs_the_project_version(rendered: dict[str, Rendered], target: str) -> None:
    from faceops.kfp.components.image import IMAGE

    docs = rendered[target].docs
    assert checks.image_problems(docs) == []
    faceops_images = {c["image"] for d in docs for c in checks.containers(checks.pod_spec(d) or {}) if "faceops-python" in c["image"]}
    assert faceops_images == {FACEOPS_IMAGE}
    assert IMAGE == FACEOPS_IMAGE, "components/image.py and infra/k8s/base (images:) must name the same image"


@pytest.mark.parametrize("target", TARGETS)
def test_no_real_looking_secret_is_rendered(rendered: dict[str, Rendered], target: str) -> None:
    assert checks.secret_problems(rendered[target].docs) == []


def test_no_committed_infra_file_holds_a_real_looking_secret() -> None:
    files = [
        p
        for p in INFRA.rglob("*")
        if p.is_file() and (p.parent.name != "secrets" or p.suffix == ".example") and p.name != "Dockerfile"
    ]
    assert len(files) >= 15
    hits = {str(p.relative_to(ROOT)): checks.real_looking(p.read_text()) for p in files}
    assert {k: v for k, v in hits.items() if v} == {}


@pytest.mark.parametrize("target", TARGETS)
def test_the_agreed_names_are_defined_without_hash_suffix(rendered: dict[str, Rendered], target: str) -> None:
    r = rendered[target]
    assert set(r.get("ConfigMap", "faceops-endpoints")["data"]) == ENDPOINT_KEYS
    for name, keys in SECRET_KEYS.items():
        found = set(checks.decoded(r.get("Secret", name)))
        assert found <= keys if name == "faceops-mlflow" else found == keys, (name, found)


@pytest.mark.parametrize("target", TARGETS)
def test_what_the_pipeline_steps_read_is_defined(rendered: dict[str, Rendered], target: str) -> None:
    """The pipeline pods name these through kfp-kubernetes (pipelines/platform.py), outside kustomize."""
    from faceops.kfp.pipelines import platform

    r = rendered[target]
    assert set(platform.S3_KEYS) <= set(checks.decoded(r.get("Secret", platform.S3_SECRET)))
    assert set(platform.ENDPOINT_KEYS) <= set(r.get("ConfigMap", platform.ENDPOINTS_CONFIG_MAP)["data"])
    assert set(checks.decoded(r.get("Secret", platform.MLFLOW_SECRET))) <= set(platform.MLFLOW_KEYS)  # optional keys


# -- overlays -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", OVERLAYS)
def test_an_overlay_puts_everything_in_one_namespace_that_kfp_is_told(rendered: dict[str, Rendered], target: str) -> None:
    r = rendered[target]
    namespaces = {d["metadata"].get("namespace") for d in r.docs}
    assert len(namespaces) == 1 and None not in namespaces, namespaces
    endpoints = r.get("ConfigMap", "faceops-endpoints")["data"]
    assert endpoints["KF_PIPELINES_NAMESPACE"] == namespaces.pop()
    for key in ("AWS_ENDPOINT_URL", "MLFLOW_TRACKING_URI", "KF_PIPELINES_ENDPOINT", "FACEOPS_DATA_REPO"):
        assert urlparse(endpoints[key]).scheme in ("http", "https") and urlparse(endpoints[key]).hostname, key
    for key in ("FACEOPS_STORE", "FACEOPS_DVC_REMOTE"):
        url = urlparse(endpoints[key])
        assert url.scheme == "s3" and url.netloc == url.netloc.lower() and url.path.strip("/"), (key, endpoints[key])


def test_dev_endpoints_point_at_the_services_of_the_overlay(rendered: dict[str, Rendered]) -> None:
    from mlflow.server.security_utils import is_allowed_host_header

    r = rendered["overlays/dev"]
    endpoints = r.get("ConfigMap", "faceops-endpoints")["data"]
    for key in ("AWS_ENDPOINT_URL", "MLFLOW_TRACKING_URI"):
        url = urlparse(endpoints[key])
        service = r.get("Service", url.hostname.split(".")[0])
        assert url.port in {p["port"] for p in service["spec"]["ports"]}, (key, endpoints[key])
    # MLflow's DNS-rebinding guard must accept the Host header that clients of MLFLOW_TRACKING_URI send.
    args = r.get("Deployment", "faceops-mlflow")["spec"]["template"]["spec"]["containers"][0]["args"]
    options = dict(a.removeprefix("--").split("=", 1) for a in args if a.startswith("--") and "=" in a)
    allowed = options["allowed-hosts"].split(",")
    assert is_allowed_host_header(allowed, urlparse(endpoints["MLFLOW_TRACKING_URI"]).netloc)
    assert is_allowed_host_header(allowed, "localhost:5000")  # kubectl port-forward
    assert not is_allowed_host_header(allowed, "attacker.example.com")
    assert options["backend-store-uri"].startswith("postgresql+psycopg://")
    assert "@faceops-postgres:5432/" in options["backend-store-uri"]
    assert options["artifacts-destination"] == "$(ARTIFACTS_DESTINATION)"
    destination = r.get("ConfigMap", next(n for n in r.names("ConfigMap") if n.startswith("faceops-mlflow-server")))
    assert destination["data"]["ARTIFACTS_DESTINATION"].startswith("s3://")
    env = {e["name"] for e in r.get("Deployment", "faceops-mlflow")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env
    assert r.names("PersistentVolumeClaim") == {"faceops-minio-data", "faceops-postgres-data"}
    assert {"faceops-create-buckets", "faceops-create-database"} <= r.names("Job")


def test_dev_serving_database_is_its_own_on_the_overlay_postgres(rendered: dict[str, Rendered]) -> None:
    """The serving replicas' database is on the overlay's PostgreSQL Service, beside MLflow's but not MLflow's: its
    own database and user, which the faceops-create-database Job creates from the same two Secrets."""
    from psycopg.conninfo import conninfo_to_dict

    r = rendered["overlays/dev"]
    url = conninfo_to_dict(checks.decoded(r.get("Secret", "faceops-database"))["url"])
    postgres = r.get("Service", "faceops-postgres")
    assert url["host"] == "faceops-postgres" and int(url["port"]) in {p["port"] for p in postgres["spec"]["ports"]}
    mlflow = checks.decoded(r.get("Secret", next(n for n in r.names("Secret") if n.startswith("faceops-postgres"))))
    assert url["user"] != mlflow["POSTGRES_USER"] and url["dbname"] != mlflow["POSTGRES_DB"]
    job = checks.pod_spec(r.get("Job", "faceops-create-database"))
    assert job is not None
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in job["containers"][0]["env"]}
    assert refs[checks.DATABASE_ENV] == {"name": "faceops-database", "key": "url"}
    assert {refs[k]["key"] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")} == {
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
    }


def test_production_brings_no_store_of_its_own(rendered: dict[str, Rendered]) -> None:
    r = rendered["overlays/production"]
    assert r.names("Deployment") == {"faceops-serving"}
    assert r.names("PersistentVolumeClaim") == set()
    # the serving database is yours: the overlay replaces the base's placeholder from a file kustomize requires
    kustomization = yaml.safe_load((K8S / "overlays/production/kustomization.yaml").read_text())
    database = next(g for g in kustomization["secretGenerator"] if g["name"] == "faceops-database")
    assert database["behavior"] == "replace" and database["envs"] == ["secrets/database.env"]
    serving = r.get("Deployment", "faceops-serving")["spec"]["template"]["spec"]["containers"][0]
    base = rendered["base"].get("Deployment", "faceops-serving")["spec"]["template"]["spec"]["containers"][0]
    assert serving["resources"]["requests"]["cpu"] > base["resources"]["requests"]["cpu"]


# -- serving and the monitor ------------------------------------------------------------------------------------
def _serving_container(r: Rendered) -> dict:
    spec = checks.pod_spec(r.get("Deployment", "faceops-serving"))
    assert spec is not None
    return spec["containers"][0]


@pytest.mark.parametrize("target", TARGETS)
def test_serving_replicas_share_their_state_through_postgres(rendered: dict[str, Rendered], target: str) -> None:
    """Several pods behind an HPA and a PDB, probes on /ready and /health, the database URL from a required Secret
    (base/serving.yaml says why), and no ReadWriteOnce claim under a Deployment that runs more than one pod."""
    r = rendered[target]
    assert checks.serving_problems(r.docs) == []
    assert checks.claim_problems(r.docs) == []
    serving = r.get("Deployment", "faceops-serving")
    assert "replicas" not in serving["spec"]  # the HPA owns the count: an apply must not reset it
    assert serving["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    low, high = checks.replica_range(r.docs, serving)
    assert 2 <= low < high
    spread = serving["spec"]["template"]["spec"]["topologySpreadConstraints"]
    by_node = next(c for c in spread if c["topologyKey"] == "kubernetes.io/hostname")
    assert by_node["whenUnsatisfiable"] == "DoNotSchedule"
    assert by_node["labelSelector"]["matchLabels"].items() <= checks.pod_labels(serving).items()
    hpa = r.get("HorizontalPodAutoscaler", "faceops-serving")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    # the URL names a key the Secret has, and the database is PostgreSQL as the service's settings require
    from faceops.serving.config import ServingSettings

    container = _serving_container(r)
    ref = next(e for e in container["env"] if e["name"] == checks.DATABASE_ENV)["valueFrom"]["secretKeyRef"]
    url = checks.decoded(r.get("Secret", ref["name"]))[ref["key"]]
    assert ServingSettings(database_url=url, allow_anonymous=True).database_url == url
    # --state-dir holds nothing that is state with the database set: a per-pod emptyDir, no claim at all
    spec = checks.pod_spec(serving)
    assert spec is not None
    args = container["args"]
    state = next(m for m in container["volumeMounts"] if m["mountPath"] == args[args.index("--state-dir") + 1])
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == state["name"])
    assert not any("persistentVolumeClaim" in v for v in spec["volumes"])
    keys_file = args[args.index("--api-keys-file") + 1]
    mount = next(m for m in container["volumeMounts"] if keys_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "faceops-api-keys"
    assert posixpath.basename(keys_file) in checks.decoded(r.get("Secret", "faceops-api-keys"))


@pytest.mark.parametrize("target", TARGETS)
def test_the_monitor_reads_the_service_log_and_loads_its_config(
    rendered: dict[str, Rendered], target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faceops.monitoring.config import MonitorConfig, load_monitor_config

    from faceops.settings import get_settings
    from faceops.telemetry.postgres import database_url, is_database_url

    r = rendered[target]
    cronjob = r.get("CronJob", "faceops-monitor")
    spec = checks.pod_spec(cronjob)
    assert spec is not None
    container = spec["containers"][0]
    args = container["args"]
    config_path = args[args.index("-c") + 1]
    config_mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    config_map = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == config_mount["name"])
    text = r.get("ConfigMap", config_map)["data"][posixpath.basename(config_path)]
    (tmp_path / "monitor.yaml").write_text(text)
    config = load_monitor_config(tmp_path / "monitor.yaml")  # strict: unknown keys refused
    assert config.trigger.backend == "kfp"
    assert config.state_backend == "mlflow"  # nothing the next run needs is left in the pod
    # the log the monitor reads is the database the service writes: the setting from the same Secret key, in the
    # environment (a URL with a password never on the command line)
    assert "--request-log" not in args and not any("$(" in a for a in args)
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in container["env"]}
    served = next(e for e in _serving_container(r)["env"] if e["name"] == checks.DATABASE_ENV)
    assert env["FACEOPS_MONITOR_REQUEST_LOG"] == served["valueFrom"]["secretKeyRef"]
    # what the CLI does with it (the setting, then the config's Path): the reader still sees the URL
    url = checks.decoded(r.get("Secret", served["valueFrom"]["secretKeyRef"]["name"]))["url"]
    monkeypatch.setenv("FACEOPS_MONITOR_REQUEST_LOG", url)
    get_settings.cache_clear()
    try:
        secret = get_settings().monitor_request_log
        assert secret is not None
        overridden = MonitorConfig.model_validate({**config.model_dump(), "request_log": Path(secret.get_secret_value())})
    finally:
        get_settings.cache_clear()
    assert is_database_url(overridden.request_log) and database_url(overridden.request_log) == url
    # no volume and no node affinity: the monitor may run anywhere
    assert not any("persistentVolumeClaim" in v for v in spec["volumes"])
    assert "affinity" not in spec


@pytest.mark.parametrize("target", TARGETS)
def test_the_monitor_authenticates_to_kfp_with_a_projected_token_and_may_start_runs(
    rendered: dict[str, Rendered], target: str
) -> None:
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV

    r = rendered[target]
    cronjob = r.get("CronJob", "faceops-monitor")
    spec = checks.pod_spec(cronjob)
    assert spec is not None
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    token_path = env[KF_PIPELINES_SA_TOKEN_ENV]
    mount = next(m for m in container["volumeMounts"] if token_path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    projected = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert projected["audience"] == "pipelines.kubeflow.org"
    assert posixpath.join(mount["mountPath"], projected["path"]) == token_path
    assert spec["automountServiceAccountToken"] is False  # no Kubernetes API token: it calls none
    # RBAC: the pod's ServiceAccount is bound to a Role that lets it create and read runs in KFP's API group
    sa = spec["serviceAccountName"]
    bindings = [b for b in r.of_kind("RoleBinding") if any(s["kind"] == "ServiceAccount" and s["name"] == sa for s in b["subjects"])]
    assert len(bindings) == 1
    role = r.get("Role", bindings[0]["roleRef"]["name"])
    granted = {
        (resource, verb)
        for rule in role["rules"]
        if rule["apiGroups"] == ["pipelines.kubeflow.org"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    need = {
        ("runs", "create"),
        ("runs", "get"),
        ("experiments", "get"),
        ("experiments", "create"),
        ("pipelines", "create"),
        ("pipelines/versions", "create"),
    }
    assert need <= granted
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role["rules"])


@pytest.mark.parametrize("target", TARGETS)
def test_faceops_environment_variables_are_settings_fields(rendered: dict[str, Rendered], target: str) -> None:
    """A FACEOPS_* variable that no settings class reads would be silently ignored."""
    from faceops.serving.config import ServingSettings

    from faceops.settings import Settings

    known = {f"FACEOPS_{n.upper()}" for n in Settings.model_fields} | {
        f"FACEOPS_SERVE_{n.upper()}" for n in ServingSettings.model_fields
    }
    used = {
        e["name"]
        for d in rendered[target].docs
        for c in checks.containers(checks.pod_spec(d) or {})
        for e in c.get("env", [])
        if e["name"].startswith("FACEOPS_")
    }
    assert used and used - known - ENDPOINT_KEYS == set()


@pytest.mark.parametrize("target", TARGETS)
def test_prometheus_finds_the_service_metrics_port(rendered: dict[str, Rendered], target: str) -> None:
    """infra/observability/service-monitor.yaml selects the serving Service by label and scrapes a named port."""
    from faceops.serving.config import ServingSettings

    path = INFRA / "observability" / "service-monitor.yaml"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    monitor = yaml.safe_load(path.read_text())
    services = [
        s
        for s in rendered[target].of_kind("Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"].get("labels", {}).items()
    ]
    assert [s["metadata"]["name"] for s in services] == ["faceops-serving"]
    port = next(p for p in services[0]["spec"]["ports"] if p["name"] == monitor["spec"]["endpoints"][0]["port"])
    container = rendered[target].get("Deployment", "faceops-serving")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "metrics_port" in ServingSettings.model_fields
    assert int(env["FACEOPS_SERVE_METRICS_PORT"]) == next(
        p["containerPort"] for p in container["ports"] if p["name"] == port["targetPort"]
    )


# -- the checks catch planted mistakes ----------------------------------------------------------------------------
def _planted(rendered: dict[str, Rendered]) -> list[dict]:
    return copy.deepcopy(rendered["overlays/dev"].docs)


def _doc(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_schema_validation_rejects_an_unknown_field(rendered: dict[str, Rendered]) -> None:
    docs = _planted(rendered)
    _doc(docs, "Deployment", "faceops-serving")["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    _doc(docs, "Service", "faceops-serving")["spec"]["ports"][0]["port"] = "eighty"
    errors = _validation_errors(docs)
    assert len(errors) == 2, errors
    assert "volumeMount" in errors[0] + errors[1]


def test_the_reference_check_reports_each_broken_name(rendered: dict[str, Rendered]) -> None:
    docs = _planted(rendered)
    serving = checks.pod_spec(_doc(docs, "Deployment", "faceops-serving"))
    assert serving is not None
    postgres = checks.pod_spec(_doc(docs, "Deployment", "faceops-postgres"))
    assert postgres is not None
    next(v for v in postgres["volumes"] if "persistentVolumeClaim" in v)["persistentVolumeClaim"]["claimName"] = "faceops-postgres-dat"
    env = {e["name"]: e for e in serving["containers"][0]["env"]}
    env["FACEOPS_SERVE_MLFLOW_URI"]["valueFrom"]["configMapKeyRef"]["key"] = "MLFLOW_URI"
    serving["containers"][0]["envFrom"][1]["secretRef"]["name"] = "faceops-s4"
    monitor = checks.pod_spec(_doc(docs, "CronJob", "faceops-monitor"))
    assert monitor is not None
    monitor["serviceAccountName"] = "faceops-monitr"
    _doc(docs, "RoleBinding", "faceops-monitor-kfp")["roleRef"]["name"] = "faceops-kfp"
    _doc(docs, "RoleBinding", "faceops-monitor-kfp")["subjects"][0]["namespace"] = "kubeflow"
    mlflow = checks.pod_spec(_doc(docs, "Deployment", "faceops-mlflow"))
    assert mlflow is not None
    mlflow["containers"][0]["env"] = [e for e in mlflow["containers"][0]["env"] if e["name"] != "POSTGRES_PASSWORD"]
    problems = checks.reference_problems(docs)
    expected = [
        "'faceops-postgres-dat'",
        "'MLFLOW_URI'",
        "'faceops-s4'",
        "'faceops-monitr'",
        "'faceops-kfp'",
        "namespace 'kubeflow'",
        "$(POSTGRES_PASSWORD)",
    ]
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
    assert len(problems) == len(expected) + 1  # the subject moved namespace: also not defined there


def _serving_docs(docs: list[dict]) -> tuple[dict, dict, dict, dict]:
    """The serving Deployment's api container, its HPA, its PDB and the Deployment, of planted documents."""
    deployment = _doc(docs, "Deployment", "faceops-serving")
    spec = checks.pod_spec(deployment)
    assert spec is not None
    return (
        spec["containers"][0],
        _doc(docs, "HorizontalPodAutoscaler", "faceops-serving"),
        _doc(docs, "PodDisruptionBudget", "faceops-serving"),
        deployment,
    )


def _env(container: dict, name: str) -> dict:
    return next(e for e in container["env"] if e["name"] == name)


def _one_fixed_replica(docs: list[dict]) -> None:
    _, hpa, _, deployment = _serving_docs(docs)
    docs.remove(hpa)
    deployment["spec"]["replicas"] = 1


def _no_database(docs: list[dict]) -> None:
    container = _serving_docs(docs)[0]
    container["env"].remove(_env(container, checks.DATABASE_ENV))


def _hpa_on_another_deployment(docs: list[dict]) -> None:
    _serving_docs(docs)[1]["spec"]["scaleTargetRef"]["name"] = "faceops-servng"


def _hpa_min_below_the_pdb(docs: list[dict]) -> None:
    pdb = _serving_docs(docs)[2]
    del pdb["spec"]["maxUnavailable"]
    pdb["spec"]["minAvailable"] = 2  # the dev HPA's minimum: no pod could ever be evicted


def _pdb_selects_other_pods(docs: list[dict]) -> None:
    _serving_docs(docs)[2]["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": "faceops-api"}}


def _probes_swapped(docs: list[dict]) -> None:
    container = _serving_docs(docs)[0]
    container["readinessProbe"]["httpGet"]["path"] = "/health"
    container["livenessProbe"]["httpGet"]["port"] = "metrics"


def _database_url_in_plain_text(docs: list[dict]) -> None:
    var = _env(_serving_docs(docs)[0], checks.DATABASE_ENV)
    del var["valueFrom"]
    var["value"] = "postgresql://faceops:CHANGE_ME@faceops-postgres:5432/faceops"


def _database_url_optional(docs: list[dict]) -> None:
    _env(_serving_docs(docs)[0], checks.DATABASE_ENV)["valueFrom"]["secretKeyRef"]["optional"] = True


def _state_on_a_read_write_once_claim(docs: list[dict]) -> None:
    spec = checks.pod_spec(_serving_docs(docs)[3])
    assert spec is not None
    state = next(v for v in spec["volumes"] if v["name"] == "state")
    state.pop("emptyDir")
    state["persistentVolumeClaim"] = {"claimName": "faceops-postgres-data"}  # ReadWriteOnce


PLANTED = {
    "one fixed replica": (_one_fixed_replica, ["runs 1 replica", "0 HorizontalPodAutoscalers", "needs 2 replicas"]),
    "no database URL": (_no_database, ["no FACEOPS_SERVE_DATABASE_URL"]),
    "HPA on another Deployment": (
        _hpa_on_another_deployment,
        ["Deployment/faceops-servng is not defined", "0 HorizontalPodAutoscalers", "runs 1 replica", "needs 2 replicas"],
    ),
    "HPA minimum below the PDB's need": (_hpa_min_below_the_pdb, ["needs 3 replicas to let a pod be evicted"]),
    "PDB selects other pods": (_pdb_selects_other_pods, ["does not select", "no PodDisruptionBudget selects"]),
    "probes swapped": (_probes_swapped, ["readinessProbe is GET /health", "livenessProbe is GET /health on port 'metrics'"]),
    "database URL in plain text": (_database_url_in_plain_text, ["does not come from a Secret"]),
    "database URL optional": (_database_url_optional, ["is optional"]),
}


@pytest.mark.parametrize("mistake", PLANTED)
def test_the_serving_check_reports_each_planted_mistake(rendered: dict[str, Rendered], mistake: str) -> None:
    plant, expected = PLANTED[mistake]
    docs = _planted(rendered)
    assert checks.serving_problems(docs) == []
    plant(docs)
    problems = checks.serving_problems(docs)
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
    assert len(problems) == len(expected), problems


def test_the_claim_check_reports_a_read_write_once_claim_under_replicas(rendered: dict[str, Rendered]) -> None:
    docs = _planted(rendered)
    assert checks.claim_problems(docs) == []  # PostgreSQL and MinIO mount theirs, as one replica each
    _state_on_a_read_write_once_claim(docs)
    assert checks.claim_problems(docs) == [
        "Deployment/faceops-serving: runs up to 4 replicas but mounts claim 'faceops-postgres-data', which is ['ReadWriteOnce']"
    ]
    _one_fixed_replica(docs)
    assert checks.claim_problems(docs) == []  # one pod may own a ReadWriteOnce volume


def test_the_service_check_reports_a_selector_that_selects_nothing(rendered: dict[str, Rendered]) -> None:
    docs = _planted(rendered)
    _doc(docs, "Service", "faceops-minio")["spec"]["selector"] = {"app.kubernetes.io/name": "minio"}
    _doc(docs, "Service", "faceops-mlflow")["spec"]["ports"][0]["targetPort"] = "web"
    assert len(checks.service_problems(docs)) == 2


def test_the_image_check_reports_unpinned_images(rendered: dict[str, Rendered]) -> None:
    docs = _planted(rendered)
    pods = [checks.pod_spec(d) for d in docs if checks.pod_spec(d) is not None]
    pods[0]["containers"][0]["image"] = "ghcr.io/faceops/faceops-python:latest"  # type: ignore[index]
    pods[1]["containers"][0]["image"] = "faceops"  # type: ignore[index]
    pods[2]["containers"][0]["image"] = "ghcr.io/faceops/faceops-python:CHANGE_ME"  # type: ignore[index]
    assert len(checks.image_problems(docs)) == 4  # the bare name: no tag and no registry path


def test_the_secret_check_reports_real_looking_values(rendered: dict[str, Rendered]) -> None:
    import base64
    import secrets

    docs = _planted(rendered)
    s3 = _doc(docs, "Secret", "faceops-s3")
    s3["data"]["AWS_SECRET_ACCESS_KEY"] = base64.b64encode(secrets.token_urlsafe(30).encode()).decode()
    s3["data"]["AWS_ACCESS_KEY_ID"] = base64.b64encode(b"AKIA" + b"Q" * 16).decode()
    problems = checks.secret_problems(docs)
    assert any("AWS_SECRET_ACCESS_KEY" in p and "placeholder" in p for p in problems), problems
    assert any("AWS access key id" in p for p in problems), problems
    keys = _doc(docs, "Secret", "faceops-api-keys")
    keys["data"]["api-keys"] = base64.b64encode(f"alice:{'ab' * 32}\n".encode()).decode()
    assert any("SHA-256 digest" in p for p in checks.secret_problems(docs))
    assert checks.real_looking("AWS_SECRET_ACCESS_KEY=CHANGE_ME-dev-only faceops-monitor-9h7d9gd7h5") == []


def test_a_broken_reference_in_the_files_fails_the_rendering_check(tmp_path: Path) -> None:
    """End to end on the files: a Secret misnamed in base/serving.yaml is reported for the overlay."""
    tree = copy_with_example_secrets(K8S, tmp_path / "k8s")
    serving = tree / "base" / "serving.yaml"
    text = serving.read_text()
    assert text.count("secretKeyRef: {name: faceops-database, key: url}") == 1
    serving.write_text(text.replace("secretKeyRef: {name: faceops-database, key: url}", "secretKeyRef: {name: faceops-db, key: url}"))
    problems = checks.reference_problems(kustomize(tree / "overlays" / "production"))
    assert problems == [
        "Deployment/faceops-serving: container 'api' env FACEOPS_SERVE_DATABASE_URL names Secret 'faceops-db', which is not defined"
    ]


def test_the_examples_are_the_only_committed_secrets_files() -> None:
    """Real secrets files are git-ignored (infra/k8s/overlays/.gitignore), and every generator's file has an example."""
    ignore = (K8S / "overlays" / ".gitignore").read_text().split()
    assert "*/secrets/*" in ignore and "!*/secrets/*.example" in ignore
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((K8S / overlay / "kustomization.yaml").read_text())
        for generator in kustomization.get("secretGenerator", []):
            for entry in [*generator.get("envs", []), *generator.get("files", [])]:
                path = entry.split("=", 1)[-1]
                assert path.startswith("secrets/"), (overlay, path)
                assert (K8S / overlay / (path + ".example")).is_file(), (overlay, path)
