"""Reading images safely: every way an input can be unusable becomes one clear :class:`InvalidImage`.

All of FaceOps reads pixels through :func:`load_image`, so the CLI, training and serving accept and refuse the
same inputs: EXIF orientation is applied, greyscale / palette / RGBA / CMYK / 16-bit images become 8-bit RGB,
and decompression bombs, truncated files and non-images are refused before they cost memory.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceops.errors import (
    CorruptImage,
    EmptyImage,
    ImageNotFound,
    ImageTooLarge,
    InvalidImage,
    UnsupportedImage,
)
from faceops.settings import get_settings

__all__ = ["IMAGE_SUFFIXES", "ImageSource", "iter_image_paths", "load_image"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm"})
ImageSource = str | Path | bytes | np.ndarray | Image.Image


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Decode an image into an RGB ``uint8`` array of shape (H, W, 3).

    Args:
        source: a path, the encoded bytes, a PIL image or an (H, W[, C]) ``uint8`` array.
        name: how to name the input in error messages (defaults to the path).
        max_pixels: refuse images with more pixels (default: ``Settings.max_image_pixels``).
        max_bytes: refuse encoded inputs larger than this (default: ``Settings.max_image_bytes``).

    Raises:
        ImageNotFound, EmptyImage, UnsupportedImage, CorruptImage, ImageTooLarge: see :mod:`faceops.errors`.
    """
    settings = get_settings()
    max_pixels = max_pixels or settings.max_image_pixels
    max_bytes = max_bytes or settings.max_image_bytes
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, name or "array")
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source, name or "image", max_pixels)
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or str(path)
        if not path.exists():
            raise ImageNotFound("file does not exist", name)
        if path.is_dir():
            raise UnsupportedImage("is a directory, not an image file", name)
        size = path.stat().st_size
        if size == 0:
            raise EmptyImage("file is empty (0 bytes)", name)
        if size > max_bytes:
            raise ImageTooLarge(f"file is {size} bytes, over the limit of {max_bytes}", name)
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "upload"
        if not data:
            raise EmptyImage("no bytes", name)
        if len(data) > max_bytes:
            raise ImageTooLarge(f"body is {len(data)} bytes, over the limit of {max_bytes}", name)
    else:
        raise UnsupportedImage(f"cannot read an image from a {type(source).__name__}", name)
    return _decode(data, name, max_pixels)


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    with warnings.catch_warnings():
        # PIL warns (then raises) on bombs against its own global limit; ours is checked explicitly below.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # PIL also warns on damaged files it still reads (corrupt EXIF, truncated TIFF tags): whether the image is
        # usable is decided by the decode itself, which raises CorruptImage / UnsupportedImage when it is not.
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as exc:
            raise UnsupportedImage("not a recognised image format", name) from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"decompression bomb refused ({exc})", name) from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise CorruptImage(f"cannot open image ({exc})", name) from exc
        return _pil_to_rgb(image, name, max_pixels)


def _pil_to_rgb(image: Image.Image, name: str, max_pixels: int) -> np.ndarray:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} = {width * height} pixels, over the limit of {max_pixels} (decompression bomb guard)",
            name,
        )
    if width == 0 or height == 0:
        raise CorruptImage(f"image has no pixels ({width}x{height})", name)
    try:
        image.load()
        image = ImageOps.exif_transpose(image) or image
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CorruptImage(f"image data is truncated or damaged ({exc})", name) from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"decompression bomb refused ({exc})", name) from exc
    return _to_rgb8(image, name)


def _to_rgb8(image: Image.Image, name: str) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit greyscale: scale by the value range instead of clipping at 255.
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Transparent pixels are composited on white so they do not read as black faces.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    try:
        rgb = image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise UnsupportedImage(f"cannot convert image mode {mode!r} to RGB ({exc})", name) from exc
    return np.asarray(rgb, dtype=np.uint8).copy()


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise UnsupportedImage(f"array must be uint8, got {array.dtype}", name)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[2] == 4:
        return np.ascontiguousarray(array[..., :3])
    raise UnsupportedImage(f"array must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}", name)


def iter_image_paths(inputs: Iterable[str | Path], *, recursive: bool = True) -> Iterator[Path]:
    """Expand files and folders into image paths, sorted per folder.

    Files named directly are yielded whatever their suffix (so a mislabelled file still gets a clear error);
    inside folders only files with an image suffix are taken.
    """
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            yield from sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def describe(exc: InvalidImage) -> str:
    """A one-line description of an image error for listings."""
    return f"{type(exc).__name__}: {exc}"
