"""Evidence: fine-tuned vs pretrained InceptionResnetV1 on the LFW people with >= 10 images, through the gate.

Builds a data version of the 134 people of ``people_min10.txt`` (symlinks into ../shared, nothing copied),
holds out identities for open-set verification, trains with ``configs/train.yaml`` (plus LFW pairs folds),
registers the pretrained model as champion and the fine-tuned one as challenger in a local MLflow store, and
runs the gate.

    .venv/bin/python benchmarks/finetune_vs_pretrained.py --folds 1 2   # ~40-60 min on 2 busy CPU cores

Writes ``benchmarks/results/finetune_vs_pretrained.json`` (figures, gate decision, timings) and the run's PNGs
under ``outputs/bench/train/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_data_root(
    lfw: Path, out: Path, test_fraction: float, val_fraction: float, seed: int, people: int | None = None
) -> Path:
    """A data version of the people with >= 10 images: identities hashed into test, images hashed into val."""
    from faceops.data.manifest import ManifestRow, write_manifest

    def unit(key: str) -> float:
        return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64

    names = [
        line.split("\t")[0] for line in (lfw / "people_min10.txt").read_text().splitlines() if line.strip()
    ]
    rows = []
    for person in names[:people]:
        link = out / person
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to((lfw / person).resolve(), target_is_directory=True)
        images = sorted(p.name for p in (lfw / person).glob("*.jpg"))
        held_out = unit(person) < test_fraction
        ranked = sorted(images, key=lambda name: unit(f"{person}/{name}"))
        n_val = max(1, round(len(images) * val_fraction))
        for name in images:
            split = "test" if held_out else ("val" if name in ranked[:n_val] else "train")
            digest = hashlib.sha256((lfw / person / name).read_bytes()).hexdigest()
            rows.append(ManifestRow(f"{person}/{name}", person, split, digest, 250, 250, "JPEG"))
    write_manifest(rows, out / "manifest.csv")
    return out


def subset_pairs(pairs: Path, folds: list[int], per_kind: int, out: Path) -> Path:
    """An LFW-format pairs file with the first ``per_kind`` matched and mismatched pairs of each fold."""
    lines = pairs.read_text().splitlines()
    n_folds, per_fold = (int(v) for v in lines[0].split())
    body = []
    for fold in folds:
        start = 1 + (fold - 1) * 2 * per_fold
        body += lines[start : start + per_kind] + lines[start + per_fold : start + per_fold + per_kind]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join([f"{len(folds)} {per_kind}", *body]) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "train.yaml")
    parser.add_argument("--folds", type=int, nargs="*", default=[1, 2], help="LFW pairs folds (1-8)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--people", type=int, default=None, help="Only the first N people (a dry run).")
    parser.add_argument(
        "--lfw-subset",
        type=int,
        default=None,
        help="Only the first N matched + N mismatched pairs of each fold (a cheaper run).",
    )
    parser.add_argument("--augment-copies", type=int, default=None, help="Override augment.copies.")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_vs_pretrained.json"
    )
    args = parser.parse_args()
    lfw = args.shared / "datasets" / "lfw"
    os.environ.setdefault(
        "FACEOPS_WEIGHTS", str(args.shared / "weights" / "inception_resnet_v1_casia-webface.pt")
    )
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["FACEOPS_MLFLOW_TRACKING_URI"] = f"sqlite:///{args.work / 'mlruns.db'}"
    os.environ["FACEOPS_MLFLOW_ARTIFACTS"] = str(args.work / "mlartifacts")
    os.environ.setdefault("FACEOPS_CACHE_DIR", str(ROOT / "outputs" / "cache"))

    import torch

    from faceops import registry
    from faceops.evaluation.bundle import ModelBundle
    from faceops.evaluation.gate import run_gate
    from faceops.training.config import LfwPairsConfig, load_train_config
    from faceops.training.run import run_training

    started = time.time()
    data = build_data_root(lfw, args.work / "data", args.test_fraction, 0.2, seed=0, people=args.people)
    base = load_train_config(args.config)
    updates = {"data_root": data, "output_dir": args.work / "train", "mlflow": True}
    if args.folds:
        pairs, folds = lfw / "pairs.txt", args.folds
        if args.lfw_subset:  # the subset file is renumbered: its folds are 1..len(args.folds)
            pairs = subset_pairs(pairs, args.folds, args.lfw_subset, args.work / "pairs_subset.txt")
            folds = list(range(1, len(args.folds) + 1))
        updates["lfw_pairs"] = LfwPairsConfig(pairs=pairs, root=lfw, folds=folds)
    if args.augment_copies is not None:
        updates["augment"] = base.augment.model_copy(update={"copies": args.augment_copies})
    config = base.model_copy(update=updates)
    cache_dir = Path(os.environ["FACEOPS_CACHE_DIR"])
    result = run_training(config, cache_dir=cache_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (args.work / "train_report.partial.json").write_text(json.dumps(result.report, indent=2, default=str))
    # The pretrained model, calibrated the same way, becomes the champion the fine-tuned challenger must beat.
    pretrained = ModelBundle.pretrained(preprocess=config.preprocess)
    pretrained.threshold = float(result.report["models"]["pretrained"]["open_set"]["threshold"])
    pretrained.target_far = config.evaluation.target_far
    pretrained.metadata = {"cut": config.cut, "data_version": result.report["data_version"]}
    baseline = registry.log_bundle(
        pretrained, run_name="pretrained-baseline", tags={"faceops.kind": "pretrained"}
    )
    registry.set_alias(registry.CHAMPION, baseline, "benchmark baseline: the pretrained model")
    registry.set_alias(registry.CHALLENGER, result.version, "fine-tuned challenger")
    decision = run_gate(data, config.gate, config.evaluation, lfw_pairs=config.lfw_pairs, cache_dir=cache_dir)
    models = result.report["models"]
    summary = {
        "machine": {"cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
        "data": {
            "identities": len(
                {line.split(",")[1] for line in (data / "manifest.csv").read_text().splitlines()[1:]}
            ),
            "train_classes": result.report["classes"],
            "images_by_split": {
                s: sum(
                    1
                    for line in (data / "manifest.csv").read_text().splitlines()[1:]
                    if line.split(",")[2] == s
                )
                for s in ("train", "val", "test")
            },
            "preprocess_failed": result.report["preprocess_failed"],
        },
        "config": config.model_dump(mode="json"),
        "command": " ".join(sys.argv),
        "timings_s": {**result.report["timings"], "total": round(time.time() - started, 1)},
        "history": result.report["history"],
        "closed_set": {
            m: {
                k: models[m]["closed_set"][k]
                for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")
            }
            for m in models
        },
        "open_set": {
            m: {
                k: models[m]["open_set"][k]
                for k in (
                    "auc",
                    "eer",
                    "tar_at_far",
                    "threshold",
                    "far_at_threshold",
                    "frr_at_threshold",
                    "pairs",
                    "calibration_identities",
                    "evaluation_identities",
                )
            }
            for m in models
        },
        "lfw_pairs": result.report.get("lfw_pairs"),
        "registry": {"champion_before": baseline, "challenger": result.version},
        "gate": decision.to_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=str))
    print(
        json.dumps(
            {k: summary[k] for k in ("closed_set", "open_set", "gate", "timings_s")}, indent=2, default=str
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
