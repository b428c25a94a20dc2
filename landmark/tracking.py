"""Follow the driver's face from frame to frame: detect rarely, crop from the last landmarks otherwise.

Running a face detector on every frame is the slow part of a landmark demo. After the driver's face is
found once, the previous frame's landmarks say where the face is, so the next crop is built around their
box (``crop_matrix(face_box_from_points(points))``, the same crop the model was trained on) and the
detector only runs:

- every ``redetect_every`` frames, to check that the track still sits on a face (a detection overlapping
  it) and to notice when it does not -- a few misses in a row end the track;
- at once when the track looks lost: the landmark box collapses, explodes, jumps, leaves the image or the
  landmarks stop looking like a face (eyes too close or too far apart for the box).

When a re-detection misses, the track is kept only while the face region still looks like the face the
detector last confirmed (``appearance``: colour and grey-level histograms). A frontal detector cannot see
a turned head, so misses alone cannot tell a driver looking over the shoulder from an empty seat -- and a
landmark model, asked to find a face in a crop of the seat, can return a tidy, turned-looking face.

The driver is the largest face near the image centre when a track starts, and afterwards whichever
detection overlaps the current track best, so a passenger leaning in does not steal the track.

The landmarks are smoothed with a One Euro filter (reset whenever a new track starts) for drawing and
head pose; ``TrackResult.raw_points`` are the unsmoothed ones, which keep the fast eyelid motion of a blink.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from landmark.data.crop import crop_matrix, face_box_from_points
from landmark.data.pose import head_pose
from landmark.detect.calibration import as_detections, box_iou
from landmark.filters import OneEuroFilter

DETECTED = "detected"  # a track started from a detection on this frame
TRACKING = "tracking"  # the crop came from the previous frame's landmarks
NO_FACE = "no_face"


@dataclass
class TrackerConfig:
    redetect_every: int = 10  # run the detector at least every N frames while tracking
    # Re-detections in a row that may miss a turned face before its track is dropped: a frontal detector
    # cannot see a head turned beyond ~30 degrees, and distraction needs the landmarks of exactly those
    # seconds, so the plausibility checks below, not the detector, end such a track (10 x 10 frames = 3.3 s).
    max_missed_detections: int = 10
    # A frontal face is what a frontal detector finds: when it misses one, the face has most likely gone (an
    # empty seat), so look again after ``recheck_after`` frames and drop it after ``max_missed_frontal``
    # misses. A turned head keeps the patient cadence above, since the detector cannot see it anyway.
    frontal_yaw_deg: float = 20.0
    max_missed_frontal: int = 2
    recheck_after: int = 3
    match_iou: float = 0.3  # a detection belongs to the track when its landmark-box IoU reaches this
    min_face_px: float = 24.0  # a landmark box smaller than this (either side) is a lost track
    # Bhattacharyya distance (0 same .. 1 disjoint) between the face region's histograms now and at the last
    # confirmed detection beyond which a missed re-detection ends the track at once. On the rendered driver
    # video a turned head reaches 0.41, the empty seat 0.96.
    max_appearance_change: float = 0.7
    max_jump: float = 0.5  # largest centre move between frames, as a fraction of the box size
    max_size_change: float = 0.4  # largest relative change of the box size between frames
    min_inside: float = 0.5  # least fraction of the landmark box that must lie inside the image
    check_plausible: bool = True  # the checks above (off only to benchmark an untrained model)
    refine_on_detect: bool = True  # after a detection, crop again around the first landmarks
    smooth: bool = True
    min_cutoff: float = 1.0  # One Euro filter, pixels: smoothing of a still face (Hz)
    beta: float = 0.05  # ... how fast the cutoff opens with speed (per px/s)
    d_cutoff: float = 1.0  # ... smoothing of the speed estimate (Hz)


@dataclass
class TrackResult:
    state: str  # DETECTED, TRACKING or NO_FACE
    points: np.ndarray | None  # (K, 2) smoothed landmarks, image pixels
    raw_points: np.ndarray | None  # (K, 2) landmarks straight from the model
    box: np.ndarray | None  # (4,) landmark box of the raw points
    detections: np.ndarray | None  # (N, >= 5) this frame's detections, None when the detector did not run
    lost_reason: str | None  # why the previous track ended on this frame, if it did
    detect_ms: float
    landmarks_ms: float


def appearance(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Hue-saturation and grey-level histograms of the central 60% of ``box``; None if it is off the image.

    Colour tells skin from seat fabric under changing brightness; the grey histogram covers the
    near-infrared (greyscale) cameras of driver monitoring, where hue and saturation say nothing.
    """
    x0, y0, x1, y1 = np.asarray(box[:4], dtype=np.float64)
    dx, dy = 0.2 * (x1 - x0), 0.2 * (y1 - y0)
    height, width = image.shape[:2]
    left, top = max(0, int(x0 + dx)), max(0, int(y0 + dy))
    right, bottom = min(width, int(x1 - dx)), min(height, int(y1 - dy))
    if right - left < 2 or bottom - top < 2:
        return None
    region = image[top:bottom, left:right]
    if region.ndim == 2:
        region = cv2.cvtColor(region, cv2.COLOR_GRAY2BGR)
    hsv = cv2.cvtColor(region, cv2.COLOR_BGR2HSV)
    colour = cv2.calcHist([hsv], [0, 1], None, [16, 16], [0, 180, 0, 256])
    grey = cv2.calcHist([cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)], [0], None, [32], [0, 256])
    return cv2.normalize(colour, None, 1, 0, cv2.NORM_L1), cv2.normalize(grey, None, 1, 0, cv2.NORM_L1)


