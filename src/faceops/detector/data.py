"""Training data for the detector without hand labels: MTCNN pseudo-labels on LFW, plus augmentation.

* **Split by people.** LFW people named in ``pairs.txt`` (the verification folds) are held out for evaluation, so
  the detector is never trained on a face that verification later measures it on; the rest train it.
* **Pseudo-labels.** MTCNN (facenet-pytorch) at a high probability (``min_probability``, 0.99 by default) gives the
  boxes and 5 landmarks to learn; faces it finds with a lower probability become *ignore* boxes, where the
  heatmap loss neither rewards nor penalises a detection (they may be real background faces). Labels are cached
  as JSON under ``outputs/`` and computed with progress.
* **Augmentation** (:class:`Augmenter`) makes the cases LFW lacks: random scale and crop, several photos pasted
  into one canvas (multi-face, small faces), horizontal flips with the left/right landmarks swapped, and
  photometric changes (brightness, contrast, saturation, grey, blur, noise).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceops.errors import DatasetError

__all__ = [
    "FLIP_ORDER",
    "Augmenter",
    "LabelledPhoto",
    "Sample",
    "cached_labels",
    "flip",
    "label_photos",
    "load_labels",
    "lfw_split",
    "save_labels",
]

# A horizontal flip turns the left eye into the right one and the left mouth corner into the right one.
FLIP_ORDER = (1, 0, 2, 4, 3)


@dataclass(frozen=True)
class LabelledPhoto:
    """One photo with its pseudo-labels (pixel coordinates of the photo).

    Attributes:
        path: the image file.
        boxes: (N, 4) x1, y1, x2, y2 of the faces to learn.
        landmarks: (N, 5, 2).
        ignore: (M, 4) boxes of uncertain faces, neither positives nor negatives.
    """

    path: str
    boxes: np.ndarray
    landmarks: np.ndarray
    ignore: np.ndarray


@dataclass(frozen=True)
class Sample:
    """One augmented training image with its targets in the image's pixels."""

    image: np.ndarray  # (S, S, 3) uint8 RGB
    boxes: np.ndarray  # (N, 4) float32
    landmarks: np.ndarray  # (N, 5, 2) float32
    ignore: np.ndarray  # (M, 4) float32


def _pairs_people(pairs: Path) -> set[str]:
    names: set[str] = set()
    for line in pairs.read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 3:
            names.add(parts[0])
        elif len(parts) == 4:
            names.update((parts[0], parts[2]))
    return names


def lfw_split(root: str | Path) -> tuple[list[Path], list[Path]]:
    """LFW photos split by people: (training photos, held-out photos of the people in ``pairs.txt``)."""
    root = Path(root)
    pairs = root / "pairs.txt"
    if not pairs.is_file():
        raise DatasetError(f"no pairs.txt in {root}: cannot tell held-out people from training ones")
    held = _pairs_people(pairs)
    train: list[Path] = []
    test: list[Path] = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        (test if person.name in held else train).extend(sorted(person.glob("*.jpg")))
    if not train or not test:
        raise DatasetError(f"LFW split of {root} is empty: {len(train)} training and {len(test)} held-out photos")
    return train, test


def label_photos(
    paths: Sequence[Path],
    min_probability: float = 0.99,
    ignore_probability: float = 0.7,
    min_face_size: int = 20,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[LabelledPhoto]:
    """Pseudo-label photos with MTCNN: faces at ``min_probability`` or more are learnt, the others ignored.

    Photos with no confident face are kept (they teach the detector where faces are not).
    """
    from faceops.face.config import DetectorConfig
    from faceops.face.detection import FaceDetector
    from faceops.face.images import load_image

    detector = FaceDetector(DetectorConfig(min_probability=ignore_probability, min_face_size=min_face_size))
    out: list[LabelledPhoto] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        found = detector.detect_batch([load_image(p) for p in chunk], batch_size=batch_size)
        for path, faces in zip(chunk, found, strict=True):
            sure = [f for f in faces if f.probability >= min_probability]
            unsure = [f for f in faces if f.probability < min_probability]
            out.append(
                LabelledPhoto(
                    path=str(path),
                    boxes=np.array([f.box for f in sure], dtype=np.float32).reshape(-1, 4),
                    landmarks=np.array([f.landmarks for f in sure], dtype=np.float32).reshape(-1, 5, 2),
                    ignore=np.array([f.box for f in unsure], dtype=np.float32).reshape(-1, 4),
                )
            )
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths))
    return out


