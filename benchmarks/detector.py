"""MTCNN detection on LFW photos: per-stage time, detection rate and the retry ladder.

Two modes, both on the photos of LFW pairs folds 1-8:

    python benchmarks/detector.py scan --out benchmarks/results/detector_misses.json
    python benchmarks/detector.py bench --out benchmarks/results/detector.json [--images 300]

``scan`` runs the default detector once over every pairs photo (~7,700) and lists the photos where no subject face
was found; ``bench`` reuses that list to measure the retry ladder on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

SHARED = Path(os.environ.get("FACEOPS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
LFW = SHARED / "datasets" / "lfw"


def pairs_photos() -> list[Path]:
    """Every distinct photo used by a pair in ``pairs.txt`` (folds 1-8), sorted."""
    photos: set[str] = set()
    lines = (LFW / "pairs.txt").read_text().splitlines()[1:]
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 3:
            photos |= {f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg", f"{parts[0]}/{parts[0]}_{int(parts[2]):04d}.jpg"}
        elif len(parts) == 4:
            photos |= {f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg", f"{parts[2]}/{parts[2]}_{int(parts[3]):04d}.jpg"}
    return [LFW / p for p in sorted(photos)]


def scan(out: Path) -> None:
    """Run the default detector (no ladder) over every pairs photo; write the misses."""
    import torch

    from faceops.face.config import DetectorConfig
    from faceops.face.detection import FaceDetector, select_subject
    from faceops.face.images import load_image

    config = DetectorConfig()
    detector = FaceDetector(config)
    paths = pairs_photos()
    misses: list[dict[str, object]] = []
    start = time.perf_counter()
    step = 64
    for begin in range(0, len(paths), step):
        chunk = paths[begin : begin + step]
        images = [load_image(p) for p in chunk]
        found = detector.detect_batch(images)
        for path, image, faces in zip(chunk, images, found, strict=True):
            if select_subject(faces, image.shape, config.subject) is None:
                misses.append({"photo": str(path.relative_to(LFW)), "shape": list(image.shape)})
        if begin % 1024 == 0:
            print(f"{begin + len(chunk)}/{len(paths)} photos, {len(misses)} misses, {time.perf_counter() - start:.0f}s")
    seconds = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "what": "LFW pairs folds 1-8 photos where the default detector finds no subject face",
        "config": config.model_dump(mode="json"),
        "photos": len(paths), "misses": len(misses), "seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
        "missed": misses,
    }, indent=2) + "\n")
    print(f"{len(misses)} misses of {len(paths)} photos in {seconds:.0f}s -> {out}")


# Stages of facenet-pytorch's detect_face, timed by wrapping the functions it looks up in its module at call time
# and hooks on the three nets. "pnet" is the P-net's own forward passes, "pnet_pyramid" the rest of that stage
# (resampling the pyramid, box generation); "rnet_crops"/"onet_crops" resample each candidate box (one call per
# box); "other" is the rest of a detect call: box padding and regression, Python loops over candidate boxes,
# facenet-pytorch's and FaceOps's post-processing.
STAGES = ("pnet", "pnet_pyramid", "rnet", "rnet_crops", "onet", "onet_crops", "nms", "other")


class _StageTimer:
    """Accumulates seconds per stage while installed around facenet-pytorch's ``detect_face``."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._undo: list[object] = []

    def install(self, mtcnns: list[object]) -> None:
        from facenet_pytorch.models.utils import detect_face as module

        def timed(name: str, fn, stage_of):  # type: ignore[no-untyped-def]
            def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
                start = time.perf_counter()
                out = fn(*args, **kwargs)
                self.seconds[stage_of(args)] += time.perf_counter() - start
                return out

            setattr(module, name, wrapper)
            self._undo.append(lambda: setattr(module, name, fn))

        crop_stage = {24: "rnet_crops", 48: "onet_crops"}
        timed("imresample", module.imresample, lambda a: crop_stage.get(tuple(a[1])[0], "pnet_pyramid"))
        timed("generateBoundingBox", module.generateBoundingBox, lambda a: "pnet_pyramid")
        timed("batched_nms", module.batched_nms, lambda a: "nms")
        timed("batched_nms_numpy", module.batched_nms_numpy, lambda a: "nms")
        for mtcnn in mtcnns:
            for stage, net in (("pnet", mtcnn.pnet), ("rnet", mtcnn.rnet), ("onet", mtcnn.onet)):  # type: ignore[attr-defined]
                started: list[float] = []
                pre = net.register_forward_pre_hook(lambda *_, s=started: s.append(time.perf_counter()))
                post = net.register_forward_hook(
                    lambda *_, s=started, st=stage: self.seconds.__setitem__(st, self.seconds[st] + time.perf_counter() - s.pop())
                )
                self._undo += [pre.remove, post.remove]

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()  # type: ignore[operator]
        self._undo.clear()


