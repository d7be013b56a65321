"""Enrolment (faceops.face.enrol) on real LFW photos: what is added, what is rejected and why, and re-enrolment."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceops.errors import DatasetError, GalleryError, ImageTooLarge, InvalidImage, NoFaceDetected
from faceops.face.enrol import embed_people, enrol, people_in_folder
from faceops.face.gallery import Gallery
from faceops.face.images import load_image

PEOPLE = ("Colin_Powell", "Serena_Williams")


@pytest.fixture(scope="module")
def people(lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two photos of each of two people, plus a file that is not an image."""
    root = tmp_path_factory.mktemp("enrol-people")
    for name in PEOPLE:
        (root / name).mkdir()
        for src in sorted((lfw / name).glob("*.jpg"))[:2]:
            shutil.copy(src, root / name / src.name)
    (root / PEOPLE[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def no_face(datasets: Path) -> bytes:
    """A real photo crop without people (poker chips), as JPEG bytes."""
    out = io.BytesIO()
    Image.open(datasets / "multiface" / "t1.jpg").convert("RGB").crop((300, 620, 1100, 880)).save(out, "JPEG")
    return out.getvalue()


def test_a_folder_is_enrolled_with_reasons_for_what_was_not_and_again_only_adds_new_photos(recognizer, people):
    photos = people_in_folder(people)
    assert [identity for identity, _ in photos].count(PEOPLE[0]) == 3 and len(photos) == 5
    gallery, done_steps = Gallery(recognizer.model_id), []
    done = enrol(recognizer, gallery, people, progress=done_steps.append)
    assert done.added == {PEOPLE[0]: 2, PEOPLE[1]: 2} and gallery.identities == done.added
    assert sum(done_steps) == len(photos)
    [bad] = done.rejected
    assert bad.identity == PEOPLE[0] and bad.name.endswith("broken.jpg") and isinstance(bad.error, InvalidImage)
    assert "broken.jpg" in bad.reason and photos[bad.index][1] == Path(bad.name)
    assert sorted(gallery.sources(PEOPLE[1])) == sorted(str(path) for who, path in photos if who == PEOPLE[1])
    one = recognizer.embed_subject(photos[done.indices[0]][1]).embedding  # the same face path, photo by photo
    cosine = float(done.embeddings[0] @ one) / float(np.linalg.norm(done.embeddings[0]) * np.linalg.norm(one))
    assert cosine == pytest.approx(1.0, abs=1e-4)

    extra = people / PEOPLE[1] / "copy.jpg"
    shutil.copy(photos[-1][1], extra)
    try:
        steps: list[int] = []
        again = enrol(recognizer, gallery, people, progress=steps.append)
    finally:
        extra.unlink()
    assert again.added == {PEOPLE[1]: 1} and again.names == [str(extra)]
    assert len(again.skipped) == 4 and sum(steps) == 6, "enrolled photos are skipped, not embedded again"
    assert len(again.rejected) == 1, "the broken file is still reported"
    assert gallery.identities == {PEOPLE[0]: 2, PEOPLE[1]: 3}


def test_in_memory_photos_with_names_and_a_loader(recognizer, people, no_face):
    face = next((people / PEOPLE[1]).glob("*.jpg")).read_bytes()
    photos = [("Serena", face), ("Serena", no_face), ("Serena", b"tiny"), ("Serena", face)]
    names = ["a.jpg", "chips.jpg", "tiny.jpg", "b.jpg"]

    def strict(data: bytes, name: str) -> np.ndarray:
        if len(data) < 10:
            raise ImageTooLarge("stand-in for a service's own limit", name)
        return load_image(data, name=name)

    done = embed_people(recognizer, photos, names=names, load=strict, chunk=1)
    assert done.indices == [0, 3] and done.names == ["a.jpg", "b.jpg"]
    assert [(r.index, r.name, type(r.error)) for r in done.rejected] == [
        (1, "chips.jpg", NoFaceDetected),
        (2, "tiny.jpg", ImageTooLarge),
    ]
    assert "chips.jpg" in done.rejected[0].reason, "a photo without a face is named in the error"
    assert np.allclose(done.embeddings[0], done.embeddings[1], atol=1e-5)
    gallery = Gallery(recognizer.model_id)
    done.add_to(gallery, ["store/1", "store/2"])
    assert gallery.sources("Serena") == ["store/1", "store/2"]
    with pytest.raises(GalleryError, match="2 accepted"):
        done.add_to(gallery, ["only one"])


def test_bad_input_is_refused_before_any_photo_is_embedded(recognizer, people, tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="no sub-folders"):
        people_in_folder(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        people_in_folder(tmp_path / "missing")
    steps: list[int] = []
    photos = [("Colin", next((people / PEOPLE[0]).glob("*.jpg"))), ("unknown", tmp_path / "photo.jpg")]
    with pytest.raises(GalleryError, match="invalid identity name 'unknown'"):
        enrol(recognizer, Gallery(recognizer.model_id), photos, progress=steps.append)
    assert steps == []
    with pytest.raises(GalleryError, match="one name per photo"):
        embed_people(recognizer, photos[:1], names=["a", "b"])
    with pytest.raises(GalleryError, match="another model|current model"):
        enrol(recognizer, Gallery("some-other-model"), photos[:1])
