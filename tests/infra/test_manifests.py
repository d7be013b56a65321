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
}
SERVING_CLAIM = "faceops-serving-state"


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
    assert SERVING_CLAIM in r.names("PersistentVolumeClaim")


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
    assert {"faceops-minio-data", "faceops-postgres-data", SERVING_CLAIM} <= r.names("PersistentVolumeClaim")
    assert "faceops-create-buckets" in r.names("Job")


def test_production_brings_no_store_of_its_own(rendered: dict[str, Rendered]) -> None:
    r = rendered["overlays/production"]
    assert r.names("Deployment") == {"faceops-serving"}
    assert r.names("PersistentVolumeClaim") == {SERVING_CLAIM}
    serving = r.get("Deployment", "faceops-serving")["spec"]["template"]["spec"]["containers"][0]
    base = rendered["base"].get("Deployment", "faceops-serving")["spec"]["template"]["spec"]["containers"][0]
    assert serving["resources"]["requests"]["cpu"] > base["resources"]["requests"]["cpu"]


# -- serving and the monitor ------------------------------------------------------------------------------------
def _mount_of_claim(doc: dict, claim: str) -> dict:
    spec = checks.pod_spec(doc)
    assert spec is not None
    volume = next(v["name"] for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim)
    return next(m for c in spec["containers"] for m in c.get("volumeMounts", []) if m["name"] == volume)


@pytest.mark.parametrize("target", TARGETS)
def test_serving_is_the_single_writer_of_its_state(rendered: dict[str, Rendered], target: str) -> None:
    """The gallery is in memory and the request log is SQLite (WAL): one pod, a ReadWriteOnce volume, and
    Recreate so two pods never write it at once (base/serving.yaml says why)."""
    r = rendered[target]
    serving = r.get("Deployment", "faceops-serving")
    assert serving["spec"]["replicas"] == 1
    assert serving["spec"]["strategy"]["type"] == "Recreate"
    assert r.get("PersistentVolumeClaim", SERVING_CLAIM)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not r.of_kind("HorizontalPodAutoscaler")
    args = serving["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--state-dir") + 1] == _mount_of_claim(serving, SERVING_CLAIM)["mountPath"]
    keys_file = args[args.index("--api-keys-file") + 1]
    mount = next(
        m for m in serving["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] if keys_file.startswith(m["mountPath"] + "/")
    )
    volume = next(v for v in serving["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "faceops-api-keys"
    assert posixpath.basename(keys_file) in checks.decoded(r.get("Secret", "faceops-api-keys"))


@pytest.mark.parametrize("target", TARGETS)
def test_the_monitor_reads_the_service_log_and_loads_its_config(rendered: dict[str, Rendered], target: str, tmp_path: Path) -> None:
    from faceops.monitoring.config import load_monitor_config

    r = rendered[target]
    cronjob = r.get("CronJob", "faceops-monitor")
    spec = checks.pod_spec(cronjob)
    assert spec is not None
    container = spec["containers"][0]
    config_path = container["args"][container["args"].index("-c") + 1]
    config_mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    config_map = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == config_mount["name"])
    text = r.get("ConfigMap", config_map)["data"][posixpath.basename(config_path)]
    (tmp_path / "monitor.yaml").write_text(text)
    config = load_monitor_config(tmp_path / "monitor.yaml")  # strict: unknown keys refused
    assert config.trigger.backend == "kfp"
    assert config.state_backend == "mlflow"  # nothing the next run needs is left in the pod
    # the log the monitor reads is the file the service writes, on the same claim, mounted read-only
    state = _mount_of_claim(cronjob, SERVING_CLAIM)
    assert state.get("readOnly") is True
    assert config.request_log.as_posix() == posixpath.join(state["mountPath"], "requests.sqlite")
    # a ReadWriteOnce volume: the monitor's pod must land on the service's node
    term = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    serving_labels = checks.pod_labels(r.get("Deployment", "faceops-serving"))
    assert term["labelSelector"]["matchLabels"].items() <= serving_labels.items()
    assert term["topologyKey"] == "kubernetes.io/hostname"
    # no state volume of its own: its state is in MLflow
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {SERVING_CLAIM}


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
    serving["volumes"][0]["persistentVolumeClaim"]["claimName"] = "faceops-serving-stat"
    serving["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["key"] = "MLFLOW_URI"
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
        "'faceops-serving-stat'",
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
    """End to end on the files: a claim renamed in base/serving.yaml is reported for every target."""
    tree = copy_with_example_secrets(K8S, tmp_path / "k8s")
    serving = tree / "base" / "serving.yaml"
    serving.write_text(serving.read_text().replace("claimName: faceops-serving-state", "claimName: faceops-state"))
    problems = checks.reference_problems(kustomize(tree / "overlays" / "production"))
    assert problems == ["Deployment/faceops-serving: volume 'state' names PersistentVolumeClaim 'faceops-state', which is not defined"]


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