def _sample(n: int, seed: int) -> list[Path]:
    import random

    photos = pairs_photos()
    return sorted(random.Random(seed).sample(photos, n))


def _time_run(detector, images, batch: int, timer: _StageTimer) -> dict[str, float]:  # type: ignore[no-untyped-def]
    timer.seconds = dict.fromkeys(STAGES, 0.0)
    timer.install(list(detector._mtcnns.values()))
    try:
        start = time.perf_counter()
        found = [detector.detect(image) for image in images] if batch == 1 else detector.detect_batch(images, batch_size=batch)
        total = time.perf_counter() - start
    finally:
        timer.uninstall()
    stages = dict(timer.seconds)
    stages["other"] = max(0.0, total - sum(v for k, v in stages.items() if k != "other"))
    return {"total": total, **stages, "_found": found}  # type: ignore[dict-item]


def bench(
    out: Path, n: int, repeats: int, batch: int, seed: int, misses_file: Path, with_ladder: bool = True,
    sizes: tuple[int, ...] = (20, 40, 60), factors: tuple[float, ...] = (0.709, 0.8),
    backends: tuple[str, ...] = ("torch",),
) -> None:
    """Per-stage time and detection rate per pyramid setting; the ladder on the photos the scan listed."""
    import statistics

    import torch

    from faceops.face.config import DetectorConfig, DetectorRung
    from faceops.face.detection import FaceDetector, select_subject
    from faceops.face.images import load_image

    paths = _sample(n, seed)
    images = [load_image(p) for p in paths]
    settings = [(size, factor, backend) for size in sizes for factor in factors for backend in backends]
    detectors = {s: FaceDetector(DetectorConfig(min_face_size=s[0], factor=s[1]), backend=s[2]) for s in settings}
    timer = _StageTimer()
    for detector in detectors.values():  # warm-up: first calls allocate
        detector.detect_batch(images[:batch], batch_size=batch)
    runs: dict[tuple[int, float, str, int], list[dict[str, float]]] = {(*s, b): [] for s in settings for b in (1, batch)}
    found_by: dict[tuple[int, float, str], list[bool]] = {}
    for repeat in range(repeats):
        # Settings and modes alternate within each repeat, so drift in the machine's load hits them all alike.
        for s in settings:
            for b in (1, batch):
                run = _time_run(detectors[s], images, b, timer)
                found = run.pop("_found")  # type: ignore[arg-type]
                runs[(*s, b)].append(run)
                if b == batch and repeat == 0:
                    subject = detectors[s].config.subject
                    found_by[s] = [select_subject(f, im.shape, subject) is not None for f, im in zip(found, images, strict=True)]  # type: ignore[arg-type]
                print(f"repeat {repeat} min_face_size {s[0]} factor {s[1]} {s[2]} batch {b}: {run['total']:.1f}s", flush=True)
    pyramid = []
    for (size, factor, backend, b), measured in runs.items():
        median = {k: statistics.median(r[k] for r in measured) for k in measured[0]}
        pyramid.append({
            "min_face_size": size, "factor": factor, "backend": backend, "batch": b,
            "photos_per_second": round(n / median["total"], 2),
            "photos_per_second_best_run": round(n / min(r["total"] for r in measured), 2),
            "ms_per_photo": {k: round(1000 * v / n, 2) for k, v in median.items()},
            "detection_rate": round(sum(found_by[(size, factor, backend)]) / n, 4),
            "missed_photos": [
                str(p.relative_to(LFW)) for p, ok in zip(paths, found_by[(size, factor, backend)], strict=True) if not ok
            ],
        })
    result: dict[str, object] = {
        "what": "MTCNN (facenet-pytorch) per-stage time and detection rate on LFW pairs photos (folds 1-8)",
        "photos": n, "seed": seed, "repeats": repeats, "batched_size": batch,
        "timing": "median over repeats of seconds per run / photos; runs of every setting and mode alternate in one "
                  "process; stages: pnet (the P-net's forward passes), pnet_pyramid (pyramid resampling, box "
                  "generation), rnet/onet (the nets' forward passes), rnet_crops/onet_crops (one resample per "
                  "candidate box), nms, other (Python glue and post-processing); backend: what runs the three nets",
        "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "pyramid": pyramid,
    }
    if misses_file.exists() and with_ladder:
        result["ladder"] = _ladder(misses_file, DetectorConfig, DetectorRung, FaceDetector, select_subject, load_image)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")


LADDER = (
    {"thresholds": (0.5, 0.6, 0.6)},
    {"thresholds": (0.5, 0.6, 0.6), "min_probability": 0.8},
    # Enlarging keeps the default floor: at 0.8 it found two 9 px "faces" in scikit-learn's china.jpg (no person).
    {"upscale": 2.0},
)


