"""Pruned InceptionResnetV1 through the parity gate on LFW pairs folds 1-8, one variant per sparsity level.

    OMP_NUM_THREADS=1 nice -n 5 python -m benchmarks.prune_lfw --sparsities 0.25,0.4,0.55 --epochs 5 \
        --crops-from outputs/cache/crops-fbc89611e9d6012c --only-crops-from \
        --champion-from benchmarks/results/optimize_lfw.json --out benchmarks/results/prune_lfw.json

For each level, :func:`faceops.optimize.build_variant` prunes ``ModelBundle.pretrained()`` (torch-pruning, the
residual stream kept whole) and distils it against the unpruned network's embeddings on the crops of the first photo
of ``--distill-photos`` people who appear in no pair of the evaluated folds (the same crops for every level), then
:func:`faceops.evaluation.parity.check_parity` judges it against the unpruned network; nothing is registered. The
champion is scored once (``--champion`` ``onnx``: through its ONNX export, the same weights, to save CPU; ``torch``:
as loaded). Finally every pruned network's embedding speed is measured side by side with the unpruned one (PyTorch
and ONNX Runtime), runs alternated, in one process.

``--crops-from DIR`` (repeatable) also reads crops from a crop-cache folder of the SAME detection and alignment
config made by earlier code (the cache was once keyed by the full preprocessing fingerprint): the evaluation then
runs on a staging cache under ``<cache>/prune_lfw/`` that links those shards and the current cache's, the current
ones winning where both hold an image; the script counts how many crops of the images both hold are identical and
records it, so the reader can judge the reuse.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.optimize_lfw import LFW, calibration_photos, distillation_crops, speed


def stage_cache(
    cache_dir: Path, fingerprint: str, extra: list[Path], with_current: bool = True
) -> tuple[Path, dict[str, Any]]:
    """A cache root whose ``crops-<fingerprint>`` links the shards of ``extra`` and (``with_current``) of the
    current cache folder (current ones sorted last, so they win), and how the crops of images held by both
    compare."""
    import numpy as np

    current = cache_dir / f"crops-{fingerprint}"
    root = cache_dir / "prune_lfw"
    staged = root / f"crops-{fingerprint}"
    staged.mkdir(parents=True, exist_ok=True)
    wanted = {s.name: s.resolve() for f in [*extra, *([current] if with_current else [])] for s in f.glob("shard-*.npz")}
    for link in staged.glob("shard-*.npz"):  # links of another selection go; the wanted ones stay (a run may read)
        if link.is_symlink() and link.name not in wanted:
            link.unlink()
    for name, target in wanted.items():
        if not (staged / name).exists():
            (staged / name).symlink_to(target)
    index: dict[str, dict[str, tuple[Path, int]]] = {}
    for folder in [*extra, current]:
        index[str(folder)] = {}
        for shard in sorted(folder.glob("shard-*.npz")):
            with np.load(shard) as data:
                for row, sha in enumerate(data["sha256"]):
                    index[str(folder)][str(sha)] = (shard, row)
    agreement = {}
    for folder in extra:
        both = [s for s in index[str(folder)] if s in index[str(current)]]
        identical, max_diff = 0, 0
        for sha in both:
            (a, i), (b, j) = index[str(folder)][sha], index[str(current)][sha]
            with np.load(a) as x, np.load(b) as y:
                ca, cb = x["crops"][i], y["crops"][j]
                same = bool(x["face_found"][i]) == bool(y["face_found"][j]) and np.array_equal(ca, cb)
                identical += same
                max_diff = max(max_diff, int(np.abs(ca.astype(int) - cb.astype(int)).max()))
        agreement[str(folder)] = {"images": len(index[str(folder)]), "held_by_both": len(both),
                                  "identical_crops": identical, "max_pixel_difference": max_diff}
    return root, {"current": str(current), "current_images": len(index[str(current)]), "current_used": with_current,
                  "extra": agreement}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prune_lfw.json"))
    parser.add_argument("--folds", default="1-8", help="LFW folds, e.g. 1-8")
    parser.add_argument("--sparsities", default="0.25,0.4,0.55", help="comma-separated channel sparsity levels")
    parser.add_argument("--epochs", type=int, default=6, help="distillation epochs")
    parser.add_argument("--lr", type=float, default=3e-4, help="distillation peak learning rate")
    parser.add_argument("--distill-photos", type=int, default=240,
                        help="distil on the first photo of this many people outside the folds' pairs")
    parser.add_argument("--champion", choices=("onnx", "torch"), default="onnx",
                        help="score the unpruned champion through its ONNX export (same weights) or on PyTorch")
    parser.add_argument("--crops-from", type=Path, action="append", default=[],
                        help="a crop-cache folder of the same detection/alignment config made by earlier code")
    parser.add_argument("--only-crops-from", action="store_true",
                        help="evaluate on the --crops-from shards alone (e.g. those an earlier result's champion "
                        "figures were computed on), not the current cache's")
    parser.add_argument("--champion-from", type=Path, default=None,
                        help="reuse the champion's LFW figures of an earlier result file (same folds, same weights)")
    parser.add_argument("--speed-faces", type=int, default=8, help="crops of the side-by-side speed test")
    parser.add_argument("--speed-rounds", type=int, default=3)
    args = parser.parse_args()

    import onnxruntime
    import torch

    from faceops.evaluation.bundle import ModelBundle
    from faceops.evaluation.parity import ParityConfig, check_parity, model_figures
    from faceops.face.backends import TorchNet
    from faceops.optimize import build_variant
    from faceops.settings import get_settings
    from faceops.training.prune import PruneConfig, count_macs

    first, _, last = args.folds.partition("-")
    folds = list(range(int(first), int(last or first) + 1))
    config = ParityConfig(lfw_pairs=LFW / "pairs.txt", lfw_root=LFW, folds=folds)
    cache_dir = get_settings().cache_dir
    champion = ModelBundle.pretrained()
    side = champion.preprocess.align.image_size
    eval_cache, crops_source = cache_dir, {"current": str(cache_dir / f"crops-{champion.preprocess.crop_fingerprint()}")}
    if args.crops_from:
        eval_cache, crops_source = stage_cache(cache_dir, champion.preprocess.crop_fingerprint(), args.crops_from,
                                               with_current=not args.only_crops_from)
    payload: dict[str, Any] = {
        "what": "pruned InceptionResnetV1 (torch-pruning + distillation) through the parity gate against the "
                "unpruned pretrained network on LFW pairs",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": config.model_dump(mode="json"),
        "evaluation_crops": crops_source,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__, "torch_threads": torch.get_num_threads(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "loadavg_start": os.getloadavg()},
        "levels": {},
    }

    def write() -> None:
        payload["machine"]["loadavg_now"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2, default=str))

    photos = calibration_photos(folds, args.distill_photos)
    start = time.perf_counter()
    crops = distillation_crops(champion.preprocess, photos, cache_dir)
    payload["distillation"] = {"photos": len(photos), "faces": len(crops),  # type: ignore[arg-type]
                               "source": f"first photo of people in no pair of folds {args.folds}",
                               "epochs": args.epochs, "lr": args.lr, "crops_s": round(time.perf_counter() - start, 1)}
    print(f"distillation crops: {payload['distillation']}", flush=True)

    start = time.perf_counter()
    exported = build_variant(champion, "onnx", None, print)  # the unpruned network on ONNX Runtime: speed baseline
    unpruned = {"unpruned_torch": TorchNet(champion.torch_module), "unpruned_onnx": exported.backbone}
    if args.champion_from is not None:
        earlier = json.loads(args.champion_from.read_text())
        if earlier["config"]["folds"] != folds or earlier["champion"]["model_id"] != champion.model_id:
            raise SystemExit(f"{args.champion_from}: other folds or weights than this run's")
        champion_figures = {k: v for k, v in earlier["champion"].items() if k != "model_id"}
        scored_as = f"figures of {args.champion_from} (same weights {champion.model_id}, folds {args.folds})"
    else:
        champion_figures = model_figures(exported if args.champion == "onnx" else champion, config, cache_dir=eval_cache)
        scored_as = args.champion
    payload["champion"] = {"scored_as": scored_as, "model_id": champion.model_id,
                           "params": sum(p.numel() for p in champion.torch_module.parameters()),
                           "gmac_per_face": count_macs(champion.torch_module, side) / 1e9,
                           "file_mb": exported.metadata["file_bytes"] / 1e6,
                           "score_s": round(time.perf_counter() - start, 1), **champion_figures}
    write()
    print(f"champion: accuracy {champion_figures['lfw']['accuracy']:.4f}", flush=True)
    sample = crops[: args.speed_faces]  # type: ignore[index]

    for level in args.sparsities.split(","):
        start = time.perf_counter()
        settings = PruneConfig(sparsity=float(level), epochs=args.epochs, lr=args.lr)
        variant = build_variant(champion, "prune", None, print, prune=settings, crops=crops)  # type: ignore[arg-type]
        built_s = time.perf_counter() - start
        decision = check_parity(champion, variant, config, cache_dir=eval_cache, champion_figures=champion_figures)
        report = variant.metadata["prune"]
        lfw = decision.variant["lfw"]
        load_before = os.getloadavg()
        timed = speed({**unpruned, f"prune@{level}": variant.backbone}, sample, rounds=args.speed_rounds)
        payload["levels"][level] = {
            "sparsity": float(level),
            "params": report["params_after"],
            "gmac_per_face": report["macs_after"] / 1e9,
            "file_mb": variant.metadata["file_bytes"] / 1e6,
            "distill_epochs": report["epochs"], "distill_best_epoch": report["best_epoch"],
            "distill_loss_before": report["loss_before"], "distill_loss_after": report["loss_after"],
            "distill_epoch_losses": report["epoch_losses"], "distill_s": round(report["distill_s"], 1),
            "accuracy": lfw["accuracy"], "tar_at_far": lfw["tar_at_far"], "threshold": lfw["threshold"],
            "heldout_far": lfw["heldout_far"], "heldout_false_accepts": lfw["heldout_false_accepts"],
            "heldout_far_p_value": lfw["heldout_far_p_value"], "embed_ms_per_face_in_gate": lfw["embed_ms_per_face"],
            "admitted": decision.admitted, "reasons": decision.reasons,
            "build_s": round(built_s, 1), "gate_s": round(time.perf_counter() - start - built_s, 1),
            "speed": {"faces": len(sample), "rounds": args.speed_rounds, "alternated": True,
                      "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "ms_per_face": timed},
        }
        write()
        print(f"prune@{level}:", "admitted" if decision.admitted else f"refused: {decision.reasons}", flush=True)

    payload["speed_note"] = (
        f"ms/face of each level's pruned ONNX net against the unpruned net (PyTorch with {torch.get_num_threads()} "
        "thread(s); ONNX Runtime with its default threads), runs alternated in this process, on a shared, loaded "
        "2-core machine: compare the nets of one level with each other, not with other files")
    write()

if __name__ == "__main__":
    main()
