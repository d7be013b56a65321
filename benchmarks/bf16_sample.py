"""bf16 against fp32 for the pretrained InceptionResnetV1 on a sample of LFW pairs: agreement, accuracy and speed.

    OMP_NUM_THREADS=1 nice -n 5 python -m benchmarks.bf16_sample --pairs 24 \
        --crops-from outputs/cache/crops-fbc89611e9d6012c --out benchmarks/results/bf16_sample.json

The same network and weights run twice on the same cached crops: in fp32 and under ``torch.autocast(bfloat16)``
(``EmbedderConfig.precision: bf16``, :class:`faceops.face.backends.TorchNet`). Records whether this CPU has native
bf16 arithmetic (:func:`faceops.face.backends.bf16_support`; without it oneDNN emulates bf16 and it is slower), the
cosine between each face's fp32 and bf16 embeddings, the change of each pair's score, both precisions' accuracy at
the fp32 threshold of the sample's own pairs, and ms per face (batched and one at a time, alternated). The first
``--pairs`` / 2 matched and as many mismatched pairs of each of ``--folds`` are used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from benchmarks.optimize_lfw import LFW, speed
from benchmarks.prune_lfw import stage_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bf16_sample.json"))
    parser.add_argument("--folds", default="1", help="comma-separated LFW folds to sample")
    parser.add_argument("--pairs", type=int, default=24, help="pairs per fold, half matched, half mismatched")
    parser.add_argument("--crops-from", type=Path, action="append", default=[],
                        help="a crop-cache folder of the same detection/alignment config (see prune_lfw.py)")
    parser.add_argument("--speed-faces", type=int, default=8)
    parser.add_argument("--speed-rounds", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import torch

    from faceops.evaluation.bundle import ModelBundle
    from faceops.evaluation.pairs import read_lfw_pairs
    from faceops.evaluation.parity import lfw_scores
    from faceops.face.backends import TorchNet, bf16_support
    from faceops.optimize import build_variant
    from faceops.settings import get_settings

    folds = [int(f) for f in args.folds.split(",")]
    every = read_lfw_pairs(LFW / "pairs.txt", LFW, folds)
    pairs = [p for fold in folds for same in (True, False)
             for p in [q for q in every if q.fold == fold and q.same == same][: args.pairs // 2]]
    champion = ModelBundle.pretrained()
    cache_dir = get_settings().cache_dir
    crops_source: dict[str, object] = {"current": str(cache_dir)}
    if args.crops_from:
        cache_dir, crops_source = stage_cache(cache_dir, champion.preprocess.crop_fingerprint(), args.crops_from,
                                              with_current=False)
    bf16 = build_variant(champion, "bf16")
    labels = np.array([p.same for p in pairs], dtype=int)
    results: dict[str, dict[str, object]] = {}
    scores: dict[str, np.ndarray] = {}
    for name, bundle in (("fp32", champion), ("bf16", bf16)):
        scores[name], facts = lfw_scores(bundle, pairs, LFW, cache_dir, timing_faces=0)
        results[name] = {k: v for k, v in facts.items() if k != "embed_ms_per_face"}
    # the fp32 threshold that best separates this sample, applied to both (a sample this small has no FAR 1e-3)
    candidates = np.unique(scores["fp32"])
    accuracy = [((scores["fp32"] >= t) == labels).mean() for t in candidates]
    threshold = float(candidates[int(np.argmax(accuracy))])
    for name in ("fp32", "bf16"):
        results[name]["accuracy_at_fp32_threshold"] = float(((scores[name] >= threshold) == labels).mean())
    delta = np.abs(scores["bf16"] - scores["fp32"])

    # per-face agreement and speed on the cached crops of the sample's first photos
    import hashlib

    from faceops.data.crops import CropCache
    from faceops.face.embedding import normalize_crops

    photos = sorted({p.a for p in pairs} | {p.b for p in pairs})[: args.speed_faces]
    cached = CropCache(champion.preprocess, cache_dir).load([hashlib.sha256(p.read_bytes()).hexdigest() for p in photos])
    pixels = normalize_crops(cached[0][cached[1]["face_found"]], champion.preprocess.embedder.normalization)
    nets = {"fp32": TorchNet(champion.torch_module), "bf16": TorchNet(champion.torch_module, precision="bf16")}
    a, b = (nets[k](pixels) for k in ("fp32", "bf16"))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    load_before = os.getloadavg()
    timed = speed(nets, pixels, rounds=args.speed_rounds)
    payload = {
        "what": "pretrained InceptionResnetV1 in bf16 (torch.autocast) against fp32, same weights, same crops",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "bf16_support": bf16_support(),
        "evaluation_crops": crops_source,
        "sample": {"folds": folds, "pairs": len(pairs), "matched": int(labels.sum())},
        "threshold_fp32_best_on_sample": threshold,
        "pair_score_abs_change": {"max": float(delta.max()), "mean": float(delta.mean())},
        "decisions_that_change": int(((scores["fp32"] >= threshold) != (scores["bf16"] >= threshold)).sum()),
        "face_cosine_fp32_vs_bf16": {"faces": len(cosine), "min": float(cosine.min()), "mean": float(cosine.mean())},
        "models": results,
        "speed": {"faces": len(pixels), "rounds": args.speed_rounds, "alternated": True,
                  "torch_threads": torch.get_num_threads(), "ms_per_face": timed,
                  "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                  "note": "shared, loaded 2-core machine: the ratio bf16/fp32 is the figure, not the absolute times"},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str))
    print(json.dumps({k: payload[k] for k in ("bf16_support", "pair_score_abs_change", "decisions_that_change",
                                              "face_cosine_fp32_vs_bf16", "models", "speed")}, indent=2))


if __name__ == "__main__":
    main()
