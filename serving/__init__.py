"""The FaceOps service: FastAPI adapter around the face core (see :func:`faceops.serving.app.create_app`).

Nothing happens at import time: the model, gallery and request log are opened in the app's lifespan.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Build the FastAPI app; see :func:`faceops.serving.app.create_app`."""
    from faceops.serving.app import create_app as _create_app

    return _create_app(*args, **kwargs)
