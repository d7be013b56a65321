"""The trained FaceOps detector through its life-cycle gate, against MTCNN, as the train-detector pipeline decides.

    nice -n 5 python benchmarks/detector_gate.py --weights outputs/detector/facenet.pt

The same measures as the pipeline's ``evaluate-detector`` step (:mod:`faceops.detector.measure`): LFW verification
accuracy (folds given, each at the threshold chosen on the others) with each detector's subject face feeding the
default model's embedder and alignment, and recall (by count) on the shared multi-face photos; then the gate
(:mod:`faceops.detector.gate`) at its default tolerances. Writes ``benchmarks/results/detector_gate.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("outputs/detector/facenet.pt"))
    parser.add_argument("--threshold", type=float, default=0.3, help="The detector's score threshold.")
    parser.add_argument("--max-sides", type=int, nargs="+", default=[128, 384], help="The detector's pyramid.")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pairs-per-fold", type=int, default=50, help="0: every pair of each fold.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detector_gate.json"))
    args = parser.parse_args()

    from faceops.detector.detect import file_sha256
    from faceops.detector.gate import DetectorGateConfig, decide_detector
    from faceops.detector.measure import measure_detector, select_pairs
    from faceops.evaluation.bundle import ModelBundle
    from faceops.face.config import DetectorConfig, NetDetectorSettings
    from faceops.face.detection import build_detector
    from faceops.face.embedding import Embedder
    from faceops.settings import get_settings

    started, load_before = time.time(), os.getloadavg()
    datasets = get_settings().shared_dir / "datasets"
    bundle = ModelBundle.default()
    embedder = Embedder(bundle.preprocess.embedder, model=bundle.backbone, model_id=bundle.model_id)
    mtcnn_config = bundle.preprocess.detector
    settings = NetDetectorSettings(
        weights_sha256=file_sha256(args.weights), threshold=args.threshold, max_sides=tuple(args.max_sides)
    )
    net_fields = {**mtcnn_config.model_dump(), "kind": "faceops-net", "net": settings.model_dump()}
    net_config = DetectorConfig.model_validate(net_fields)
    pairs = select_pairs(datasets / "lfw" / "pairs.txt", datasets / "lfw", args.folds, args.pairs_per_fold)
    faces_csv = datasets / "multiface" / "faces.csv"
    figures = {}
    for name, detector in (
        ("mtcnn", build_detector(mtcnn_config, device="cpu")),
        ("detector", build_detector(net_config, args.weights, device="cpu")),
    ):
        start = time.perf_counter()
        figures[name] = measure_detector(detector, bundle, pairs, faces_csv, embedder)
        figures[name]["seconds"] = round(time.perf_counter() - start, 1)
    decision = decide_detector(figures["detector"], figures["mtcnn"], DetectorGateConfig())
    out = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "weights": str(args.weights),
        "weights_sha256": settings.weights_sha256,
        "detector": net_config.model_dump(mode="json"),
        "embedder": "default model (MobileFaceNet, ONNX Runtime) with its alignment",
        "measures": "LFW pairs: k-fold accuracy over the folds given (a photo without a face scores -1); multi-face: "
        "faces found per photo, at most the count by eye, over the count by eye",
        "gate": DetectorGateConfig().model_dump(),
        "figures": figures,
        "decision": decision.to_dict(),
        "seconds": round(time.time() - started, 1),
        "loadavg": {"start": [round(v, 2) for v in load_before], "end": [round(v, 2) for v in os.getloadavg()]},
        "note": "CPU, 2 cores shared with other jobs; the figures are accuracies, not speeds",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["decision"], indent=2))


if __name__ == "__main__":
    main()
