"""The images (``infra/Dockerfile``, ``infra/Dockerfile.mlflow``), checked without Docker: what they copy exists
and is not ignored, they install what pyproject.toml pins, their FACEOPS_* variables are settings the code reads,
and the default image carries the weights (checked by sha256) while the ``uri`` target leaves them to a URI."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import WEIGHTS
from tests.infra.conftest import INFRA, K8S, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, op: str) -> list[str]:
        return [a for o, a in self.instructions if o == op]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for line in self.args("ENV"):
            values.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", line))
        return values

    def arg_defaults(self) -> dict[str, str]:
        return {a.partition("=")[0]: a.partition("=")[2] for a in self.args("ARG")}


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each with its (instruction, arguments) list; continuations joined, comments
    dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--")]
            stages.append(Stage(words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((op, rest.strip()))
    return stages


def dockerignore(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether Docker's ignore patterns leave ``relative`` (or a folder above it) out of the context."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        for candidate in candidates:
            if fnmatch.fnmatch(candidate, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(candidate.split("/")[-1], pattern[3:])
            ):
                return True
    return False


def _copies(stage: Stage) -> list[tuple[list[str], str]]:
    copies = []
    for args in stage.args("COPY"):
        words = args.split()
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        copies.append((words[:-1], words[-1]))
    return copies


STAGES = parse(INFRA / "Dockerfile")
BY_NAME = {s.name: s for s in STAGES}
IGNORE = dockerignore(INFRA / "Dockerfile.dockerignore")


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    sources = [src for stage in STAGES for sources, _ in _copies(stage) for src in sources]
    assert len(sources) >= 8
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert not ignored(src, IGNORE), f"COPY {src}: left out of the context by Dockerfile.dockerignore"


def test_everything_pip_install_needs_is_copied() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], *PYPROJECT["project"]["license-files"]}
    needed |= {folder for folder in setuptools["package-dir"].values()}
    copied = {src.rstrip("/") for stage in STAGES for sources, _ in _copies(stage) for src in sources}
    assert needed - copied == set()


def test_secrets_data_and_state_stay_out_of_the_context() -> None:
    for path in (
        ".env",
        "infra/k8s/overlays/dev/secrets/s3.env",
        "infra/k8s/overlays/production/secrets/api-keys",
        "data/lfw/a.jpg",
        ".venv/bin/python",
        "outputs/cache/x",
        "mlruns.db",
        ".git/config",
    ):
        assert ignored(path, IGNORE), path
    assert not ignored("src/faceops/settings.py", IGNORE)


def test_faceops_variables_are_settings_the_code_reads() -> None:
    from faceops.serving.config import ServingSettings

    from faceops.settings import Settings

    known = {f"FACEOPS_{n.upper()}" for n in Settings.model_fields} | {
        f"FACEOPS_SERVE_{n.upper()}" for n in ServingSettings.model_fields
    }
    used = {name for stage in STAGES for name in stage.env() if name.startswith("FACEOPS_")}
    assert "FACEOPS_WEIGHTS" in used
    assert used - known == set()


def test_the_default_image_bakes_the_weights_and_the_uri_target_does_not() -> None:
    weights, runtime, uri, baked = BY_NAME["weights"], BY_NAME["runtime"], BY_NAME["uri"], STAGES[-1]
    assert weights.base == "scratch"  # replaced by --build-context weights=DIR
    assert baked.name == "baked"  # the last stage: what a plain `docker build` produces
    assert uri.base == baked.base == "runtime"
    assert "FACEOPS_WEIGHTS" not in runtime.env() and "FACEOPS_WEIGHTS" not in uri.env()
    args = baked.arg_defaults()
    assert baked.env()["FACEOPS_WEIGHTS"] == "/models/${WEIGHTS_FILE}"
    assert args["WEIGHTS_FILE"] == WEIGHTS.name
    run = " ".join(baked.args("RUN"))
    assert "--mount=type=bind,from=weights" in run and "sha256sum -c" in run
    if not WEIGHTS.is_file():
        pytest.skip(f"{WEIGHTS} not found: cannot compare its sha256 with WEIGHTS_SHA256")
    assert args["WEIGHTS_SHA256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert all(s.args("USER") == ["1000"] for s in (uri, baked))
    # the default model (MobileFaceNet) comes from the same context, checked against its sha256
    mobilefacenet = WEIGHTS.parent / args["MOBILEFACENET_FILE"]
    assert baked.env()["FACEOPS_MOBILEFACENET"] == "/models/MobileFaceNet.onnx"
    assert args["MOBILEFACENET_SHA256"] == hashlib.sha256(mobilefacenet.read_bytes()).hexdigest()


def _pins(requirements: list[str]) -> dict[str, str]:
    return dict(re.findall(r"([A-Za-z0-9_.-]+)==([0-9][^\s,;'\"\]]*)", " ".join(requirements)))


def test_the_images_install_what_pyproject_pins() -> None:
    project = PYPROJECT["project"]
    pinned = _pins([*project["dependencies"], *project["optional-dependencies"]["mlops"]])
    runtime = _pins(BY_NAME["runtime"].args("RUN"))
    assert {k: runtime[k] for k in ("torch", "torchvision")} == {k: pinned[k] for k in ("torch", "torchvision")}
    assert runtime["facenet-pytorch"] in (ROOT / "Makefile").read_text()
    mlflow_image = parse(INFRA / "Dockerfile.mlflow")
    server = _pins(mlflow_image[-1].args("RUN"))
    assert {k: server[k] for k in ("mlflow", "boto3", "botocore")} == {k: pinned[k] for k in ("mlflow", "boto3", "botocore")}
    assert "psycopg[binary]" in " ".join(mlflow_image[-1].args("RUN"))
    dev = yaml.safe_load((K8S / "overlays" / "dev" / "kustomization.yaml").read_text())
    image = next(i for i in dev["images"] if i["name"] == "faceops-mlflow-server")
    assert image["newTag"] == pinned["mlflow"]
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    assert next(i for i in base["images"] if i["name"] == "faceops")["newTag"] == VERSION
    assert f"faceops-python:{VERSION} " in (INFRA / "Dockerfile").read_text()


def test_the_parser_sees_planted_mistakes(tmp_path: Path) -> None:
    planted = tmp_path / "Dockerfile"
    planted.write_text(
        "FROM python:3.11-slim AS runtime\n# a comment\nENV FACEOPS_WEIGHT=/models/x \\\n    PYTHONUNBUFFERED=1\n"
        "COPY src ./src\nCOPY notes.txt \\\n  /opt/\nCOPY --from=weights a.pt /models/\n"
    )
    stages = parse(planted)
    assert stages[0].env() == {"FACEOPS_WEIGHT": "/models/x", "PYTHONUNBUFFERED": "1"}
    assert _copies(stages[0]) == [(["src"], "./src"), (["notes.txt"], "/opt/")]
    assert not (ROOT / "notes.txt").exists()
    assert ignored("data/x.jpg", ["data"]) and ignored("a/b/__pycache__", ["**/__pycache__"])
