"""Fixtures of the monitoring tests: a real reference (pretrained model, LFW photos) and real request logs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.monitoring import traffic

THRESHOLD = 0.40


@pytest.fixture(scope="session")
def mon_data_root(lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return traffic.make_data_root(lfw, tmp_path_factory.mktemp("mon-data"))


@pytest.fixture(scope="session")
def mon_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pretrained model as a bundle folder with a threshold and target FAR of its own."""
    from faceops.evaluation.bundle import ModelBundle

    bundle = ModelBundle.pretrained()
    bundle.threshold, bundle.target_far = THRESHOLD, 0.01
    return bundle.save(tmp_path_factory.mktemp("mon-bundle"))


@pytest.fixture(scope="session")
def mon_bundle(mon_bundle_dir: Path):
    from faceops.evaluation.bundle import ModelBundle

    return ModelBundle.load(mon_bundle_dir)


@pytest.fixture(scope="session")
def reference_dir(mon_bundle, mon_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from faceops.telemetry.reference import compute_reference

    reference = compute_reference(mon_bundle, mon_data_root)
    reference.meta["model_version"] = "1"
    return reference.save(tmp_path_factory.mktemp("mon-ref") / "reference")


@pytest.fixture(scope="session")
def gallery(mon_bundle, mon_data_root: Path):
    """The service's gallery: the KNOWN people's train photos (one embedding per photo)."""
    from faceops.data.manifest import read_manifest
    from faceops.face.enrol import enrol
    from faceops.face.gallery import Gallery

    recognizer = mon_bundle.recognizer()
    rows = [r for r in read_manifest(mon_data_root) if r.split == "train"]
    g = Gallery(recognizer.model_id)
    enrol(recognizer, g, [(r.identity, mon_data_root / r.path) for r in rows], names=[r.path for r in rows])
    return g


@pytest.fixture(scope="session")
def traffic_log(lfw: Path, mon_bundle, gallery, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One request log with two windows: normal traffic, then degraded traffic (dark + blurred photos of known
    people, and strangers), both with feedback; returns the path and the windows' bounds."""
    from faceops.telemetry.requestlog import RequestLog

    path = tmp_path_factory.mktemp("mon-log") / "requests.sqlite"
    log = RequestLog(path, store_images=True)
    recognizer = mon_bundle.recognizer()
    t0 = time.time() - 7200
    normal = traffic.photos(lfw, traffic.KNOWN, 6, 3) + traffic.photos(
        lfw, traffic.HELD_OUT, 6, 3, truth="impostor"
    )
    traffic.replay(log, recognizer, gallery, THRESHOLD, normal, t0)
    t1 = t0 + 3600
    bad = traffic.photos(lfw, traffic.KNOWN, 6, 3, degraded=True) + traffic.photos(
        lfw, traffic.STRANGERS, 0, 2, degraded=True, truth="impostor"
    )
    traffic.replay(log, recognizer, gallery, THRESHOLD, bad, t1)
    log.close()
    return {"path": path, "normal": (t0, t0 + 1800), "degraded": (t1, t1 + 1800)}


class RecordingTrigger:
    """A trigger that records its calls (and can be told to fail like an unreachable backend)."""

    def __init__(self, fail: bool = False, status: str = "SUBMITTED") -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.drifts: list[dict | None] = []  # the drift target each call was given (what to retrain for)
        self.fail, self.status = fail, status  # 'SUCCEEDED': a run that ended when the call returned (kfp.local)

    def __call__(self, reason: str, data_version: str | None = None, drift: dict | None = None) -> dict:
        from faceops.errors import PipelineUnavailable

        self.calls.append((reason, data_version))
        self.drifts.append(drift)
        if self.fail:
            raise PipelineUnavailable(
                "cannot reach Kubeflow Pipelines at http://127.0.0.1:9 (connection refused)"
            )
        return {"run_id": f"run-{len(self.calls)}", "status": self.status, "backend": "test"}


@pytest.fixture()
def recording_trigger() -> RecordingTrigger:
    return RecordingTrigger()
