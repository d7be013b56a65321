"""Preprocessing: cached aligned crops by (image hash, config), resumable, with per-image statistics."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceops.data.crops import STATS_COLUMNS, image_stats, preprocess_dataset
from faceops.data.manifest import read_manifest, write_manifest
from faceops.errors import DataValidationFailed
from faceops.face.config import AlignConfig, PreprocessConfig


def test_stats_csv_has_one_row_per_image_with_the_contract_columns(preprocessed, data_root):
    with preprocessed.stats_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == STATS_COLUMNS
    assert [r["path"] for r in rows] == [r.path for r in read_manifest(data_root)]
    assert all(r["face_found"] == "True" for r in rows)
    probabilities = [float(r["probability"]) for r in rows]
    assert min(probabilities) > 0.9 and max(probabilities) <= 1.0
    assert all(
        40 < float(r["face_size"]) < 250 for r in rows
    )  # LFW faces are roughly 100 px in a 250 px frame
    assert all(0 < float(r["brightness"]) < 255 and float(r["blur"]) > 0 for r in rows)


def test_crops_come_back_aligned_and_a_second_run_reads_only_the_cache(preprocessed, data_root, cache_dir):
    shas = [r.sha256 for r in preprocessed.rows]
    crops = preprocessed.crops(shas)
    assert crops.shape == (len(shas), 160, 160, 3) and crops.dtype == np.uint8
    assert crops.reshape(len(shas), -1).std(axis=1).min() > 10  # real pixels, no blank crop
    seen: list[tuple[int, int]] = []
    again = preprocess_dataset(data_root, cache_dir=cache_dir, show_progress=False, progress=lambda *a: seen.append(a))
    assert seen == []  # nothing to run through MTCNN: no progress to report
    assert again.processed == 0 and again.usable == len(shas)
    assert np.array_equal(again.crops(shas), crops)


def test_another_preprocessing_config_gets_its_own_cache(data_root, cache_dir, preprocessed):
    config = PreprocessConfig(align=AlignConfig(margin=0.5))
    assert config.fingerprint() != preprocessed.cache.config.fingerprint()
    rows = read_manifest(data_root)[:3]
    small = data_root.parent / "small-data"
    for row in rows:
        (small / row.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_root / row.path, small / row.path)
    write_manifest(rows, small / "manifest.csv")
    result = preprocess_dataset(small, config, cache_dir=cache_dir, show_progress=False)
    assert result.processed == 3 and result.cache.root != preprocessed.cache.root


def test_an_interrupted_run_resumes_where_it_stopped(data_root, tmp_path, monkeypatch):
    import faceops.data.crops as pre

    rows = read_manifest(data_root)[:12]
    root = tmp_path / "d"
    for row in rows:
        (root / row.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_root / row.path, root / row.path)
    write_manifest(rows, root / "manifest.csv")
    real, calls = pre._process_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pre, "_process_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        preprocess_dataset(root, cache_dir=tmp_path / "cache", chunk=6, show_progress=False)
    monkeypatch.setattr(pre, "_process_chunk", real)
    seen: list[tuple[int, int]] = []
    resumed = preprocess_dataset(
        root, cache_dir=tmp_path / "cache", chunk=6, show_progress=False, progress=lambda *a: seen.append(a)
    )
    assert resumed.processed == 6  # the first chunk was kept
    assert resumed.usable == 12
    assert seen == [(0, 6), (6, 6)]  # (done, to do) before and after each batch run through MTCNN
    # the cache is the folder given, not the FACEOPS_CACHE_DIR setting
    assert resumed.cache.root.parent == tmp_path / "cache" and any(resumed.cache.root.glob("shard-*.npz"))


def test_bad_images_are_reported_not_fatal(data_root, tmp_path):
    rows = read_manifest(data_root)[:4]
    root = tmp_path / "d"
    for row in rows:
        (root / row.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_root / row.path, root / row.path)
    write_manifest(rows, root / "manifest.csv")
    (root / rows[0].path).unlink()  # listed but missing
    (root / rows[1].path).write_bytes(b"not a jpeg")  # changed since the manifest
    result = preprocess_dataset(
        root, cache_dir=tmp_path / "cache", stats_path=tmp_path / "s.csv", show_progress=False
    )
    assert result.usable == 2
    assert "does not exist" in result.failed[rows[0].path]
    assert "differs from the manifest" in result.failed[rows[1].path]
    with (tmp_path / "s.csv").open() as handle:
        stats = {r["path"]: r for r in csv.DictReader(handle)}
    assert stats[rows[0].path]["face_found"] == "False" and stats[rows[0].path]["probability"] == ""


def test_an_empty_or_faceless_data_version_is_refused(tmp_path, datasets):
    with pytest.raises(DataValidationFailed, match="no manifest"):
        preprocess_dataset(tmp_path / "nothing", cache_dir=tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "manifest.csv").write_text("path,identity,split,sha256,width,height,format\n")
    with pytest.raises(DataValidationFailed, match="empty"):
        preprocess_dataset(tmp_path / "empty", cache_dir=tmp_path / "cache")


def test_blur_statistic_drops_when_the_face_is_blurred(preprocessed):
    crop = preprocessed.crops([preprocessed.rows[0].sha256])[0]
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    _, sharp = image_stats(gray)
    _, blurred = image_stats(cv2.GaussianBlur(gray, (0, 0), 2.0))
    assert blurred < sharp / 3
    assert image_stats(np.full((8, 8), 200, np.uint8)) == (200.0, 0.0)


def test_stats_path_parent_is_created(preprocessed, data_root, cache_dir, tmp_path: Path):
    result = preprocess_dataset(
        data_root, cache_dir=cache_dir, stats_path=tmp_path / "a" / "b" / "stats.csv", show_progress=False
    )
    assert result.stats_path.is_file()
