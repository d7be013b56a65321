"""The embedder families FaceOps knows and the preprocessing each one needs; which one is the default model.

Two families:

* ``mobilefacenet`` (**the default model**, for the CLI and the last step of ``make run``): the shared MobileFaceNet
  ONNX (128-d), run by ONNX Runtime, with 5-point ArcFace alignment to 112x112, ImageNet normalisation and
  flip-sum (``weights/SOURCE.md``), behind MTCNN searching faces of 40 px and more. It passed the accuracy-parity
  gate against InceptionResnetV1 (LFW folds 1-8: 99.33% against 98.60%, TAR at FAR 1e-3 98.63% against 89.25%)
  and is about three times as fast per photo (``benchmarks/results/optimize_lfw_min40.json``,
  ``benchmarks/results/inference_speed.json``).
* ``inception_resnet_v1`` (facenet-pytorch, CASIA-WebFace): the family fine-tuning starts from (it has a PyTorch
  network to train); ``PreprocessConfig()``'s defaults are its preprocessing.

A gallery is stamped with its model's id and preprocessing fingerprint, so embeddings of the two families are never
compared with each other.
"""

from __future__ import annotations

from faceops.face.config import AlignConfig, DetectorConfig, EmbedderConfig, PreprocessConfig

__all__ = [
    "DEFAULT_MODEL_THRESHOLD",
    "DEFAULT_MODEL_TARGET_FAR",
    "DEFAULT_MIN_FACE_SIZE",
    "FAMILY_INCEPTION",
    "FAMILY_MOBILEFACENET",
    "default_model_preprocess",
    "mobilefacenet_preprocess",
]

FAMILY_INCEPTION = "inception_resnet_v1"
"""The family fine-tuning starts from (facenet-pytorch); others (e.g. ``mobilefacenet``) arrive as ONNX."""
FAMILY_MOBILEFACENET = "mobilefacenet"

DEFAULT_MIN_FACE_SIZE = 40
"""MTCNN's smallest searched face for the default model: 40 px cuts P-net and R-net time several fold and found a
face in every one of the 6,152 photos of LFW's pairs folds 1-8, as 20 px did
(``benchmarks/results/optimize_lfw_min40.json``: ``no_face`` 0; ``benchmarks/results/detector.json``)."""

# The default model's cosine threshold at FAR 1e-3, calibrated by the parity gate on all 4,800 pairs of LFW folds
# 1-8 (benchmarks/results/optimize_lfw_min40.json, "mobilefacenet_min40"): each fold's threshold from the other seven
# gave 4 false accepts in 2,400 held-out impostors (one-sided binomial p = 0.22 against 1e-3). A bundle made by
# `faceops optimize --method mobilefacenet` carries its own recalibrated threshold.
DEFAULT_MODEL_THRESHOLD = 0.304
DEFAULT_MODEL_TARGET_FAR = 1e-3


def mobilefacenet_preprocess(detector_of: PreprocessConfig | None = None) -> PreprocessConfig:
    """MobileFaceNet's preprocessing with the detector of ``detector_of`` (so two families differ only in what
    comes after detection); without one, the default model's detector (MTCNN, faces of 40 px and more)."""
    detector = detector_of.detector if detector_of is not None else DetectorConfig(min_face_size=DEFAULT_MIN_FACE_SIZE)
    return PreprocessConfig(
        detector=detector,
        align=AlignConfig(method="similarity", template="arcface", image_size=112, margin=0.0),
        embedder=EmbedderConfig(normalization="imagenet", flip_average=True, backend="onnxruntime"),
    )


def default_model_preprocess() -> PreprocessConfig:
    """The preprocessing of the default model (:meth:`faceops.evaluation.bundle.ModelBundle.default`)."""
    return mobilefacenet_preprocess()
