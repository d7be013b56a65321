"""Calibrate the default decision threshold from scored LFW pairs, on folds disjoint from the test folds.

    faceops verify --pairs ../shared/datasets/lfw/pairs.txt --scores-out benchmarks/results/lfw_scores.csv --json
    python benchmarks/calibrate_threshold.py benchmarks/results/lfw_scores.csv --folds 3 4 5 6 7 8 --far 1e-3

Prints and writes (``--out``) the cosine threshold at the target FAR on the calibration folds, and what that
threshold gives on the other folds (FAR, FRR), so the default's behaviour on unseen people is on record.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from faceops.evaluation.metrics import far_frr, threshold_at_far


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scores", type=Path)
    parser.add_argument("--folds", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8])
    parser.add_argument("--far", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/threshold.json"))
    args = parser.parse_args()
    with args.scores.open() as handle:
        rows = list(csv.DictReader(handle))
    scores = np.array([float(r["score"]) for r in rows])
    labels = np.array([int(r["same"]) for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    calib = np.isin(folds, args.folds)
    threshold = threshold_at_far(scores[calib & (labels == 0)], args.far)
    far_c, frr_c = far_frr(scores[calib], labels[calib], threshold)
    far_t, frr_t = far_frr(scores[~calib], labels[~calib], threshold)
    result = {
        "target_far": args.far, "calibration_folds": args.folds, "threshold": round(threshold, 4),
        "calibration": {"pairs": int(calib.sum()), "far": far_c, "frr": frr_c},
        "held_out": {"folds": sorted(set(folds[~calib].tolist())), "pairs": int((~calib).sum()), "far": far_t,
                     "frr": frr_t},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
