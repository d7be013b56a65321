"""Photos users confirmed through feedback become a new DVC data version (only the usable ones)."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

pytestmark = pytest.mark.integration

PEOPLE = ("Serena_Williams", "Hugo_Chavez", "Jean_Chretien", "Alejandro_Toledo", "Colin_Powell")


@pytest.fixture()
def repo(tmp_path, lfw):
    from faceops.data.importer import import_dataset

    root = tmp_path / "repo"
    root.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@faceops.local"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    source = tmp_path / "source"
    for person in PEOPLE:
        (source / person).mkdir(parents=True)
        for photo in sorted((lfw / person).glob("*.jpg"))[:4]:
            (source / person / photo.name).write_bytes(photo.read_bytes())
    import_dataset(source, root)
    return root


def _log(path, entries, ts):
    from faceops.telemetry.requestlog import FaceRecord, RequestLog, RequestRecord

    log = RequestLog(path, store_images=True)
    for k, (data, truth, faces) in enumerate(entries):
        request_id = uuid.uuid4().hex
        records = [FaceRecord(i, 0.99, 90.0, 120.0, 300.0, "x", 0.7, 0.2, "known", "x") for i in range(faces)]
        log.append(RequestRecord(request_id, "recognize", 200, 10.0, faces=records, image=data, ts=ts + k))
        if faces:
            log.add_feedback(request_id, truth, 0)
    log.close()


def test_confirmed_photos_become_a_new_data_version(tmp_path, lfw, repo):
    from faceops.monitoring.feedback_data import add_confirmed_images

    from faceops.data.manifest import read_manifest
    from faceops.data.versioning import list_versions

    before = read_manifest(repo / "data")
    trained = sorted({r.identity for r in before if r.split == "train"})
    held_out = sorted({r.identity for r in before if r.split == "test"})
    fresh = [p.read_bytes() for p in sorted((lfw / trained[0]).glob("*.jpg"))[4:6]]
    already = (repo / "data" / next(r.path for r in before if r.identity == trained[0])).read_bytes()
    t0 = time.time() - 60
    _log(
        tmp_path / "requests.sqlite",
        [
            (fresh[0], trained[0], 1),
            (fresh[1], trained[0], 1),  # added
            (already, trained[0], 1),  # already in the data
            (fresh[0], "impostor", 1),  # not a confirmation
            (fresh[1], held_out[0], 1),  # an identity the model was not trained on
            (fresh[1], trained[0], 2),  # two faces: which one is it?
        ],
        t0,
    )

    result = add_confirmed_images(tmp_path / "requests.sqlite", repo, t0, time.time())
    assert result["added"] == 2 and result["rev"]
    assert result["skipped"] == {"already in the data": 1, "identity not trained on": 1}
    after = read_manifest(repo / "data")
    new = [r for r in after if r.path.split("/")[1].startswith("feedback_")]
    assert len(after) == len(before) + 2 and {r.identity for r in new} == {trained[0]}
    assert all(r.split == "train" and (repo / "data" / r.path).is_file() for r in new)
    latest = list_versions(repo)[0].rev
    assert result["rev"].startswith(latest) or latest.startswith(result["rev"])
    status = subprocess.run(
        ["git", "status", "--porcelain", "data.dvc"], cwd=repo, capture_output=True, text=True
    )
    assert status.stdout == ""  # committed

    nothing = add_confirmed_images(tmp_path / "requests.sqlite", repo, t0, time.time())
    assert nothing["added"] == 0 and nothing["rev"] is None  # the same photos are in the data now
