"""Embedding backends: ONNX Runtime networks, MobileFaceNet's family, bundle format 2, sizes from the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceops.errors import ConfigError, InvalidModelFile
from faceops.evaluation.bundle import ModelBundle
from faceops.face.alignment import ARCFACE_112, align_face, similarity_transform
from faceops.face.backends import OnnxNet, load_onnx_family
from faceops.face.config import AlignConfig, EmbedderConfig, PreprocessConfig
from faceops.face.detection import Face, select_subject
from faceops.face.embedding import Embedder
from faceops.face.gallery import Gallery
from faceops.face.images import load_image
from faceops.face.recognizer import FaceRecognizer

MOBILEFACENET = PreprocessConfig(
    align=AlignConfig(method="similarity", template="arcface", image_size=112, margin=0.0),
    embedder=EmbedderConfig(normalization="imagenet", flip_average=True, backend="onnxruntime"),
)


@pytest.fixture(scope="module")
def mobilefacenet(datasets: Path) -> OnnxNet:
    return load_onnx_family(datasets.parent / "weights" / "mobilefacenet" / "MobileFaceNet.onnx")


def test_a_batch_size_fixed_at_export_is_freed_and_gives_the_same_vectors(mobilefacenet: OnnxNet, datasets: Path) -> None:
    original = OnnxNet(datasets.parent / "weights" / "mobilefacenet" / "MobileFaceNet.onnx")
    batch = np.random.default_rng(1).standard_normal((5, 3, 112, 112)).astype(np.float32)
    assert mobilefacenet.dim == 128 and mobilefacenet.input_size == 112
    together = mobilefacenet(batch)
    assert together.shape == (5, 128)
    assert np.allclose(together, original(batch), atol=1e-5), "the fixed-batch model, one image at a time"
    with pytest.raises(InvalidModelFile, match="takes 112x112 crops, it was given 160x160"):
        mobilefacenet(np.zeros((1, 3, 160, 160), np.float32))


def test_damaged_or_foreign_onnx_bytes_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="not a loadable ONNX model"):
        OnnxNet(b"\x08\x07garbage" * 100, name="x.onnx")
    with pytest.raises(InvalidModelFile, match="cannot read the ONNX model"):
        OnnxNet(tmp_path / "missing.onnx")


def test_mobilefacenet_tells_people_apart_with_its_own_preprocessing(mobilefacenet: OnnxNet, lfw: Path) -> None:
    recognizer = FaceRecognizer(MOBILEFACENET, embedder=Embedder(MOBILEFACENET.embedder, model=mobilefacenet))
    people = ["Serena_Williams", "Colin_Powell", "Gloria_Macapagal_Arroyo", "Hugo_Chavez", "Jean_Chretien", "Tony_Blair"]
    photos = {name: sorted((lfw / name).glob("*.jpg"))[:2] for name in people}
    assert all(len(v) == 2 for v in photos.values())
    result = recognizer.embed_subjects([path for pair in photos.values() for path in pair])
    assert not result.errors and result.embeddings.shape == (2 * len(people), 128)
    vectors = result.embeddings.reshape(len(people), 2, 128)
    same = np.einsum("pd,pd->p", vectors[:, 0], vectors[:, 1])
    different = vectors[:, 0] @ vectors[:, 1].T
    off = different[~np.eye(len(people), dtype=bool)]
    assert same.min() > off.max() + 0.1, (same, off)
    gallery = Gallery(recognizer.model_id)  # the gallery takes the model's size
    gallery.add_batch(list(photos), vectors[:, 0])
    assert gallery.dim == 128
    assert [m.identity for m in gallery.identify(vectors[:, 1], 0.3, 1)] == list(photos)


def test_the_arcface_template_puts_the_landmarks_on_its_reference_points(lfw: Path, recognizer) -> None:
    image = load_image(sorted((lfw / "Colin_Powell").glob("*.jpg"))[0])
    face = select_subject(recognizer.detect(image), image.shape, "largest")
    assert isinstance(face, Face)
    crop = align_face(image, face, MOBILEFACENET.align)
    matrix = similarity_transform(face.landmarks, ARCFACE_112)
    expected = cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(crop, expected), "the warp onto the ArcFace points, at the crop's own size"
    moved = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert float(np.abs(moved - ARCFACE_112).max()) < 4.0, moved  # a frontal face fits the template closely
    big = align_face(image, face, MOBILEFACENET.align.model_copy(update={"image_size": 224}))
    assert big.shape == (224, 224, 3)  # the template scales with the crop


def test_an_onnx_bundle_round_trips_and_refuses_damage_and_mismatches(mobilefacenet: OnnxNet, tmp_path: Path) -> None:
    bundle = ModelBundle(mobilefacenet, MOBILEFACENET, threshold=0.4, family="mobilefacenet")
    folder = bundle.save(tmp_path / "b")
    record = json.loads((folder / "bundle.json").read_text())
    assert record["format"] == 2 and record["embedder"]["file"] == "model.onnx"
    assert record["embedder"] | {"sha256": "-"} == {
        "family": "mobilefacenet", "backend": "onnxruntime", "file": "model.onnx", "dim": 128, "input_size": 112,
        "sha256": "-",
    }
    loaded = ModelBundle.load(folder)
    assert loaded.family == "mobilefacenet" and loaded.backend == "onnxruntime" and loaded.model_id == bundle.model_id
    crops = np.random.default_rng(0).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    assert np.allclose(loaded.recognizer().embedder.embed(crops), bundle.recognizer().embedder.embed(crops), atol=1e-6)
    with pytest.raises(ConfigError, match="has no PyTorch network"):
        _ = loaded.torch_module

    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    data = bytearray((damaged / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(InvalidModelFile, match="checksum differs"):
        ModelBundle.load(damaged)

    resized = tmp_path / "resized"
    shutil.copytree(folder, resized)
    meta = json.loads((resized / "bundle.json").read_text())
    meta["preprocess"]["align"]["image_size"] = 160
    (resized / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidModelFile, match="takes 112x112 crops but the bundle's preprocessing makes 160x160"):
        ModelBundle.load(resized)

    torch_said = tmp_path / "torch-said"
    shutil.copytree(folder, torch_said)
    meta = json.loads((torch_said / "bundle.json").read_text())
    meta["preprocess"]["embedder"]["backend"] = "torch"
    (torch_said / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidModelFile, match="runs on 'onnxruntime' but the preprocessing says 'torch'"):
        ModelBundle.load(torch_said)
    (folder / "model.onnx").unlink()
    with pytest.raises(InvalidModelFile, match="model.onnx is missing"):
        ModelBundle.load(folder)


def test_a_format_1_bundle_still_loads(tmp_path: Path) -> None:
    bundle = ModelBundle.pretrained()
    folder = bundle.save(tmp_path / "b")
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["embedder"]["dim"] == 512 and meta["embedder"]["backend"] == "torch"
    old = {k: v for k, v in meta.items() if k != "embedder"} | {"format": 1}
    (folder / "bundle.json").write_text(json.dumps(old))
    loaded = ModelBundle.load(folder)
    assert loaded.backend == "torch" and loaded.family == "inception_resnet_v1"


def test_the_backend_is_part_of_the_fingerprint_and_must_match_the_network(mobilefacenet: OnnxNet) -> None:
    torch_pre = MOBILEFACENET.model_copy(
        update={"embedder": MOBILEFACENET.embedder.model_copy(update={"backend": "torch"})}
    )
    assert torch_pre.fingerprint() != MOBILEFACENET.fingerprint()
    int8 = MOBILEFACENET.model_copy(update={"embedder": MOBILEFACENET.embedder.model_copy(update={"precision": "int8"})})
    assert int8.fingerprint() != MOBILEFACENET.fingerprint()
    # the crops are the same: variants of one model share the crop cache
    assert torch_pre.crop_fingerprint() == int8.crop_fingerprint() == MOBILEFACENET.crop_fingerprint()
    assert PreprocessConfig().crop_fingerprint() != MOBILEFACENET.crop_fingerprint()
    with pytest.raises(ConfigError, match="runs on 'torch' but the model given runs on 'onnxruntime'"):
        Embedder(torch_pre.embedder, model=mobilefacenet)


def _lfw_crops(lfw: Path, preprocess: PreprocessConfig) -> np.ndarray:
    photos = [lfw / "Hans_Blix" / "Hans_Blix_0001.jpg", lfw / "Laura_Bush" / "Laura_Bush_0001.jpg"]
    crops, faces, _ = FaceRecognizer(preprocess).subject_crops(photos)
    assert all(f is not None for f in faces)
    return crops


def test_a_bf16_bundle_round_trips_close_to_fp32_and_refuses_a_precision_its_network_cannot_run(
    lfw: Path, tmp_path: Path
) -> None:
    from faceops.face.backends import bf16_support
    from faceops.optimize import build_variant

    champion = ModelBundle.pretrained()
    variant = build_variant(champion, "bf16")
    assert variant.backend == "torch" and variant.preprocess.embedder.precision == "bf16"
    assert variant.metadata["bf16_native"] == bf16_support()["native"] and variant.model_id != champion.model_id
    # another arithmetic, so another fingerprint: a gallery made in fp32 is never searched with bf16 embeddings
    assert variant.preprocess.fingerprint() != champion.preprocess.fingerprint()
    assert variant.preprocess.crop_fingerprint() == champion.preprocess.crop_fingerprint()
    folder = variant.save(tmp_path / "bf16")
    assert json.loads((folder / "bundle.json").read_text())["preprocess"]["embedder"]["precision"] == "bf16"
    loaded = ModelBundle.load(folder)
    assert loaded.preprocess.embedder.precision == "bf16" and loaded.model_id == variant.model_id
    crops = _lfw_crops(lfw, champion.preprocess)
    bf16 = loaded.recognizer().embedder.embed(crops)
    fp32 = champion.recognizer().embedder.embed(crops)
    agreement = (bf16 * fp32).sum(axis=1)
    assert np.all(agreement > 0.99) and not np.allclose(bf16, fp32, atol=1e-6), agreement  # bf16 ran, and is close
    assert np.allclose(bf16, variant.recognizer().embedder.embed(crops), atol=1e-6)

    int8_said = tmp_path / "int8-said"  # a PyTorch network whose bundle says int8: refused, as an ONNX one would be
    shutil.copytree(folder, int8_said)
    meta = json.loads((int8_said / "bundle.json").read_text())
    meta["preprocess"]["embedder"]["precision"] = "int8"
    (int8_said / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidModelFile, match="is a PyTorch network but the bundle's preprocessing says 'int8'"):
        ModelBundle.load(int8_said)
    with pytest.raises(ConfigError, match="runs in fp32 or bf16, not 'int8'"):
        Embedder(EmbedderConfig(precision="int8"), model=champion.torch_module)


def test_an_onnx_bundle_that_says_bf16_is_refused(mobilefacenet: OnnxNet, tmp_path: Path) -> None:
    folder = ModelBundle(mobilefacenet, MOBILEFACENET, threshold=0.4, family="mobilefacenet").save(tmp_path / "b")
    meta = json.loads((folder / "bundle.json").read_text())
    meta["preprocess"]["embedder"]["precision"] = "bf16"
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidModelFile, match="is an fp32 network but the bundle's preprocessing says 'bf16'"):
        ModelBundle.load(folder)


def test_bf16_support_reads_this_machine() -> None:
    from faceops.face.backends import bf16_support

    support = bf16_support()
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    assert support["native"] == ("avx512_bf16" in flags.split() or "amx_bf16" in flags.split())
    assert ("emulated" in support["detail"]) != support["native"]
