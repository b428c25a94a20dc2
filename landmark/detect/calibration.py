"""Detector box -> landmark box: each detector draws its face box differently from the landmark box.

The landmark model is trained on crops of ``1.25 x`` the box around its landmarks (brows to chin, jaw to
jaw), so a detector's box has to be turned into an estimate of that landmark box before the first crop of a
track. ``BoxCalibration`` holds four numbers per detector, all relative to the detection's own size:

    landmark centre = detection centre + (shift_x * det_w, shift_y * det_h)
    landmark size   = (scale_x * det_w, scale_y * det_h)

``fit_box_calibration`` measures them as medians over annotated faces (e.g. the 300-W training faces);
rerun it with ``landmark calibrate-detector --detector haar|mediapipe|yunet [--detector-model M] [--data DIR]``
after changing a detector's settings, and paste the printed constants into the detector's module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from landmark.data.readers import FaceRecord
    from landmark.detect import Detector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoxCalibration:
    """Mapping from a detector's (x_min, y_min, x_max, y_max) box to a landmark-box estimate."""

    scale_x: float = 1.0
    scale_y: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def apply(self, box: np.ndarray) -> np.ndarray:
        """(4,) float32 landmark box for a detection box (extra columns such as a score are ignored)."""
        x_min, y_min, x_max, y_max = (float(v) for v in np.asarray(box)[:4])
        width, height = x_max - x_min, y_max - y_min
        centre_x = 0.5 * (x_min + x_max) + self.shift_x * width
        centre_y = 0.5 * (y_min + y_max) + self.shift_y * height
        half_w, half_h = 0.5 * self.scale_x * width, 0.5 * self.scale_y * height
        return np.array([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], np.float32)

    def invert(self, landmark_box: np.ndarray) -> np.ndarray:
        """(4,) float32 detection box whose ``apply`` gives ``landmark_box``: the box a model trained on this
        detector's boxes (dlib's shape predictor on its HOG boxes) expects for a known landmark box."""
        x_min, y_min, x_max, y_max = (float(v) for v in np.asarray(landmark_box)[:4])
        width, height = (x_max - x_min) / self.scale_x, (y_max - y_min) / self.scale_y
        centre_x = 0.5 * (x_min + x_max) - self.shift_x * width
        centre_y = 0.5 * (y_min + y_max) - self.shift_y * height
        return np.array(
            [centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], np.float32
        )


def as_detections(rows) -> np.ndarray:
    """A detector's output as a float32 (N, C) array, C >= 5 (box, score, any detector-specific columns);
    an empty result is (0, 5)."""
    rows = np.asarray(rows, dtype=np.float32)
    return rows.reshape(len(rows), -1) if rows.size else np.zeros((0, 5), np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x_min, y_min, x_max, y_max[, ...]) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def best_overlap(boxes: list[np.ndarray], truth: np.ndarray, min_iou: float) -> tuple[int, float] | None:
    """(index, IoU) of the box that overlaps ``truth`` most, or None when none reaches ``min_iou`` (so a
    neighbour's face in the same photo is not taken for the annotated one)."""
    ious = [box_iou(box, truth) for box in boxes]
    if not ious or max(ious) < min_iou:
        return None
    best = int(np.argmax(ious))
    return best, ious[best]


def boxes_from_detector(
    records: list[FaceRecord], detector: Detector, min_iou: float = 0.3, progress: Callable | None = None
) -> tuple[list[FaceRecord], int]:
    """Give each ``FaceRecord`` the face box a detector finds for it, as deployed: the detection that best
    overlaps the annotated face (at least ``min_iou``), mapped to a landmark-box estimate by the detector's
    calibration. A face the detector misses keeps its landmark box. ``progress`` wraps the record list (e.g.
    ``tqdm``). Returns (records with ``box`` set, number that fell back to the landmark box).

    OpenCV's thread pool does not survive fork(): had the detector started it here, DataLoader workers forked
    later (the trainer's) could hang in their first OpenCV call. So detection runs without the pool, and the
    thread setting is restored afterwards."""
    from dataclasses import replace

    from landmark.data.crop import face_box_from_points
    from landmark.data.dataset import load_image

    out, fallbacks = [], 0
    threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        for record in progress(records) if progress else records:
            truth = face_box_from_points(record.points)
            estimates = [detector.to_landmark_box(d) for d in detector.detect(load_image(record.image_path))]
            match = best_overlap(estimates, truth, min_iou)
            if match is None:
                box, fallbacks = truth, fallbacks + 1
            else:
                box = estimates[match[0]]
            out.append(replace(record, box=np.asarray(box, dtype=np.float32)))
    finally:
        cv2.setNumThreads(threads)
    return out, fallbacks