def _centred(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> bool:
    """Whether a box's centre lies within 15% of the photo side from the photo's centre (LFW centres its subject)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    height, width = shape[:2]
    return abs(cx - width / 2) <= 0.15 * width and abs(cy - height / 2) <= 0.15 * height


_RECOGNIZER: list[object] = []


def _same_person(path: Path, image, face) -> dict[str, object] | None:  # type: ignore[no-untyped-def]
    """Whether a recovered face is the labelled person: its best similarity to other photos of that person."""
    import numpy as np

    from faceops.errors import NoFaceDetected
    from faceops.face.alignment import align_face
    from faceops.face.config import DEFAULT_THRESHOLD
    from faceops.face.recognizer import FaceRecognizer

    if not _RECOGNIZER:
        _RECOGNIZER.append(FaceRecognizer())
    recognizer: FaceRecognizer = _RECOGNIZER[0]  # type: ignore[assignment]
    others = [p for p in sorted(path.parent.glob("*.jpg")) if p != path][:3]
    references = []
    for other in others:
        try:
            references.append(recognizer.embed_subject(other).embedding)
        except NoFaceDetected:  # a reference photo without a face is simply not used
            continue
    if not references:
        return None
    vector = recognizer.embedder.embed(align_face(image, face, recognizer.config.align))[0]
    best = float(max(np.dot(vector, r) for r in references))
    return {"references": len(references), "best_similarity": round(best, 4), "match": best >= DEFAULT_THRESHOLD}


def _ladder(misses_file, DetectorConfig, DetectorRung, FaceDetector, select_subject, load_image) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Run the ladder on the photos the default detector missed; count per rung and check the faces it finds."""
    scanned = json.loads(misses_file.read_text())
    missed = [LFW / m["photo"] for m in scanned["missed"]]
    config = DetectorConfig(ladder=tuple(DetectorRung(**r) for r in LADDER))
    detector = FaceDetector(config)
    images = [load_image(p) for p in missed]
    start = time.perf_counter()
    found = detector.detect_batch(images)
    seconds = time.perf_counter() - start
    photos = []
    for path, image, faces in zip(missed, images, found, strict=True):
        subject = select_subject(faces, image.shape, config.subject)
        photos.append({
            "photo": str(path.relative_to(LFW)),
            "found": subject is not None,
            "probability": None if subject is None else round(subject.probability, 4),
            "face_size": None if subject is None else round(subject.size, 1),
            "centred": None if subject is None else _centred(subject.box, image.shape),
            "same_person": None if subject is None else _same_person(path, image, subject),
        })
    return {
        "what": "the ladder on the pairs photos (folds 1-8) where the default detector found no subject",
        "scanned_photos": scanned["photos"], "default_misses": len(missed),
        "rungs": [DetectorRung(**r).model_dump(mode="json") for r in LADDER],
        "ladder_counts": detector.ladder_counts,
        "found_centred": sum(bool(p["centred"]) for p in photos),
        "found_same_person": sum(bool((p["same_person"] or {}).get("match")) for p in photos),
        "same_person_check": "cosine similarity of the recovered face's embedding (default crop and CASIA-WebFace "
                             "weights) to up to 3 other photos of the person the default detector finds; match: the "
                             "best is at or above DEFAULT_THRESHOLD",
        "seconds": round(seconds, 2),
        "photos": photos,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    scan_parser = sub.add_parser("scan", help="list the photos the default detector misses")
    scan_parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detector_misses.json"))
    bench_parser = sub.add_parser("bench", help="per-stage time, detection rate and the ladder")
    bench_parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detector.json"))
    bench_parser.add_argument("--images", type=int, default=300)
    bench_parser.add_argument("--repeats", type=int, default=2)
    bench_parser.add_argument("--batch", type=int, default=16)
    bench_parser.add_argument("--seed", type=int, default=0)
    bench_parser.add_argument("--misses", type=Path, default=Path("benchmarks/results/detector_misses.json"))
    bench_parser.add_argument("--sizes", default="20,40,60", help="minimum face sizes, comma-separated")
    bench_parser.add_argument("--factors", default="0.709,0.8", help="pyramid scale factors, comma-separated")
    bench_parser.add_argument("--backends", default="torch,onnxruntime", help="what runs MTCNN's nets")
    bench_parser.add_argument("--no-ladder", action="store_true", help="skip the ladder on the scanned misses")
    args = parser.parse_args()
    if args.mode == "scan":
        scan(args.out)
    else:
        bench(
            args.out, args.images, args.repeats, args.batch, args.seed, args.misses, not args.no_ladder,
            tuple(int(v) for v in args.sizes.split(",")), tuple(float(v) for v in args.factors.split(",")),
            tuple(args.backends.split(",")),
        )


if __name__ == "__main__":
    main()
