"""Fuzzing image decoding and the face path with hypothesis: any bytes give pixels, faces or a FaceOps error.

Inputs are real encodings (PNG, JPEG, BMP, GIF, TIFF, WebP, PPM, ICO) of images of random size (1x1 to large,
extreme aspects such as 10000x10), mode (1, L, LA, P, RGB, RGBA, CMYK, I;16, I, F) and content (noise, flat,
gradient, a real face resized), then left whole, truncated, corrupted or padded; and garbage behind real magic
numbers. Whatever comes in, :func:`faceops.face.images.load_image`, :meth:`FaceRecognizer.analyze` and
:meth:`FaceDetector.detect` return a result or raise a :class:`faceops.errors.FaceOpsError`, never another
exception; an untouched encoding always decodes to its own size.

A bounded, seeded run is part of ``make test``; ``make fuzz`` sets ``FUZZ_EXAMPLES`` (examples per test) and
``FUZZ_SEED`` for a long run and ``FUZZ_REPORT`` for the figures file. :func:`encoded_images` is also the image
strategy of the API fuzzer (``tests/serving/test_fuzz_api.py``).
"""

from __future__ import annotations

import functools
import io
import json
import os
import time
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from faceops.errors import FaceOpsError, InvalidImage
from faceops.face.images import load_image
from tests.conftest import DATASETS

pytestmark = pytest.mark.fuzz

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))  # 0: the bounded run of make test
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20260113"))
LONG = FUZZ_EXAMPLES > 0

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM", "ICO")
MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F")
MUTATIONS = ("none", "truncate", "corrupt", "pad")
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"II*\x00", b"P6\n")
# Sides reach 10,000 px (extreme aspects) and 1,601 px (the detector scales down); pixels are capped to keep a run
# bounded (the bomb guard has its own tests).
MAX_PIXELS = 6_000_000 if LONG else 1_500_000

FIGURES: Counter[str] = Counter()  # outcomes per test, for the make fuzz report


def _settings(bounded: int) -> settings:
    return settings(
        max_examples=FUZZ_EXAMPLES or bounded,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


@cache
def _face_photo() -> Image.Image:
    return Image.open(DATASETS / "lfw" / "Colin_Powell" / "Colin_Powell_0001.jpg").convert("RGB")


def _pixels(content: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    if content == "face":
        return _face_photo().resize((width, height))
    if content == "flat":
        return Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))
    if content == "gradient":
        x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
        return Image.fromarray(np.broadcast_to((x + y) / 2, (height, width, 3)).astype(np.uint8))
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _convert(image: Image.Image, mode: str) -> Image.Image:
    if mode in ("I;16", "I", "F"):
        return image.convert("L").convert(mode)
    return image.convert(mode)


def _encode(image: Image.Image, fmt: str) -> tuple[bytes, str]:
    """The image in ``fmt``, or in TIFF (which takes every mode) when ``fmt`` cannot hold its mode."""
    for attempt in (fmt, "TIFF"):
        out = io.BytesIO()
        try:
            image.save(out, attempt)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return out.getvalue(), attempt
    raise AssertionError(f"PIL cannot save a {image.mode} image as {fmt} or TIFF")


sides = st.one_of(st.integers(1, 48), st.integers(49, 640), st.sampled_from([1, 2, 11, 19, 20, 21, 30, 1600, 1601]))
aspects = st.sampled_from([(10_000, 10), (10, 10_000), (5_000, 30), (30, 5_000), (2_000, 1), (1, 2_000)])


@st.composite
def image_specs(draw: st.DrawFn) -> dict:
    """What one generated image is: size, mode, format, content and what is done to its bytes."""
    width, height = draw(st.one_of(st.tuples(sides, sides), aspects))
    if width * height > MAX_PIXELS:  # keep the run bounded; the bomb guard has its own tests
        height = max(1, MAX_PIXELS // width)
    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    mutation = draw(st.sampled_from(MUTATIONS))
    spec = {"width": width, "height": height, "mode": mode, "format": fmt, "mutation": mutation,
            "content": draw(st.sampled_from(("noise", "flat", "gradient", "face"))),
            "seed": draw(st.integers(0, 2**32 - 1))}
    if mutation == "truncate":
        spec["keep"] = draw(st.floats(0.0, 0.999))
    elif mutation == "corrupt":
        spec["flips"] = draw(st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(1, 255)), min_size=1, max_size=8))
    elif mutation == "pad":
        spec["pad"] = draw(st.binary(min_size=1, max_size=64))
        spec["front"] = draw(st.booleans())
    return spec


