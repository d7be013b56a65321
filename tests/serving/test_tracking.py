"""Track ids persist across frames: synthetic boxes for the rules, the Hamilton clip for the real thing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from faceops.cli import cli
from faceops.face.tracking import FaceTracker, box_iou


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_box_iou() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    assert iou[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])


def test_moving_faces_keep_their_ids_and_new_faces_get_new_ones() -> None:
    tracker = FaceTracker()
    first = tracker.update([(0, 0, 50, 50), (200, 0, 250, 50)])
    assert first == [1, 2]
    for step in range(1, 6):  # both drift right by 8 px per frame; the order of detections is swapped
        ids = tracker.update([(200 + 8 * step, 0, 250 + 8 * step, 50), (8 * step, 0, 50 + 8 * step, 50)])
        assert ids == [2, 1]
    assert tracker.update([(0, 300, 40, 340)])[0] == 3  # a new face elsewhere


def test_embeddings_keep_ids_through_a_jump_and_refuse_a_swap() -> None:
    a, b = _unit([1, 0, 0]), _unit([0, 1, 0])
    tracker = FaceTracker(similarity_threshold=0.6)
    assert tracker.update([(0, 0, 50, 50), (300, 0, 350, 50)], np.stack([a, b])) == [1, 2]
    # a jumps far (no overlap) but looks the same: same id
    assert tracker.update([(150, 150, 200, 200), (300, 0, 350, 50)], np.stack([a, b])) == [1, 2]
    # a face with b's look appears exactly where a was: overlap alone must not give it a's id
    ids = tracker.update([(150, 150, 200, 200)], np.stack([b]))
    assert ids == [2]


def test_lost_tracks_expire_and_identity_is_a_vote() -> None:
    tracker = FaceTracker(max_missed=2)
    tid = tracker.update([(0, 0, 50, 50)])[0]
    assert [tracker.label(tid, n) for n in ("x", "x", "unknown")] == ["x", "x", "x"]
    for _ in range(3):
        tracker.update([])
    assert tracker.update([(0, 0, 50, 50)])[0] != tid


def test_video_reader_yields_every_nth_rgb_frame(datasets: Path, tmp_path: Path) -> None:
    from faceops.errors import ConfigError
    from faceops.face.video import VideoReader

    clip = datasets / "video" / "short_hamilton_clip.mp4"
    capture = cv2.VideoCapture(str(clip))
    bgr = [capture.read()[1] for _ in range(9)]
    capture.release()
    with VideoReader(str(clip), every=4, max_frames=10) as video:
        assert video.frames_to_process == 3 and video.fps > 0
        frames = list(video)
    assert len(frames) == 3
    for frame, source in zip(frames, (bgr[0], bgr[4], bgr[8]), strict=True):
        assert np.array_equal(frame, source[:, :, ::-1])  # RGB of frames 0, 4 and 8
    with pytest.raises(ConfigError, match="cannot open video source"):
        VideoReader(str(tmp_path / "none.mp4"))
    with pytest.raises(ConfigError, match="at least 1"):
        VideoReader(str(clip), every=0)


@pytest.fixture(scope="module")
def watched(datasets: Path, bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    video = datasets / "video"
    out = tmp_path_factory.mktemp("watch") / "annotated.mp4"
    result = CliRunner().invoke(
        cli,
        [
            "watch",
            "--source",
            str(video / "short_hamilton_clip.mp4"),
            "--out",
            str(out),
            "--bundle",
            str(bundle_dir),
            "--known",
            str(video / "known_faces"),
            "--max-frames",
            "24",
            "--every",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{") :]), out


def test_watch_writes_an_annotated_video_with_persistent_tracks(watched) -> None:
    summary, out = watched
    assert summary["frames"] == 6 and summary["faces"] >= 6
    capture = cv2.VideoCapture(str(out))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = capture.read()
    capture.release()
    assert ok and first.shape == (360, 640, 3) and frames == 6
    # the singer is on stage in every frame: one track holds him through the clip
    longest = max(summary["tracks"].values(), key=lambda names: sum(names.values()))
    assert sum(longest.values()) >= 5
    names = {n for t in summary["tracks"].values() for n in t}
    assert "lin_manuel_miranda" in names, summary["tracks"]


def test_watch_refuses_a_missing_source(tmp_path: Path, bundle_dir: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "watch",
            "--source",
            str(tmp_path / "none.mp4"),
            "--out",
            str(tmp_path / "o.mp4"),
            "--bundle",
            str(bundle_dir),
        ],
    )
    assert result.exit_code != 0
    assert "cannot open video source" in (result.output + str(result.exception))
