"""Embedding networks behind one small interface, whatever runs them: PyTorch or ONNX Runtime.

An :class:`EmbeddingNet` takes a batch of normalised crops ``(N, 3, S, S)`` float32 and returns raw (not yet
L2-normalised) embeddings ``(N, D)``. :class:`~faceops.face.embedding.Embedder` does the normalisation of pixels
before it and of vectors after it, so every backend sees the same tensors and differs only in how it computes.

* :class:`TorchNet`: a ``torch.nn.Module`` (InceptionResnetV1 from facenet-pytorch, the family that fine-tuning
  starts from), in fp32 or under bfloat16 autocast (``precision="bf16"``, CPU or CUDA; :func:`bf16_support` says
  whether the hardware has native bf16 arithmetic or oneDNN emulates it).
* :class:`OnnxNet`: an ONNX model run by ONNX Runtime on the CPU: an exported InceptionResnetV1
  (:func:`export_onnx`), its int8 quantisation (:func:`quantize_int8`), or another family shipped as ONNX such as
  MobileFaceNet (:func:`load_onnx_family`, which also frees a batch size fixed at export).

OpenVINO was measured against ONNX Runtime on the same files (``benchmarks/backends.py``,
``benchmarks/results/backends.json``): it was slower here for MobileFaceNet and InceptionResnetV1 fp32 and disagreed
on the int8 QDQ model, so it is not a backend.

The embedding size always comes from the network (:attr:`EmbeddingNet.dim`), never from a constant.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from faceops.errors import ConfigError, FaceOpsError, InvalidModelFile

__all__ = [
    "EmbeddingNet",
    "OnnxNet",
    "TORCH_PRECISIONS",
    "TorchNet",
    "bf16_support",
    "bytes_id",
    "export_onnx",
    "load_onnx_family",
    "module_dim",
    "quantize_int8",
]

log = logging.getLogger(__name__)


@runtime_checkable
class EmbeddingNet(Protocol):
    """What :class:`~faceops.face.embedding.Embedder` needs from a network."""

    backend: str
    """``torch`` or ``onnxruntime``."""

    @property
    def dim(self) -> int:
        """The size of the embeddings it returns."""
        ...

    @property
    def input_size(self) -> int | None:
        """The crop side it requires, or None when any size works (fully convolutional + pooling)."""
        ...

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 3, S, S)`` float32 -> ``(N, dim)`` float32, not normalised."""
        ...


TORCH_PRECISIONS = ("fp32", "bf16")
"""What :class:`TorchNet` computes in (int8 is an ONNX Runtime network's)."""