def _spec(width: int, height: int, mode: str, fmt: str, mutation: str = "none", content: str = "noise", **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"width": width, "height": height, "mode": mode, "format": fmt, "mutation": mutation, "content": content,
            "seed": 0, **extra}


def build(spec: dict) -> tuple[bytes, str]:
    """The bytes a spec describes and the format they were encoded in."""
    rng = np.random.default_rng(spec["seed"])
    image = _convert(_pixels(spec["content"], spec["width"], spec["height"], rng), spec["mode"])
    data, fmt = _encode(image, spec["format"])
    if spec["mutation"] == "truncate":
        data = data[: int(len(data) * spec["keep"])]
    elif spec["mutation"] == "corrupt":
        buf = bytearray(data)
        for where, xor in spec["flips"]:
            buf[int(where * len(buf))] ^= xor
        data = bytes(buf)
    elif spec["mutation"] == "pad":
        data = spec["pad"] + data if spec["front"] else data + spec["pad"]
    return data, fmt


garbage = st.one_of(
    st.binary(max_size=2048),
    st.tuples(st.sampled_from(MAGIC), st.binary(max_size=512)).map(lambda t: t[0] + t[1]),
)


faces = st.builds(
    lambda side, fmt: build(_spec(side, side, "RGB", fmt, content="face"))[0],
    st.integers(80, 400),
    st.sampled_from(("JPEG", "PNG", "WEBP")),
)


def encoded_images() -> st.SearchStrategy[bytes]:
    """Image-like bytes: real encodings (whole or damaged), whole face photos, garbage behind magic numbers."""
    return st.one_of(image_specs().map(lambda s: build(s)[0]), faces, garbage)


def _counted(test: str):  # type: ignore[no-untyped-def]
    """Count the examples of ``test`` that fail (shrinking included), for the figures file."""

    def wrap(fn):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            FIGURES[f"{test}:cases"] += 1
            try:
                return fn(*args, **kwargs)
            except Exception:
                FIGURES[f"{test}:failed"] += 1
                raise

        return run

    return wrap


def _outcome(test: str, call) -> object:  # type: ignore[no-untyped-def]
    """Run ``call``; a FaceOps error is an answer, any other exception fails the test."""
    try:
        result = call()
    except FaceOpsError as exc:
        FIGURES[f"{test}:{type(exc).__name__}"] += 1
        return exc
    FIGURES[f"{test}:ok"] += 1
    return result


@_settings(bounded=150)
@seed(FUZZ_SEED)
@given(spec=image_specs())
# PIL's TIFF tag reader warns (a UserWarning, an error under the tests' filter) instead of failing on these:
@example(spec=_spec(8, 8, "L", "TIFF", "truncate", keep=0.05))  # "Corrupt EXIF data. Expecting to read 2 bytes"
@example(spec=_spec(8, 8, "RGB", "TIFF", "truncate", keep=0.14))  # "Truncated File Read"
@_counted("decode")
def test_decode_generated_images(spec: dict) -> None:
    data, fmt = build(spec)
    result = _outcome("decode", lambda: load_image(data, name="fuzz"))
    if isinstance(result, FaceOpsError):
        assert isinstance(result, InvalidImage), result
        assert str(result), "an image error says what is wrong"
        # An untouched encoding of an image within the limits is never refused.
        assert spec["mutation"] != "none", f"{fmt} {spec['mode']} {spec['width']}x{spec['height']} refused: {result}"
        return
    assert isinstance(result, np.ndarray) and result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
    if spec["mutation"] == "none" and fmt != "ICO":  # ICO stores at most 256x256 (PIL resizes)
        assert result.shape[:2] == (spec["height"], spec["width"])


