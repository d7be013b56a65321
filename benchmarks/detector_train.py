"""Train the FaceOps detector from scratch on CPU: MTCNN pseudo-labels on LFW's training people, then a run.

    nice -n 5 python benchmarks/detector_train.py --budget-min 35 --out outputs/detector/facenet.pt

Labels are cached (resumable) in ``outputs/detector/labels_train.jsonl``. The weights go to ``--out`` (not in git);
the run summary (config, FLOPs, per-epoch losses, machine load) to ``--summary``.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, default=Path("outputs/detector/labels_train.jsonl"))
    parser.add_argument("--labels-only", action="store_true", help="Only compute the pseudo-labels.")
    parser.add_argument(
        "--grow",
        action="store_true",
        help="Start training on the labels cached so far and re-read the cache every epoch (label in parallel).",
    )
    parser.add_argument("--max-photos", type=int, default=None, help="Label and train on the first N only.")
    parser.add_argument("--budget-min", type=float, default=35.0, help="Minutes of training at most.")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--steps", type=int, default=20, help="Steps per epoch.")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--mosaic", type=float, default=0.5, help="Share of multi-photo samples.")
    parser.add_argument("--init", type=Path, default=None, help="Continue from these weights.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/detector/facenet.pt"))
    parser.add_argument("--summary", type=Path, default=Path("benchmarks/results/detector_vs_mtcnn_train.json"))
    args = parser.parse_args()

    from faceops.detector.data import cached_labels, lfw_split, load_labels
    from faceops.detector.train import DetectorTrainConfig, save_checkpoint, train_detector
    from faceops.errors import DatasetError

    train_paths, _ = lfw_split(LFW)
    if args.max_photos:
        train_paths = train_paths[: args.max_photos]
    start = time.time()
    if args.grow:
        labels = load_labels(args.labels)
    else:
        labels = cached_labels(
            train_paths,
            args.labels,
            progress=lambda done, total: print(f"labels {done}/{total} {time.time() - start:.0f}s", flush=True),
            min_face_size=30,
        )

    def count(labels: list) -> dict[str, int]:
        return {
            "photos": len(labels),
            "faces": int(sum(len(p.boxes) for p in labels)),
            "ignored_faces": int(sum(len(p.ignore) for p in labels)),
            "photos_without_face": int(sum(len(p.boxes) == 0 for p in labels)),
        }

    print("labels", count(labels), flush=True)
    if args.labels_only:
        return
    config = DetectorTrainConfig(
        seed=args.seed,
        size=args.size,
        batch_size=args.batch,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        lr=args.lr,
        mosaic=args.mosaic,
        time_budget_s=args.budget_min * 60,
    )

    def report(row: dict[str, float]) -> None:
        terms = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k not in {"epoch", "seconds"})
        print(f"epoch {int(row['epoch'])}/{config.epochs} {row['seconds']:.0f}s {terms}", flush=True)

    def refresh() -> list:
        try:
            return load_labels(args.labels)
        except DatasetError:  # a line half written by the labelling process
            return []

    initial = None
    if args.init is not None:
        from faceops.detector.detect import NetDetector

        initial = NetDetector.load(args.init).model.train()
    result = train_detector(labels, config, progress=report, refresh=refresh if args.grow else None, initial=initial)
    labels = load_labels(args.labels) if args.grow else labels
    save_checkpoint(result, args.out)
    summary = {
        "weights": str(args.out),
        "continued_from": str(args.init) if args.init else None,
        "labels": count(labels),
        "pseudo_labels": "MTCNN (facenet-pytorch) p >= 0.99 learnt, 0.7 <= p < 0.99 ignored, min face 30 px",
        "split": "LFW people not named in pairs.txt (held-out: every pairs.txt person)",
        **result.summary(),
        "loadavg": os.getloadavg(),
        "machine": platform.platform(),
        "note": "CPU only, 2 cores shared with other jobs: times are relative",
    }
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=1))
    print("saved", args.out, args.summary, flush=True)


if __name__ == "__main__":
    main()
