"""Face detectors: OpenCV YuNet (shipped, the default), OpenCV Haar, MediaPipe BlazeFace and dlib's HOG.

Every detector has the same two methods:

- ``detect(image_bgr) -> (N, 5 + extra)`` float32 rows x_min, y_min, x_max, y_max, score in image pixels,
  then what else the detector knows (YuNet: its five face points);
- ``to_landmark_box(detection) -> (4,)``: a detection row mapped to an estimate of the landmark box that the
  landmark model crops around (see ``calibration.py``, and ``yunet.py`` for the five-point estimate).

Why YuNet is the default: on the 300-W training faces it finds all 1,207 (the Haar photo detector 94.8%), it
finds the three-quarter-turned driver that a frontal Haar cascade misses, and its five points place the
landmark crop nearly as well as the true landmark box does. docs/detectors.md has the measurements.

``build_detector()`` without a name gives YuNet, and falls back to Haar (with one warning) only when YuNet
cannot be loaded. A detector asked for by name is that detector or one ``LandmarkError``: a missing model
file, or dlib not installed, is never silently replaced by another detector.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from landmark.detect.calibration import BoxCalibration
from landmark.detect.dlib_hog import DlibHogDetector
from landmark.detect.haar import HaarDetector, HaarPhotoDetector
from landmark.detect.mediapipe_detector import MediaPipeDetector
from landmark.detect.yunet import YuNetDetector
from landmark.errors import LandmarkError

logger = logging.getLogger(__name__)

DETECTORS = ("yunet", "haar", "mediapipe", "dlib")
DEFAULT_DETECTOR = "yunet"


class Detector(Protocol):
    name: str

    def detect(self, image_bgr: np.ndarray) -> np.ndarray: ...

    def to_landmark_box(self, detection: np.ndarray) -> np.ndarray: ...


def build_detector(name: str | None = None, model_path: str | Path | None = None, photos: bool = False) -> Detector:
    """The detector ``name`` (one of ``DETECTORS``); ``None`` means the default, YuNet, with a fallback to Haar
    (and one warning) when YuNet cannot be loaded.

    ``photos=True`` picks the settings for still images of any size rather than a real-time video stream:
    YuNet looks at up to 640 px instead of 320 with a stricter score threshold (on the 43 faces of the dlib
    example photos: all found, no false alarm; 0.6 gave one), Haar runs ``HaarPhotoDetector`` (three cascade
    runs that must agree), dlib upsamples once to reach 40 px faces.
    """
    if name is None:
        try:
            return _build(DEFAULT_DETECTOR, model_path, photos)
        except LandmarkError as error:
            logger.warning("%s; falling back to the Haar detector", error)
            return _build("haar", None, photos)
    if name not in DETECTORS:
        raise LandmarkError(f"unknown face detector {name!r}; expected one of {', '.join(DETECTORS)}")
    return _build(name, model_path, photos)


def close_detector(detector: Detector) -> None:
    """Release what a detector holds outside Python (MediaPipe's graph); a no-op for the others."""
    close = getattr(detector, "close", None)
    if close is not None:
        close()


def _build(name: str, model_path: str | Path | None, photos: bool) -> Detector:
    if name == "yunet":
        return YuNetDetector(model_path, score_threshold=0.7 if photos else 0.6, detect_width=640 if photos else 320)
    if name == "haar":
        return HaarPhotoDetector() if photos else HaarDetector()
    if name == "dlib":  # photos: one upsampling reaches 40 px faces; video: a driver's face is large
        return DlibHogDetector(upsample=1 if photos else 0)
    return MediaPipeDetector(model_path)


__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "BoxCalibration",
    "Detector",
    "DlibHogDetector",
    "HaarDetector",
    "HaarPhotoDetector",
    "MediaPipeDetector",
    "YuNetDetector",
    "build_detector",
    "close_detector",
]
