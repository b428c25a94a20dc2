"""OpenCV's YuNet face detector (``cv2.FaceDetectorYN``): a small CNN that finds turned heads, the default.

The model ships in the package (``landmark/weights/face_detection_yunet_2026may.onnx``, MIT, from the OpenCV
model zoo; licence and source in ``landmark/weights/README.md``). The 2023mar and 2026may releases hold the
same weights (all 112 tensors equal; 2026may declares a dynamic input size), so they find exactly the same
boxes; 2026may is shipped.

Besides its box, YuNet gives five points per face: the eye centres, the nose tip and the mouth corners. With
the box they place the landmark box better than the box alone (see ``FivePointBox`` below), so ``detect``
returns them as extra columns and ``to_landmark_box`` uses them when present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from landmark.config import WEIGHTS_DIR
from landmark.detect.calibration import BoxCalibration
from landmark.errors import LandmarkError

MODEL_FILE = WEIGHTS_DIR / "face_detection_yunet_2026may.onnx"
FIVE_POINT_FILE = WEIGHTS_DIR / "yunet_five_point_box.json"
MODEL_HELP = (
    "reinstall landmark (the package ships face_detection_yunet_2026may.onnx in landmark/weights/), or get "
    "'face_detection_yunet_2026may.onnx' from the OpenCV model zoo "
    "(https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet) and pass it with --detector-model"
)

# Measured with ``landmark calibrate-detector --detector yunet --photos`` on the 1,207 300-W training faces:
# all found, interquartile ranges 0.056 / 0.071 (scales), 0.032 / 0.030 (x / y shifts); median IoU with the
# landmark box 0.70 raw, 0.89 mapped. YuNet's box runs from the hairline to the chin, so the landmark box is
# much shorter and lower. Used only for rows without the five points (a caller that passes a bare box).
YUNET_CALIBRATION = BoxCalibration(scale_x=1.024, scale_y=0.755, shift_x=0.002, shift_y=0.124)


@dataclass(frozen=True)
class FivePointBox:
    """The landmark box from YuNet's box and five points: a linear least-squares fit.

    Every number is taken relative to the detection box (its centre and size), so the model does not depend on
    the face's size or place: ``features`` are the five points so normalised plus a constant, and ``weights``
    (11, 4) map them to the landmark box corners, normalised the same way. Where the nose and mouth sit between
    the eyes says how far the head is turned, which a fixed box calibration cannot know: on the 121 validation
    faces the box IoU with the landmark box goes from 0.890 (calibration) to 0.907, and the spread of the
    centre error from 0.025 / 0.030 to 0.022 / 0.025 of the face size (x / y). Fitted by
    ``fit_five_point_box`` (``landmark calibrate-detector --detector yunet``).
    """

    weights: np.ndarray

    @staticmethod
    def box_frame(detections: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows (N, 15) float64, box centres (N, 1, 2), box sizes (N, 1, 2)) of detection rows: the frame in
        which the features and the fitted landmark boxes are expressed."""
        rows = np.asarray(detections, np.float64).reshape(-1, 15)
        centre = 0.5 * (rows[:, 0:2] + rows[:, 2:4])
        size = np.maximum(rows[:, 2:4] - rows[:, 0:2], 1e-6)
        return rows, centre[:, None], size[:, None]

    @staticmethod
    def features(detections: np.ndarray) -> np.ndarray:
        """(N, 11): the five points of (N, 15) detection rows relative to their box, and a constant 1."""
        rows, centre, size = FivePointBox.box_frame(detections)
        points = (rows[:, 5:15].reshape(-1, 5, 2) - centre) / size
        return np.concatenate([points.reshape(-1, 10), np.ones((len(rows), 1))], axis=1)

    def landmark_boxes(self, detections: np.ndarray) -> np.ndarray:
        """(N, 4) float32 landmark-box estimates for (N, 15) detection rows."""
        _, centre, size = self.box_frame(detections)
        corners = (self.features(detections) @ self.weights).reshape(-1, 2, 2) * size + centre
        return corners.reshape(-1, 4).astype(np.float32)

    def to_json(self) -> dict:
        return {"weights": np.round(self.weights, 6).tolist()}

    @classmethod
    def from_file(cls, path: str | Path) -> FivePointBox:
        try:
            weights = np.asarray(json.loads(Path(path).read_text())["weights"], np.float64)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise LandmarkError(f"{path}: not a five-point box file ({error})") from None
        if weights.shape != (11, 4):
            raise LandmarkError(f"{path}: 'weights': expected 11 rows of 4 numbers, got shape {weights.shape}")
        return cls(weights)