def appearance_change(before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray]) -> float:
    """The larger Bhattacharyya distance of the two histograms: 0 for the same region, 1 for disjoint ones."""
    return max(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA) for a, b in zip(before, after, strict=True))


def choose_driver(detections: np.ndarray, image_size: tuple[int, int]) -> int:
    """Index of the driver among (N, >=4) boxes: the largest face, discounted by its distance from the centre."""
    width, height = image_size
    half_diagonal = 0.5 * float(np.hypot(width, height))
    best, best_weight = -1, -1.0
    for i, box in enumerate(detections):
        area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
        offset = np.hypot(0.5 * (box[0] + box[2]) - 0.5 * width, 0.5 * (box[1] + box[3]) - 0.5 * height)
        weight = area * max(0.25, 1.0 - offset / half_diagonal)
        if weight > best_weight:
            best, best_weight = i, weight
    return best


def implausible(
    points: np.ndarray,
    previous_box: np.ndarray | None,
    image_size: tuple[int, int],
    eye_centres: np.ndarray,
    config: TrackerConfig,
) -> str | None:
    """Why these landmarks do not look like the tracked face (a short reason), or None when they do."""
    if not np.isfinite(points).all():
        return "non-finite landmarks"
    box = face_box_from_points(points)
    width, height = box[2] - box[0], box[3] - box[1]
    if min(width, height) < config.min_face_px:
        return f"landmark box collapsed ({width:.0f}x{height:.0f} px)"
    ix = max(0.0, min(box[2], image_size[0] - 1) - max(box[0], 0.0))
    iy = max(0.0, min(box[3], image_size[1] - 1) - max(box[1], 0.0))
    if ix * iy < config.min_inside * width * height:
        return "face left the image"
    eye_distance = float(np.hypot(*(eye_centres[1] - eye_centres[0])))
    if not 0.12 * max(width, height) < eye_distance < 0.9 * max(width, height):
        return "landmarks do not look like a face (eye distance)"
    if previous_box is not None:
        size = max(width, height)
        previous_size = max(previous_box[2] - previous_box[0], previous_box[3] - previous_box[1])
        if abs(size / previous_size - 1.0) > config.max_size_change:
            return f"landmark box size jumped ({previous_size:.0f} -> {size:.0f} px)"
        jump = np.hypot(
            0.5 * (box[0] + box[2] - previous_box[0] - previous_box[2]),
            0.5 * (box[1] + box[3] - previous_box[1] - previous_box[3]),
        )
        if jump > config.max_jump * previous_size:
            return f"landmark box jumped {jump:.0f} px"
    return None


