"""OpenCV's YuNet face detector (``cv2.FaceDetectorYN``): a small CNN, robust to pose, needs a model file.

The model is not shipped (and nothing is downloaded): get ``face_detection_yunet_2023mar.onnx`` from the
OpenCV model zoo (https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet) and pass its
path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from landmark.detect.calibration import BoxCalibration
from landmark.errors import LandmarkError

MODEL_HELP = (
    "download 'face_detection_yunet_2023mar.onnx' from the OpenCV model zoo "
    "(https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet) and pass it with --detector-model"
)

# Not measured here (no YuNet model is available offline). YuNet is trained on WIDER FACE boxes, which run
# from the hairline to the chin, so the landmark box is a little shorter and lower; these are estimates.
# Measure them with ``landmark calibrate-detector --detector yunet --detector-model MODEL`` and paste the result here.
YUNET_CALIBRATION = BoxCalibration(scale_x=1.0, scale_y=0.9, shift_x=0.0, shift_y=0.05)


class YuNetDetector:
    """``detect(image_bgr) -> (N, 5)`` float32 rows x_min, y_min, x_max, y_max, score (image pixels)."""

    name = "yunet"

    def __init__(
        self,
        model_path: str | Path | None,
        score_threshold: float = 0.6,
        calibration: BoxCalibration = YUNET_CALIBRATION,
    ) -> None:
        if model_path is None or not Path(model_path).is_file():
            raise LandmarkError(f"YuNet face detector model {str(model_path)!r} not found: {MODEL_HELP}")
        try:
            self._detector = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold)
        except cv2.error as error:
            raise LandmarkError(f"{model_path}: not a YuNet face detector model ({error.err})") from None
        self._input_size = (320, 320)
        self.calibration = calibration

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        size = (image_bgr.shape[1], image_bgr.shape[0])
        if size != self._input_size:  # YuNet must be told the frame size before detecting
            self._detector.setInputSize(size)
            self._input_size = size
        _, faces = self._detector.detect(image_bgr)
        if faces is None:
            return np.zeros((0, 5), dtype=np.float32)
        # Rows: x, y, w, h, 5 landmark (x, y) pairs, score.
        out = np.empty((len(faces), 5), dtype=np.float32)
        out[:, 0:2] = faces[:, 0:2]
        out[:, 2:4] = faces[:, 0:2] + faces[:, 2:4]
        out[:, 4] = faces[:, -1]
        return out

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray:
        """(4,) estimate of the landmark box (what the landmark crop is built around) for a detection."""
        return self.calibration.apply(box)