def fit_five_point_box(detections: list[np.ndarray], landmarks: list[np.ndarray], ridge: float = 1e-3) -> FivePointBox:
    """Least squares (with a little ridge, for stability) from detection rows (15 numbers each) to the
    landmark boxes of the annotated faces they matched."""
    if not detections:
        raise ValueError("no faces to fit the five-point box on")
    from landmark.data.crop import face_box_from_points

    rows, centre, size = FivePointBox.box_frame(detections)
    boxes = np.array([face_box_from_points(points) for points in landmarks], np.float64)
    targets = ((boxes.reshape(-1, 2, 2) - centre) / size).reshape(-1, 4)
    features = FivePointBox.features(rows)
    gram = features.T @ features + ridge * np.eye(features.shape[1])
    return FivePointBox(np.linalg.solve(gram, features.T @ targets))


class YuNetDetector:
    """``detect(image_bgr) -> (N, 15)`` float32 rows x_min, y_min, x_max, y_max, score, then the five points
    (x, y) of the right eye, left eye, nose tip, right and left mouth corner (the person's right and left).

    ``detect_width``: frames wider than this are shrunk first. YuNet's time grows with the pixel count, and
    it finds faces from about 10 px: a driver's face in a 640x480 frame is still 60-120 px at 320 px, and
    photos at 640 px keep the 40 px faces of crowd pictures.
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | Path | None = None,
        score_threshold: float = 0.6,
        detect_width: int = 320,
        calibration: BoxCalibration = YUNET_CALIBRATION,
        five_point: FivePointBox | None = None,
    ) -> None:
        model_path = Path(model_path) if model_path is not None else MODEL_FILE
        if not model_path.is_file():
            raise LandmarkError(f"YuNet face detector model {str(model_path)!r} not found: {MODEL_HELP}")
        try:
            self._detector = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold)
        except cv2.error as error:
            raise LandmarkError(f"{model_path}: not a YuNet face detector model ({error.err}); {MODEL_HELP}") from None
        self._input_size = (320, 320)
        self.detect_width = detect_width
        self.calibration = calibration
        self.five_point = five_point if five_point is not None else FivePointBox.from_file(FIVE_POINT_FILE)

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        height, width = image_bgr.shape[:2]
        factor = min(1.0, self.detect_width / width)
        if factor < 1.0:
            size = (round(width * factor), round(height * factor))
            image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        if image_bgr.ndim == 2:  # a grey (near-infrared) frame: YuNet wants three channels
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        size = (image_bgr.shape[1], image_bgr.shape[0])
        if size != self._input_size:  # YuNet must be told the frame size before detecting
            self._detector.setInputSize(size)
            self._input_size = size
        _, faces = self._detector.detect(image_bgr)
        if faces is not None:  # on a frame of a few pixels YuNet can return rows of NaN
            faces = faces[np.isfinite(faces).all(axis=1)]
        if faces is None or len(faces) == 0:
            return np.zeros((0, 15), dtype=np.float32)
        # OpenCV's rows: x, y, w, h, five (x, y) points, score.
        out = np.empty((len(faces), 15), dtype=np.float32)
        out[:, 0:2] = faces[:, 0:2] / factor
        out[:, 2:4] = (faces[:, 0:2] + faces[:, 2:4]) / factor
        out[:, 4] = faces[:, 14]
        out[:, 5:15] = faces[:, 4:14] / factor
        return out

    def to_landmark_box(self, detection: np.ndarray) -> np.ndarray:
        """(4,) estimate of the landmark box (what the landmark crop is built around) for a detection row:
        from its five points when the row has them, else from its box by the calibration."""
        detection = np.asarray(detection, dtype=np.float64)
        if len(detection) >= 15:
            return self.five_point.landmark_boxes(detection[:15])[0]
        return self.calibration.apply(detection)
