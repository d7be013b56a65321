"""Measure preprocessing choices on LFW pairs: alignment template, crop margin, alignment method, flip, subject.

Tuning uses folds other than 1 and 2 (the test folds). Writes benchmarks/results/preprocess_sweep.json.

    python benchmarks/preprocess_sweep.py --folds 3 --out benchmarks/results/preprocess_sweep.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from faceops.evaluation.metrics import best_accuracy_threshold, verification_report
from faceops.evaluation.pairs import read_lfw_pairs
from faceops.face.alignment import align_face
from faceops.face.config import AlignConfig, EmbedderConfig
from faceops.face.detection import FaceDetector, select_subject
from faceops.face.embedding import Embedder
from faceops.face.images import load_image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lfw", default="../shared/datasets/lfw")
    parser.add_argument("--folds", type=int, nargs="+", default=[3])
    parser.add_argument("--out", default="benchmarks/results/preprocess_sweep.json")
    parser.add_argument(
        "--variants", nargs="+", default=None,
        help="method:margin:flip:subject, e.g. crop:0.2:0:center_weighted (default: the standard set)",
    )
    args = parser.parse_args()
    pairs = read_lfw_pairs(Path(args.lfw) / "pairs.txt", args.lfw, args.folds)
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    index = {p: i for i, p in enumerate(paths)}
    detector = FaceDetector()
    images = [load_image(p) for p in paths]
    t0 = time.time()
    detections = detector.detect_batch(images)
    detect_s = time.time() - t0
    result: dict[str, object] = {"folds": args.folds, "pairs": len(pairs), "images": len(paths), "detect_s": detect_s}

    # Template: landmarks relative to the box centre, in units of the box size (geometric mean of the sides).
    rel = []
    for img, faces in zip(images, detections, strict=True):
        face = select_subject(faces, img.shape, "center_weighted")
        if face is None:
            continue
        x1, y1, x2, y2 = face.box
        centre, size = np.array([(x1 + x2) / 2, (y1 + y2) / 2]), face.size
        rel.append((face.landmarks - centre) / size)
    template = np.mean(rel, axis=0)
    result["template"] = np.round(template, 4).tolist()
    result["no_face"] = sum(1 for f in detections if not f)
    differs = 0
    for img, faces in zip(images, detections, strict=True):
        a = select_subject(faces, img.shape, "largest")
        b = select_subject(faces, img.shape, "center_weighted")
        differs += a is not b
    result["subject_largest_vs_center_weighted_differ"] = differs

    import faceops.face.alignment as alignment

    alignment.TEMPLATE = template
    labels = np.array([p.same for p in pairs])
    embedder = Embedder(EmbedderConfig(flip_average=False))
    variants = [
        ("crop", 0.0, False, "largest"),
        ("crop", 0.2, False, "center_weighted"),
        ("similarity", 0.0, False, "center_weighted"),
        ("similarity", 0.2, False, "center_weighted"),
        ("similarity", 0.4, False, "center_weighted"),
        ("similarity", 0.2, True, "center_weighted"),
    ]
    if args.variants:
        variants = [
            (m, float(g), f == "1", s) for m, g, f, s in (v.split(":") for v in args.variants)
        ]
    rows = []
    for method, margin, flip, subject in variants:
        config = AlignConfig(method=method, margin=margin)
        crops = np.zeros((len(paths), 160, 160, 3), dtype=np.uint8)
        for i, (img, faces) in enumerate(zip(images, detections, strict=True)):
            face = select_subject(faces, img.shape, subject)
            if face is None:  # centre crop of the LFW frame: the subject is centred
                crops[i] = np.asarray(img[45:205, 45:205])
            else:
                crops[i] = align_face(img, face, config)
        embedder.config = EmbedderConfig(flip_average=flip)
        t0 = time.time()
        emb = embedder.embed(crops)
        embed_s = time.time() - t0
        scores = np.array([float(emb[index[p.a]] @ emb[index[p.b]]) for p in pairs])
        threshold = best_accuracy_threshold(scores, labels)
        report = verification_report(scores, labels)
        row = {
            "method": method, "margin": margin, "flip": flip, "subject": subject,
            "best_threshold_accuracy": float(np.mean((scores >= threshold) == labels)),
            "auc": report.auc, "eer": report.eer, "embed_s": embed_s,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    result["variants"] = rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "variants"}))


if __name__ == "__main__":
    main()
