"""dlib's HOG face detector (``dlib.get_frontal_face_detector``): the boxes dlib's landmark predictor expects.

dlib is optional (``pip install -e '.[dlib]'``, or just ``dlib-bin``): it is here so that the incumbent,
dlib's 68-point shape predictor, can be measured on the same faces and machine as our models (``landmark
eval --dlib``, ``landmark bench --dlib``), and so that our models can be run on dlib's boxes. Its model is
compiled into dlib, so nothing needs downloading. A 640x480 frame takes about 30 ms, 120 ms with one upsampling
(what ``build_detector(..., photos=True)`` asks for).
"""

from __future__ import annotations

from types import ModuleType

import cv2
import numpy as np

from landmark.detect.calibration import BoxCalibration
from landmark.errors import LandmarkError

INSTALL_HINT = "pip install dlib-bin face_recognition_models (the 68-point model), or pip install -e '.[dlib]'"

# Measured with ``landmark calibrate-detector --detector dlib --photos`` (upsample 1) on the 1,207 300-W faces:
# 1,156 detected (95.8%; the Haar photo detector 94.8%), interquartile ranges 0.14 / 0.17 (scales) and
# 0.11 / 0.06 (x / y shifts); median IoU with the landmark box 0.71 raw, 0.76 mapped. The HOG box is about as
# large as the landmark box but sits higher: it runs from the forehead to above the chin.
DLIB_CALIBRATION = BoxCalibration(scale_x=1.025, scale_y=0.97, shift_x=0.01, shift_y=0.119)


def import_dlib() -> ModuleType:
    """The ``dlib`` module, or one ``LandmarkError`` saying how to install it."""
    try:
        import dlib
    except ImportError:
        raise LandmarkError(f"dlib is not installed: {INSTALL_HINT}") from None
    return dlib


class DlibHogDetector:
    """``detect(image_bgr) -> (N, 5)`` float32 rows x_min, y_min, x_max, y_max, score (image pixels).

    ``upsample`` doubles the image that many times first: dlib's detector finds faces of about 80 px and
    larger, so one doubling (dlib's own examples' setting) reaches 40 px faces.
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, calibration: BoxCalibration = DLIB_CALIBRATION) -> None:
        self._detector = import_dlib().get_frontal_face_detector()
        self.upsample = upsample
        self.calibration = calibration

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB) if image_bgr.ndim == 3 else image_bgr
        rects, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
        out = np.zeros((len(rects), 5), dtype=np.float32)
        for row, (rect, score) in enumerate(zip(rects, scores, strict=True)):
            out[row] = (rect.left(), rect.top(), rect.right(), rect.bottom(), score)
        return out

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray:
        """(4,) estimate of the landmark box (what the landmark crop is built around) for a detection."""
        return self.calibration.apply(box)