def fit_box_calibration(
    detector, records: list[FaceRecord], min_iou: float = 0.3, progress: Callable | None = None
) -> dict:
    """Measure a detector's ``BoxCalibration`` on annotated faces (``progress`` wraps the list of faces, e.g.
    ``tqdm``).

    Each face's detection is the one with the best IoU to its landmark box (at least ``min_iou``, so a
    neighbour's face in the crop is not matched). Returns the calibration, the detection rate and the spread
    (interquartile range) of each ratio, so one can judge how well a fixed mapping fits. For a detector that
    also gives five points per face (YuNet: rows of 15 columns), ``five_point_box`` is fitted too (see
    ``landmark.detect.yunet.FivePointBox``), with the median IoU of its landmark-box estimate.
    """
    from landmark.data.crop import face_box_from_points
    from landmark.detect.yunet import fit_five_point_box

    # ``detect`` returns the raw detector boxes; the calibration is applied only by ``to_landmark_box``.
    ratios, ious_raw, ious_mapped, five_point_rows, landmarks = [], [], [], [], []
    for record in progress(records) if progress else records:
        image = cv2.imread(str(record.image_path))
        if image is None:
            continue
        truth = face_box_from_points(record.points)
        detections = detector.detect(image)
        match = best_overlap(detections, truth, min_iou)
        if match is None:
            continue
        det = detections[match[0]]
        ious_raw.append(match[1])
        ious_mapped.append(box_iou(detector.to_landmark_box(det), truth))
        if len(det) >= 15:
            five_point_rows.append(np.asarray(det[:15], np.float64))
            landmarks.append(record.points)
        det_w, det_h = det[2] - det[0], det[3] - det[1]
        ratios.append(
            [
                (truth[2] - truth[0]) / det_w,
                (truth[3] - truth[1]) / det_h,
                (0.5 * (truth[0] + truth[2]) - 0.5 * (det[0] + det[2])) / det_w,
                (0.5 * (truth[1] + truth[3]) - 0.5 * (det[1] + det[3])) / det_h,
            ]
        )
    if not ratios:
        raise ValueError(f"the detector matched none of {len(records)} faces")
    ratios = np.array(ratios)
    median = np.median(ratios, axis=0)
    q25, q75 = np.percentile(ratios, [25, 75], axis=0)
    calibration = BoxCalibration(*(round(float(v), 3) for v in median))
    result = {
        "calibration": calibration,
        "faces": len(records),
        "detected": len(ratios),
        "detection_rate": round(len(ratios) / max(len(records), 1), 4),
        # How well the detector's CURRENT mapping predicts the landmark box (median IoU), and the raw box's.
        "median_iou_mapped": round(float(np.median(ious_mapped)), 3),
        "median_iou_raw": round(float(np.median(ious_raw)), 3),
        "iqr": dict(zip(("scale_x", "scale_y", "shift_x", "shift_y"), np.round(q75 - q25, 3).tolist(), strict=True)),
    }
    if five_point_rows:
        model = fit_five_point_box(five_point_rows, landmarks)
        estimates = model.landmark_boxes(np.array(five_point_rows))
        ious = [box_iou(box, face_box_from_points(points)) for box, points in zip(estimates, landmarks, strict=True)]
        result["five_point_box"] = model
        result["median_iou_five_point_fit"] = round(float(np.median(ious)), 3)
    return result
