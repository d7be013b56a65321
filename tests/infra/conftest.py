"""Rendering of the kustomize trees under ``infra/k8s`` with the real ``kubectl kustomize``.

The overlays read their Secrets from git-ignored files (``overlays/*/secrets/<name>``) that a cluster user creates
from the committed ``<name>.example`` templates. The tests render a copy of ``infra/k8s`` in which exactly that was
done, and never read a real secrets file a developer may have in the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
TARGETS = ("base", "overlays/dev", "overlays/production")
OVERLAYS = ("overlays/dev", "overlays/production")


@dataclass(frozen=True)
class Rendered:
    """The documents ``kubectl kustomize`` printed for one target."""

    target: str
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.target}: expected one {kind} {name!r}, found {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in self.of_kind(kind)}


def copy_with_example_secrets(source: Path, dest: Path) -> Path:
    """Copy the kustomize tree, then create every overlay's secrets files from their ``.example`` templates
    (skipping any real secrets file of the checkout)."""

    def _ignore(folder: str, names: list[str]) -> list[str]:
        if Path(folder).name == "secrets":
            return [n for n in names if not n.endswith(".example")]
        return []

    shutil.copytree(source, dest, ignore=_ignore)
    for example in dest.glob("overlays/*/secrets/*.example"):
        shutil.copyfile(example, example.with_suffix(""))
    return dest


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """The documents of ``kubectl kustomize FOLDER`` (an AssertionError with kustomize's message on failure)."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {folder} failed:\n{done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="session")
def k8s_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH: the manifests are rendered with `kubectl kustomize` (kubectl >= 1.27)")
    return copy_with_example_secrets(K8S, tmp_path_factory.mktemp("k8s") / "k8s")


@pytest.fixture(scope="session")
def rendered(k8s_copy: Path) -> dict[str, Rendered]:
    """Every target rendered once per session: ``{"base": ..., "overlays/dev": ..., "overlays/production": ...}``."""
    return {target: Rendered(target, kustomize(k8s_copy / target)) for target in TARGETS}


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """A fresh S3 API server (moto) on 127.0.0.1, standing in for the dev overlay's MinIO."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
