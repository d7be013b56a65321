"""The parity gate on LFW pairs folds 1-8: ONNX, int8, pruned and MobileFaceNet variants of the pretrained model.

    python benchmarks/optimize_lfw.py --out benchmarks/results/optimize_lfw.json [--folds 1-8] [--calibration 200]
    python benchmarks/optimize_lfw.py --methods prune --sparsities 0.25,0.5 --distill-photos 600 \
        --out benchmarks/results/optimize_lfw_prune.json

Each variant is built with :func:`faceops.optimize.build_variant` and judged by
:func:`faceops.evaluation.parity.check_parity` against ``ModelBundle.pretrained()`` (each model with its own
preprocessing); nothing is registered. int8 is calibrated on the first photo of each of ``--calibration`` people who
appear in no pair of the evaluated folds; ``prune`` (one variant per ``--sparsities`` level) is distilled on the
crops of the first photo of ``--distill-photos`` of those people (detected once for every level, cached), and
its variants' embedding speed is then measured side by side with the unpruned network on ONNX Runtime and PyTorch,
alternated, in one process. Crops are cached under ``FACEOPS_CACHE_DIR`` (first run: ~7,700 photos
detected per preprocessing, i.e. once for InceptionResnetV1's and once for MobileFaceNet's).
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


def calibration_photos(folds: list[int], count: int) -> list[Path]:
    """The first photo of each of ``count`` people (sorted by name) who appear in no pair of ``folds``."""
    from faceops.evaluation.pairs import read_lfw_pairs

    used = {p.parent.name for pair in read_lfw_pairs(LFW / "pairs.txt", LFW, folds) for p in (pair.a, pair.b)}
    people = sorted(d.name for d in LFW.iterdir() if d.is_dir() and d.name not in used)
    return [LFW / name / f"{name}_0001.jpg" for name in people[:count]]


def distillation_crops(preprocess: object, photos: list[Path], cache_dir: Path) -> object:
    """The normalised crops of ``photos``, detected once and kept under ``cache_dir`` (keyed by the crop
    fingerprint and the photos)."""
    import hashlib

    import numpy as np

    from faceops.optimize import calibration_crops

    key = hashlib.sha256("\n".join([preprocess.crop_fingerprint(), *map(str, photos)]).encode()).hexdigest()[:16]  # type: ignore[attr-defined]
    path = cache_dir / f"distill-crops-{key}.npy"
    if path.is_file():
        return np.load(path)
    crops = np.concatenate(calibration_crops(preprocess, photos, purpose="pruning distillation"))  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, crops)
    return crops


def speed(nets: dict[str, object], crops: object, rounds: int = 5) -> dict[str, dict[str, float]]:
    """Median ms per face of each net on the same crops, batched (all at once) and one at a time, runs alternated."""
    import statistics

    import numpy as np

    batch = np.asarray(crops, dtype=np.float32)
    times: dict[str, dict[str, list[float]]] = {name: {"batched": [], "single": []} for name in nets}
    for net in nets.values():
        net(batch[:2])  # type: ignore[operator]  # warm-up
    for _ in range(rounds):
        for name, net in nets.items():
            start = time.perf_counter()
            net(batch)  # type: ignore[operator]
            times[name]["batched"].append((time.perf_counter() - start) * 1000 / len(batch))
            start = time.perf_counter()
            for i in range(len(batch)):
                net(batch[i : i + 1])  # type: ignore[operator]
            times[name]["single"].append((time.perf_counter() - start) * 1000 / len(batch))
    return {name: {f"{k}_ms_per_face": round(statistics.median(v), 2) for k, v in t.items()} for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/optimize_lfw.json"))
    parser.add_argument("--folds", default="1-8", help="LFW folds, e.g. 1-8")
    parser.add_argument("--calibration", type=int, default=200, help="int8 calibration photos")
    parser.add_argument("--methods", default="onnx,int8,mobilefacenet",
                        help="comma-separated; mobilefacenet_min40: MobileFaceNet with MTCNN's smallest face at 40 px "
                        "(the faster detection of benchmarks/results/detector.json)")
    parser.add_argument("--sparsities", default="0.25,0.5", help="prune: comma-separated channel sparsity levels")
    parser.add_argument("--distill-photos", type=int, default=240,
                        help="prune: distil on the first photo of this many people outside the folds' pairs")
    parser.add_argument("--epochs", type=int, default=3, help="prune: distillation epochs")
    parser.add_argument("--speed-faces", type=int, default=32, help="prune: crops of the side-by-side speed test")
    parser.add_argument("--champion-from", type=Path, default=None,
                        help="reuse the champion's figures of an earlier result file of the same folds")
    args = parser.parse_args()

    import onnxruntime
    import torch

    from faceops.evaluation.bundle import ModelBundle
    from faceops.evaluation.parity import ParityConfig, check_parity
    from faceops.face.backends import TorchNet, export_onnx
    from faceops.optimize import build_variant
    from faceops.settings import get_settings
    from faceops.training.prune import PruneConfig, count_macs

    first, _, last = args.folds.partition("-")
    folds = list(range(int(first), int(last or first) + 1))
    config = ParityConfig(lfw_pairs=LFW / "pairs.txt", lfw_root=LFW, folds=folds)
    cache_dir = get_settings().cache_dir
    champion = ModelBundle.pretrained()
    calibration = calibration_photos(folds, args.calibration)
    results: dict[str, object] = {}
    champion_figures = None
    if args.champion_from is not None:
        earlier = json.loads(args.champion_from.read_text())
        if earlier["config"]["folds"] != folds:
            raise SystemExit(f"{args.champion_from} scored folds {earlier['config']['folds']}, not {folds}")
        champion_figures = {k: v for k, v in earlier["champion"].items() if k != "model_id"}
    methods = args.methods.split(",")
    distill: dict[str, object] = {}
    crops = None
    nets: dict[str, object] = {}
    if "prune" in methods:
        photos = calibration_photos(folds, args.distill_photos)
        start = time.perf_counter()
        crops = distillation_crops(champion.preprocess, photos, cache_dir)
        distill = {"photos": len(photos), "people": len({p.parent.name for p in photos}),
                   "faces": len(crops),  # type: ignore[arg-type]
                   "source": f"LFW people in no pair of folds {args.folds}", "epochs": args.epochs,
                   "detect_s": round(time.perf_counter() - start, 1)}
        print(f"distillation crops: {distill}", flush=True)
        methods = [m for m in methods if m != "prune"] + [f"prune@{s}" for s in args.sparsities.split(",")]
    for method in methods:
        start = time.perf_counter()
        base = "mobilefacenet" if method == "mobilefacenet_min40" else method.split("@")[0]
        prune = PruneConfig(sparsity=float(method.split("@")[1]), epochs=args.epochs) if base == "prune" else None
        variant = build_variant(
            champion, base, calibration if method == "int8" else None, print, prune=prune, crops=crops  # type: ignore[arg-type]
        )
        if base == "prune":
            nets[method] = variant.backbone
        if method == "mobilefacenet_min40":
            detector = variant.preprocess.detector.model_copy(update={"min_face_size": 40})
            variant.preprocess = variant.preprocess.model_copy(update={"detector": detector})
        built_s = time.perf_counter() - start
        decision = check_parity(champion, variant, config, cache_dir=cache_dir, champion_figures=champion_figures)
        champion_figures = decision.champion
        results[method] = {
            "admitted": decision.admitted,
            "reasons": decision.reasons,
            "variant": decision.variant,
            "file_mb": variant.metadata["file_bytes"] / 1e6,
            "build_s": round(built_s, 1),
            "gate_s": round(time.perf_counter() - start - built_s, 1),
            **({"sparsity": variant.metadata["sparsity"], "prune": variant.metadata["prune"]} if base == "prune" else {}),
        }
        print(method, "admitted" if decision.admitted else f"refused: {decision.reasons}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(_payload(results, champion_figures, config, calibration, champion, distill), indent=2))
    if nets and crops is not None:
        side = champion.preprocess.align.image_size
        print("speed: exporting the unpruned network to ONNX, then timing all side by side", flush=True)
        load_before = os.getloadavg()
        sample = crops[: args.speed_faces]
        timed = speed({"unpruned_torch": TorchNet(champion.torch_module), "unpruned_onnx": export_onnx(champion.torch_module, side),
                       **nets}, sample)
        gmac = {"unpruned_torch": count_macs(champion.torch_module, side) / 1e9}
        gmac["unpruned_onnx"] = gmac["unpruned_torch"]
        for name in nets:
            gmac[name] = results[name]["prune"]["macs_after"] / 1e9  # type: ignore[index]
        distill["speed"] = {
            "faces": len(sample), "rounds": 5, "threads": "onnxruntime: all cores; torch: torch.get_num_threads()",
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "nets": {name: {**t, "gmac_per_face": round(gmac[name], 3)} for name, t in timed.items()},
        }
        print(json.dumps(distill["speed"], indent=2), flush=True)
        args.out.write_text(json.dumps(_payload(results, champion_figures, config, calibration, champion, distill), indent=2))
    print(json.dumps({m: {k: r[k] for k in ("admitted", "reasons")} for m, r in results.items()}, indent=2))  # type: ignore[index]
    del onnxruntime, torch


def _payload(
    results: dict[str, object], champion: object, config: object, calibration: list[Path], bundle: object,
    distill: dict[str, object] | None = None,
) -> dict[str, object]:
    import onnxruntime
    import torch

    return {
        "what": "parity gate of optimized variants against ModelBundle.pretrained() on LFW pairs",
        "config": config.model_dump(mode="json"),  # type: ignore[attr-defined]
        "calibration_photos": len(calibration),
        **({"distillation": distill} if distill else {}),
        "champion": {"model_id": bundle.model_id, **champion},  # type: ignore[attr-defined,dict-item]
        "variants": results,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "torch_threads": torch.get_num_threads(),
            "loadavg": os.getloadavg(),
        },
    }


if __name__ == "__main__":
    main()
