"""Face-core speed and memory on LFW photos: detection, embedding, and both, at batch 1 and batch 32.

Each measurement runs in a fresh process so its peak memory (max RSS) is its own. Writes a JSON result:

    python benchmarks/bench_core.py --out benchmarks/results/core.json [--images 96]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path

SHARED = Path(os.environ.get("FACEOPS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def _paths(n: int) -> list[Path]:
    people = sorted(p for p in (SHARED / "datasets" / "lfw").iterdir() if p.is_dir())
    paths: list[Path] = []
    for person in people:
        paths += sorted(person.glob("*.jpg"))[:2]
        if len(paths) >= n:
            break
    return paths[:n]


def _measure(stage: str, batch: int, n: int, queue: mp.Queue) -> None:
    import numpy as np
    import torch

    from faceops.face.alignment import align_face
    from faceops.face.config import PreprocessConfig
    from faceops.face.detection import select_subject
    from faceops.face.images import load_image
    from faceops.face.recognizer import FaceRecognizer

    config = PreprocessConfig()
    config = config.model_copy(update={"embedder": config.embedder.model_copy(update={"batch_size": batch})})
    recognizer = FaceRecognizer(config)
    images = [load_image(p) for p in _paths(n)]
    detections = recognizer.detector.detect_batch(images)
    crops = np.stack([
        align_face(img, select_subject(f, img.shape, config.detector.subject), config.align)
        for img, f in zip(images, detections, strict=True) if f
    ])
    recognizer.embedder.embed(crops[:2])  # warm-up

    def detect() -> None:
        for start in range(0, len(images), batch):
            recognizer.detector.detect_batch(images[start : start + batch], batch_size=batch)

    def embed() -> None:
        for start in range(0, len(crops), batch):
            recognizer.embedder.embed(crops[start : start + batch])

    def both() -> None:
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            found = recognizer.detector.detect_batch(chunk, batch_size=batch)
            faces = [(img, select_subject(f, img.shape, config.detector.subject)) for img, f in zip(chunk, found, strict=True)]
            recognizer.embedder.embed(np.stack([align_face(i, f, config.align) for i, f in faces if f is not None]))

    work = {"detect": (detect, len(images)), "embed": (embed, len(crops)), "detect+embed": (both, len(images))}
    fn, count = work[stage]
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    queue.put({
        "stage": stage, "batch": batch, "images": count, "seconds": round(seconds, 3),
        "images_per_second": round(count / seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(), "flip_average": config.embedder.flip_average,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/core.json"))
    parser.add_argument("--images", type=int, default=96)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for stage in ("detect", "embed", "detect+embed"):
        for batch in (1, 32):
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(stage, batch, args.images, queue))
            proc.start()
            proc.join()
            if proc.exitcode != 0 or queue.empty():
                raise SystemExit(f"measurement {stage} / batch {batch} failed (exit code {proc.exitcode})")
            row = queue.get()
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {
        "benchmark": "face core throughput on LFW photos (250x250 JPEG, one face each)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "note": "CPU only; each row measured in a fresh process (peak_rss_mb is that process's max RSS)",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
