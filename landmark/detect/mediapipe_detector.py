"""MediaPipe Tasks ``FaceDetector`` (BlazeFace short range): fast, more pose-tolerant than Haar, needs a model.

The model is not shipped (and nothing is downloaded). Pass either the BlazeFace model itself,
``blaze_face_short_range.tflite`` from the MediaPipe models page
(https://ai.google.dev/edge/mediapipe/solutions/vision/face_detector#models), or a Face Landmarker bundle,
``face_landmarker.task``, whose ``face_detector.tflite`` is the same BlazeFace short-range detector.
"""

from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np

from landmark.detect.calibration import BoxCalibration
from landmark.errors import LandmarkError

MODEL_HELP = (
    "download the BlazeFace short-range model 'blaze_face_short_range.tflite' from the MediaPipe models page "
    "(https://ai.google.dev/edge/mediapipe/solutions/vision/face_detector#models), or use a 'face_landmarker.task' "
    "bundle, and pass it with --detector-model"
)
BUNDLED_DETECTOR = "face_detector.tflite"  # BlazeFace inside a Face Landmarker .task bundle (a zip file)
TEXT_DAMAGE = b"\xef\xbf\xbd"  # U+FFFD: what a binary file read and written as UTF-8 text is full of

# Measured with ``landmark calibrate-detector --detector mediapipe --detector-model face_landmarker.task`` on
# the 1,207 300-W training faces (2026-12-03): all found, interquartile ranges 0.105 / 0.097 (scales), 0.028 /
# 0.053 (x / y shifts); median IoU with the landmark box 0.825 raw. BlazeFace's square box is already close
# to the landmark box: a little larger, and its centre a little higher.
MEDIAPIPE_CALIBRATION = BoxCalibration(scale_x=0.958, scale_y=0.932, shift_x=0.0, shift_y=0.052)


def read_detector_model(path: Path) -> bytes:
    """The BlazeFace TFLite bytes of a ``.tflite`` file or of a ``.task`` bundle; one error line otherwise."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LandmarkError(f"{path}: cannot read the MediaPipe face detector model ({error.strerror})") from None
    # A .tflite file starts with a FlatBuffer whose identifier is TFL3 (it may end with a zip of metadata
    # files, so "is it a zip" alone cannot tell the two apart); a .task bundle is a zip file from byte 0.
    if data[4:8] != b"TFL3" and zipfile.is_zipfile(BytesIO(data)):
        with zipfile.ZipFile(BytesIO(data)) as bundle:
            if BUNDLED_DETECTOR not in bundle.namelist():
                raise LandmarkError(f"{path}: a MediaPipe bundle without {BUNDLED_DETECTOR}: {MODEL_HELP}")
            data = bundle.read(BUNDLED_DETECTOR)
    if data.count(TEXT_DAMAGE) > 100:
        raise LandmarkError(
            f"{path}: damaged: {data.count(TEXT_DAMAGE):,} byte runs were replaced by U+FFFD, as when a binary "
            f"file is saved as text; {MODEL_HELP}"
        )
    return data


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
        model = read_detector_model(Path(model_path))
        import mediapipe as mp  # imported here: it is slow to import and only this detector needs it
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=model),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_confidence,
        )
        try:
            self._detector = vision.FaceDetector.create_from_options(options)
        except (ValueError, RuntimeError) as error:
            raise LandmarkError(f"{model_path}: not a MediaPipe face detector model ({error}); {MODEL_HELP}") from None
        self._mp = mp
        self.calibration = calibration

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        code = cv2.COLOR_GRAY2RGB if image_bgr.ndim == 2 else cv2.COLOR_BGR2RGB
        rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, code))
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        rows = []
        for detection in result.detections:
            box = detection.bounding_box
            score = detection.categories[0].score if detection.categories else 1.0
            rows.append([box.origin_x, box.origin_y, box.origin_x + box.width, box.origin_y + box.height, score])
        return np.array(rows, dtype=np.float32).reshape(-1, 5)

    def close(self) -> None:
        """Release MediaPipe's graph now. Left to garbage collection at interpreter exit, MediaPipe's own
        clean-up runs after its dispatcher has shut down and prints an ignored exception."""
        self._detector.close()

    def to_landmark_box(self, detection: np.ndarray) -> np.ndarray:
        """(4,) estimate of the landmark box (what the landmark crop is built around) for a detection."""
        return self.calibration.apply(detection)