@_settings(bounded=150)
@seed(FUZZ_SEED)
@given(data=garbage)
@example(data=b"II*\x00\x08\x00\x00\x00")  # a TIFF header whose first IFD is past the end: PIL warns "Corrupt EXIF"
@_counted("garbage")
def test_decode_garbage(data: bytes) -> None:
    result = _outcome("garbage", lambda: load_image(data, name="fuzz"))
    if isinstance(result, FaceOpsError):
        assert isinstance(result, InvalidImage), result
    else:
        assert isinstance(result, np.ndarray) and result.ndim == 3 and result.shape[2] == 3


@_settings(bounded=40)
@seed(FUZZ_SEED)
@given(spec=image_specs())
@example(spec=_spec(250, 250, "RGB", "JPEG", content="face"))  # a face is found and embedded
@example(spec=_spec(16, 16, "RGB", "PNG", content="face"))  # issue 13: a face resized to 16x16
@example(spec=_spec(10_000, 10, "L", "PNG"))  # issue 13: extreme aspects
@example(spec=_spec(30, 5_000, "RGB", "JPEG"))
@_counted("analyze")
def test_analyze_any_bytes(spec: dict, recognizer) -> None:  # type: ignore[no-untyped-def]
    data, _ = build(spec)
    result = _outcome("analyze", lambda: recognizer.analyze(data))
    if isinstance(result, FaceOpsError):
        return
    pixels, faces = result
    FIGURES["analyze:faces found"] += len(faces)
    height, width = pixels.shape[:2]
    for found in faces:
        x1, y1, x2, y2 = found.face.box
        assert np.isfinite([x1, y1, x2, y2]).all() and x1 < x2 and y1 < y2
        assert x2 > 0 and y2 > 0 and x1 < width and y1 < height, f"box {found.face.box} outside {width}x{height}"
        assert found.embedding.shape == (512,) and np.isfinite(found.embedding).all()
        assert abs(float(np.linalg.norm(found.embedding)) - 1.0) < 1e-3


@_settings(bounded=40)
@seed(FUZZ_SEED)
@given(
    size=st.one_of(st.tuples(sides, sides), aspects),
    content=st.sampled_from(("noise", "flat", "gradient", "face")),
    pixel_seed=st.integers(0, 2**32 - 1),
)
@_counted("detect")
def test_detect_any_rgb_array(size: tuple[int, int], content: str, pixel_seed: int, recognizer) -> None:  # type: ignore[no-untyped-def]
    width, height = size
    if width * height > MAX_PIXELS:
        height = max(1, MAX_PIXELS // width)
    pixels = np.asarray(_pixels(content, width, height, np.random.default_rng(pixel_seed)))
    faces = _outcome("detect", lambda: recognizer.detector.detect(pixels))
    if isinstance(faces, FaceOpsError):
        return
    assert isinstance(faces, list)
    for face in faces:
        assert np.isfinite(face.box).all() and face.landmarks.shape == (5, 2)
        assert 0.0 <= face.probability <= 1.0


def test_untouched_encodings_cover_every_mode_and_format() -> None:
    """The generator really makes what it claims: each mode and format round-trips through load_image."""
    made = Counter()
    for mode in MODES:
        for fmt in FORMATS:
            data, used = build(_spec(23, 17, mode, fmt, content="gradient"))
            made[used] += 1
            pixels = load_image(data)
            if used != "ICO":  # ICO stores square icons (PIL pads and resizes)
                assert pixels.shape == (17, 23, 3), f"{mode} as {used}: {pixels.shape}"
    assert set(made) == set(FORMATS), f"formats never produced: {set(FORMATS) - set(made)}"


def merge_report(section: str, figures: dict) -> None:
    """Put ``figures`` under ``section`` of the ``FUZZ_REPORT`` file (make fuzz), keeping the other fuzzers'."""
    report = os.environ.get("FUZZ_REPORT")
    if not report:
        return
    path = Path(report)
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged[section] = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": FUZZ_SEED, **figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2) + "\n")


def teardown_module() -> None:
    if not FIGURES:
        return
    tests: dict[str, dict[str, int]] = {}
    for key, count in sorted(FIGURES.items()):
        test, outcome = key.split(":", 1)
        tests.setdefault(test, {})[outcome] = count
    merge_report(
        "images",
        {
            "examples_per_test": FUZZ_EXAMPLES or "bounded",
            "outcomes": tests,
            "failed_examples": sum(c for k, c in FIGURES.items() if k.endswith(":failed")),
        },
    )
