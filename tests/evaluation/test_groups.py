"""Per-group verification figures, the measured groupings and the attribute CSV (real LFW images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceops.errors import DataValidationFailed
from faceops.evaluation.groups import (
    face_measures,
    group_bins,
    group_metrics,
    pair_metrics,
    read_attributes,
    wilson_interval,
)
from faceops.face.alignment import align_face
from faceops.face.images import load_image


def test_wilson_interval_contains_the_rate_and_narrows_with_n() -> None:
    lo, hi = wilson_interval(5, 50)
    assert lo < 0.1 < hi
    lo2, hi2 = wilson_interval(50, 500)
    assert lo < lo2 < 0.1 < hi2 < hi
    assert wilson_interval(0, 20)[0] == 0.0 and 0 < wilson_interval(0, 20)[1] < 0.2
    assert all(np.isnan(wilson_interval(0, 0)))


def _scores(rng: np.random.Generator, genuine: int, impostors: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([rng.normal(0.7 - shift, 0.1, genuine), rng.normal(0.1, 0.1, impostors)])
    return scores, np.array([1] * genuine + [0] * impostors)


def test_pair_metrics_and_insufficient_status() -> None:
    rng = np.random.default_rng(0)
    scores, labels = _scores(rng, 200, 200)
    m = pair_metrics(scores, labels, threshold=0.5, target_far=0.01, min_pairs=20)
    assert m["status"] == "ok" and m["genuine"] == 200 and m["impostors"] == 200
    assert m["frr"] == pytest.approx(np.mean(scores[:200] < 0.5))
    assert m["frr_ci"][0] <= m["frr"] <= m["frr_ci"][1]
    assert m["tar_at_far"] is not None and m["auc"] > 0.95
    few = pair_metrics(scores[195:210], labels[195:210], 0.5, 0.01, min_pairs=20)
    assert few["status"] == "insufficient" and few["tar_at_far"] is None  # 10 impostors cannot give FAR 1 %
    assert few["genuine"] == 5 and few["impostors"] == 10


def test_group_metrics_finds_the_worst_group_and_flags_small_ones() -> None:
    rng = np.random.default_rng(1)
    a, la = _scores(rng, 100, 100)
    b, lb = _scores(rng, 100, 100, shift=0.25)  # genuine scores lower: more false rejects
    c, lc = _scores(rng, 5, 5)
    scores, labels = np.concatenate([a, b, c]), np.concatenate([la, lb, lc])
    groups = ["a"] * 200 + ["b"] * 200 + ["c"] * 10
    groups[0] = None  # unknown: left out  # type: ignore[call-overload]
    report = group_metrics("toy", groups, scores, labels, threshold=0.5, target_far=0.01, min_pairs=20)
    assert set(report.groups) == {"a", "b", "c"} and report.groups["a"]["pairs"] == 199
    assert report.groups["c"]["status"] == "insufficient"
    assert report.worst_group == "b"
    assert report.largest_gap == pytest.approx(report.groups["b"]["frr"] - report.groups["a"]["frr"])
    assert report.largest_gap > 0.2
    assert report.to_dict()["largest_frr_gap"] == report.largest_gap


def test_measured_groupings_of_a_real_photo(lfw: Path, recognizer) -> None:  # type: ignore[no-untyped-def]
    image = load_image(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    face = recognizer.detect(image)[0]
    crop = align_face(image, face, recognizer.config.align)
    measures = face_measures(image, face, crop)
    assert set(measures) == {"ita", "yaw", "mouth_spread", "brightness", "blur"}
    assert -0.5 < measures["yaw"] < 0.5 and 0.5 < measures["mouth_spread"] < 1.5
    bins = group_bins(measures)
    assert set(bins) == {"skin_tone", "pose", "expression", "brightness", "quality"}
    dark = group_bins({**measures, "brightness": 40.0, "yaw": -0.4, "blur": 10.0})
    assert (dark["brightness"], dark["pose"], dark["quality"]) == ("dark", "profile", "blurred")
    assert group_bins({**measures, "ita": float("nan")})["skin_tone"] == "unknown"


def test_attribute_csv(tmp_path: Path, lfw: Path) -> None:
    good = tmp_path / "attributes.csv"
    good.write_text("image,sex,age\nAaron_Eckhart/Aaron_Eckhart_0001.jpg,male,30-45\nAJ_Cook/AJ_Cook_0001.jpg,female,\n")
    attrs = read_attributes(good, lfw)
    assert attrs == {
        "sex": {"Aaron_Eckhart/Aaron_Eckhart_0001.jpg": "male", "AJ_Cook/AJ_Cook_0001.jpg": "female"},
        "age": {"Aaron_Eckhart/Aaron_Eckhart_0001.jpg": "30-45"},  # empty cell: unknown
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,sex\nAJ_Cook/AJ_Cook_0001.jpg,f\n", "needs a column 'image'"),
        ("image\nAJ_Cook/AJ_Cook_0001.jpg\n", "no attribute columns"),
        ("image,sex\nAJ_Cook/AJ_Cook_0001.jpg,f\nNobody/Nobody_0001.jpg,m\n", "line 3: image 'Nobody/Nobody_0001.jpg'"),
        ("image,sex\nAJ_Cook/AJ_Cook_0001.jpg,f\nAJ_Cook/AJ_Cook_0001.jpg,m\n", "line 3: .* already on line 2"),
        ("image,sex\nAJ_Cook/AJ_Cook_0001.jpg,f,extra\n", "line 2: 3 fields"),
        ("image,sex\nAJ_Cook/AJ_Cook_0001.jpg,f\x07\n", "line 2: sex="),
    ],
)
def test_bad_attribute_csv_names_the_rows(tmp_path: Path, lfw: Path, text: str, message: str) -> None:
    path = tmp_path / "attributes.csv"
    path.write_text(text)
    with pytest.raises(DataValidationFailed, match=message):
        read_attributes(path, lfw)


def test_attribute_column_with_too_many_labels(tmp_path: Path, lfw: Path) -> None:
    images = sorted(p.relative_to(lfw).as_posix() for p in lfw.glob("A*/*_0001.jpg"))[:60]
    path = tmp_path / "attributes.csv"
    path.write_text("image,age\n" + "".join(f"{image},{i}\n" for i, image in enumerate(images)))
    with pytest.raises(DataValidationFailed, match="column 'age': 60 distinct labels"):
        read_attributes(path, lfw)
    with pytest.raises(DataValidationFailed, match="not found"):
        read_attributes(tmp_path / "missing.csv", lfw)
