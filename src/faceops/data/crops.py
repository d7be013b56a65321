"""Preprocessing of a data version: MTCNN + alignment once per image, cached, with quality statistics.

Crops are cached by (image sha256, :meth:`PreprocessConfig.fingerprint`): the cache of one config is a folder
of ``.npz`` shards (no pickle) under ``<cache_dir>/crops-<crop fingerprint>/``, each holding the crops of one
batch of images with their statistics. A shard is written atomically when its batch is done, so an
interrupted run resumes where it stopped, and an image shared by two data versions (same bytes) is processed
once.

``stats.csv`` (one row per manifest image) is what data validation and monitoring read:

===========  =====================================================================================
path         image path relative to the data root
identity     the identity
split        train / val / test
face_found   whether a subject face was detected (false also for unreadable images)
probability  MTCNN's score of the subject face (empty when none)
face_size    geometric mean of the face box sides, in pixels of the original image
brightness   mean grey level (0-255) of the aligned face crop (of the whole image when no face was found)
blur         variance of the Laplacian of that grey image (low = blurred)
===========  =====================================================================================
"""

from __future__ import annotations

import csv
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from faceops.data.manifest import ManifestRow, read_manifest
from faceops.errors import DataValidationFailed, InvalidImage
from faceops.face.config import PreprocessConfig
from faceops.face.images import load_image
from faceops.face.recognizer import FaceRecognizer

__all__ = [
    "STATS_COLUMNS",
    "CropCache",
    "PreprocessResult",
    "image_stats",
    "preprocess_dataset",
    "preprocess_rows",
]

STATS_COLUMNS = ("path", "identity", "split", "face_found", "probability", "face_size", "brightness", "blur")
_STAT_FIELDS = ("face_found", "probability", "face_size", "brightness", "blur")


def image_stats(gray: np.ndarray) -> tuple[float, float]:
    """Brightness (mean grey level) and blur (variance of the Laplacian) of a grey ``uint8`` image."""
    return float(gray.mean()), float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _gray(rgb: np.ndarray, size: int) -> np.ndarray:
    if rgb.shape[0] != size or rgb.shape[1] != size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


class CropCache:
    """The cached aligned crops and statistics of one preprocessing config.

    Args:
        config: the preprocessing config (its crop fingerprint, detection and alignment only, names the cache
            folder: configs that differ only after the crop share it).
        cache_dir: the root of all caches (callers pass e.g. the ``FACEOPS_CACHE_DIR`` setting).
    """

    def __init__(self, config: PreprocessConfig, cache_dir: str | Path) -> None:
        self.config = config
        self.root = Path(cache_dir) / f"crops-{config.crop_fingerprint()}"
        self._index: dict[str, tuple[Path, int]] | None = None

    def index(self) -> dict[str, tuple[Path, int]]:
        """sha256 -> (shard, row) of every cached image."""
        if self._index is None:
            self._index = {}
            for shard in sorted(self.root.glob("shard-*.npz")):
                with np.load(shard) as data:
                    for row, sha in enumerate(data["sha256"]):
                        self._index[str(sha)] = (shard, row)
        return self._index

    def __contains__(self, sha: str) -> bool:
        return sha in self.index()

    def add(self, records: dict[str, np.ndarray]) -> Path:
        """Write one shard atomically (arrays of equal length, keyed like the shard fields)."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}-{str(records['sha256'][0])[:8]}.npz"
        tmp = self.root / (name + ".tmp")
        with tmp.open("wb") as handle:
            np.savez(handle, **records)  # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle
        tmp.replace(self.root / name)
        for row, sha in enumerate(records["sha256"]):
            self.index()[str(sha)] = (self.root / name, row)
        return self.root / name

    def load(self, shas: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Crops (N, S, S, 3) and statistics of cached images, in the order asked.

        Images that are not cached get a blank crop, ``face_found`` false and NaN statistics.
        """
        index = self.index()
        size = self.config.align.image_size
        crops = np.zeros((len(shas), size, size, 3), dtype=np.uint8)
        stats = {
            name: np.zeros(len(shas), dtype=bool if name == "face_found" else np.float32)
            for name in _STAT_FIELDS
        }
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for name in _STAT_FIELDS[1:]:
            stats[name][:] = np.nan
        for i, sha in enumerate(shas):
            if sha not in index:
                continue
            shard, row = index[sha]
            by_shard.setdefault(shard, []).append((i, row))
        for shard, pairs in by_shard.items():
            with np.load(shard) as data:
                where, rows = [p[0] for p in pairs], [p[1] for p in pairs]
                crops[where] = data["crops"][rows]
                for name in _STAT_FIELDS:
                    stats[name][where] = data[name][rows]
        return crops, stats


