"""Fixtures of the pipeline tests: a tiny folder-per-identity source from LFW and a fresh workspace per test.

The people are chosen so that the importer's deterministic split (seed 0, 20% of identities held out) holds
out two of them for open-set evaluation and keeps three for training.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TRAIN_PEOPLE = ("Serena_Williams", "Hugo_Chavez", "Jean_Chretien")
TEST_PEOPLE = ("Alejandro_Toledo", "Colin_Powell")
IMAGES_PER_PERSON = 5
SMOKE = Path(__file__).resolve().parents[2] / "configs" / "train_smoke.yaml"


def copy_people(
    lfw: Path, dest: Path, people=TRAIN_PEOPLE + TEST_PEOPLE, per_person=IMAGES_PER_PERSON
) -> Path:
    for person in people:
        (dest / person).mkdir(parents=True, exist_ok=True)
        for src in sorted((lfw / person).glob("*.jpg"))[:per_person]:
            shutil.copyfile(src, dest / person / src.name)
    return dest


@pytest.fixture(scope="session")
def source_tree(lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_people(lfw, tmp_path_factory.mktemp("source") / "people")


@pytest.fixture(scope="session")
def bad_source(lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three people, one of them in 48-pixel thumbnails (below the validation's 64-pixel floor)."""
    from PIL import Image

    root = copy_people(lfw, tmp_path_factory.mktemp("bad") / "people", TRAIN_PEOPLE, 4)
    for path in (root / TRAIN_PEOPLE[0]).glob("*.jpg"):
        with Image.open(path) as image:
            image.resize((48, 48)).save(path)
    return root


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A git repository for the data, and every store (MLflow, caches, outputs) in tmp_path."""
    from faceops.settings import get_settings

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    monkeypatch.setenv("FACEOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEOPS_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("FACEOPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    monkeypatch.setenv("FACEOPS_MLFLOW_ARTIFACTS", str(tmp_path / "mlartifacts"))
    get_settings.cache_clear()
    yield repo
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def smoke_config() -> dict:
    import yaml

    return yaml.safe_load(SMOKE.read_text())


@pytest.fixture(scope="session")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Each compiled pipeline's YAML documents: the pipeline spec, then the platform (Kubernetes) spec."""
    import yaml
    from faceops.kfp.pipelines.run import compile_pipelines

    paths = compile_pipelines(tmp_path_factory.mktemp("compiled"))
    return {name: list(yaml.safe_load_all(path.read_text())) for name, path in paths.items()}
