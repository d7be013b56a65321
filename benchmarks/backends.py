"""ONNX Runtime against OpenVINO on the same ONNX files: ms per face at batch 1 and 32, and cosine agreement.

The models: InceptionResnetV1 exported to ONNX (fp32), its static int8 quantisation (QDQ, calibrated on LFW crops)
and MobileFaceNet (the shipped ONNX, batch freed). Inputs are real aligned LFW crops, normalised as each family
expects. Both runtimes get the same thread count; runs alternate (model, runtime, batch) inside one process::

    nice -n 5 .venv/bin/python benchmarks/backends.py --out benchmarks/results/backends.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceops.errors import InvalidModelFile

SHARED = Path(os.environ.get("FACEOPS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
LFW = SHARED / "datasets" / "lfw"


class OpenVinoNet:  # measured here; not a FaceOps backend (see the result file)
    """An ONNX model run by OpenVINO (CPU, fp32 inference precision), with :class:`OnnxNet`'s checks.

    Args:
        model: the serialised ONNX model (bytes) or a path to it.
        threads: inference threads; 0 lets OpenVINO choose.
        name: how errors name the model.

    Raises:
        InvalidModelFile: OpenVINO is not installed, the bytes are not a model it can read, or it does not have
            one image input ``(N, 3, S, S)`` and an ``(N, D)`` output.
    """

    backend = "openvino"

    def __init__(self, model: bytes | str | Path, threads: int = 0, name: str | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise InvalidModelFile("the openvino backend needs the openvino package (pip install openvino)") from exc
        if isinstance(model, (str, Path)):
            name = name or os.fspath(model)
            try:
                model = Path(model).read_bytes()
            except OSError as exc:
                raise InvalidModelFile(f"cannot read the ONNX model {name}: {exc}") from exc
        self.name = name or "the ONNX model"
        self.model_bytes = model
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(model)
            try:
                graph = core.read_model(os.fspath(path))
                self.compiled = core.compile_model(graph, "CPU", config)
            except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses for every kind of damage
                raise InvalidModelFile(
                    f"{self.name} is not a model OpenVINO can load: {type(exc).__name__}: {str(exc)[:300]}"
                ) from exc
        inputs, outputs = graph.inputs, graph.outputs
        in_shape, out_shape = inputs[0].get_partial_shape(), outputs[0].get_partial_shape() if outputs else None
        if len(inputs) != 1 or in_shape.rank.get_length() != 4 or out_shape is None or out_shape.rank.get_length() != 2:
            raise InvalidModelFile(f"{self.name} must take one (N, 3, S, S) image input and give an (N, D) embedding")
        dims = [d.get_length() if d.is_static else None for d in in_shape]
        if dims[1] != 3:
            raise InvalidModelFile(f"{self.name}: its input has {dims[1]} channels, not 3 (RGB)")
        self._side = dims[2] if dims[2] is not None and dims[2] == dims[3] else None
        out_dim = out_shape[1]
        self._dim = out_dim.get_length() if out_dim.is_static else None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self(np.zeros((1, 3, self._side or 112, self._side or 112), np.float32)).shape[1])
        return self._dim

    @property
    def input_size(self) -> int | None:
        return self._side

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._side is not None and batch.shape[2:] != (self._side, self._side):
            raise InvalidModelFile(
                f"{self.name} takes {self._side}x{self._side} crops, it was given {batch.shape[2]}x{batch.shape[3]}"
            )
        # one infer request per call: a compiled model's own request is not safe across threads (serving)
        request = self.compiled.create_infer_request()
        request.infer({0: batch})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)

    def save(self, path: Path) -> None:
        path.write_bytes(self.model_bytes)


def _photos(n: int, seed: int) -> list[Path]:
    people = sorted(d for d in LFW.iterdir() if d.is_dir())
    rng = random.Random(seed)
    return [sorted(d.glob("*.jpg"))[0] for d in rng.sample(people, n)]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def _time(fn, batch: np.ndarray, size: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per face running ``fn`` over ``batch`` in chunks of ``size``."""
    start = time.perf_counter()
    for i in range(0, len(batch), size):
        fn(batch[i : i + size])
    return (time.perf_counter() - start) / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/backends.json"))
    parser.add_argument("--faces", type=int, default=32)
    parser.add_argument("--calibration", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--models", default="irv1_fp32,irv1_int8_qdq,mobilefacenet",
        help="which models to measure; rows of models not measured are kept from an existing --out file",
    )
    args = parser.parse_args()
    chosen = args.models.split(",")

    import onnxruntime
    import openvino
    import torch

    from faceops.face.backends import export_onnx, load_onnx_family, quantize_int8
    from faceops.face.config import PreprocessConfig
    from faceops.face.embedding import load_backbone
    from faceops.optimize import calibration_crops, mobilefacenet_preprocess
    from faceops.settings import get_settings

    torch.set_num_threads(args.threads)
    photos = _photos(args.faces + args.calibration, args.seed)
    measure, calibrate = photos[: args.faces], photos[args.faces :]
    irv1_pre = PreprocessConfig()
    mfn_pre = mobilefacenet_preprocess(irv1_pre)
    irv1_crops = np.concatenate(calibration_crops(irv1_pre, measure))[: args.faces]
    mfn_crops = np.concatenate(calibration_crops(mfn_pre, measure))[: args.faces]
    print(f"{len(irv1_crops)} / {len(mfn_crops)} crops", flush=True)

    models: dict[str, tuple[Any, np.ndarray]] = {}
    reference: dict[str, np.ndarray] = {}
    if any(m.startswith("irv1") for m in chosen):
        backbone, _ = load_backbone()
        fp32 = export_onnx(backbone, irv1_pre.align.image_size, threads=args.threads)
        with torch.inference_mode():
            reference["irv1_fp32"] = backbone(torch.as_tensor(irv1_crops)).numpy()
        if "irv1_fp32" in chosen:
            models["irv1_fp32"] = (fp32, irv1_crops)
        if "irv1_int8_qdq" in chosen:
            models["irv1_int8_qdq"] = (quantize_int8(fp32, calibration_crops(irv1_pre, calibrate), threads=args.threads), irv1_crops)
    if "mobilefacenet" in chosen:
        models["mobilefacenet"] = (load_onnx_family(get_settings().mobilefacenet_path(), threads=args.threads), mfn_crops)
    nets = {name: {"onnxruntime": net, "openvino": OpenVinoNet(net.model_bytes, threads=args.threads, name=name)}
            for name, (net, _) in models.items()}
    for name, (_, crops) in models.items():  # warm-up: first calls allocate and (OpenVINO) compile shapes
        for net in nets[name].values():
            net(crops[:1])
            net(crops)

    sizes = (1, len(mfn_crops))
    runs: dict[tuple[str, str, int], list[float]] = {}
    loads = [os.getloadavg()[0]]
    for repeat in range(args.repeats):
        for name, (_, crops) in models.items():
            for size in sizes:
                for runtime, net in nets[name].items():
                    runs.setdefault((name, runtime, size), []).append(_time(net, crops, size))
        loads.append(os.getloadavg()[0])
        print(f"repeat {repeat}: load {loads[-1]:.2f}", flush=True)

    rows = []
    for name, (_, crops) in models.items():
        ort_out, ov_out = nets[name]["onnxruntime"](crops), nets[name]["openvino"](crops)
        agree = _cosine(ort_out, ov_out)
        row: dict[str, object] = {
            "model": name,
            "file_bytes": len(models[name][0].model_bytes),
            "input": list(crops.shape[1:]),
            "cosine_openvino_vs_onnxruntime": {"min": round(float(agree.min()), 6), "mean": round(float(agree.mean()), 6)},
        }
        if name.startswith("irv1"):
            for runtime, out in (("onnxruntime", ort_out), ("openvino", ov_out)):
                vs = _cosine(out, reference["irv1_fp32"])
                row[f"cosine_{runtime}_vs_torch_fp32"] = {"min": round(float(vs.min()), 6), "mean": round(float(vs.mean()), 6)}
        for size in sizes:
            ms = {rt: 1000 * statistics.median(runs[(name, rt, size)]) for rt in ("onnxruntime", "openvino")}
            best = {rt: 1000 * min(runs[(name, rt, size)]) for rt in ("onnxruntime", "openvino")}
            row[f"batch_{size}_ms_per_face"] = {rt: round(v, 2) for rt, v in ms.items()}
            row[f"batch_{size}_ms_per_face_min"] = {rt: round(v, 2) for rt, v in best.items()}
            row[f"batch_{size}_openvino_speedup"] = round(ms["onnxruntime"] / ms["openvino"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)

    result = {
        "what": "ONNX Runtime vs OpenVINO on the same ONNX files (CPU), real aligned LFW crops",
        "faces": len(irv1_crops), "repeats": args.repeats, "threads": args.threads,
        "timing": "median (and min, the least disturbed run) over repeats of seconds per face; batch 1 = the faces "
                  "one at a time, batch N = all at "
                  "once; model, batch size and runtime alternate within each repeat in one process",
        "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__,
        "machine": platform.machine(), "cpu": _cpu_name(), "cpus": os.cpu_count(),
        "loadavg_1min": [round(v, 2) for v in loads],
        "relative_only": max(loads) > 1.0,
        "models": rows,
    }
    for row in rows:
        row["loadavg_1min"] = result["loadavg_1min"]
    if args.out.exists():  # keep the rows (and their conditions) of models not measured this time
        old = json.loads(args.out.read_text())
        kept = [r for r in old.get("models", []) if r["model"] not in models]
        for row in kept:
            row.setdefault("loadavg_1min", old.get("loadavg_1min"))
            row.setdefault("repeats", old.get("repeats"))
        result["models"] = kept + rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