def cached_labels(
    paths: Sequence[Path],
    cache: str | Path,
    chunk: int = 64,
    progress: Callable[[int, int], None] | None = None,
    **options: float,
) -> list[LabelledPhoto]:
    """Pseudo-labels of ``paths``, computed in chunks and appended to the JSON-lines file ``cache``, so an
    interrupted run resumes and a run that ends early leaves every finished chunk usable.

    Args:
        options: passed to :func:`label_photos` (``min_probability``, ``ignore_probability``, ``min_face_size``).
    """
    cache = Path(cache)
    done = {p.path: p for p in load_labels(cache)} if cache.is_file() else {}
    todo = [p for p in paths if str(p) not in done]
    cache.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), chunk):
        labels = label_photos(todo[start : start + chunk], **options)  # type: ignore[arg-type]
        with cache.open("a") as handle:
            for label in labels:
                handle.write(json.dumps(_row(label)) + "\n")
                done[label.path] = label
        if progress:
            progress(len(paths) - len(todo) + start + len(labels), len(paths))
    return [done[str(p)] for p in paths]


def _row(p: LabelledPhoto) -> dict[str, object]:
    return {"path": p.path, "boxes": p.boxes.tolist(), "landmarks": p.landmarks.tolist(), "ignore": p.ignore.tolist()}


