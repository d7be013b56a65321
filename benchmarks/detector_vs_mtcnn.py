"""The trained FaceOps detector against MTCNN, on photos it was not trained on.

    nice -n 5 python benchmarks/detector_vs_mtcnn.py --weights outputs/detector/facenet.pt

Sections (each writes the JSON as soon as it is done, so a cut-short run keeps what it measured):

* ``heldout``: LFW photos of people named in pairs.txt (fold 1 first; none of them trained the detector). MTCNN's
  faces at p >= 0.95 (cached in ``outputs/detector/labels_heldout.jsonl``) are the reference, its 0.7-0.95 faces
  ignored: recall and precision at IoU 0.5 and landmark NME by score threshold.
* ``multiface``: the 7 multi-face photos: faces found against the count by eye and MTCNN's count at p >= 0.95.
* ``video``: frames of video.mp4 (a crowd): recall/precision against MTCNN's faces at p >= 0.95.
* ``speed``: images/s on the same LFW photos, one at a time and batched, both detectors alternated in one process.
* ``verify``: fold-1 pairs whose photos are both labelled: the subject face of each photo from MTCNN and from the
  detector, aligned the same way and embedded by the default embedder; accuracy at the best threshold, and AUC.

Writes ``benchmarks/results/detector_vs_mtcnn.json`` and ``detector_vs_mtcnn_pr.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(os.environ.get("FACEOPS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
DATASETS = SHARED / "datasets"
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _faces(labels: Any) -> list[Any]:
    from faceops.face.detection import Face

    return [Face(tuple(map(float, b)), 1.0, m) for b, m in zip(labels.boxes, labels.landmarks, strict=True)]  # type: ignore[arg-type]


def heldout(net: Any, labels: list[Any], out: dict[str, Any]) -> None:
    from faceops.detector.evaluate import score_detections
    from faceops.face.images import load_image

    images = [load_image(p.path) for p in labels]
    found = net.detect_batch(images)
    scores = score_detections(found, [_faces(p) for p in labels], [p.ignore for p in labels], THRESHOLDS)
    out["heldout"] = {
        "photos": len(labels),
        "people": len({Path(p.path).parent.name for p in labels}),
        "reference": "MTCNN faces p >= 0.95 (0.7 <= p < 0.95 ignored), min face 20 px",
        "by_threshold": [s.to_dict() for s in scores],
    }


def multiface(net: Any, mtcnn: Any, out: dict[str, Any]) -> None:
    from faceops.detector.evaluate import match_faces
    from faceops.face.images import load_image

    rows = list(csv.DictReader((DATASETS / "multiface" / "faces.csv").open()))
    result = []
    for row in rows:
        image = load_image(DATASETS / "multiface" / row["file"])
        ref_all = mtcnn.detect(image)
        ref = [f for f in ref_all if f.probability >= 0.95]
        ignore = np.array([f.box for f in ref_all if f.probability < 0.95]).reshape(-1, 4)
        mine = net.detect(image)
        m = match_faces(mine, ref, ignore)
        result.append(
            {
                "file": row["file"],
                "size": list(image.shape[:2]),
                "faces_by_eye": int(row["faces_counted_by_eye"]),
                "partly_visible": int(row["partly_visible_faces_included"]),
                "mtcnn_p095": len(ref),
                "detector": len(mine),
                "detector_matches_mtcnn": len(m.pairs),
                "detector_unmatched": m.false_positives,
            }
        )
    ref_total = sum(r["mtcnn_p095"] for r in result)
    hits = sum(r["detector_matches_mtcnn"] for r in result)
    out["multiface"] = {
        "photos": result,
        "recall_vs_mtcnn": round(hits / max(ref_total, 1), 4),
        "faces_by_eye": sum(r["faces_by_eye"] for r in result),
        "mtcnn_p095_total": ref_total,
        "detector_total": sum(r["detector"] for r in result),
    }


def video(net: Any, mtcnn: Any, frames: int, out: dict[str, Any]) -> None:
    import cv2

    from faceops.detector.evaluate import score_detections

    capture = cv2.VideoCapture(str(DATASETS / "video" / "video.mp4"))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    picks = set(np.linspace(0, total - 1, frames).astype(int).tolist())
    images = []
    for index in range(total):
        ok, frame = capture.read()
        if not ok:
            break
        if index in picks:
            images.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    refs, ignores = [], []
    for image in images:
        found = mtcnn.detect(image)
        refs.append([f for f in found if f.probability >= 0.95])
        ignores.append(np.array([f.box for f in found if f.probability < 0.95]).reshape(-1, 4))
    mine = [net.detect(image) for image in images]
    out["video"] = {
        "file": "video.mp4",
        "frames": len(images),
        "mtcnn_faces_p095": sum(len(r) for r in refs),
        "by_threshold": [s.to_dict() for s in score_detections(mine, refs, ignores, THRESHOLDS)],
    }


def speed(net: Any, mtcnn: Any, labels: list[Any], count: int, out: dict[str, Any]) -> None:
    from faceops.detector.evaluate import time_detector
    from faceops.face.images import load_image

    images = [load_image(p.path) for p in labels[:count]]
    runs: dict[str, list[float]] = {}
    for _ in range(2):  # alternated, so a change of load hits both
        for name, det in (("mtcnn", mtcnn), ("detector", net)):
            for batch in (1, 16):
                runs.setdefault(f"{name}_batch{batch}", []).append(time_detector(det.detect_batch, images, batch))
    out["speed"] = {
        "photos": len(images),
        "size": "250x250 LFW",
        "images_per_s_best_of_2": {k: round(max(v), 2) for k, v in runs.items()},
        "images_per_s_runs": {k: [round(x, 2) for x in v] for k, v in runs.items()},
    }


def verify(net: Any, labels: list[Any], limit: int, out: dict[str, Any]) -> None:
    from faceops.evaluation.metrics import accuracy_at_threshold, best_accuracy_threshold
    from faceops.face.alignment import align_face
    from faceops.face.config import PreprocessConfig
    from faceops.face.detection import select_subject
    from faceops.face.embedding import Embedder
    from faceops.face.images import load_image

    lfw = DATASETS / "lfw"
    by_path = {p.path: p for p in labels}
    lines = (lfw / "pairs.txt").read_text().splitlines()[1:601]  # fold 1: 300 same, then 300 different
    pairs = []
    for line in (line for both in zip(lines[:300], lines[300:], strict=True) for line in both):
        parts = line.split("\t")
        a, b = (
            (f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg", f"{parts[0]}/{parts[0]}_{int(parts[2]):04d}.jpg")
            if len(parts) == 3
            else (f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg", f"{parts[2]}/{parts[2]}_{int(parts[3]):04d}.jpg")
        )
        if str(lfw / a) in by_path and str(lfw / b) in by_path:
            pairs.append((str(lfw / a), str(lfw / b), len(parts) == 3))
    pairs = pairs[:limit]
    config = PreprocessConfig()
    embedder = Embedder(config.embedder)
    photos = sorted({p for a, b, _ in pairs for p in (a, b)})
    vectors: dict[str, dict[str, np.ndarray | None]] = {"mtcnn": {}, "detector": {}}
    for path in photos:
        image = load_image(path)
        ref = select_subject(_faces(by_path[path]), image.shape, config.detector.subject)
        mine = select_subject(net.detect(image), image.shape, config.detector.subject)
        for name, face in (("mtcnn", ref), ("detector", mine)):
            vectors[name][path] = None if face is None else embedder.embed(align_face(image, face, config.align))[0]
    labels_same = np.array([same for _, _, same in pairs])
    result: dict[str, Any] = {"pairs": len(pairs), "same": int(labels_same.sum()), "photos": len(photos)}
    for name, vec in vectors.items():
        # A photo without a face scores -1 (the pair is judged different), as the project's protocol counts misses.
        scores = np.array([float(vec[a] @ vec[b]) if vec[a] is not None and vec[b] is not None else -1.0 for a, b, _ in pairs])
        threshold = best_accuracy_threshold(scores, labels_same)
        order = np.argsort(-scores)
        ranks = np.empty(len(scores))
        ranks[order] = np.arange(len(scores))
        pos, neg = ranks[labels_same], ranks[~labels_same]
        auc = round(float((neg[None, :] > pos[:, None]).mean()), 4) if len(pos) and len(neg) else None
        result[name] = {
            "no_face": int(sum(v is None for v in vec.values())),
            "best_accuracy": round(accuracy_at_threshold(scores, labels_same, threshold), 4),
            "threshold": round(float(threshold), 4),
            "auc": auc,
        }
    out["verify"] = result


def plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in (("heldout", "o-"), ("video", "s--")):
        if key in out:
            rows = [r for r in out[key]["by_threshold"] if r["recall"] is not None and r["precision"] is not None]
            axes[0].plot([r["recall"] for r in rows], [r["precision"] for r in rows], style, label=f"{key} (vs MTCNN)")
            for r in rows:
                axes[0].annotate(str(r["threshold"]), (r["recall"], r["precision"]), fontsize=7)
    axes[0].set_xlabel("recall vs MTCNN p>=0.95")
    axes[0].set_ylabel("precision")
    axes[0].legend()
    axes[0].set_title("detector by score threshold")
    if "speed" in out:
        speeds = out["speed"]["images_per_s_best_of_2"]
        axes[1].bar(list(speeds), list(speeds.values()))
        axes[1].set_ylabel("images/s (250x250, loaded CPU)")
        axes[1].tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("outputs/detector/facenet.pt"))
    parser.add_argument("--labels", type=Path, default=Path("outputs/detector/labels_heldout.jsonl"))
    parser.add_argument("--threshold", type=float, default=0.5, help="Detector threshold for counts and verify.")
    parser.add_argument("--max-sides", type=int, nargs="+", default=[640], help="The detector's pyramid.")
    parser.add_argument(
        "--tune-photos", type=int, default=0, help="Leave out the last N labelled photos (used to pick the settings)."
    )
    parser.add_argument("--sections", nargs="+", default=["heldout", "multiface", "speed", "video", "verify"])
    parser.add_argument("--speed-photos", type=int, default=32)
    parser.add_argument("--video-frames", type=int, default=10)
    parser.add_argument("--verify-pairs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detector_vs_mtcnn.json"))
    args = parser.parse_args()

    import torch

    from faceops.detector.data import load_labels
    from faceops.detector.detect import NetDetector, NetDetectorConfig
    from faceops.detector.model import count_flops
    from faceops.face.detection import FaceDetector

    torch.set_num_threads(1)  # both detectors on one thread: the machine is shared
    sides = tuple(args.max_sides)
    low = NetDetector.load(args.weights, NetDetectorConfig(threshold=min(THRESHOLDS), max_sides=sides))
    net = NetDetector.load(args.weights, NetDetectorConfig(threshold=args.threshold, max_sides=sides))
    mtcnn = FaceDetector()
    labels = load_labels(args.labels)
    labels = labels[: len(labels) - args.tune_photos]
    out: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    out.update(
        {
            "weights": str(args.weights),
            "detector_mmac_320": round(count_flops(net.model, 320) / 1e6, 1),
            "detector_parameters": sum(p.numel() for p in net.model.parameters()),
            "detector_threshold_for_counts": args.threshold,
            "detector_max_sides": list(sides),
            "tuning": f"threshold and max_sides picked on the last {args.tune_photos} held-out photos, left out here",
            "machine": platform.platform(),
            "torch_threads": 1,
            "note": "CPU, 2 cores shared with other jobs: speeds are relative, compare the two side by side",
        }
    )
    for section in args.sections:
        start = time.time()
        print(f"{section} ...", flush=True)
        if section == "heldout":
            heldout(low, labels, out)
        elif section == "multiface":
            multiface(net, mtcnn, out)
        elif section == "video":
            video(low, mtcnn, args.video_frames, out)
        elif section == "speed":
            speed(net, mtcnn, labels, args.speed_photos, out)
        elif section == "verify":
            verify(net, labels, args.verify_pairs, out)
        out.setdefault("seconds", {})[section] = round(time.time() - start, 1)
        out.setdefault("loadavg", {})[section] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
        print(json.dumps(out.get(section), indent=None)[:1500], flush=True)
    plot(out, args.out.with_name(args.out.stem + "_pr.png"))


if __name__ == "__main__":
    main()
