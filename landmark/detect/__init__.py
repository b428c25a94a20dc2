"""Face detectors: OpenCV Haar (bundled, the default), MediaPipe BlazeFace, OpenCV YuNet and dlib's HOG.

Every detector has the same two methods:

- ``detect(image_bgr) -> (N, 5)`` float32 rows x_min, y_min, x_max, y_max, score in image pixels;
- ``to_landmark_box(box) -> (4,)``: the detector's box mapped to an estimate of the landmark box that the
  landmark model crops around (see ``calibration.py``).

MediaPipe and YuNet need a model file the user downloads; when it is missing, ``build_detector`` logs a
warning saying where to get it and falls back to Haar so the demo still runs; so does ``dlib`` when the optional
dlib package is not installed.
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

DETECTORS = ("haar", "mediapipe", "yunet", "dlib")


class Detector(Protocol):
    name: str

    def detect(self, image_bgr: np.ndarray) -> np.ndarray: ...

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray: ...


def build_detector(
    name: str = "haar", model_path: str | Path | None = None, fallback: bool = True, photos: bool = False
) -> Detector:
    """A detector by name; a missing MediaPipe/YuNet model falls back to Haar with a warning (unless told not).

    ``photos=True`` picks the Haar detector for still images of any size rather than a real-time video
    stream: ``HaarPhotoDetector`` looks at up to 640 px with finer scale steps and keeps a face only where two of
    three cascade runs agree (about twice the time of one run; the video detector must stay fast).
    """
    haar = HaarPhotoDetector if photos else HaarDetector
    if name == "haar":
        return haar()
    if name not in DETECTORS:
        raise LandmarkError(f"unknown face detector {name!r}; expected one of {', '.join(DETECTORS)}")
    try:
        if name == "dlib":  # photos: one upsampling reaches 40 px faces; video: a driver's face is large
            return DlibHogDetector(upsample=1 if photos else 0)
        return MediaPipeDetector(model_path) if name == "mediapipe" else YuNetDetector(model_path)
    except LandmarkError as error:
        if not fallback:
            raise
        logger.warning("%s; falling back to the Haar detector", error)
        return haar()


__all__ = [
    "DETECTORS",
    "BoxCalibration",
    "Detector",
    "DlibHogDetector",
    "HaarDetector",
    "HaarPhotoDetector",
    "MediaPipeDetector",
    "YuNetDetector",
    "build_detector",
]
