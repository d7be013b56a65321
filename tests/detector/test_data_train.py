"""Pseudo-labels, augmentation, targets, a smoke-size training run and the trained detector's decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceops.detector.data import (
    FLIP_ORDER,
    Augmenter,
    LabelledPhoto,
    Sample,
    cached_labels,
    flip,
    lfw_split,
    load_labels,
)
from faceops.detector.detect import NetDetector, NetDetectorConfig
from faceops.detector.model import FaceNet, count_flops, decode
from faceops.detector.targets import make_targets
from faceops.detector.train import DetectorTrainConfig, save_checkpoint, train_detector
from faceops.errors import DatasetError, InvalidModelFile, TrainingError
from faceops.face.detection import Face


@pytest.fixture(scope="module")
def labelled(lfw: Path, tmp_path_factory: pytest.TempPathFactory) -> list[LabelledPhoto]:
    """Four training photos pseudo-labelled by MTCNN, through the resumable cache."""
    train, _ = lfw_split(lfw)
    cache = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    first = cached_labels(train[:2], cache, chunk=2)
    again = cached_labels(train[:4], cache, chunk=2)  # the first two come from the cache
    assert [p.path for p in again[:2]] == [p.path for p in first]
    assert len(load_labels(cache)) == 4
    return again


def test_split_holds_out_every_pairs_person(lfw: Path) -> None:
    train, held = lfw_split(lfw)
    assert {p.parent.name for p in train}.isdisjoint({p.parent.name for p in held})
    pairs_people = {line.split("\t")[0] for line in (lfw / "pairs.txt").read_text().splitlines()[1:]}
    assert pairs_people <= {p.parent.name for p in held}


def test_split_refuses_a_folder_without_pairs(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="pairs.txt"):
        lfw_split(tmp_path)


def test_pseudo_labels_are_confident_mtcnn_faces(labelled: list[LabelledPhoto]) -> None:
    assert sum(len(p.boxes) for p in labelled) >= 3  # LFW photos have their subject face
    for photo in labelled:
        assert photo.landmarks.shape == (len(photo.boxes), 5, 2)
        for box, marks in zip(photo.boxes, photo.landmarks, strict=True):
            assert (marks[:, 0] >= box[0] - 5).all() and (marks[:, 0] <= box[2] + 5).all()


def test_flip_mirrors_boxes_and_swaps_left_and_right_landmarks() -> None:
    marks = np.array([[[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]]], np.float32)
    sample = Sample(np.zeros((40, 64, 3), np.uint8), np.array([[5, 2, 35, 38]], np.float32), marks, np.zeros((0, 4)))
    out = flip(sample)
    assert out.boxes.tolist() == [[29, 2, 59, 38]]
    # The new left eye is the mirrored old right eye.
    assert out.landmarks[0, 0].tolist() == [64 - 30, 10]
    assert out.landmarks[0, 3].tolist() == [64 - 28, 30]
    assert FLIP_ORDER == (1, 0, 2, 4, 3)
    assert (flip(out).landmarks == sample.landmarks).all()


def test_augmenter_makes_multi_face_and_small_face_samples(labelled: list[LabelledPhoto]) -> None:
    rng = np.random.default_rng(0)
    augmenter = Augmenter(labelled, size=192, mosaic=1.0)
    samples = [augmenter.sample(rng) for _ in range(6)]
    counts = [len(s.boxes) for s in samples]
    assert max(counts) >= 2
    for s in samples:
        assert s.image.shape == (192, 192, 3) and s.image.dtype == np.uint8
        assert (s.boxes[:, :2] >= -1e-3).all() and (s.boxes[:, 2:] <= 192 + 1e-3).all()
    sizes = np.concatenate([np.sqrt((s.boxes[:, 2] - s.boxes[:, 0]) * (s.boxes[:, 3] - s.boxes[:, 1])) for s in samples])
    assert sizes.min() < 60  # a 250-pixel photo in a cell of a 2x2 or 3x3 grid


def test_targets_put_one_at_each_centre_and_regress_near_it() -> None:
    box = np.array([[40.0, 40.0, 104.0, 112.0]], np.float32)
    sample = Sample(np.zeros((128, 128, 3), np.uint8), box, np.zeros((1, 5, 2), np.float32), np.zeros((0, 4)))
    t = make_targets(sample)
    assert t["heatmap"].shape == (1, 32, 32)
    assert t["heatmap"][0, 76 // 4, 72 // 4] == 1.0 and (t["heatmap"] == 1).sum() == 1
    assert t["boxes"][:, 76 // 4, 72 // 4].tolist() == box[0].tolist()
    assert t["reg_weight"][0, 0] < 1e-3 and t["mask"].min() == 1.0
    ignored = make_targets(Sample(sample.image, box[:0], np.zeros((0, 5, 2)), box))
    assert ignored["mask"][0, 76 // 4, 72 // 4] == 0.0 and ignored["heatmap"].max() == 0.0


def test_model_is_small_and_decodes_to_faces() -> None:
    model = FaceNet()
    assert 20e6 < count_flops(model, 320) < 400e6  # a few hundred MFLOP at most
    model.eval()
    out = model(torch.rand(2, 3, 64, 96))
    assert out["heatmap"].shape == (2, 1, 16, 24) and out["landmarks"].shape == (2, 10, 16, 24)
    # A hand-made output with one confident peak decodes to one Face at that place.
    heat = torch.full((1, 1, 16, 24), -10.0)
    heat[0, 0, 8, 12] = 5.0
    box = torch.full((1, 4, 16, 24), float(np.log(4.0)))  # 16 px to each side
    faces = decode({"heatmap": heat, "box": box, "landmarks": torch.zeros(1, 10, 16, 24)}, scales=[2.0])[0]
    assert len(faces) == 1 and isinstance(faces[0], Face)
    assert faces[0].box == pytest.approx((2 * (50 - 16), 2 * (34 - 16), 2 * (50 + 16), 2 * (34 + 16)))
    assert faces[0].landmarks.shape == (5, 2) and faces[0].landmarks[0].tolist() == pytest.approx([100, 68])


def test_smoke_training_learns_and_round_trips(labelled: list[LabelledPhoto], tmp_path: Path) -> None:
    config = DetectorTrainConfig(size=96, width=16, batch_size=4, epochs=3, steps_per_epoch=2, lr=5e-3, seed=1)
    rows: list[dict[str, float]] = []
    result = train_detector(labelled, config, progress=rows.append)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["total"]) for r in rows)
    assert rows[-1]["total"] < rows[0]["total"]  # from random weights the loss falls within a few steps
    again = train_detector(labelled, config)  # seeded: the same run twice
    assert again.history[-1]["total"] == pytest.approx(rows[-1]["total"], rel=1e-4)
    path = save_checkpoint(result, tmp_path / "net.pt")
    detector = NetDetector.load(path, NetDetectorConfig(threshold=0.01))
    image = np.zeros((100, 140, 3), np.uint8)
    found = detector.detect_batch([image, image])
    assert len(found) == 2 and all(isinstance(f, Face) for f in found[0])
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(detector.model(x)["heatmap"], result.model(x)["heatmap"])


def test_training_refuses_photos_without_faces() -> None:
    empty = LabelledPhoto("x.jpg", np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros((0, 4)))
    with pytest.raises(TrainingError):
        train_detector([empty], DetectorTrainConfig(epochs=1, steps_per_epoch=1))


def test_bad_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "net.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidModelFile, match="net.pt"):
        NetDetector.load(bad)


def test_time_budget_ends_the_run_and_schedule_follows_it(labelled: list[LabelledPhoto]) -> None:
    config = DetectorTrainConfig(size=64, width=8, batch_size=1, epochs=50, steps_per_epoch=1, time_budget_s=0.5)
    result = train_detector(labelled, config)
    assert 1 <= len(result.history) < 50
    assert result.history[-1]["lr"] < config.lr  # annealed by time, not stuck near the peak


def test_pyramid_levels_are_merged_by_nms() -> None:
    from faceops.detector.detect import _merge

    marks = np.zeros((5, 2), np.float32)
    a = Face((0, 0, 50, 50), 0.6, marks)
    b = Face((2, 2, 50, 50), 0.9, marks)  # the same face found at another level
    c = Face((100, 100, 140, 140), 0.5, marks)
    assert _merge([[a, c], [b]], 0.4) == [b, c]
    detector = NetDetector(FaceNet(width=8), NetDetectorConfig(threshold=0.01, max_sides=(64, 128)))
    assert len(detector.detect_batch([np.zeros((100, 200, 3), np.uint8)])) == 1
