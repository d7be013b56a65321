"""The robustness suite on LFW's pairs for the default model: every condition, slices and groups.

    nice -n 5 python benchmarks/robustness_lfw.py                       # folds 1-8, all conditions (long on a CPU)
    python benchmarks/robustness_lfw.py --folds 1 --pairs-per-fold 100 --conditions underexposure gaussian_blur

Writes ``benchmarks/results/robustness_lfw.json`` (the report, the run's settings, wall time and
``os.getloadavg()`` at start and end: figures of time are relative when the machine is loaded; the accuracy
figures are not affected) and ``robustness_lfw.png`` (condition x metric heatmap). The conditions are applied to
the probe (second image) of each pair; see ``src/faceops/evaluation/robustness.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from faceops.evaluation.bundle import ModelBundle
from faceops.evaluation.conditions import CONDITIONS
from faceops.evaluation.pairs import read_lfw_pairs
from faceops.evaluation.robustness import plot_robustness, run_robustness
from faceops.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    lfw = get_settings().shared_dir / "datasets" / "lfw"
    parser.add_argument("--pairs", type=Path, default=lfw / "pairs.txt")
    parser.add_argument("--folds", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--pairs-per-fold", type=int, default=None, help="First n genuine and n impostor pairs.")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/robustness_lfw.json"))
    parser.add_argument("--replot", action="store_true", help="Only redraw the heatmap from the JSON at --out.")
    args = parser.parse_args()
    if args.replot:
        print(plot_robustness(json.loads(args.out.read_text())["report"], args.out.with_suffix(".png")))
        return
    pairs = read_lfw_pairs(args.pairs, args.pairs.parent, args.folds)
    if args.pairs_per_fold:
        n = args.pairs_per_fold
        pairs = [p for f in args.folds for same in (True, False) for p in [q for q in pairs if q.fold == f and q.same == same][:n]]
    bundle = ModelBundle.default()
    load_start, start = os.getloadavg(), time.perf_counter()
    stage_end: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stage_end[stage] = time.perf_counter()  # the last chunk of a stage ends it: per-stage time below
        print(f"{stage}: {done}/{total}", file=sys.stderr, flush=True)

    report = run_robustness(
        bundle.recognizer(),
        pairs,
        bundle.threshold,
        bundle.target_far or 1e-3,
        args.conditions,
        seed=args.seed,
        progress=progress,
    )
    ends = [start, *stage_end.values()]
    stage_s = {name: round(end - ends[i], 1) for i, (name, end) in enumerate(stage_end.items())}
    result = {
        "model": bundle.model_id,
        "pairs_file": str(args.pairs),
        "folds": args.folds,
        "pairs_per_fold": args.pairs_per_fold,
        "sample": (
            "every pair of the folds"
            if not args.pairs_per_fold
            else f"the first {args.pairs_per_fold} genuine and first {args.pairs_per_fold} impostor pairs of each "
            "fold, in pairs.txt order"
        ),
        "pairs": len(pairs),
        "images": len({p.a for p in pairs} | {p.b for p in pairs}),
        "probes": len({p.b for p in pairs}),
        "command": " ".join(["python", *sys.argv]),
        "insufficient_rule": (
            "status 'insufficient' below 20 genuine or 20 impostor pairs; TAR at the target FAR only where there "
            "are at least 1/target_far impostors (else null, 'n/a' in the heatmap)"
        ),
        "wall_s": round(time.perf_counter() - start, 1),
        "stage_s": stage_s,
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",)},
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "report": report.to_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot_robustness(report, args.out.with_suffix(".png"))
    for name, m in [("clean", report.clean), *report.conditions.items()]:
        print(f"{name:16s} TAR@FAR {m['tar_at_far']!s:8.8s} FRR {m['frr']!s:8.8s} AUC {m['auc']!s:8.8s} {m['status']}")


if __name__ == "__main__":
    main()
