"""Checks over rendered Kubernetes manifests: each returns a list of problems (empty: fine), so a test can assert
on the list and show every problem at once, and the checks themselves can be tried on planted mistakes."""

from __future__ import annotations

import base64
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

Doc = dict[str, Any]

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
PLACEHOLDER = "CHANGE_ME"


def pod_spec(doc: Doc) -> Doc | None:
    """The pod spec of a workload (None for other kinds)."""
    kind = doc["kind"]
    if kind not in WORKLOADS:
        return None
    if kind == "Pod":
        return doc["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def pod_labels(doc: Doc) -> dict[str, str]:
    if doc["kind"] == "Pod":
        return doc["metadata"].get("labels", {})
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return doc["spec"]["template"]["metadata"].get("labels", {})


def containers(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _where(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _ns(doc: Doc) -> str | None:
    return doc["metadata"].get("namespace")


def decoded(secret: Doc) -> dict[str, str]:
    """A Secret's values as text (``data`` is base64, ``stringData`` plain)."""
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    values.update(secret.get("stringData") or {})
    return values


def _keys(docs: list[Doc], kind: str, name: str, namespace: str | None) -> set[str] | None:
    """The keys of ConfigMap/Secret ``name`` in ``namespace``; None when it is not defined."""
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name and _ns(doc) == namespace:
            return set(decoded(doc)) if kind == "Secret" else {*(doc.get("data") or {}), *(doc.get("binaryData") or {})}
    return None


def _defined(docs: list[Doc], kind: str, name: str, namespace: str | None) -> bool:
    return any(d["kind"] == kind and d["metadata"]["name"] == name and _ns(d) == namespace for d in docs)


def reference_problems(docs: list[Doc]) -> list[str]:
    """Every claim, Secret, ConfigMap (and key), ServiceAccount, volume, ``$(VAR)`` and RBAC object that a
    manifest names must be defined in the same rendering (optional references may be missing)."""
    problems: list[str] = []
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        where, ns = _where(doc), _ns(doc)

        def need(
            kind: str, name: str, what: str, optional: bool = False, key: str | None = None, where: str = where, ns: str | None = ns
        ) -> None:
            keys = _keys(docs, kind, name, ns) if kind in ("Secret", "ConfigMap") else None
            if kind in ("Secret", "ConfigMap"):
                if keys is None:
                    if not optional:
                        problems.append(f"{where}: {what} names {kind} {name!r}, which is not defined")
                    return
                if key is not None and key not in keys and not optional:
                    problems.append(f"{where}: {what} names key {key!r} of {kind} {name!r}, which has {sorted(keys)}")
            elif not _defined(docs, kind, name, ns):
                problems.append(f"{where}: {what} names {kind} {name!r}, which is not defined")

        sa = spec.get("serviceAccountName")
        if sa and sa != "default":
            need("ServiceAccount", sa, "serviceAccountName")
        for pull in spec.get("imagePullSecrets", []):
            need("Secret", pull["name"], "imagePullSecrets")
        volume_names = set()
        for volume in spec.get("volumes", []):
            volume_names.add(volume["name"])
            label = f"volume {volume['name']!r}"
            if "persistentVolumeClaim" in volume:
                need("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"], label)
            if "secret" in volume:
                s = volume["secret"]
                need("Secret", s["secretName"], label, s.get("optional", False))
                for item in s.get("items", []):
                    need("Secret", s["secretName"], label, s.get("optional", False), item["key"])
            if "configMap" in volume:
                c = volume["configMap"]
                need("ConfigMap", c["name"], label, c.get("optional", False))
                for item in c.get("items", []):
                    need("ConfigMap", c["name"], label, c.get("optional", False), item["key"])
            for source in volume.get("projected", {}).get("sources", []):
                for kind, field in (("Secret", "secret"), ("ConfigMap", "configMap")):
                    if field in source:
                        need(kind, source[field]["name"], label, source[field].get("optional", False))
        for container in containers(spec):
            cwhere = f"container {container['name']!r}"
            env_names: set[str] = set()
            for source in container.get("envFrom", []):
                for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if field in source:
                        ref = source[field]
                        need(kind, ref["name"], f"{cwhere} envFrom", ref.get("optional", False))
                        env_names |= {source.get("prefix", "") + k for k in _keys(docs, kind, ref["name"], ns) or ()}
            for var in container.get("env", []):
                env_names.add(var["name"])
                value_from = var.get("valueFrom", {})
                for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if field in value_from:
                        ref = value_from[field]
                        need(kind, ref["name"], f"{cwhere} env {var['name']}", ref.get("optional", False), ref["key"])
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volume_names:
                    problems.append(f"{where}: {cwhere} mounts volume {mount['name']!r}, which the pod does not define")
            for word in [*container.get("command", []), *container.get("args", [])]:
                for var in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", word):
                    if var not in env_names:
                        problems.append(f"{where}: {cwhere} uses $({var}), which its environment does not define")
            ports = {p.get("name") for p in container.get("ports", [])} | {p["containerPort"] for p in container.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and port not in ports:
                    problems.append(f"{where}: {cwhere} {probe} uses port {port!r}, which the container does not expose")
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        where, ns = _where(binding), _ns(binding)
        ref = binding["roleRef"]
        if ref["kind"] == "Role" and not _defined(docs, "Role", ref["name"], ns):
            problems.append(f"{where}: roleRef names Role {ref['name']!r}, which is not defined")
        if ref["kind"] == "ClusterRole":
            problems.append(f"{where}: binds ClusterRole {ref['name']!r}; FaceOps defines Roles in its namespace")
        for subject in binding.get("subjects", []):
            if subject["kind"] != "ServiceAccount":
                continue
            if subject.get("namespace") != ns:
                problems.append(
                    f"{where}: subject ServiceAccount {subject['name']!r} is in namespace "
                    f"{subject.get('namespace')!r}, the binding in {ns!r}"
                )
            if not _defined(docs, "ServiceAccount", subject["name"], subject.get("namespace")):
                problems.append(f"{where}: subject ServiceAccount {subject['name']!r} is not defined")
    return problems


def service_problems(docs: list[Doc]) -> list[str]:
    """Every Service selects the pods of some workload in its namespace, and its target ports exist there."""
    problems = []
    workloads = [d for d in docs if pod_spec(d) is not None]
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"].get("selector") or {}
        if not selector:
            problems.append(f"{_where(service)}: no selector")
            continue
        matched = [w for w in workloads if _ns(w) == _ns(service) and selector.items() <= pod_labels(w).items()]
        if not matched:
            problems.append(f"{_where(service)}: selector {selector} matches no pod template")
            continue
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            exposed = [
                p
                for w in matched
                for c in containers(pod_spec(w) or {})
                for p in c.get("ports", [])
                if target in (p.get("name"), p["containerPort"])
            ]
            if not exposed:
                problems.append(f"{_where(service)}: targetPort {target!r} is not a container port of {selector}")
    return problems


_IMAGE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


def image_problems(docs: list[Doc]) -> list[str]:
    """Every container image names a registry path and a pinned tag (or digest): no ``latest``, no placeholder."""
    problems = []
    for doc in docs:
        spec = pod_spec(doc)
        for container in containers(spec) if spec else []:
            image = container["image"]
            match = _IMAGE.match(image)
            what = f"{_where(doc)}: container {container['name']!r} image {image!r}"
            if match is None:
                problems.append(f"{what} is not an image reference")
                continue
            tag, digest = match["tag"], match["digest"]
            if not tag and not digest:
                problems.append(f"{what} has no tag (kustomize `images:` did not apply?)")
            if tag == "latest":
                problems.append(f"{what} uses the moving tag 'latest'")
            if "/" not in match["name"]:
                problems.append(f"{what} names no registry path")
            if re.search(r"change|placeholder|todo|xxx", image, re.IGNORECASE):
                problems.append(f"{what} is a placeholder")
    return problems


# -- replicas -----------------------------------------------------------------------------------------------------
DATABASE_ENV = "FACEOPS_SERVE_DATABASE_URL"


def _scalers(docs: list[Doc], workload: Doc) -> list[Doc]:
    """The HorizontalPodAutoscalers whose scaleTargetRef is ``workload``."""
    return [
        d
        for d in docs
        if d["kind"] == "HorizontalPodAutoscaler"
        and _ns(d) == _ns(workload)
        and d["spec"]["scaleTargetRef"].get("kind") == workload["kind"]
        and d["spec"]["scaleTargetRef"].get("name") == workload["metadata"]["name"]
    ]


def replica_range(docs: list[Doc], workload: Doc) -> tuple[int, int]:
    """The fewest and most pods ``workload`` may run: its HPA's bounds, else its fixed ``replicas`` (default 1)."""
    scalers = _scalers(docs, workload)
    if scalers:
        return scalers[0]["spec"].get("minReplicas", 1), scalers[0]["spec"]["maxReplicas"]
    fixed = workload["spec"].get("replicas", 1)
    return fixed, fixed


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects pods with ``labels``; an empty
    selector counts as selecting nothing here (policy/v1 would select every pod of the namespace)."""
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return False
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def _pdb_need(pdb: Doc) -> int | str:
    """The fewest replicas for which ``pdb`` still lets one pod be evicted (a percentage: returned as text)."""
    spec = pdb["spec"]
    value = spec.get("minAvailable", spec.get("maxUnavailable"))
    if not isinstance(value, int):
        return str(value)
    return value + 1 if "minAvailable" in spec else max(1, value) + 1


def _probe_problems(where: str, container: Doc, http_port: str | int) -> list[str]:
    problems = []
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        get = container.get(probe, {}).get("httpGet")
        if get is None:
            problems.append(f"{where}: no HTTP {probe} (expected GET {path} on port {http_port!r})")
        elif get.get("path") != path or get.get("port") != http_port:
            problems.append(f"{where}: {probe} is GET {get.get('path')} on port {get.get('port')!r}, expected {path} on {http_port!r}")
    return problems


def _database_problems(where: str, container: Doc) -> list[str]:
    var = next((e for e in container.get("env", []) if e["name"] == DATABASE_ENV), None)
    if var is None:
        return [f"{where}: no {DATABASE_ENV} in env: the replicas would each keep their own gallery and log"]
    ref = var.get("valueFrom", {}).get("secretKeyRef")
    if ref is None:
        return [f"{where}: {DATABASE_ENV} does not come from a Secret (secretKeyRef): it holds the password"]
    if ref.get("optional"):
        return [f"{where}: {DATABASE_ENV} is optional: a pod without it would keep state of its own"]
    return []


def serving_problems(docs: list[Doc], name: str = "faceops-serving") -> list[str]:
    """The serving Deployment ``name`` runs as several replicas that share their state: at least 2 pods, the
    database URL from a required Secret key, readiness on GET /ready and liveness on GET /health of the port the
    service listens on, an HPA on it whose minimum leaves the PodDisruptionBudget room to evict a pod, and a PDB
    that selects its pods."""
    found = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    if len(found) != 1:
        return [f"expected one Deployment {name!r}, found {len(found)}"]
    deployment = found[0]
    where, labels = _where(deployment), pod_labels(deployment)
    problems = []
    low, _ = replica_range(docs, deployment)
    if low < 2:
        problems.append(f"{where}: runs {low} replica(s) at least; one pod is no service during a drain or a rollout")
    for container in containers(pod_spec(deployment) or {}):
        if "serve" not in container.get("args", []):
            continue
        cwhere = f"{where}: container {container['name']!r}"
        args = container["args"]
        port = int(args[args.index("--port") + 1]) if "--port" in args else 8000
        named = [p.get("name") for p in container.get("ports", []) if p["containerPort"] == port]
        problems += _probe_problems(cwhere, container, named[0] if named and named[0] else port)
        problems += _database_problems(cwhere, container)
        if "cpu" not in container.get("resources", {}).get("requests", {}):
            problems.append(f"{cwhere}: no CPU request, which the HPA's utilisation is measured against")
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if not _defined(docs, ref.get("kind", ""), ref.get("name", ""), _ns(hpa)):
            problems.append(f"{_where(hpa)}: scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not defined")
    scalers = _scalers(docs, deployment)
    if len(scalers) != 1:
        problems.append(f"{where}: {len(scalers)} HorizontalPodAutoscalers target it, expected 1")
    elif scalers[0]["spec"].get("minReplicas", 1) > scalers[0]["spec"]["maxReplicas"]:
        problems.append(f"{_where(scalers[0])}: minReplicas above maxReplicas")
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget" and _ns(d) == _ns(deployment)]
    selecting = [b for b in budgets if _selects(b["spec"].get("selector") or {}, labels)]
    for budget in budgets:
        if budget not in selecting:
            problems.append(f"{_where(budget)}: selector {budget['spec'].get('selector')} does not select {name}'s pods {labels}")
    if not selecting:
        problems.append(f"{where}: no PodDisruptionBudget selects its pods")
    for budget in selecting:
        need = _pdb_need(budget)
        if isinstance(need, str):
            problems.append(f"{_where(budget)}: give an integer, not {need!r}, so that it can be checked against the HPA")
        elif low < need:
            problems.append(
                f"{_where(budget)}: needs {need} replicas to let a pod be evicted; {name} may run {low} (drains would block)"
            )
    return problems


def claim_problems(docs: list[Doc]) -> list[str]:
    """No workload that may run more than one pod mounts a ReadWriteOnce (or ReadWriteOncePod) claim: the pods
    on other nodes could not attach it, and those on the same node would write one volume unaware of each other."""
    problems = []
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None or doc["kind"] not in ("Deployment", "ReplicaSet", "StatefulSet"):
            continue
        _, high = replica_range(docs, doc)
        if high < 2:
            continue
        for volume in spec.get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            pvc = next(
                (d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim and _ns(d) == _ns(doc)),
                None,
            )
            modes = set((pvc or {}).get("spec", {}).get("accessModes", []))
            if modes & {"ReadWriteOnce", "ReadWriteOncePod"}:
                problems.append(f"{_where(doc)}: runs up to {high} replicas but mounts claim {claim!r}, which is {sorted(modes)}")
    return problems


# -- secrets ------------------------------------------------------------------------------------------------------
_REAL_LOOKING = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "SHA-256 digest (an API key's)": re.compile(r"\b[0-9a-f]{64}\b"),
    "FaceOps API key": re.compile(r"\bfo_[A-Za-z0-9_-]{20,}"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."),
}
_TOKEN = re.compile(r"[A-Za-z0-9+/=_]{20,}")


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def real_looking(text: str) -> list[str]:
    """What in ``text`` looks like a real credential: known key formats, or a long random-looking token
    (letters and digits mixed, over 4.2 bits of entropy per character)."""
    found = [f"{name}: {m.group()[:12]}..." for name, rx in _REAL_LOOKING.items() for m in rx.finditer(text)]
    for m in _TOKEN.finditer(text):
        token = m.group()
        mixed = any(c.isdigit() for c in token) and any(c.isupper() for c in token) and any(c.islower() for c in token)
        if mixed and _entropy(token) > 4.2:
            found.append(f"random-looking token: {token[:12]}...")
    return found


def strings(node: Any) -> Iterator[str]:
    """Every string (keys and values) in a YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


# Values that identify rather than authenticate: allowed without a placeholder, still scanned.
NOT_SECRET_KEYS = {"AWS_ACCESS_KEY_ID", "POSTGRES_USER", "POSTGRES_DB", "MLFLOW_TRACKING_USERNAME"}


def secret_problems(docs: list[Doc]) -> list[str]:
    """Secrets rendered from the committed templates hold placeholders only: each value is empty (comments
    only) or contains CHANGE_ME, bar identifiers (users, database names); and nothing anywhere in the rendering,
    decoded Secret values included, looks like a real credential."""
    problems = []
    for doc in docs:
        if doc["kind"] == "Secret":
            for key, value in decoded(doc).items():
                lines = [ln for ln in value.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
                if lines and key not in NOT_SECRET_KEYS and not all(PLACEHOLDER in ln for ln in lines):
                    problems.append(f"{_where(doc)}: key {key!r} holds a value that is not a {PLACEHOLDER} placeholder")
                problems += [f"{_where(doc)}: key {key!r}: {hit}" for hit in real_looking(value)]
            texts = [s for k, v in doc.items() if k not in ("data", "stringData") for s in strings(v)]
        else:
            texts = list(strings(doc))
        problems += [f"{_where(doc)}: {hit}" for text in texts for hit in real_looking(text)]
    return problems
