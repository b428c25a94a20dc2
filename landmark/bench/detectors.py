"""Face detectors side by side (``landmark bench --detectors``): speed on video frames, faces found on
annotated photos, false alarms on group photos.

For each detector:

* ``video``: milliseconds per 640x480 frame (median, p90) with the real-time settings (``photos=False``), as the
  demo runs it, on frames of the rendered driver video; each library keeps its own default threads, as in the
  demo;
* ``faces300w``: the share of the 300-W training faces found, with the still-photo settings (``photos=True``,
  as ``predict`` and ``eval`` use);
* ``dlib_examples``: faces found and false alarms on dlib's example group photos (43 small faces in 9 photos),
  photo settings.

A face is found when the landmark-box estimate of a detection -- the detector's box mapped by its
``to_landmark_box``, the box the landmark model is given -- overlaps the face's annotated landmark box with IoU
>= 0.3 (``best_overlap``, as ``boxes_from_detector`` matches faces for ``eval``). Mapped rather than raw boxes:
each detector draws its box its own way (Haar's starts on the forehead and is wider than the jaw), and the
mapping is what puts them on one footing. A detection that reaches IoU 0.3 with no annotated face is a false
alarm (counted on the group photos only: a 300-W crop can show an unannotated neighbour's face).

A detector that cannot be built here (no model file, its package not installed) is a row with
``available: False`` and the reason, not an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from landmark.data.crop import face_box_from_points
from landmark.data.readers import FaceRecord
from landmark.detect import Detector, build_detector, close_detector
from landmark.detect.calibration import best_overlap
from landmark.errors import DataError, LandmarkError

DETECTOR_NAMES = ("haar", "yunet", "mediapipe", "dlib")
MIN_IOU = 0.3
WARMUP_FRAMES = 3  # untimed first calls: model loading, buffer allocation, YuNet's input-size change

# progress(items, description) -> the same items, e.g. wrapped in a tqdm bar
Progress = Callable[[Iterable, str], Iterable]


def _no_progress(items: Iterable, description: str) -> Iterable:
    return items


def build_or_reason(name: str, model_path: str | Path | None, photos: bool) -> tuple[Detector | None, str | None]:
    """(the detector, None), or (None, why it cannot run here): a missing model file or package."""
    try:
        return build_detector(name, model_path, photos=photos), None  # by name: never a fallback
    except LandmarkError as error:
        return None, str(error)
    except ImportError as error:  # MediaPipe's detector imports mediapipe only when it is built
        return None, f"{error.name or 'a package'} is not installed"


def time_detector(detector: Detector, frames: list[np.ndarray], warmup: int = WARMUP_FRAMES) -> dict[str, Any]:
    """Milliseconds per ``detect`` call on each frame: median and p90, after ``warmup`` untimed calls."""
    for frame in frames[:warmup]:
        detector.detect(frame)
    times = []
    for frame in frames:
        start = time.perf_counter()
        detector.detect(frame)
        times.append(1000.0 * (time.perf_counter() - start))
    height, width = frames[0].shape[:2]
    return {
        "frames": len(frames),
        "size": [width, height],
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
    }


def _faces_by_image(records: list[FaceRecord]) -> dict[Path, list[np.ndarray]]:
    """Image -> the landmark boxes of its annotated faces (a group photo has one record per face)."""
    faces: dict[Path, list[np.ndarray]] = {}
    for record in records:
        faces.setdefault(record.image_path, []).append(face_box_from_points(record.points))
    return faces


def match_faces(
    detector: Detector,
    records: list[FaceRecord],
    min_iou: float = MIN_IOU,
    progress: Progress | None = None,
    description: str = "",
) -> dict[str, int]:
    """Faces found and false alarms of one detector on annotated images (rules in the module docstring);
    ``progress(images, description)`` wraps the loop over the images."""
    progress = progress or _no_progress
    faces = _faces_by_image(records)
    found = false_alarms = 0
    for path, truths in progress(faces.items(), description or detector.name):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{path}: cannot read this image")
        estimates = [detector.to_landmark_box(detection) for detection in detector.detect(image)]
        found += sum(best_overlap(estimates, truth, min_iou) is not None for truth in truths)
        false_alarms += sum(best_overlap(truths, estimate, min_iou) is None for estimate in estimates)
    return {"faces": sum(len(truths) for truths in faces.values()), "found": found, "false_alarms": false_alarms}


def benchmark_detector(
    name: str,
    model_path: str | Path | None,
    frames: list[np.ndarray],
    faces300w: list[FaceRecord],
    dlib_examples: list[FaceRecord],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One detector's row: ``video`` timing, ``faces300w`` share found, ``dlib_examples`` found and false
    alarms (None where that data set is empty); ``available`` False with a ``reason`` when it cannot run."""
    row: dict[str, Any] = {"detector": name, "model": None if model_path is None else str(model_path)}
    video_detector, video_problem = build_or_reason(name, model_path, photos=False)
    photo_detector, photo_problem = build_or_reason(name, model_path, photos=True)
    if video_detector is None or photo_detector is None:
        reason = video_problem or photo_problem
        return {**row, "available": False, "reason": reason, "video": None, "faces300w": None, "dlib_examples": None}
    try:
        row.update(available=True, reason=None, video=time_detector(video_detector, frames))
        row["faces300w"] = None
        if faces300w:
            found = match_faces(photo_detector, faces300w, progress=progress, description=f"{name}, 300-W")["found"]
            row["faces300w"] = {"faces": len(faces300w), "found": found, "share": found / len(faces300w)}
        row["dlib_examples"] = None
        if dlib_examples:
            row["dlib_examples"] = match_faces(
                photo_detector, dlib_examples, progress=progress, description=f"{name}, dlib photos"
            )
    finally:
        close_detector(video_detector)
        close_detector(photo_detector)
    return row


def benchmark_detectors(
    frames: list[np.ndarray],
    faces300w: list[FaceRecord],
    dlib_examples: list[FaceRecord],
    model_paths: dict[str, str | Path | None],
    names: tuple[str, ...] = DETECTOR_NAMES,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """``benchmark_detector`` for each name; ``model_paths`` gives the model files (YuNet, MediaPipe)."""
    return [
        benchmark_detector(name, model_paths.get(name), frames, faces300w, dlib_examples, progress) for name in names
    ]
