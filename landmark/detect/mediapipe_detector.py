"""MediaPipe Tasks ``FaceDetector`` (BlazeFace): fast and more pose-tolerant than Haar, needs a model file.

The model is not shipped (and nothing is downloaded): get the BlazeFace short-range model,
``blaze_face_short_range.tflite``, from the "Face detection" page of the MediaPipe models list
(https://ai.google.dev/edge/mediapipe/solutions/vision/face_detector#models) and pass its path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from landmark.detect.calibration import BoxCalibration
from landmark.errors import LandmarkError

MODEL_HELP = (
    "download the BlazeFace short-range model 'blaze_face_short_range.tflite' from the MediaPipe models page "
    "(https://ai.google.dev/edge/mediapipe/solutions/vision/face_detector#models) and pass it with --detector-model"
)

# Not measured here (no BlazeFace model is available offline). BlazeFace boxes are square and run from the
# brows to below the lower lip, so the landmark box is taller and lower; these are estimates. Measure them
# with ``landmark calibrate-detector --detector mediapipe --detector-model MODEL`` and paste the result here.
MEDIAPIPE_CALIBRATION = BoxCalibration(scale_x=1.0, scale_y=1.1, shift_x=0.0, shift_y=0.1)


class MediaPipeDetector:
    """``detect(image_bgr) -> (N, 5)`` float32 rows x_min, y_min, x_max, y_max, score (image pixels)."""

    name = "mediapipe"

    def __init__(
        self,
        model_path: str | Path | None,
        min_confidence: float = 0.5,
        calibration: BoxCalibration = MEDIAPIPE_CALIBRATION,
    ) -> None:
        if model_path is None or not Path(model_path).is_file():
            raise LandmarkError(f"mediapipe face detector model {str(model_path)!r} not found: {MODEL_HELP}")
        import mediapipe as mp  # imported here: it is slow to import and only this detector needs it
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_confidence,
        )
        try:
            self._detector = vision.FaceDetector.create_from_options(options)
        except (ValueError, RuntimeError) as error:
            raise LandmarkError(f"{model_path}: not a MediaPipe face detector model ({error})") from None
        self._mp = mp
        self.calibration = calibration

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        rows = []
        for detection in result.detections:
            box = detection.bounding_box
            score = detection.categories[0].score if detection.categories else 1.0
            rows.append([box.origin_x, box.origin_y, box.origin_x + box.width, box.origin_y + box.height, score])
        return np.array(rows, dtype=np.float32).reshape(-1, 5)

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray:
        """(4,) estimate of the landmark box (what the landmark crop is built around) for a detection."""
        return self.calibration.apply(box)
