"""The parity gate on LFW pairs folds 1-8: ONNX, int8 and MobileFaceNet variants of the pretrained default model.

    python benchmarks/optimize_lfw.py --out benchmarks/results/optimize_lfw.json [--folds 1-8] [--calibration 200]

Each variant is built with :func:`faceops.optimize.build_variant` and judged by
:func:`faceops.evaluation.parity.check_parity` against ``ModelBundle.pretrained()`` (each model with its own
preprocessing); nothing is registered. int8 is calibrated on the first photo of each of ``--calibration`` people who
appear in no pair of the evaluated folds. Crops are cached under ``FACEOPS_CACHE_DIR`` (first run: ~7,700 photos
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/optimize_lfw.json"))
    parser.add_argument("--folds", default="1-8", help="LFW folds, e.g. 1-8")
    parser.add_argument("--calibration", type=int, default=200, help="int8 calibration photos")
    parser.add_argument("--methods", default="onnx,int8,mobilefacenet",
                        help="comma-separated; mobilefacenet_min40: MobileFaceNet with MTCNN's smallest face at 40 px "
                        "(the faster detection of benchmarks/results/detector.json)")
    parser.add_argument("--champion-from", type=Path, default=None,
                        help="reuse the champion's figures of an earlier result file of the same folds")
    args = parser.parse_args()

    import onnxruntime
    import torch

    from faceops.evaluation.bundle import ModelBundle
    from faceops.evaluation.parity import ParityConfig, check_parity
    from faceops.optimize import build_variant
    from faceops.settings import get_settings

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
    for method in args.methods.split(","):
        start = time.perf_counter()
        base = "mobilefacenet" if method == "mobilefacenet_min40" else method
        variant = build_variant(champion, base, calibration if method == "int8" else None, print)  # type: ignore[arg-type]
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
        }
        print(method, "admitted" if decision.admitted else f"refused: {decision.reasons}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(_payload(results, champion_figures, config, calibration, champion), indent=2))
    print(json.dumps({m: {k: r[k] for k in ("admitted", "reasons")} for m, r in results.items()}, indent=2))  # type: ignore[index]
    del onnxruntime, torch


def _payload(
    results: dict[str, object], champion: object, config: object, calibration: list[Path], bundle: object
) -> dict[str, object]:
    import onnxruntime
    import torch

    return {
        "what": "parity gate of optimized variants against ModelBundle.pretrained() on LFW pairs",
        "config": config.model_dump(mode="json"),  # type: ignore[attr-defined]
        "calibration_photos": len(calibration),
        "champion": {"model_id": bundle.model_id, **champion},  # type: ignore[attr-defined,dict-item]
        "variants": results,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }


if __name__ == "__main__":
    main()
