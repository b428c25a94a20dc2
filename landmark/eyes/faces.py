"""Open eyes stay open: the whole pipeline's eye decision on annotated photos of open-eyed faces.

Each face goes through what the demo does to a frame: the detector (with its photo settings), the landmark
model on the detected box nearest the annotated face, the eye-state model on both eyes framed by the predicted
landmarks, and a fresh ``DriverMonitor`` (one uncalibrated frame: the fallback open-eye EAR) that fuses the
two. A face whose eyes it reports closed is a false alarm, since 300-W faces have open eyes. Only OpenCV,
NumPy and ONNX Runtime are used.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from landmark.data.crop import face_box_from_points
from landmark.data.readers import FaceRecord
from landmark.detect.calibration import as_detections
from landmark.dms.config import DMSConfig
from landmark.dms.monitor import DriverMonitor
from landmark.dms.signals import FaceRatios
from landmark.errors import DataError


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def open_eye_check(
    records: Iterable[FaceRecord],
    predictor,
    detector,
    eye_model,
    config: DMSConfig | None = None,
    open_ear_min: float = 0.15,
) -> dict:
    """Counts and rates of faces reported eyes-closed, by the fused decision and by EAR alone.

    The detected box taken is the one overlapping the annotated landmark box most (IoU >= 0.3); a face with
    none is counted as not detected and left out of the rates. Returns n, detected, closed (fused),
    closed_rate, closed_ear_only, closed_ear_only_rate, the mean and 99th percentile of p (the smaller closed
    probability of both eyes), the names of the faces reported closed; and the same counts on the faces whose
    ANNOTATED eyes are open (the EAR of both annotated eyes >= ``open_ear_min``): a photo set of "open eyes"
    still holds some blinks, downcast eyes and squints, which the annotated points show.
    """
    config = config if config is not None else DMSConfig()
    n = detected = closed = closed_ear = no_reading = 0
    n_open = closed_open = closed_ear_open = 0
    probs, closed_names = [], []
    ratios = FaceRatios(predictor.scheme)
    for record in records:
        n += 1
        image = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{record.image_path}: cannot read image")
        truth_box = face_box_from_points(record.points)
        boxes = as_detections(detector.detect(image))
        if len(boxes) == 0:
            continue
        overlaps = [_iou(np.asarray(b[:4], dtype=np.float64), np.asarray(truth_box, dtype=np.float64)) for b in boxes]
        best = int(np.argmax(overlaps))
        if overlaps[best] < 0.3:
            continue
        detected += 1
        box = boxes[best]
        if hasattr(detector, "to_landmark_box"):  # as `landmark predict`: the box the landmark model expects
            box = np.asarray(detector.to_landmark_box(box), dtype=np.float64)[:4]
        points = predictor.predict(image, np.asarray(box[:4], dtype=np.float64)[None]).landmarks[0]
        eye_probs = eye_model.predict_face(image, points, predictor.scheme)  # None: an eye crop leaves the image
        if eye_probs is None:
            no_reading += 1
        else:
            probs.append(min(eye_probs))
        fused = DriverMonitor(predictor.scheme, config).update(0.0, points, None, eye_probs)
        ear_only = DriverMonitor(predictor.scheme, config).update(0.0, points, None)
        closed += fused.eyes_closed
        closed_ear += ear_only.eyes_closed
        annotated_open = bool(np.all(ratios(np.asarray(record.points, dtype=np.float64))[:2] >= open_ear_min))
        n_open += annotated_open
        closed_open += annotated_open and fused.eyes_closed
        closed_ear_open += annotated_open and ear_only.eyes_closed
        if fused.eyes_closed:
            closed_names.append(record.image_path.name)
    return {
        "n": n,
        "detected": detected,
        "closed": closed,
        "closed_rate": closed / detected if detected else None,
        "closed_ear_only": closed_ear,
        "closed_ear_only_rate": closed_ear / detected if detected else None,
        "mean_prob_closed": float(np.mean(probs)) if probs else None,
        "p99_prob_closed": float(np.percentile(probs, 99)) if probs else None,
        "closed_faces": closed_names,
        "no_eye_reading": no_reading,
        "open_ear_min": open_ear_min,
        "annotated_open": n_open,
        "annotated_open_closed": closed_open,
        "annotated_open_closed_rate": closed_open / n_open if n_open else None,
        "annotated_open_closed_ear_only": closed_ear_open,
        "annotated_open_closed_ear_only_rate": closed_ear_open / n_open if n_open else None,
    }