def save_labels(labels: Sequence[LabelledPhoto], path: str | Path) -> None:
    """Write pseudo-labels as JSON lines (one photo a line)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(json.dumps(_row(p)) + "\n" for p in labels))


def load_labels(path: str | Path) -> list[LabelledPhoto]:
    """Read pseudo-labels written by :func:`save_labels`."""
    try:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read detector labels {path}: {exc}") from exc
    return [
        LabelledPhoto(
            path=r["path"],
            boxes=np.array(r["boxes"], dtype=np.float32).reshape(-1, 4),
            landmarks=np.array(r["landmarks"], dtype=np.float32).reshape(-1, 5, 2),
            ignore=np.array(r["ignore"], dtype=np.float32).reshape(-1, 4),
        )
        for r in rows
    ]


def _read_rgb(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read training photo {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class Augmenter:
    """Random training samples of ``size`` x ``size`` pixels drawn from pseudo-labelled photos.

    Args:
        photos: the labelled photos.
        size: side of every sample.
        mosaic: probability that a sample is a grid of several photos (2x2 or 3x3) instead of one photo.
        scale: range of the factor one photo is scaled by before a random crop (single-photo samples).
        min_visible: a face whose box keeps less than this fraction of its area inside the sample is ignored.
    """

    def __init__(
        self,
        photos: Sequence[LabelledPhoto],
        size: int = 256,
        mosaic: float = 0.5,
        scale: tuple[float, float] = (0.35, 1.6),
        min_visible: float = 0.6,
    ) -> None:
        if not photos:
            raise DatasetError("no labelled photos to train the detector on")
        self.photos = list(photos)
        self.size = size
        self.mosaic = mosaic
        self.scale = scale
        self.min_visible = min_visible
        self._pixels: dict[str, np.ndarray] = {}  # decoded photos: LFW's are 190 kB each

    def sample(self, rng: np.random.Generator) -> Sample:
        """One augmented sample."""
        canvas = np.empty((self.size, self.size, 3), dtype=np.uint8)
        canvas[:] = rng.integers(0, 256, size=3, dtype=np.uint8)
        boxes: list[np.ndarray] = []
        marks: list[np.ndarray] = []
        ignore: list[np.ndarray] = []
        if rng.random() < self.mosaic:
            grid = int(rng.choice([2, 3]))
            cell = self.size / grid
            for row in range(grid):
                for col in range(grid):
                    if rng.random() < 0.15:
                        continue  # an empty cell: background only
                    side = cell * rng.uniform(0.7, 1.0)
                    x0 = col * cell + rng.uniform(0, cell - side)
                    y0 = row * cell + rng.uniform(0, cell - side)
                    self._paste(rng, canvas, side / 250.0, x0, y0, boxes, marks, ignore)
        else:
            factor = float(np.exp(rng.uniform(np.log(self.scale[0]), np.log(self.scale[1]))))
            span = 250 * factor
            x0 = rng.uniform(min(0.0, self.size - span), max(0.0, self.size - span))
            y0 = rng.uniform(min(0.0, self.size - span), max(0.0, self.size - span))
            self._paste(rng, canvas, factor, x0, y0, boxes, marks, ignore)
        sample = Sample(
            image=canvas,
            boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            landmarks=np.array(marks, dtype=np.float32).reshape(-1, 5, 2),
            ignore=np.array(ignore, dtype=np.float32).reshape(-1, 4),
        )
        if rng.random() < 0.5:
            sample = flip(sample)
        return Sample(_photometric(rng, sample.image), sample.boxes, sample.landmarks, sample.ignore)

    def _paste(
        self,
        rng: np.random.Generator,
        canvas: np.ndarray,
        factor: float,
        x0: float,
        y0: float,
        boxes: list[np.ndarray],
        marks: list[np.ndarray],
        ignore: list[np.ndarray],
    ) -> None:
        """Paste one random photo scaled by ``factor`` with its top-left at (x0, y0), clipped to the canvas."""
        photo = self.photos[int(rng.integers(len(self.photos)))]
        if photo.path not in self._pixels:
            self._pixels[photo.path] = _read_rgb(photo.path)
        image = self._pixels[photo.path]
        h, w = image.shape[:2]
        # Scale and translate in one affine warp onto the canvas (clipping comes for free).
        matrix = np.array([[factor, 0.0, x0], [0.0, factor, y0]], dtype=np.float64)
        # Replicated borders, not transparent ones: those leave the destination's (uninitialised) pixels at the
        # edge of the pasted photo, where bilinear sampling reaches outside it.
        size = (self.size, self.size)
        warped = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inside = np.zeros((self.size, self.size), dtype=np.uint8)
        cv2.warpAffine(np.full((h, w), 255, np.uint8), matrix, (self.size, self.size), dst=inside, flags=cv2.INTER_NEAREST)
        canvas[inside > 0] = warped[inside > 0]
        # The pasted photo's own frame: faces cut by it are judged against that region, not the whole canvas.
        frame = np.array([max(x0, 0), max(y0, 0), min(x0 + w * factor, self.size), min(y0 + h * factor, self.size)])
        for box, pts in zip(photo.boxes, photo.landmarks, strict=True):
            scaled = box * factor + np.array([x0, y0, x0, y0])
            visible = _visible_fraction(scaled, frame)
            if visible >= self.min_visible:
                boxes.append(np.concatenate([np.maximum(scaled[:2], frame[:2]), np.minimum(scaled[2:], frame[2:])]))
                marks.append(pts * factor + np.array([x0, y0]))
            elif visible > 0:
                ignore.append(scaled)
        for box in photo.ignore:
            ignore.append(box * factor + np.array([x0, y0, x0, y0]))


def _visible_fraction(box: np.ndarray, frame: np.ndarray) -> float:
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    iw = max(min(box[2], frame[2]) - max(box[0], frame[0]), 0)
    ih = max(min(box[3], frame[3]) - max(box[1], frame[1]), 0)
    return float(iw * ih / area) if area > 0 else 0.0


def flip(sample: Sample) -> Sample:
    """Mirror a sample left-right: boxes mirrored, landmarks mirrored and their left/right points swapped."""
    width = sample.image.shape[1]
    boxes = sample.boxes.copy()
    boxes[:, [0, 2]] = width - sample.boxes[:, [2, 0]]
    ignore = sample.ignore.copy()
    ignore[:, [0, 2]] = width - sample.ignore[:, [2, 0]]
    marks = sample.landmarks[:, list(FLIP_ORDER)].copy()
    marks[..., 0] = width - marks[..., 0]
    return Sample(np.ascontiguousarray(sample.image[:, ::-1]), boxes, marks, ignore)


def _photometric(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    out = image.astype(np.float32)
    if rng.random() < 0.1:
        out[:] = out.mean(axis=2, keepdims=True)
    else:
        grey = out.mean(axis=2, keepdims=True)
        out = grey + (out - grey) * rng.uniform(0.5, 1.5)  # saturation
    out = (out - out.mean()) * rng.uniform(0.6, 1.4) + out.mean() + rng.uniform(-40, 40)  # contrast, brightness
    if rng.random() < 0.15:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.15:
        out = out + rng.normal(0, rng.uniform(2, 10), out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)
