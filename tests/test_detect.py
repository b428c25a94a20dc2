"""Face detectors: output format, the Haar photo detector on real photos, box calibration and the model fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EINSTEIN_LECTERN_BOX, shared_data_root

from landmark.data.crop import face_box_from_points
from landmark.data.readers import FaceRecord
from landmark.detect import BoxCalibration, HaarDetector, HaarPhotoDetector, build_detector
from landmark.detect.calibration import best_overlap, box_iou, boxes_from_detector, fit_box_calibration
from landmark.errors import LandmarkError


def test_haar_returns_an_empty_n_by_5_float_array_without_faces():
    detections = HaarDetector().detect(np.full((240, 320, 3), 90, np.uint8))
    assert detections.shape == (0, 5)
    assert detections.dtype == np.float32


def test_the_photo_detector_finds_einstein_and_not_the_lectern(einstein: tuple[Path, np.ndarray]):
    image_path, truth = einstein
    detector = build_detector("haar", photos=True)
    assert isinstance(detector, HaarPhotoDetector)
    detections = detector.detect(cv2.imread(str(image_path)))
    assert detections.ndim == 2 and detections.shape[1] == 5 and detections.dtype == np.float32
    assert ((detections[:, 4] > 0) & (detections[:, 4] <= 1)).all()
    assert (np.diff(detections[:, 4]) <= 0).all()  # strongest first
    # The face (84 px in an 817 px photo) has only three overlapping windows in the plain grey image and
    # none after equalisation; the single-run photo settings fired on the lectern instead.
    best = detections[0]
    assert box_iou(detector.to_landmark_box(best), truth) > 0.5
    assert box_iou(detector.to_landmark_box(best), truth) > box_iou(best, truth)  # the calibration helps
    assert all(box_iou(box, EINSTEIN_LECTERN_BOX) < 0.1 for box in detections)


def _dlib_example_faces(folder: Path) -> dict[str, list[np.ndarray]]:
    """Image name -> landmark boxes of the dlib example photos (landmarks fitted by dlib, not by hand)."""
    import xml.etree.ElementTree as ElementTree

    faces: dict[str, list[np.ndarray]] = {}
    for name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        for image in ElementTree.parse(folder / name).getroot().iter("image"):
            faces[image.get("file")] = [
                face_box_from_points(np.array([[float(p.get("x")), float(p.get("y"))] for p in box.iter("part")]))
                for box in image.iter("box")
            ]
    return faces


def test_the_photo_detector_on_the_dlib_example_photos_finds_more_faces_with_fewer_false_alarms():
    folder = shared_data_root() / "real_faces" / "dlib_examples_faces"
    if not (folder / "testing_with_face_landmarks.xml").is_file():
        pytest.skip(f"dlib example faces not found at {folder} (set LANDMARK_SHARED_DATA)")
    detector = build_detector("haar", photos=True)
    found = false_alarms = total = 0
    for name, truths in _dlib_example_faces(folder).items():
        detections = detector.detect(cv2.imread(str(folder / name)))
        total += len(truths)
        found += sum(any(box_iou(box, truth) >= 0.3 for box in detections) for truth in truths)
        false_alarms += sum(all(box_iou(box, truth) < 0.3 for truth in truths) for box in detections)
    # Small faces (37-53 px) in 9 group photos; one Haar run at 640 px (min_neighbors 4) found 38 of 43 with
    # 2 false alarms.
    assert total == 43
    assert found >= 41 and false_alarms <= 1


def test_the_video_detector_is_the_fast_single_run():
    detector = build_detector("haar")
    assert type(detector) is HaarDetector and detector.detect_width == 320 and detector.scale_factor == 1.15


def test_box_calibration_maps_a_detection_to_the_landmark_box():
    calibration = BoxCalibration(scale_x=0.8, scale_y=0.5, shift_x=0.1, shift_y=0.25)
    mapped = calibration.apply(np.array([100, 200, 200, 400, 0.9]))
    # centre (150, 300) + (0.1 * 100, 0.25 * 200) = (160, 350); size (80, 100)
    np.testing.assert_allclose(mapped, [120, 300, 200, 400])


class _ScaledTruthDetector:
    """Pretends to detect each face as its landmark box grown 1.25x and moved up by 10% of its height."""

    name = "fake"

    def __init__(self, truths: dict[int, np.ndarray]) -> None:
        self.truths = truths  # image height (unique per test image) -> landmark box

    def detect(self, image: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.truths[image.shape[0]]
        cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * (y1 - y0), 1.25 * (x1 - x0), 1.25 * (y1 - y0)
        return np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 1.0]], np.float32)

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray:
        return np.asarray(box[:4], np.float32)


def test_fit_box_calibration_recovers_a_known_scale_and_shift(tmp_path: Path):
    rng = np.random.default_rng(0)
    truths = {}
    for i, height in enumerate((200, 210, 220)):
        points = rng.uniform([40, 50], [150, 170], size=(68, 2))
        cv2.imwrite(str(tmp_path / f"face{i}.png"), np.zeros((height, 200, 3), np.uint8))
        lines = ["version: 1", "n_points:  68", "{", *(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points), "}"]
        (tmp_path / f"face{i}.pts").write_text("\n".join(lines) + "\n")
        truths[height] = face_box_from_points(points)
    result = fit_box_calibration(_ScaledTruthDetector(truths), tmp_path)
    c = result["calibration"]
    assert result["detected"] == 3
    assert c.scale_x == pytest.approx(0.8, abs=1e-3) and c.scale_y == pytest.approx(0.8, abs=1e-3)
    assert c.shift_x == pytest.approx(0.0, abs=1e-3)
    assert c.shift_y == pytest.approx(0.08, abs=1e-3)  # 10% of the landmark height = 8% of the detection's


@pytest.mark.parametrize(
    ("name", "hint"), [("mediapipe", "blaze_face_short_range.tflite"), ("yunet", "face_detection_yunet")]
)
def test_a_missing_detector_model_falls_back_to_haar_with_a_clear_warning(name, hint, tmp_path, caplog):
    missing = tmp_path / "no_such_model.bin"
    with caplog.at_level(logging.WARNING, logger="landmark.detect"):
        detector = build_detector(name, missing)
    assert isinstance(detector, HaarDetector)
    assert hint in caplog.text and "falling back to the Haar detector" in caplog.text
    assert isinstance(build_detector(name, missing, photos=True), HaarPhotoDetector)
    assert str(missing) in caplog.text
    with pytest.raises(LandmarkError, match=hint):
        build_detector(name, None, fallback=False)


def test_an_unknown_detector_name_is_one_clear_error():
    with pytest.raises(LandmarkError, match="unknown face detector 'retinaface'"):
        build_detector("retinaface")


def test_calibrate_detector_command_writes_json(shared_data: Path, tmp_path: Path, capsys) -> None:
    import json

    from landmark.cli import main

    folder = tmp_path / "faces"
    folder.mkdir()
    for name in ("afw_134212_1", "afw_1051618982_1", "afw_111076519_1"):
        for suffix in (".jpg", ".pts"):
            (folder / f"{name}{suffix}").write_bytes(
                (shared_data / "faces300w" / "train" / f"{name}{suffix}").read_bytes()
            )
    assert main(["calibrate-detector", "--data", str(folder), "--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["faces"] == 3 and set(result["calibration"]) == {"scale_x", "scale_y", "shift_x", "shift_y"}
    # --photos calibrates the still-photo detector that predict and eval use
    assert main(["calibrate-detector", "--photos", "--data", str(folder), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["faces"] == 3


def test_best_overlap_takes_the_annotated_face_not_a_neighbour() -> None:
    truth = np.array([100, 100, 200, 200], np.float32)
    neighbour, face = np.array([210, 100, 310, 200], np.float32), np.array([110, 95, 205, 210], np.float32)
    assert best_overlap([neighbour, face], truth, min_iou=0.3)[0] == 1
    assert best_overlap([neighbour], truth, min_iou=0.3) is None  # nothing overlaps: the caller falls back
    assert best_overlap([], truth, min_iou=0.3) is None


class ScriptedDetector:
    """Reports the same boxes for every image; its calibration widens a box by 10% (so a test sees it applied)."""

    calibration = BoxCalibration(scale_x=1.1, scale_y=1.1)

    def __init__(self, boxes: list[list[float]]):
        self.boxes = np.array(boxes, np.float32).reshape(-1, 5)

    def detect(self, image: np.ndarray) -> np.ndarray:
        return self.boxes

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray:
        return self.calibration.apply(box)


def test_boxes_from_detector_takes_the_annotated_face_and_falls_back_to_its_landmark_box(tmp_path: Path) -> None:
    image_path = tmp_path / "face.png"
    cv2.imwrite(str(image_path), np.zeros((64, 128, 3), np.uint8))
    record = FaceRecord(image_path, np.array([[10, 10], [50, 50], [30, 40]], np.float32), source="face.pts")
    neighbour, face = [70, 10, 110, 50, 0.9], [12, 8, 52, 52, 0.8]

    (out,), fallbacks = boxes_from_detector([record], ScriptedDetector([neighbour, face]))
    assert fallbacks == 0 and record.box is None  # the input records are left as they were
    np.testing.assert_allclose(out.box, ScriptedDetector.calibration.apply(np.array(face)))

    (out,), fallbacks = boxes_from_detector([record], ScriptedDetector([neighbour]))
    assert fallbacks == 1
    np.testing.assert_allclose(out.box, face_box_from_points(record.points))
