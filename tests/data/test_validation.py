"""Great Expectations validation: a clean import passes; a prepared bad dataset fails, naming the files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceops.cli import cli
from faceops.data.ingest import build_dataset
from faceops.data.manifest import ManifestRow, read_manifest, write_manifest
from faceops.data.validation import ValidationConfig, validate_dataset


@pytest.fixture
def good_data(source: Path, tmp_path: Path) -> Path:
    return build_dataset(source, tmp_path / "good").root


@pytest.fixture
def bad_data(good_data: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, set[str]]]:
    """A data folder with one defect per check, and statistics in which 2 of the images have no face.

    Returns the folder, the statistics file and, per check, the files planted to fail it (manifest paths).
    """
    root = tmp_path / "bad"
    shutil.copytree(good_data, root)
    rows = read_manifest(root)
    by_id: dict[str, list[ManifestRow]] = {}
    for row in rows:
        by_id.setdefault(row.identity, []).append(row)
    a, b = sorted(by_id)[:2]
    extra = []
    # truncated file: unreadable, and its bytes no longer match the manifest
    broken = by_id[a][0]
    (root / broken.path).write_bytes((root / broken.path).read_bytes()[:500])
    # the same photo filed under a second identity (and in another split)
    dup_src = by_id[a][1]
    shutil.copy(root / dup_src.path, root / b / "copy_of_a.jpg")
    extra.append(
        ManifestRow(
            f"{b}/copy_of_a.jpg",
            b,
            "test" if dup_src.split != "test" else "train",
            dup_src.sha256,
            dup_src.width,
            dup_src.height,
            "JPEG",
        )
    )
    # a tiny GIF
    tiny = root / b / "tiny.gif"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tiny)
    extra.append(ManifestRow(f"{b}/tiny.gif", b, "train", _sha(tiny), 32, 32, "GIF"))
    # an identity with a bad name and a single training image
    (root / "Bad Name").mkdir()
    with Image.open(root / by_id[b][0].path) as image:  # a mirrored (so distinct) photo
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "Bad Name" / "only.jpg")
    extra.append(
        ManifestRow(
            "Bad Name/only.jpg",
            "Bad Name",
            "train",
            _sha(root / "Bad Name" / "only.jpg"),
            by_id[b][0].width,
            by_id[b][0].height,
            "JPEG",
        )
    )
    write_manifest(rows + extra, root / "manifest.csv")
    no_face = {by_id[a][2].path, by_id[b][1].path}
    stats = tmp_path / "stats.csv"
    lines = ["path,face_found,probability,face_size"] + [
        f"{root / r.path},{0 if r.path in no_face else 1},0.99,60" for r in rows + extra
    ]
    stats.write_text("\n".join(lines) + "\n")
    tiny_path, dups = f"{b}/tiny.gif", {dup_src.path, f"{b}/copy_of_a.jpg"}
    planted = {
        "readable": {broken.path},
        "sha256": {broken.path},  # truncated: its bytes no longer match
        "format": {tiny_path},
        "width": {tiny_path},
        "height": {tiny_path},
        "identity_name": {"Bad Name/only.jpg"},
        "train_images": {"Bad Name/only.jpg"},
        "dup_identities": dups,
        "dup_splits": dups,
        "face_detected": no_face,
    }
    return root, stats, planted


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clean_dataset_passes_with_detection_on_a_sample(good_data: Path, tmp_path: Path, recognizer) -> None:
    report = validate_dataset(
        good_data, ValidationConfig(face_sample=4), out_dir=tmp_path / "out", detector=recognizer.detector
    )
    assert report.success, report.summary()
    assert {c.name for c in report.checks} >= {"readable", "format", "dup_identities", "face_detected"}
    saved = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert saved["success"] is True and saved["great_expectations"]["success"] is True
    assert (tmp_path / "out" / "data_docs" / "index.html").is_file()


def test_bad_dataset_fails_and_names_the_offending_files(
    bad_data: tuple[Path, Path, dict[str, set[str]]], tmp_path: Path
) -> None:
    root, stats, planted = bad_data
    report = validate_dataset(
        root, ValidationConfig(min_face_share=0.95), stats=stats, out_dir=tmp_path / "out"
    )
    assert not report.success
    failed = {c.name: {e.get("path") for e in c.examples} for c in report.failed()}
    # exactly the planted checks fail, each naming exactly the planted files (every check has a defect)
    assert failed == planted
    assert {c.name: c.unexpected_count for c in report.failed()} == {k: len(v) for k, v in planted.items()}
    summary = report.summary()
    assert {c.name for c in report.checks} == set(planted)
    assert summary.startswith(f"FAILED: 0/{len(planted)} checks passed on {report.images} images")
    assert "copy_of_a.jpg" in summary and "tiny.gif" in summary
    assert (tmp_path / "out" / "data_docs" / "index.html").is_file()


def test_cli_validate_exits_non_zero_with_a_summary(
    bad_data: tuple[Path, Path, dict[str, set[str]]], tmp_path: Path
) -> None:
    root, stats, _ = bad_data
    config = tmp_path / "v.yaml"
    config.write_text("min_face_share: 0.5\nallowed_formats: [JPEG, GIF]\n")
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "validate",
            "--data",
            str(root),
            "--stats",
            str(stats),
            "--config",
            str(config),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "Bad Name/only.jpg" in result.output
    assert "format:" not in result.output and "face_detected" not in result.output  # relaxed by the config
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("min_face_shares: 0.5\n")
    result = CliRunner().invoke(cli, ["data", "validate", "--data", str(root), "--config", str(bad_config)])
    assert result.exit_code == 1 and "min_face_shares" in result.output
