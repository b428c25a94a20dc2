"""OpenCV's Haar cascade face detector: bundled with OpenCV, offline, a few milliseconds per frame.

It finds upright, roughly frontal faces; the tracker only needs it to (re)acquire the driver every few
frames, so its weakness on turned heads matters less than its availability. It runs on a grey frame
downscaled to ``detect_width`` pixels wide (a driver's face is large, so little is lost) with histogram
equalisation for the uneven light of a car cabin.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from landmark.detect.calibration import BoxCalibration
from landmark.errors import LandmarkError

CASCADE_FILE = "haarcascade_frontalface_default.xml"

# Measured with ``landmark calibrate-detector`` (the default settings below) on the 1,207
# 300-W training faces (about 160 px faces in 320 px images): 1,104 detected (91.5%), interquartile ranges
# 0.10 (both scales), 0.10 / 0.05 (x / y shifts); median IoU with the landmark box 0.59 raw, 0.79 mapped.
# The Haar box is wider than jaw-to-jaw and starts on the forehead: the landmark box is smaller and lower.
HAAR_CALIBRATION = BoxCalibration(scale_x=0.846, scale_y=0.821, shift_x=0.003, shift_y=0.14)


class HaarDetector:
    """``detect(image_bgr) -> (N, 5)`` float32 rows x_min, y_min, x_max, y_max, score (image pixels)."""

    name = "haar"

    def __init__(
        self,
        detect_width: int = 320,
        scale_factor: float = 1.15,
        min_neighbors: int = 3,
        min_size: int = 30,
        equalize: bool = True,
        calibration: BoxCalibration = HAAR_CALIBRATION,
    ) -> None:
        path = cv2.data.haarcascades + CASCADE_FILE
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise LandmarkError(f"{path}: cannot load OpenCV's Haar cascade (is opencv installed completely?)")
        self.detect_width = detect_width
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size  # pixels in the downscaled frame; 24 is the cascade's own window
        self.equalize = equalize
        self.calibration = calibration

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        height, width = image_bgr.shape[:2]
        factor = min(1.0, self.detect_width / width)
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
        if factor < 1.0:
            grey = cv2.resize(grey, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
        if self.equalize:
            grey = cv2.equalizeHist(grey)
        boxes, _, weights = self.cascade.detectMultiScale3(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        if len(boxes) == 0:
            return np.zeros((0, 5), dtype=np.float32)
        boxes = np.asarray(boxes, dtype=np.float32) / factor
        # The last stage's weight is a margin: > 0 passed comfortably. A logistic squashes it to (0, 1), a
        # rough confidence for ordering detections, not a calibrated probability.
        scores = np.array([1.0 / (1.0 + math.exp(-float(w))) for w in np.ravel(weights)], dtype=np.float32)
        out = np.empty((len(boxes), 5), dtype=np.float32)
        out[:, 0:2] = boxes[:, 0:2]
        out[:, 2:4] = boxes[:, 0:2] + boxes[:, 2:4]
        out[:, 4] = scores
        return out

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray:
        """(4,) estimate of the landmark box (what the landmark crop is built around) for a detection."""
        return self.calibration.apply(box)