@dataclass
class PreprocessResult:
    """What :func:`preprocess_dataset` did.

    Attributes:
        rows: the manifest rows, in manifest order.
        cache: the crop cache holding them.
        stats_path: the ``stats.csv`` written, if any.
        processed: images run through MTCNN now (the rest came from the cache).
        failed: path -> why the image is unusable (unreadable, changed since the manifest, no face).
    """

    rows: list[ManifestRow]
    cache: CropCache
    stats_path: Path | None = None
    processed: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def usable(self) -> int:
        return len(self.rows) - len(self.failed)

    def crops(self, shas: Sequence[str]) -> np.ndarray:
        """The cached crops of some images (blank where no face was found)."""
        return self.cache.load(shas)[0]


def _read_checked(path: Path, expected: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidImage("file listed in the manifest does not exist", str(path)) from exc
    except OSError as exc:
        raise InvalidImage(f"cannot read: {exc}", str(path)) from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise InvalidImage(
            f"sha256 {actual[:12]}... differs from the manifest's {expected[:12]}... (file changed)",
            str(path),
        )
    return data


def _process_chunk(
    recognizer: FaceRecognizer, root: Path, rows: list[ManifestRow], size: int
) -> tuple[dict[str, np.ndarray] | None, dict[str, str]]:
    """Detect, align and measure one batch of images with distinct sha256.

    Returns:
        the shard records of the images that could be read (``None`` if none), and sha256 -> error of the
        others. Read errors (missing file, bytes that differ from the manifest) are not cached: they are not
        a property of the image hash.
    """
    sources: list[bytes] = []
    kept: list[ManifestRow] = []
    read_errors: dict[str, str] = {}
    for row in rows:
        try:
            sources.append(_read_checked(root / row.path, row.sha256))
            kept.append(row)
        except InvalidImage as exc:
            read_errors[row.sha256] = str(exc)
    if not kept:
        return None, read_errors
    n = len(kept)
    crops, faces, failures = recognizer.subject_crops(sources, chunk=n)
    records: dict[str, np.ndarray] = {
        "sha256": np.array([r.sha256 for r in kept]),
        "crops": crops,
        "face_found": np.array([f is not None for f in faces]),
        "probability": np.array([f.probability if f else np.nan for f in faces], dtype=np.float32),
        "face_size": np.array([f.size if f else np.nan for f in faces], dtype=np.float32),
        "brightness": np.full(n, np.nan, dtype=np.float32),
        "blur": np.full(n, np.nan, dtype=np.float32),
        "error": np.array([f"{kept[i].path}: {failures[i]}" if i in failures else "" for i in range(n)]),
    }
    for i in range(n):
        if isinstance(failures.get(i), InvalidImage):
            continue  # undecodable: no pixels to measure
        gray = _gray(crops[i] if faces[i] is not None else load_image(sources[i]), size)
        records["brightness"][i], records["blur"][i] = image_stats(gray)
    return records, read_errors


def preprocess_dataset(
    data_root: str | Path,
    config: PreprocessConfig | None = None,
    *,
    cache_dir: str | Path,
    stats_path: str | Path | None = None,
    chunk: int = 64,
    show_progress: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> PreprocessResult:
    """Detect and align the subject face of every manifest image not yet cached, then write ``stats.csv``.

    Args:
        data_root: the data version (a folder with ``manifest.csv``).
        config: the preprocessing config; default: the built-in one.
        cache_dir: the cache root (the crops go to ``<cache_dir>/crops-<crop fingerprint>/``).
        stats_path: where to write the statistics CSV; ``None`` writes none.
        chunk: images per MTCNN batch (and per cache shard).
        show_progress: a tqdm bar on stderr.
        progress: called with (images done, images to run through MTCNN) before the first batch and after
            each one (not called when every image is cached).

    Raises:
        DataValidationFailed: no manifest, an empty one, or not a single usable face in the data version.
    """
    root = Path(data_root)
    result = preprocess_rows(
        root,
        read_manifest(root),
        config,
        cache_dir=cache_dir,
        stats_path=stats_path,
        chunk=chunk,
        show_progress=show_progress,
        progress=progress,
    )
    if result.usable == 0:
        raise DataValidationFailed(
            f"{root}: no image of the data version has a usable face "
            f"({len(result.rows)} images; e.g. {next(iter(result.failed.items()))})"
        )
    return result


def preprocess_rows(
    root: Path,
    rows: list[ManifestRow],
    config: PreprocessConfig | None = None,
    *,
    cache_dir: str | Path,
    stats_path: str | Path | None = None,
    chunk: int = 64,
    show_progress: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> PreprocessResult:
    """:func:`preprocess_dataset` on given rows (paths relative to ``root``), e.g. the images of a pairs
    file."""
    config = config or PreprocessConfig()
    cache = CropCache(config, cache_dir)
    unique: dict[str, ManifestRow] = {}
    for row in rows:
        if row.sha256 not in cache:
            unique.setdefault(row.sha256, row)
    todo = list(unique.values())
    result = PreprocessResult(rows=rows, cache=cache, processed=len(todo))
    errors: dict[str, str] = {}
    if todo:
        recognizer = FaceRecognizer(config)
        bar = tqdm(
            total=len(todo),
            desc="preprocess",
            unit="img",
            file=sys.stderr,
            disable=not show_progress,
            mininterval=0.5 if sys.stderr.isatty() else 15,
        )
        if progress is not None:
            progress(0, len(todo))
        for start in range(0, len(todo), chunk):
            batch = todo[start : start + chunk]
            records, read_errors = _process_chunk(recognizer, root, batch, config.align.image_size)
            if records is not None:
                cache.add(records)
            errors.update(read_errors)
            bar.update(len(batch))
            if progress is not None:
                progress(start + len(batch), len(todo))
        bar.close()
    _, stats = cache.load([r.sha256 for r in rows])
    errors.update(_cached_errors(cache, rows))
    for i, row in enumerate(rows):
        if not stats["face_found"][i]:
            result.failed[row.path] = errors.get(row.sha256) or "no face detected"
    if stats_path is not None:
        result.stats_path = _write_stats(rows, stats, Path(stats_path))
    return result


def _cached_errors(cache: CropCache, rows: list[ManifestRow]) -> dict[str, str]:
    wanted = {r.sha256 for r in rows}
    errors: dict[str, str] = {}
    for shard in {cache.index()[sha][0] for sha in wanted if sha in cache}:
        with np.load(shard) as data:
            for sha, error in zip(data["sha256"], data["error"], strict=True):
                if str(sha) in wanted and str(error):
                    errors[str(sha)] = str(error)
    return errors


def _write_stats(rows: list[ManifestRow], stats: dict[str, np.ndarray], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(STATS_COLUMNS)
        for i, row in enumerate(rows):
            found = bool(stats["face_found"][i])
            values = [stats[name][i] for name in ("probability", "face_size", "brightness", "blur")]
            writer.writerow(
                [
                    row.path,
                    row.identity,
                    row.split,
                    found,
                    *("" if np.isnan(v) else f"{float(v):.6g}" for v in values),
                ]
            )
    tmp.replace(path)
    return path
