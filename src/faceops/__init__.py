"""FaceOps."""