class FaceTracker:
    """``update(image, t) -> TrackResult`` once per frame; ``detector`` and ``predictor`` as in ``landmark.detect``
    and ``landmark.inference.predictor``."""

    def __init__(self, detector, predictor, config: TrackerConfig | None = None) -> None:
        self.detector = detector
        self.predictor = predictor
        self.config = config if config is not None else TrackerConfig()
        c = self.config
        self.filter = OneEuroFilter(c.min_cutoff, c.beta, c.d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Drop the track: the next frame runs the detector."""
        self._points: np.ndarray | None = None  # raw landmarks of the last frame
        self._box: np.ndarray | None = None
        self._since_detect = 0
        self._misses = 0
        self._appearance = None  # histograms of the face region at the last confirmed detection
        self.filter.reset()

    @property
    def tracking(self) -> bool:
        return self._points is not None

    def update(self, image: np.ndarray, t: float) -> TrackResult:
        image_size = (image.shape[1], image.shape[0])
        detections, detect_ms, landmarks_ms = None, 0.0, 0.0
        lost_reason = None
        self._since_detect += 1  # frames since the detector last ran

        if self.tracking and self._since_detect >= self.config.redetect_every:
            detections, detect_ms = self._detect(image)
            lost_reason = self._check_track(image, detections, image_size)

        if self.tracking:
            start = time.perf_counter()
            points = self._landmarks(image, self._box)
            landmarks_ms += 1000 * (time.perf_counter() - start)
            reason = self._implausible(points, self._box, image_size)
            if reason is None:
                return self._result(TRACKING, points, t, detections, None, detect_ms, landmarks_ms)
            lost_reason = reason
            self.reset()

        # No track (or it was just lost): find the driver, reusing this frame's detections when we have them.
        if detections is None:
            detections, ms = self._detect(image)
            detect_ms += ms
        if len(detections) == 0:
            return TrackResult(NO_FACE, None, None, None, detections, lost_reason, detect_ms, landmarks_ms)
        driver = detections[choose_driver(detections, image_size)]
        start = time.perf_counter()
        box = self.detector.to_landmark_box(driver)
        points = self._landmarks(image, box)
        if self.config.refine_on_detect and np.isfinite(points).all():
            points = self._landmarks(image, face_box_from_points(points))
        landmarks_ms += 1000 * (time.perf_counter() - start)
        if self._implausible(points, None, image_size) is not None:
            return TrackResult(NO_FACE, None, None, None, detections, lost_reason, detect_ms, landmarks_ms)
        self.filter.reset()
        self._misses = 0
        result = self._result(DETECTED, points, t, detections, lost_reason, detect_ms, landmarks_ms)
        self._appearance = appearance(image, self._box)
        return result

    # --- steps ------------------------------------------------------------------------------------------

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        detections = as_detections(self.detector.detect(image))
        self._since_detect = 0
        return detections, 1000 * (time.perf_counter() - start)

    def _check_track(self, image: np.ndarray, detections: np.ndarray, image_size: tuple[int, int]) -> str | None:
        """A periodic re-detection: does a detection still overlap the track? Drop it after a few misses, or
        at once when the face region no longer looks like the face the detector last confirmed."""
        c = self.config
        ious = [box_iou(self.detector.to_landmark_box(det), self._box) for det in detections]
        if ious and max(ious) >= c.match_iou:
            self._misses = 0
            self._appearance = appearance(image, self._box)
            return None
        self._misses += 1
        now = appearance(image, self._box)
        if self._appearance is not None and now is not None:
            change = appearance_change(self._appearance, now)
            if change > c.max_appearance_change:
                self.reset()
                return f"no detection, and the face region changed (appearance distance {change:.2f})"
        yaw = np.degrees(head_pose(self._points, self.predictor.scheme, image_size)[0])
        frontal = abs(yaw) < c.frontal_yaw_deg
        allowed = c.max_missed_frontal if frontal else c.max_missed_detections
        if self._misses < allowed:
            if frontal:  # look again soon rather than after a full re-detection period
                self._since_detect = max(0, c.redetect_every - c.recheck_after)
            return None  # e.g. a turned head that the frontal detector misses, but the landmarks still follow
        self.reset()
        return f"no detection on the {'frontal ' if frontal else ''}track for {allowed} re-detections"

    def _landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        matrix = crop_matrix(box, self.predictor.input_size, self.predictor.crop_scale)
        return self.predictor.predict_from_matrices(image, matrix[None]).landmarks[0]

    def _implausible(self, points: np.ndarray, previous_box: np.ndarray | None, image_size) -> str | None:
        if not self.config.check_plausible:
            return None if np.isfinite(points).all() else "non-finite landmarks"
        eyes = self.predictor.scheme.eye_centres(points)
        return implausible(points, previous_box, image_size, eyes, self.config)

    def _result(self, state, points, t, detections, lost_reason, detect_ms, landmarks_ms) -> TrackResult:
        self._points = points
        self._box = face_box_from_points(points)
        smooth = self.filter(points, t).astype(np.float32) if self.config.smooth else points
        return TrackResult(state, smooth, points, self._box, detections, lost_reason, detect_ms, landmarks_ms)
