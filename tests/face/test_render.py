"""Annotated images: unknown faces in red, known ones in green, whatever the caption says."""

from __future__ import annotations

import numpy as np
import pytest

from faceops.face.detection import Face
from faceops.face.render import draw_faces

RED, GREEN = (230, 60, 60), (40, 200, 80)


def face(x: float) -> Face:
    box = (x, 40.0, x + 60.0, 120.0)
    marks = np.array([[x + 20, 60], [x + 40, 60], [x + 30, 80], [x + 22, 100], [x + 38, 100]], dtype=np.float32)
    return Face(box=box, probability=0.99, landmarks=marks)


def box_colour(canvas, f: Face) -> tuple[int, int, int]:
    """The colour of the box's left edge, half way down."""
    return tuple(np.asarray(canvas)[int((f.box[1] + f.box[3]) / 2), int(f.box[0])])


@pytest.mark.parametrize(
    ("labels", "known", "expected"),
    [
        (["alice", "unknown"], None, [GREEN, RED]),
        (["#1 alice", "#2 unknown"], None, [GREEN, RED]),  # video captions carry track ids
        (["#1", "#2 bob"], [False, True], [RED, GREEN]),  # told explicitly
        ([None, None], None, [GREEN, GREEN]),  # detection only: probabilities, no identity
    ],
)
def test_box_colours(labels, known, expected):
    faces = [face(20), face(120)]
    canvas = draw_faces(np.full((200, 220, 3), 128, np.uint8), faces, labels, known)
    assert [box_colour(canvas, f) for f in faces] == expected
