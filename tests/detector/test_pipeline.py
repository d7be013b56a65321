"""The train-detector pipeline on kfp.local at smoke size: a refusal with its reasons, then an admission.

Every store is in tmp_path (MLflow SQLite, artifacts, pipeline root). The smoke detector is trained for a few
steps, so the gate at its real tolerances refuses it; with permissive tolerances it is admitted, and the embedder
champion's preprocessing then names it, so whatever follows the champion (serving, ``--model
models:/faceops@champion``) detects with it. One multi-face photo and 4 LFW pairs keep the runs short.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SMOKE_TRAIN = {"size": 64, "width": 8, "batch_size": 2, "epochs": 1, "steps_per_epoch": 2, "threads": 1}
MULTIFACE = ("kit_with_rose.jpg",)  # the smallest of the shared multi-face photos


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, datasets: Path):
    from faceops.settings import get_settings

    monkeypatch.setenv("FACEOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEOPS_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("FACEOPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    monkeypatch.setenv("FACEOPS_MLFLOW_ARTIFACTS", str(tmp_path / "mlartifacts"))
    get_settings.cache_clear()
    photos = tmp_path / "multiface"
    photos.mkdir()
    with (datasets / "multiface" / "faces.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["file"] in MULTIFACE]
    for row in rows:
        (photos / row["file"]).symlink_to(datasets / "multiface" / row["file"])
    with (photos / "faces.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    yield photos / "faces.csv"
    get_settings.cache_clear()


def test_train_detector_refuses_then_admits(workspace: Path, lfw: Path, tmp_path: Path) -> None:
    from faceops.kfp.pipelines.run import local_arguments, run_local
    from faceops.kfp.pipelines.summary import render, summarize

    from faceops import registry
    from faceops.face.gallery import Gallery

    arguments = {
        k: v for k, v in local_arguments(tmp_path).items() if k in ("tracking_uri", "status_dir")
    } | {
        "photos": 8,
        "train": SMOKE_TRAIN,
        "lfw_folds": [1, 2],
        "pairs_per_fold": 2,
        "multiface_csv": str(workspace),
        "detector_model": "detector-under-test",
    }
    refused = run_local("train-detector", arguments)
    assert {s["name"]: s["status"] for s in refused["steps"]}.get("promote-detector") in (None, "skipped")
    summary = summarize(refused, arguments)
    gate = summary["detector_gate"]
    assert gate["decision"] == "reject" and gate["version"] == "1"
    assert gate["reason"].startswith("refused: ") and "against MTCNN's" in gate["reason"]
    # the smoke detector finds no face at its default threshold: both conditions fail, each named with its figures
    assert [p.split(" drops by ")[0] for p in gate["problems"]] == ["LFW verification accuracy", "multi-face recall"]
    figures = gate["figures"]["lfw_accuracy"]
    assert figures["drop"] == pytest.approx(figures["champion"] - figures["candidate"], abs=1e-6)
    # nothing promoted: no champion detector, no embedder version at all; the version is tagged with the refusal
    assert summary["detector_champion"] is None and registry.alias_version(registry.CHAMPION) is None
    tags = registry.detector_versions("detector-under-test")[0]["tags"]
    assert tags["decision"] == "reject" and tags["gate_reason"] == gate["reason"]
    assert "detector gate: reject" in render(summary)

    # permissive tolerances, and a threshold under the smoke detector's scores (about 0.01) so it finds faces
    permissive = {"max_accuracy_drop": 1.0, "max_recall_drop": 1.0, "net": {"threshold": 0.005}}
    admitted = run_local("train-detector", {**arguments, **permissive})
    summary = summarize(admitted, arguments)
    assert summary["detector_gate"]["decision"] == "promote" and summary["detector_champion"] == "2"
    assert "train-detector" not in admitted["executed"]  # the same training inputs: kfp's cache reused it
    # the embedder champion is a new version whose preprocessing names the admitted detector ...
    bundle = registry.load_bundle("models:/faceops@champion")
    assert summary["model_champion"] == registry.alias_version(registry.CHAMPION) == "1"
    detector = bundle.preprocess.detector
    assert detector.kind == "faceops-net" and detector.net is not None and detector.net.threshold == 0.005
    fetched = registry.download_detector("champion", tmp_path / "dl", model="detector-under-test")
    from faceops.detector.detect import NetDetector, file_sha256

    assert detector.net.weights_sha256 == file_sha256(fetched)
    # ... and recognition through it works on a real photo: enrol one, find it again
    recognizer = bundle.recognizer(device="cpu")
    assert isinstance(recognizer.detector, NetDetector)
    photo = sorted((lfw / "Colin_Powell").glob("*.jpg"))[0]
    face = recognizer.embed_subject(photo)
    assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-4)
    gallery = Gallery(recognizer.model_id)
    gallery.add("Colin_Powell", face.embedding[None])
    match = gallery.identify(recognizer.embed_subject(photo).embedding[None], threshold=bundle.threshold)[0]
    assert match.identity == "Colin_Powell" and match.score == pytest.approx(1.0, abs=1e-4)
    # a gallery of the MTCNN default model is refused by it
    from faceops.errors import GalleryError
    from faceops.evaluation.bundle import ModelBundle

    with pytest.raises(GalleryError, match="gallery was built with model"):
        Gallery(ModelBundle.default().recognizer(device="cpu").model_id).check_model(recognizer.model_id)