def bf16_support(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Whether ``device`` has native bfloat16 arithmetic: on the CPU the ``avx512_bf16`` or ``amx_bf16`` flags
    (Linux ``/proc/cpuinfo``), on CUDA ``torch.cuda.is_bf16_supported()``. Without it bf16 still runs (oneDNN
    converts to fp32 around each operation), only slower.

    Returns:
        ``native`` (bool), ``device`` and ``detail`` (a sentence for logs and MLflow).
    """
    kind = torch.device(device).type
    if kind == "cuda":
        native = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
        return {"native": native, "device": f"cuda ({name})",
                "detail": f"{name}: " + ("native bf16" if native else "no native bf16")}
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    found = sorted(flags & {"avx512_bf16", "amx_bf16"})
    native = bool(found)
    detail = f"{model}: " + (f"native bf16 ({', '.join(found)})" if native else
                             "no native bf16 (no avx512_bf16/amx_bf16 flag): emulated, expect it slower than fp32")
    return {"native": native, "device": f"cpu ({model})", "detail": detail}


class TorchNet:
    """A PyTorch module as an :class:`EmbeddingNet` (eval mode, inference only).

    Args:
        module: the network; its output is ``(N, D)``.
        device: where it runs.
        precision: ``fp32``, or ``bf16``: the forward pass under ``torch.autocast`` with bfloat16 (convolutions
            and matrix products in bf16; the embeddings come back as float32).

    Raises:
        ConfigError: a precision PyTorch does not run here (``int8`` is an ONNX Runtime network's).
    """

    backend = "torch"

    def __init__(self, module: torch.nn.Module, device: str | torch.device = "cpu", precision: str = "fp32") -> None:
        if precision not in TORCH_PRECISIONS:
            raise ConfigError(
                f"a PyTorch network runs in {' or '.join(TORCH_PRECISIONS)}, not {precision!r} (int8 networks are "
                "ONNX Runtime's: faceops optimize --method int8)"
            )
        self.module = module.to(device).eval()
        self.device = torch.device(device)
        self.precision = precision
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = module_dim(self.module)
        return self._dim

    @property
    def input_size(self) -> int | None:
        return None

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(batch, dtype=torch.float32).to(self.device)
        if self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return self.module(tensor).float().cpu().numpy()
        return self.module(tensor).float().cpu().numpy()


def module_dim(module: torch.nn.Module) -> int:
    """The embedding size of a PyTorch embedder, without moving it or changing its mode."""
    last = getattr(module, "last_bn", None)  # InceptionResnetV1: the embedding's BatchNorm
    if isinstance(last, torch.nn.BatchNorm1d):
        return int(last.num_features)
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = module.training
    try:
        with torch.inference_mode():
            return int(module.eval()(torch.zeros(1, 3, 160, 160, device=device)).shape[1])
    finally:
        module.train(was_training)


class OnnxNet:
    """An ONNX model run by ONNX Runtime (CPU).

    Args:
        model: the serialised model (bytes) or a path to it.
        threads: intra-op threads; 0 lets ONNX Runtime choose (all cores).
        name: how errors name the model (its file).

    Raises:
        InvalidModelFile: the bytes are not a loadable ONNX model, or it does not have one image input
            ``(N, 3, S, S)`` and one ``(N, D)`` output.
    """

    backend = "onnxruntime"

    def __init__(self, model: bytes | str | Path, threads: int = 0, name: str | None = None) -> None:
        import onnxruntime as ort

        if isinstance(model, (str, Path)):
            name = name or os.fspath(model)
            try:
                model = Path(model).read_bytes()
            except OSError as exc:
                raise InvalidModelFile(f"cannot read the ONNX model {name}: {exc}") from exc
        self.name = name or "the ONNX model"
        self.model_bytes = model
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # no busy-waiting between runs: the detector (torch) runs in the same process between embeddings, and
        # spinning ONNX Runtime threads would take its cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes for every kind of damage
            raise InvalidModelFile(f"{self.name} is not a loadable ONNX model: {type(exc).__name__}: {str(exc)[:300]}") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) < 1 or len(outputs[0].shape) != 2:
            raise InvalidModelFile(
                f"{self.name} must take one (N, 3, S, S) image input and give an (N, D) embedding; it takes "
                f"{[(i.name, i.shape) for i in inputs]} and gives {[(o.name, o.shape) for o in outputs]}"
            )
        self._input = inputs[0].name
        shape = inputs[0].shape
        if shape[1] != 3:
            raise InvalidModelFile(f"{self.name}: its input has {shape[1]} channels, not 3 (RGB)")
        sides = [s for s in shape[2:] if isinstance(s, int)]
        self._side = sides[0] if len(sides) == 2 and sides[0] == sides[1] else None
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        out_dim = outputs[0].shape[1]
        self._dim = out_dim if isinstance(out_dim, int) else None

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
        if self._fixed_batch is not None and len(batch) != self._fixed_batch:
            return np.concatenate([self(batch[i : i + 1]) for i in range(len(batch))]) if len(batch) else batch[:, :0, 0, 0]
        return np.asarray(self.session.run(None, {self._input: batch})[0], dtype=np.float32)

    def save(self, path: Path) -> None:
        path.write_bytes(self.model_bytes)


def bytes_id(data: bytes) -> str:
    """``sha256:<16 hex>``: the id of a model file's bytes (stamps galleries and caches)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def export_onnx(module: torch.nn.Module, input_size: int, threads: int = 0) -> OnnxNet:
    """Export a PyTorch embedder to ONNX (dynamic batch) with torch's exporter, checked against PyTorch.

    Raises:
        FaceOpsError: the export failed or its outputs differ from PyTorch's by more than 1e-4.
    """
    module = module.eval().cpu()
    example = torch.zeros(2, 3, input_size, input_size)
    example.normal_(generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=["input"],
                output_names=["embedding"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                optimize=True,
                verbose=False,
            )
            assert program is not None
            program.save(str(path))
        except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways; say which
            raise FaceOpsError(f"ONNX export failed: {type(exc).__name__}: {str(exc)[:500]}") from exc
        net = OnnxNet(path.read_bytes(), threads=threads, name="the exported model")
    with torch.inference_mode():
        expected = module(example).numpy()
    error = float(np.abs(net(example.numpy()) - expected).max())
    if error > 1e-4:
        raise FaceOpsError(f"the exported ONNX model differs from PyTorch by {error:.2e} (more than 1e-4)")
    log.info("exported to ONNX (%d bytes), largest difference from PyTorch %.1e", len(net.model_bytes), error)
    return net


def load_onnx_family(path: str | Path, threads: int = 0) -> OnnxNet:
    """An ONNX embedder from a file, with a batch size fixed at export (e.g. MobileFaceNet's 1) made dynamic.

    The batch dimension of the input and output becomes symbolic and a ``Reshape`` to ``[1, -1]`` becomes
    ``[0, -1]`` (keep the batch); the result is checked against the original one image at a time.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    original = OnnxNet(path, threads=threads)
    if original._fixed_batch != 1:  # already dynamic (or a batch we do not rewrite)
        return original
    model = onnx.load_from_string(original.model_bytes)
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    shapes = {n.input[1] for n in model.graph.node if n.op_type == "Reshape"}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in shapes:
            value = numpy_helper.to_array(node.attribute[0].t)
            if value.ndim == 1 and len(value) >= 2 and value[0] == 1:
                node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.concatenate([[0], value[1:]]).astype(value.dtype)))
    for initializer in model.graph.initializer:
        if initializer.name in shapes:
            value = numpy_helper.to_array(initializer)
            if value.ndim == 1 and len(value) >= 2 and value[0] == 1:
                initializer.CopyFrom(
                    numpy_helper.from_array(np.concatenate([[0], value[1:]]).astype(value.dtype), initializer.name)
                )
    del model.graph.value_info[:]
    net = OnnxNet(model.SerializeToString(), threads=threads, name=str(path))
    side = original.input_size or 112
    probe = np.random.default_rng(0).standard_normal((3, 3, side, side)).astype(np.float32)
    error = float(np.abs(net(probe) - original(probe)).max())
    if error > 1e-4:
        raise InvalidModelFile(f"{path}: freeing its batch size changed its outputs (by {error:.2e})")
    return net


def quantize_int8(net: OnnxNet, calibration: Iterable[np.ndarray], threads: int = 0) -> OnnxNet:
    """Static int8 quantisation (QDQ, per-channel weights, MinMax calibration) of an ONNX embedder.

    Args:
        net: the float model.
        calibration: batches ``(n, 3, S, S)`` of normalised crops, as the model sees them in use.

    Raises:
        FaceOpsError: no calibration batch, or ONNX Runtime's quantiser failed.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [np.ascontiguousarray(b, dtype=np.float32) for b in calibration if len(b)]
    if not batches:
        raise FaceOpsError("int8 calibration needs face crops: the calibration set gave none (no face found)")
    name = net._input

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([{name: b} for b in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._items, None)

    with tempfile.TemporaryDirectory() as tmp:
        source, prepared, target = (Path(tmp) / n for n in ("float.onnx", "prepared.onnx", "int8.onnx"))
        net.save(source)
        try:
            quant_pre_process(os.fspath(source), os.fspath(prepared), skip_symbolic_shape=True)
            quantize_static(
                os.fspath(prepared),
                os.fspath(target),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                extra_options={"ActivationSymmetric": True},
            )
        except Exception as exc:  # noqa: BLE001 - the quantiser's failures are of many kinds
            raise FaceOpsError(f"int8 quantisation failed: {type(exc).__name__}: {str(exc)[:500]}") from exc
        return OnnxNet(target.read_bytes(), threads=threads, name="the int8 model")
