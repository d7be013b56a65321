"""Every bad input of the face core gets its own error type and a clear message; odd but valid images decode."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceops.errors import (
    CorruptImage,
    EmptyImage,
    ImageNotFound,
    ImageTooLarge,
    NoFaceDetected,
    UnsupportedImage,
)
from faceops.face.images import iter_image_paths, load_image


@pytest.fixture(scope="module")
def face_path(lfw: Path) -> Path:
    return lfw / "Colin_Powell" / "Colin_Powell_0001.jpg"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size: decoding it would allocate width*height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match="does not exist"):
        load_image(tmp_path / "nope.jpg")


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(EmptyImage, match="0 bytes"):
        load_image(empty)


def test_not_an_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo\n" * 10)
    with pytest.raises(UnsupportedImage, match="not a recognised image format"):
        load_image(text)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedImage, match="directory"):
        load_image(tmp_path)


def test_truncated_jpeg(tmp_path: Path, face_path: Path) -> None:
    data = face_path.read_bytes()
    cut = tmp_path / "truncated.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImage, match="truncated"):
        load_image(cut)


def test_corrupt_jpeg_body(tmp_path: Path, face_path: Path) -> None:
    data = bytearray(face_path.read_bytes())
    rng = np.random.default_rng(0)
    data[20:] = rng.integers(0, 256, len(data) - 20, dtype=np.uint8).tobytes()  # keep only the JPEG magic
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(bytes(data))
    with pytest.raises((CorruptImage, UnsupportedImage)):
        load_image(bad)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))
    assert bomb.stat().st_size < 200
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        load_image(bomb)


def test_pixel_and_byte_limits(face_path: Path) -> None:
    with pytest.raises(ImageTooLarge, match="pixels"):
        load_image(face_path, max_pixels=10_000)
    with pytest.raises(ImageTooLarge, match="bytes"):
        load_image(face_path.read_bytes(), max_bytes=1_000)


def test_bytes_and_arrays(face_path: Path) -> None:
    from_file = load_image(face_path)
    assert np.array_equal(load_image(face_path.read_bytes()), from_file)
    assert np.array_equal(load_image(from_file), from_file)
    with pytest.raises(UnsupportedImage, match="uint8"):
        load_image(from_file.astype(np.float32))
    with pytest.raises(EmptyImage):
        load_image(b"")
    with pytest.raises(UnsupportedImage, match="int"):
        load_image(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16"])
def test_modes_become_rgb8_and_keep_the_face(tmp_path: Path, face_path: Path, mode: str, recognizer) -> None:
    original = Image.open(face_path)
    if mode == "I;16":
        grey = np.asarray(original.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        converted = Image.fromarray(grey)
        suffix = ".png"
    else:
        converted = original.convert(mode)
        suffix = ".jpg" if mode in ("L", "CMYK") else ".png"
    path = tmp_path / f"face_{mode.replace(';', '')}{suffix}"
    converted.save(path)
    pixels = load_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (original.height, original.width, 3)
    assert 40 < pixels.mean() < 215, "pixels must keep their brightness, not clip to black or white"
    assert recognizer.detector.detect(pixels)[0].probability > 0.95


@pytest.mark.parametrize(("orientation", "rotate"), [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_exif_rotation_is_applied(tmp_path: Path, face_path: Path, orientation: int, rotate, recognizer) -> None:
    upright = Image.open(face_path)
    stored = upright.transpose(rotate)  # what a camera writes: sideways pixels + an orientation tag
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    pixels = load_image(path)
    assert np.abs(pixels.astype(int) - np.asarray(upright, dtype=int)).mean() < 6
    face = recognizer.detector.detect(pixels)[0]
    eyes = face.landmarks[:2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 10, "after EXIF rotation the eyes are level"


def test_photo_without_a_face(datasets: Path, tmp_path: Path, recognizer) -> None:
    table = Image.open(datasets / "multiface" / "t1.jpg").crop((300, 620, 1100, 880))  # poker chips, no people
    path = tmp_path / "table.jpg"
    table.save(path)
    with pytest.raises(NoFaceDetected, match="no face detected"):
        recognizer.embed_subject(path)


def test_iter_image_paths_keeps_named_files_and_filters_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"1")
    (tmp_path / "a" / "notes.txt").write_text("x")
    named = tmp_path / "odd.name"
    named.write_bytes(b"1")
    found = list(iter_image_paths([tmp_path / "a", named]))
    assert found == [tmp_path / "a" / "x.jpg", named]


def test_bytes_io_png_roundtrip() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 20, 30)).save(buffer, format="PNG")
    pixels = load_image(buffer.getvalue())
    assert pixels.shape == (6, 8, 3) and tuple(pixels[0, 0]) == (10, 20, 30)
