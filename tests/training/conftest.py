"""Fixtures of the training tests: a tiny real data version (LFW identities copied into tmp) and MLflow
stores."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from faceops.data.manifest import ManifestRow, write_manifest

# Seven LFW people with >= 10 images: four train the model, three are held out (open-set verification).
TRAIN_PEOPLE = ("Alejandro_Toledo", "Serena_Williams", "Hugo_Chavez", "Jean_Chretien")
TEST_PEOPLE = ("Laura_Bush", "Vladimir_Putin", "Hans_Blix")
IMAGES_PER_PERSON = 8


def make_data_root(
    lfw: Path, root: Path, train=TRAIN_PEOPLE, test=TEST_PEOPLE, per_person=IMAGES_PER_PERSON
) -> Path:
    """Copy a few LFW people into ``root`` and write its manifest (2 val images per training person)."""
    rows = []
    for person in (*train, *test):
        (root / person).mkdir(parents=True, exist_ok=True)
        for k, src in enumerate(sorted((lfw / person).glob("*.jpg"))[:per_person]):
            dst = root / person / src.name
            shutil.copyfile(src, dst)
            split = "test" if person in test else ("val" if k < 2 else "train")
            digest = hashlib.sha256(dst.read_bytes()).hexdigest()
            rows.append(ManifestRow(f"{person}/{src.name}", person, split, digest, 250, 250, "JPEG"))
    write_manifest(rows, root / "manifest.csv")
    return root


@pytest.fixture(scope="session")
def data_root(lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data_root(lfw, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One crop / trunk-activation cache for the session (FACEOPS_CACHE_DIR points at it)."""
    from faceops.settings import get_settings

    where = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("FACEOPS_CACHE_DIR")
    os.environ["FACEOPS_CACHE_DIR"] = str(where)
    get_settings.cache_clear()
    yield where
    if previous is None:
        os.environ.pop("FACEOPS_CACHE_DIR", None)
    else:
        os.environ["FACEOPS_CACHE_DIR"] = previous
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def smoke_config(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    from faceops.training.config import load_train_config

    config = load_train_config(Path(__file__).resolve().parents[2] / "configs" / "train_smoke.yaml")
    return config.model_copy(update={"data_root": data_root, "output_dir": tmp_path_factory.mktemp("train")})


@pytest.fixture(scope="session")
def trained(smoke_config, preprocessed, cache_dir: Path):
    """One real (tiny) training run, evaluated, with its bundle saved; not logged to MLflow."""
    from faceops.training.run import run_training

    return run_training(smoke_config, log_to_mlflow=False, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def preprocessed(data_root: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny data version run through MTCNN once for the whole session."""
    from faceops.data.crops import preprocess_dataset

    return preprocess_dataset(
        data_root,
        cache_dir=cache_dir,
        stats_path=tmp_path_factory.mktemp("pre") / "stats.csv",
        show_progress=False,
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, start_mlflow_server) -> str:
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend and proxied artifacts in tmp."""
    uri, _ = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    return uri


@pytest.fixture()
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The default kind of store (SQLite file + artifact folder), in tmp; the settings point at it."""
    from faceops.settings import get_settings

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("FACEOPS_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("FACEOPS_MLFLOW_ARTIFACTS", str(tmp_path / "mlartifacts"))
    get_settings.cache_clear()
    yield uri
    get_settings.cache_clear()
