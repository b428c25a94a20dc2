"""``landmark bench --detectors`` and ``--peers``: each section's functions on a handful of faces and frames,
the JSON they write, a missing peer (a null with a reason, not a crash), and MediaPipe's Face Landmarker for
real when its model file is on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_data_root

from landmark.bench.detectors import benchmark_detector, match_faces, time_detector
from landmark.bench.frames import FramesInMemory, read_video_frames
from landmark.bench.peers import benchmark_demo_peers, benchmark_face_peers, peer_ratios, pipeline_fps
from landmark.cli import main
from landmark.commands import bench as bench_command
from landmark.config import default_model_path
from landmark.data.crop import face_box_from_points
from landmark.data.readers import FaceRecord, read_300w, read_dlib_xml
from landmark.detect import build_detector
from landmark.inference.predictor import LandmarkPredictor

FACE_LANDMARKER = shared_data_root().parent / "models" / "face_landmarker.task"
needs_face_landmarker = pytest.mark.skipif(
    not FACE_LANDMARKER.is_file(), reason=f"MediaPipe's face_landmarker.task not found at {FACE_LANDMARKER}"
)


@pytest.fixture(scope="module")
def driver_clip(tmp_path_factory) -> tuple[Path, list[np.ndarray], float, dict]:
    """A 1 s rendered driver video at 640x480: (path, its frames, fps, its timeline)."""
    from landmark.data.synthetic_video import render_driver_video

    folder = tmp_path_factory.mktemp("clip")
    render_driver_video(folder / "clip.mp4", folder / "clip.json", 1.0, seed=3, size=(640, 480))
    frames, fps = read_video_frames(folder / "clip.mp4")
    return folder / "clip.mp4", frames, fps, json.loads((folder / "clip.json").read_text())


def _records(boxes_by_image: dict[Path, list[np.ndarray]]) -> list[FaceRecord]:
    """One record per face whose landmark box is the given box (two corner points span it exactly)."""
    return [
        FaceRecord(path, np.array([box[:2], box[2:]], np.float32))
        for path, boxes in boxes_by_image.items()
        for box in boxes
    ]


class _FixedDetector:
    """'Detects' the given boxes (already landmark boxes) in every image."""

    name = "fixed"

    def __init__(self, boxes: list[list[float]]) -> None:
        self.boxes = np.array([[*box, 0.9] for box in boxes], np.float32).reshape(-1, 5)
        self.calls = 0

    def detect(self, image: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.boxes

    def to_landmark_box(self, detection: np.ndarray) -> np.ndarray:
        return detection[:4]


# --- detectors -------------------------------------------------------------------------------------------------


def test_match_faces_counts_found_faces_and_false_alarms(tmp_path: Path):
    image = tmp_path / "group.png"
    cv2.imwrite(str(image), np.zeros((200, 300, 3), np.uint8))
    left, right = np.array([10, 10, 60, 60], np.float32), np.array([200, 100, 260, 160], np.float32)
    records = _records({image: [left, right]})
    # One detection on the left face (IoU 0.64), one on nothing: one face found, one false alarm.
    detector = _FixedDetector([[15, 15, 60, 60], [100, 150, 140, 190]])
    assert match_faces(detector, records) == {"faces": 2, "found": 1, "false_alarms": 1}
    assert detector.calls == 1  # a group photo is read and searched once, not once per face


def test_time_detector_reports_median_and_p90_after_warmup():
    frames = [np.zeros((480, 640, 3), np.uint8)] * 5
    detector = _FixedDetector([])
    timing = time_detector(detector, frames, warmup=2)
    assert detector.calls == 7
    assert timing["frames"] == 5 and timing["size"] == [640, 480]
    assert 0 <= timing["median_ms"] <= timing["p90_ms"]


def test_a_detector_that_cannot_be_built_is_a_row_with_the_reason(tmp_path: Path):
    row = benchmark_detector("mediapipe", tmp_path / "missing.tflite", [np.zeros((48, 64, 3), np.uint8)], [], [])
    assert row["available"] is False
    assert "missing.tflite" in row["reason"] and "not found" in row["reason"]
    assert row["video"] is None and row["faces300w"] is None and row["dlib_examples"] is None


def test_yunet_row_on_real_faces(shared_data: Path, driver_clip):
    _, frames, _, _ = driver_clip
    faces300w = read_300w(shared_data / "faces300w" / "train")[:3]
    folder = shared_data / "real_faces" / "dlib_examples_faces"
    examples = read_dlib_xml(folder / "training_with_face_landmarks.xml")
    row = benchmark_detector("yunet", None, frames[:4], faces300w, examples)
    assert row["available"] is True and row["reason"] is None
    assert row["video"]["frames"] == 4 and row["video"]["size"] == [640, 480]
    assert row["faces300w"] == {"faces": 3, "found": 3, "share": 1.0}
    assert row["dlib_examples"] == {"faces": 18, "found": 18, "false_alarms": 0}


def test_bench_detectors_json_and_table(shared_data: Path, tmp_path: Path, monkeypatch, capsys):
    # A shared folder with three 300-W faces and no models: BlazeFace is a row with a reason.
    small = tmp_path / "shared" / "data" / "faces300w" / "train"
    small.mkdir(parents=True)
    for pts in sorted((shared_data / "faces300w" / "train").glob("helen_*.pts"))[:3]:
        for path in (pts, pts.with_suffix(".jpg")):
            (small / path.name).symlink_to(path)
    monkeypatch.setenv("LANDMARK_SHARED_DATA", str(tmp_path / "shared" / "data"))
    monkeypatch.setattr(bench_command, "DETECTOR_SECONDS", 0.2)  # 6 frames
    out = tmp_path / "bench.json"
    assert main(["bench", "--detectors", "--faces-limit", "2", "--json", str(out)]) == 0
    rows = {row["detector"]: row for row in json.loads(out.read_text())["detectors"]}
    assert list(rows) == ["haar", "yunet", "mediapipe", "dlib"]
    assert rows["yunet"]["faces300w"]["faces"] == 2 and rows["yunet"]["video"]["frames"] == 6
    assert rows["yunet"]["dlib_examples"] is None  # not in this shared folder
    assert rows["mediapipe"]["available"] is False and "face_landmarker.task" in rows["mediapipe"]["reason"]
    table = capsys.readouterr().out
    assert "mediapipe  unavailable:" in table and "300-W faces found" in table


# --- peers -----------------------------------------------------------------------------------------------------


def test_frames_in_memory_replay_like_a_video_file(driver_clip):
    _, frames, fps, _ = driver_clip
    replay = FramesInMemory(frames[:3], fps)
    assert replay.isOpened() and replay.get(cv2.CAP_PROP_FRAME_COUNT) == 3 and replay.get(cv2.CAP_PROP_FPS) == fps
    assert [replay.read()[1] is frame for frame in frames[:3]] == [True] * 3
    assert replay.read() == (False, None)


def test_pipeline_fps_runs_our_demo_on_frames_in_memory(driver_clip):
    video, frames, fps, _ = driver_clip
    predictor = LandmarkPredictor.from_path(default_model_path((".onnx",)), threads=1)
    before = [frame.copy() for frame in frames]
    result = pipeline_fps(video, frames, fps, predictor, build_detector("yunet"))
    assert result["frames"] == len(frames) == 30 and result["face_frames"] == 30
    assert result["fps"] > 0 and result["cpu_ms_per_frame"] > 0
    assert result["stage_ms"]["draw"] < 0.05 and result["stage_ms"]["encode"] < 0.05  # nothing drawn or written
    assert all(np.array_equal(a, b) for a, b in zip(before, frames, strict=True))  # replayable


def test_a_missing_peer_is_null_with_a_reason(driver_clip, tmp_path: Path):
    video, frames, fps, timeline = driver_clip
    predictor = LandmarkPredictor.from_path(default_model_path((".onnx",)), threads=1)
    demo = benchmark_demo_peers(video, frames[:5], fps, predictor, build_detector("yunet"), tmp_path / "no.task", 2)
    assert demo["mediapipe"] is None and "no.task" in demo["missing"]["mediapipe"]
    assert len(demo["ours"]["round_fps"]) == 2

    box = face_box_from_points(np.array(timeline["frames_truth"][0]["points"], np.float32))
    face = benchmark_face_peers(
        default_model_path((".onnx",)), frames[0], box, tmp_path / "no.dat", tmp_path / "no.task", 2, 3, 1
    )
    assert face["face_ms"]["dlib"] is None and face["face_ms"]["mediapipe"] is None
    assert "no.dat" in face["missing"]["dlib"] or "dlib is not installed" in face["missing"]["dlib"]
    assert face["face_ms"]["ours"] > 0 and face["face_ms"]["ours_with_crop"] > 0
    assert len(face["rounds"]) == 2 and set(face["rounds"][0]) == {"ours_p50_ms", "ours_with_crop_p50_ms"}
    ratios = peer_ratios(demo, face)
    assert ratios == {
        "fps_ours_over_mediapipe": None,
        "face_ms_ours_over_dlib": None,
        "face_ms_ours_with_crop_over_mediapipe": None,
    }


def test_peer_ratios_are_ours_over_theirs():
    demo = {"ours": {"fps": 200.0}, "mediapipe": {"fps": 80.0}}
    face = {"face_ms": {"ours": 0.5, "ours_with_crop": 1.0, "dlib": 2.0, "mediapipe": 10.0}}
    assert peer_ratios(demo, face) == {
        "fps_ours_over_mediapipe": 2.5,
        "face_ms_ours_over_dlib": 0.25,
        "face_ms_ours_with_crop_over_mediapipe": 0.1,
    }


@needs_face_landmarker
def test_mediapipe_landmarker_runs_for_real(driver_clip):
    from landmark.inference.mediapipe_landmarker import MediaPipeFaceLandmarker

    _, frames, fps, _ = driver_clip
    with MediaPipeFaceLandmarker(FACE_LANDMARKER, video=True) as landmarker:
        for index, frame in enumerate(frames[:3]):
            points = landmarker.landmarks(frame, round(1000 * index / fps))
            assert points.shape == (1, 478, 2)
        assert landmarker.landmarks(np.zeros((480, 640, 3), np.uint8), 1000).shape == (0, 478, 2)
    x, y = points[0].mean(axis=0)
    assert 0 < x < 640 and 0 < y < 480


@needs_face_landmarker
def test_bench_peers_json_with_mediapipe_for_real(driver_clip, tmp_path: Path, monkeypatch, capsys):
    from landmark.inference import dlib_predictor

    monkeypatch.setattr(bench_command, "DEMO_SECONDS", 0.5)  # 15 frames
    monkeypatch.setattr(dlib_predictor, "default_dlib_model_path", lambda: tmp_path / "no.dat")  # dlib missing
    out = tmp_path / "bench.json"
    flags = ["--runs", "3", "--mediapipe-model", str(FACE_LANDMARKER), "--json", str(out)]
    assert main(["bench", "--peers", *flags]) == 0
    peers = json.loads(out.read_text())["peers"]
    assert set(peers["demo_fps"]) == {"ours", "mediapipe"} and peers["demo_fps"]["mediapipe"] > 0
    assert set(peers["face_ms"]) == {"ours", "ours_with_crop", "dlib", "mediapipe"}
    assert peers["face_ms"]["dlib"] is None and "dlib" in peers["missing"] and "mediapipe" not in peers["missing"]
    assert peers["face_ms"]["mediapipe"] > 0 and peers["demo"]["mediapipe"]["face_frames"] == 15
    assert peers["ratios"]["fps_ours_over_mediapipe"] == pytest.approx(
        peers["demo_fps"]["ours"] / peers["demo_fps"]["mediapipe"]
    )
    assert "FPS ours / MediaPipe" in capsys.readouterr().out
