"""Small torch helpers shared by the core: device choice and thread settings."""

from __future__ import annotations

import torch

from faceops.settings import get_settings

__all__ = ["resolve_device"]


def resolve_device(device: str | None = None) -> str:
    """The torch device to use: the argument, else the settings' ``device``; 'auto' picks CUDA when present."""
    settings = get_settings()
    choice = device or settings.device
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice
