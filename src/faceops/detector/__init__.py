"""A face detector of FaceOps' own: a small single-shot anchor-free network trained from scratch on MTCNN
pseudo-labels, with a custom loss (focal heatmap + GIoU boxes + wing landmarks), decoding to :class:`Face`.

In the life cycle: a preprocessing names it (``DetectorConfig(kind="faceops-net", net=...)``, its weights by
sha256), a model bundle carries its file, :func:`faceops.face.detection.build_detector` builds it; it is measured by
what it feeds (:mod:`~faceops.detector.measure`), admitted by its gate (:mod:`~faceops.detector.gate`), registered in
MLflow as a model of its own, and trained, gated and promoted by the ``train-detector`` pipeline
(:mod:`faceops.steps.detector`)."""
