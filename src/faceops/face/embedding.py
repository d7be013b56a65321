"""Face embeddings: InceptionResnetV1 (facenet-pytorch), 512-d, L2-normalised, batched.

Weights are resolved in this order, and never silently left random:

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

from faceops.errors import FaceOpsError, WeightsNotFound
from faceops.face.config import EmbedderConfig
from faceops.face.device import resolve_device
from faceops.settings import get_settings

__all__ = ["EMBEDDING_DIM", "Embedder", "load_backbone", "standardize"]

EMBEDDING_DIM = 512
log = logging.getLogger(__name__)


def standardize(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, S, S, 3) ``uint8`` crops -> (N, 3, S, S) float tensor, ``(x - 127.5) / 128``.

    This is the one normalisation FaceOps uses, in training and in serving alike.
    """
    tensor = torch.as_tensor(crops)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    return (tensor.permute(0, 3, 1, 2).float() - 127.5) / 128.0


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
        config: batch size and flip averaging.
        weights: a state-dict path, overriding the settings.
        device: torch device; ``None`` uses the settings.
        model: an already-built backbone (e.g. fine-tuned), used instead of loading weights.
        model_id: identifies ``model`` in galleries and logs.
    """

    def __init__(
        self,
        config: EmbedderConfig | None = None,
        weights: str | Path | None = None,
        device: str | None = None,
        model: torch.nn.Module | None = None,
        model_id: str | None = None,
    ) -> None:
        self.config = config or EmbedderConfig()
        self.device = resolve_device(device)
        if model is None:
            model, model_id = load_backbone(weights)
        self.model = model.to(self.device).eval()
        self.model_id = model_id or "custom"

    @torch.inference_mode()
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) ``uint8`` crops -> (N, 512) ``float32`` unit vectors."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        out = np.zeros((len(crops), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(crops), self.config.batch_size):
            batch = standardize(crops[start : start + self.config.batch_size]).to(self.device)
            vectors = self.model(batch)
            if self.config.flip_average:
                vectors = vectors + self.model(torch.flip(batch, dims=[3]))
            vectors = torch.nn.functional.normalize(vectors, dim=1)
            out[start : start + len(batch)] = vectors.cpu().numpy()
        return out
