"""Face embeddings: L2-normalised, batched, from any :class:`~faceops.face.backends.EmbeddingNet`.

The default network is InceptionResnetV1 (facenet-pytorch, 512-d), the family that fine-tuning starts from; a
model bundle may instead carry an ONNX network (an exported or int8 InceptionResnetV1, or MobileFaceNet, 128-d).
The embedding size is the network's (:attr:`Embedder.dim`).

InceptionResnetV1 weights are resolved in this order, and never silently left random:

1. the ``weights`` argument;
2. the ``FACEOPS_WEIGHTS`` setting (a facenet-pytorch state dict, e.g. the CASIA-WebFace file in ``../shared``,
   or an ``s3://`` object fetched once into the cache, for pods that have no host files);
3. facenet-pytorch's own download of ``FACEOPS_PRETRAINED`` (default ``vggface2``) for users who are online.

If none works, :class:`~faceops.errors.WeightsNotFound` says which setting to fill in.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from pathlib import Path

import numpy as np
import torch

from faceops.errors import ConfigError, FaceOpsError, WeightsNotFound
from faceops.face.backends import EmbeddingNet, TorchNet
from faceops.face.config import EmbedderConfig
from faceops.face.device import resolve_device
from faceops.settings import get_settings

__all__ = ["EMBEDDING_DIM", "Embedder", "load_backbone", "normalize_crops", "standardize"]

EMBEDDING_DIM = 512
"""InceptionResnetV1's embedding size (other families have their own: ask :attr:`Embedder.dim`)."""
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0
log = logging.getLogger(__name__)


def standardize(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) ``uint8`` crops -> (N, 3, S, S) float tensor, ``(x - 127.5) / 128``.

    This is the one normalisation FaceOps uses, in training and in serving alike.
    """
    tensor = torch.as_tensor(crops)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    return (tensor.permute(0, 3, 1, 2).float() - 127.5) / 128.0


def normalize_crops(crops: np.ndarray, normalization: str) -> np.ndarray:
    """(N, S, S, 3) ``uint8`` RGB crops -> (N, 3, S, S) ``float32`` as the network expects them."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    pixels = crops.astype(np.float32)
    pixels = (pixels - _IMAGENET_MEAN) / _IMAGENET_STD if normalization == "imagenet" else (pixels - 127.5) / 128.0
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


def load_backbone(weights: str | Path | None = None) -> tuple[torch.nn.Module, str]:
    """Build InceptionResnetV1 and load its weights; returns the model (eval mode) and a weights id."""
    from facenet_pytorch import InceptionResnetV1

    settings = get_settings()
    path = _weights_file(str(weights) if weights else settings.weights, "the weights argument" if weights else None)
    if path is not None:
        if not path.is_file():
            source = "the weights argument" if weights else "FACEOPS_WEIGHTS"
            raise WeightsNotFound(f"embedding weights not found at {path} (set by {source})")
        model = InceptionResnetV1(classify=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            state = {k: v for k, v in state.items() if not k.startswith("logits.")}
            model.load_state_dict(state, strict=True)
        except (RuntimeError, OSError, ValueError, KeyError, AttributeError) as exc:
            raise WeightsNotFound(f"{path} is not an InceptionResnetV1 state dict: {exc}") from exc
        return model.eval(), _file_id(path)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        model = InceptionResnetV1(pretrained=settings.pretrained, classify=False)
    except Exception as exc:  # noqa: BLE001 - any download failure means the same thing to the user
        raise WeightsNotFound(
            "no embedding weights: set FACEOPS_WEIGHTS to an InceptionResnetV1 state dict (for example "
            "../shared/weights/inception_resnet_v1_casia-webface.pt), or connect to the network so facenet-pytorch "
            f"can download '{settings.pretrained}' (download failed: {type(exc).__name__}: {exc})"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)
    return model.eval(), f"facenet-pytorch:{settings.pretrained}"


def _weights_file(source: str | None, named_by: str | None) -> Path | None:
    """The weights as a local file: ``source`` is a path, or an ``s3://`` URI downloaded once into the cache
    (checked against ``FACEOPS_WEIGHTS_SHA256`` when set), so a pod with no host mounts loads them."""
    if not source:
        return None
    from faceops.storage import fetch_file, is_uri

    if not is_uri(source):
        return Path(source).expanduser()
    settings = get_settings()
    try:
        return fetch_file(source, settings.cache_dir.resolve(), settings.weights_sha256)
    except FaceOpsError as exc:
        raise WeightsNotFound(f"cannot fetch the embedding weights {source} (set by {named_by or 'FACEOPS_WEIGHTS'}): {exc}") from exc


def _file_id(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


class Embedder:
    """Turns aligned crops into L2-normalised embeddings.

    Args:
        config: normalisation, batch size and flip averaging.
        weights: an InceptionResnetV1 state-dict path, overriding the settings.
        device: torch device; ``None`` uses the settings (ONNX networks run on the CPU).
        model: an already-built network (a fine-tuned ``torch.nn.Module`` or any
            :class:`~faceops.face.backends.EmbeddingNet`), used instead of loading weights.
        model_id: identifies ``model`` in galleries and logs.
    """

    def __init__(
        self,
        config: EmbedderConfig | None = None,
        weights: str | Path | None = None,
        device: str | None = None,
        model: torch.nn.Module | EmbeddingNet | None = None,
        model_id: str | None = None,
    ) -> None:
        self.config = config or EmbedderConfig()
        self.device = resolve_device(device)
        if model is None:
            model, model_id = load_backbone(weights)
        if isinstance(model, torch.nn.Module):
            self.net: EmbeddingNet = TorchNet(model, self.device, precision=self.config.precision)
        else:
            self.net = model
        if self.net.backend != self.config.backend:
            raise ConfigError(
                f"the preprocessing says the embedder runs on {self.config.backend!r} but the model given runs on "
                f"{self.net.backend!r}"
            )
        self.model_id = model_id or "custom"

    @property
    def model(self) -> torch.nn.Module:
        """The PyTorch network (only for the torch backend: fine-tuning, trunk caches)."""
        if not isinstance(self.net, TorchNet):
            raise ConfigError(f"this embedder runs on {self.net.backend}, it has no PyTorch module")
        return self.net.module

    @property
    def dim(self) -> int:
        """The embedding size of the network."""
        return self.net.dim

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) ``uint8`` crops -> (N, dim) ``float32`` unit vectors."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        out = np.zeros((len(crops), self.dim), dtype=np.float32)
        for start in range(0, len(crops), self.config.batch_size):
            batch = normalize_crops(crops[start : start + self.config.batch_size], self.config.normalization)
            vectors = self.net(batch)
            if self.config.flip_average:
                vectors = vectors + self.net(np.ascontiguousarray(batch[:, :, :, ::-1]))
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out[start : start + len(batch)] = vectors / np.maximum(norms, 1e-12)
        return out
