"""The EDA report (self-contained HTML with plots) and the bias measures behind its bias section."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from faceops.cli import cli
from faceops.data.bias import concentration, ita_category, skin_tone_ita
from faceops.data.ingest import build_dataset
from faceops.data.manifest import ManifestRow, read_manifest, write_manifest
from faceops.data.report import build_report
from faceops.face.detection import Face

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def data_with_duplicate(source: Path, tmp_path: Path) -> Path:
    root = build_dataset(source, tmp_path / "data").root
    rows = read_manifest(root)
    first = rows[0]
    other = next(r.identity for r in rows if r.identity != first.identity)
    shutil.copy(root / first.path, root / other / "dup.jpg")
    write_manifest(
        [
            *rows,
            ManifestRow(
                f"{other}/dup.jpg", other, "test", first.sha256, first.width, first.height, first.format
            ),
        ],
        root / "manifest.csv",
    )
    return root


def test_report_with_face_detection_on_a_sample(data_with_duplicate: Path, tmp_path: Path, recognizer) -> None:
    report = build_report(data_with_duplicate, tmp_path / "eda", face_sample=6, detector=recognizer.detector)
    html = report.html.read_text(encoding="utf-8")
    for section in (
        "Identity distribution",
        "Image sizes and formats",
        "Brightness, contrast, blur",
        "Faces",
        "Duplicates",
        "Bias",
    ):
        assert section in html
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(embedded) == len(report.plots) >= 5  # identities, images, quality, faces, skin tone
    assert all(path.read_bytes().startswith(PNG) for path in report.plots.values())
    summary = json.loads((tmp_path / "eda" / "summary.json").read_text())
    rows = read_manifest(data_with_duplicate)
    assert summary["images"] == len(rows) == 26
    assert summary["concentration"]["identities"] == len({r.identity for r in rows})
    assert summary["duplicates"]["groups"] == 1 and summary["duplicates"]["images"] == 2
    assert summary["faces"]["sampled"] == 6 and 0 <= summary["faces"]["detection_rate"] <= 1
    assert sum(row["images"] for row in summary["skin_tone"]) == round(6 * summary["faces"]["detection_rate"])
    assert "(external" not in html and "<script" not in html  # self-contained, opened as a file


def test_report_from_precomputed_statistics_via_cli(data_with_duplicate: Path, tmp_path: Path) -> None:
    rows = read_manifest(data_with_duplicate)
    stats = pd.DataFrame(
        {
            "path": [r.path for r in rows],
            "face_found": [i % 4 != 0 for i in range(len(rows))],
            "probability": 0.99,
            "face_size": np.linspace(40, 120, len(rows)),
            "yaw": 0.05,
        }
    )
    stats.to_csv(tmp_path / "stats.csv", index=False)
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "report",
            "--data",
            str(data_with_duplicate),
            "--stats",
            str(tmp_path / "stats.csv"),
            "--out",
            str(tmp_path / "eda"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eda" / "summary.json").read_text())
    assert summary["faces"]["detection_rate"] == pytest.approx(
        float((np.arange(len(rows)) % 4 != 0).mean()), 1e-3
    )
    assert (tmp_path / "eda" / "plots" / "faces.png").read_bytes().startswith(PNG)


def test_concentration_measures() -> None:
    equal = concentration(pd.Series([5, 5, 5, 5]))
    assert equal["gini"] == pytest.approx(0.0, abs=1e-9)
    assert equal["effective_identities"] == pytest.approx(4.0)
    skewed = concentration(pd.Series([1] * 99 + [901]))
    assert skewed["gini"] > 0.8 and skewed["effective_identities"] < 10
    assert skewed["singletons"] == 99 and skewed["top1pct_share"] == pytest.approx(0.901)


def test_skin_tone_ita_of_a_known_colour() -> None:
    colour = np.array([[[224, 172, 105]]], np.uint8)  # a light-brown RGB
    lab = cv2.cvtColor(colour, cv2.COLOR_RGB2LAB)[0, 0].astype(float)
    expected = np.degrees(np.arctan2(lab[0] * 100 / 255 - 50, lab[2] - 128))
    image = np.broadcast_to(colour, (100, 100, 3)).copy()
    face = Face(
        (20, 20, 80, 80), 0.99, np.array([[35, 40], [65, 40], [50, 55], [38, 70], [62, 70]], np.float32)
    )
    assert skin_tone_ita(image, face) == pytest.approx(expected, abs=0.5)
    assert [ita_category(v) for v in (60, 50, 30, 20, 0, -40, float("nan"))] == [
        "very light",
        "light",
        "intermediate",
        "tan",
        "brown",
        "dark",
        "unknown",
    ]
