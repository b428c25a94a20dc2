"""The driver monitor: turns a stream of landmarks and head poses into drowsiness and distraction states.

``DriverMonitor.update(t, points_px, pose_deg)`` is called once per video frame. It keeps a handful of
small state machines, each with hysteresis so that one noisy frame cannot start or end an episode:

- calibration: the open-eye EAR of this driver (and their neutral head pose) over the first seconds;
- eyes: open/closed from the mean EAR of both eyes, or, when the caller also passes the eye-state model's
  closed probabilities (``landmark.eyes``), from the fused eye score below; a closure that reopens quickly
  is a blink, one that lasts ``microsleep_min_s`` is a microsleep (reported at its onset, not also as a
  blink);
- PERCLOS: the share of recent frames with the eyes at least 80% closed;
- mouth: a wide-open mouth held for ``yawn.min_s`` is a yawn;
- head pose: looking away beyond the yaw/pitch limits for ``distraction.min_s`` is a distraction;
- face: no face for ``face.missing_alert_s`` is a face_missing episode. A shorter dropout (``grace_s``) is
  bridged; a longer one ends any closure, yawn or distraction in progress at the time the face was lost
  (a closure that had not yet become a microsleep is dropped, since we cannot tell how it ended).

Fusing the eye-state model with EAR. EAR is geometry: how far apart the predicted lids are, relative to this
driver's calibrated open eye (``closure``, 0 = open, 1 = shut). The eye-state model reads the pixels of each
eye (a 24 x 24 crop framed by the landmarks) and gives the probability ``p`` that it is closed, trained on real
closed eyes. They are fused into one score per frame::

    eye_score = w * p + (1 - w) * closure          (w = eyes.state_weight, 0.6)

with ``p`` the smaller of the two eyes' probabilities (both eyes must look shut: a blink closes both, and one
eye misread, a reflection say, does not close them) -- except when the head is turned so far that one eye
looks less than ``FORESHORTENED`` (0.6) times as wide as the other: that far eye is a sliver the model cannot
read, and ``p`` is the near eye's alone. The eyes close when
``eye_score >= eyes.state_closed`` (0.65) and reopen when it falls below ``eyes.state_open`` (0.5). So the
model leads and EAR confirms: neither closes the eyes alone (the model alone reaches 0.6, EAR alone 0.4); a
sure model (p = 1) needs the lids only an eighth of the way down (closure >= 0.125, an EAR at most about 90%
of the open EAR), an unsure one (p = 0.5) needs EAR nearly shut (closure >= 0.875), and p < 0.42 keeps the
eyes open whatever EAR says (a narrow-eyed driver, a squint, a lid point that slipped). A crop
that is not on an eye (a lost track) can look like a closed lid; the EAR of the same points then still reads
open, and the eyes stay open. PERCLOS counts frames with ``eye_score >= perclos.closure_level``. Without
``p`` (no eye model; ``landmark dms-eval --truth-points``, which has points but no pixels; an eye crop leaving
the image) the monitor uses EAR alone with the ``eyes.closed_ratio`` / ``open_ratio`` thresholds, as before,
so the DMS logic on true points is still scored on its own.

Episodes are reported in ``FrameState.events``: a blink when it ends, ``{"type", "start", "end"}``; the
other types once at onset, ``{"type", "start"}`` (the start is when the condition began, the frame's own
time is when it was confirmed), and again at the end with both times. Everything here is a few dozen
float operations per frame, so it keeps up with a >100 FPS demo.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from landmark.data.schemes import Scheme
from landmark.dms.config import DMSConfig
from landmark.dms.signals import FaceRatios

log = logging.getLogger(__name__)

# An eye narrower than this fraction of the other (corner distance, in the image) is seen too obliquely for
# the eye-state model; the other eye's probability is used alone (module docstring).
FORESHORTENED = 0.6


@dataclass
class FrameState:
    """Everything the monitor knows after one frame. Per-frame signals are None when no face was seen."""

    t: float
    face: bool
    ear_left: float | None
    ear_right: float | None
    ear: float | None  # mean of both eyes
    mar: float | None
    closure: float | None  # from EAR: 0 = calibrated open eye, 1 = fully closed (see configs/dms.yaml)
    eyes_closed: bool
    closed_duration: float  # seconds the current closure has lasted, 0 when open
    microsleep: bool  # closed longer than eyes.microsleep_min_s
    blink_count: int
    blink_rate: float  # blinks per minute over the last blink_rate.window_s
    perclos: float | None  # None until a calibrated frame has been seen
    yawning: bool
    yawn_count: int
    microsleep_count: int
    distraction_count: int
    yaw: float | None  # degrees, as given by the caller
    pitch: float | None
    roll: float | None
    distracted: bool
    face_missing_duration: float
    calibrated: bool
    open_ear: float  # calibrated open-eye EAR, or the fallback before calibration
    alert_level: int  # 0 none, 1 warning, 2 critical
    alerts: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    eye_prob: float | None = None  # the eye-state model's closed probability, the smaller of both eyes' (None: not run)
    eye_score: float | None = None  # fused eye_score (module docstring); None when the model did not run

    def to_log(self, frame_index: int) -> dict:
        """One JSON-serialisable log line with every signal; floats rounded to what is meaningful."""
        return {
            "frame": frame_index,
            "t": round(self.t, 4),
            "face": self.face,
            "ear_left": _round(self.ear_left, 4),
            "ear_right": _round(self.ear_right, 4),
            "ear": _round(self.ear, 4),
            "mar": _round(self.mar, 4),
            "closure": _round(self.closure, 3),
            "eye_prob": _round(self.eye_prob, 4),
            "eye_score": _round(self.eye_score, 4),
            "eyes_closed": self.eyes_closed,
            "closed_duration": round(self.closed_duration, 3),
            "microsleep": self.microsleep,
            "blink_count": self.blink_count,
            "blink_rate": round(self.blink_rate, 2),
            "perclos": _round(self.perclos, 4),
            "yawning": self.yawning,
            "yawn_count": self.yawn_count,
            "microsleep_count": self.microsleep_count,
            "distraction_count": self.distraction_count,
            "yaw": _round(self.yaw, 2),
            "pitch": _round(self.pitch, 2),
            "roll": _round(self.roll, 2),
            "distracted": self.distracted,
            "face_missing_duration": round(self.face_missing_duration, 3),
            "calibrated": self.calibrated,
            "open_ear": round(self.open_ear, 4),
            "alert_level": self.alert_level,
            "alerts": list(self.alerts),
            "events": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()} for e in self.events],
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class DriverMonitor:
    """Stateful driver monitor for one video stream; call ``update`` once per frame with increasing t."""

    def __init__(self, scheme: Scheme, config: DMSConfig | None = None) -> None:
        self.scheme = scheme
        self.config = config if config is not None else DMSConfig()
        self._face_ratios = FaceRatios(scheme)  # (ear_left, ear_right, mar) per frame
        self._eyes = (scheme.left_eye, scheme.right_eye)
        self.reset()

    def reset(self) -> None:
        """Forget everything, calibration included (a new driver or a new video)."""
        self._t_prev: float | None = None
        self._t_first: float | None = None
        # calibration
        self._calib_start: float | None = None
        self._calib_ears: list[float] = []
        self._calib_poses: list[tuple[float, float]] = []
        self._open_ear: float | None = None
        self._pose_center = (0.0, 0.0)
        # eyes
        self._closed = False
        self._closed_start = 0.0
        self._closed_last = 0.0  # time of the latest closed frame
        self._microsleep = False
        self._blink_count = 0
        self._microsleep_count = 0
        self._blink_ends: deque[float] = deque()
        # PERCLOS: (t, closure >= level) for recent calibrated frames, and how many are True
        self._perclos_frames: deque[tuple[float, bool]] = deque()
        self._perclos_hits = 0
        # mouth
        self._mouth_open = False
        self._mouth_start = 0.0
        self._yawning = False
        self._yawn_count = 0
        # head pose
        self._away = False
        self._away_start = 0.0
        self._distracted = False
        self._distraction_count = 0
        # face presence
        self._missing_start: float | None = None
        self._face_missing = False

    # --- the per-frame entry point ------------------------------------------------------------------------

    def update(
        self,
        t: float,
        points_px: np.ndarray | None,
        pose_deg: tuple[float, float, float] | None = None,
        eye_prob: float | tuple[float, float] | None = None,
    ) -> FrameState:
        """Feed one frame: time in seconds, (K, 2) landmarks or None (no face), (yaw, pitch, roll) degrees, and
        optionally the eye-state model's closed probability (one number, or (image-left, image-right) eye)."""
        if self._t_prev is not None and t < self._t_prev:
            raise ValueError(f"DriverMonitor.update: time went backwards ({t} < {self._t_prev})")
        self._t_prev = t
        if self._t_first is None:
            self._t_first = t
        events: list[dict] = []

        ears = None
        if points_px is not None:
            ears = self._ratios(points_px)
            if not np.all(np.isfinite(ears)):
                ears = None  # a broken prediction is treated like a missing face
        if ears is None:
            return self._update_without_face(t, events)

        self._face_found(t, events)
        ear_left, ear_right, mar = (float(v) for v in ears)
        ear = 0.5 * (ear_left + ear_right)
        if pose_deg is not None:
            pose_deg = tuple(float(a) for a in pose_deg)
            if not all(math.isfinite(a) for a in pose_deg):
                pose_deg = None  # a failed pose fit: keep the head-pose state as it was
        self._calibrate(t, ear, pose_deg)
        open_ear = self.open_ear
        floor = self.config.eyes.closed_floor_ratio * open_ear
        closure = min(max(1.0 - (ear - floor) / (open_ear - floor), 0.0), 1.0)
        prob = score = None
        if eye_prob is not None:
            prob = self._eye_prob(points_px, eye_prob)
            if not math.isfinite(prob):
                prob = None  # a failed eye crop: EAR alone for this frame
        if prob is not None:
            w = self.config.eyes.state_weight
            score = w * prob + (1.0 - w) * closure

        self._update_eyes(t, ear, open_ear, score, events)
        if self.calibrated:
            level = score if score is not None else closure
            self._add_perclos_frame(t, level >= self.config.perclos.closure_level)
        self._update_mouth(t, mar, events)
        if pose_deg is not None:
            self._update_pose(t, pose_deg[0], pose_deg[1], events)
        state = self._state(t, True, ear_left, ear_right, ear, mar, closure, pose_deg, events)
        state.eye_prob, state.eye_score = prob, score
        return state

    @property
    def calibrated(self) -> bool:
        return self._open_ear is not None

    @property
    def open_ear(self) -> float:
        """The calibrated open-eye EAR, or the configured fallback before calibration."""
        return self._open_ear if self._open_ear is not None else self.config.calibration.fallback_open_ear

    # --- signals and calibration --------------------------------------------------------------------------

    def _ratios(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (self.scheme.num_points, 2):
            raise ValueError(
                f"expected ({self.scheme.num_points}, 2) points for {self.scheme.name}, got {points.shape}"
            )
        return self._face_ratios(points)

    def _eye_prob(self, points: np.ndarray, eye_prob: float | tuple[float, float]) -> float:
        """One closed probability for the face: the smaller of both eyes', or the near eye's when the far eye
        is foreshortened below FORESHORTENED of its width."""
        probs = np.atleast_1d(np.asarray(eye_prob, dtype=np.float64))
        if len(probs) != 2:
            return float(probs.min())
        points = np.asarray(points, dtype=np.float64)
        widths = [float(np.linalg.norm(points[e.corner_a] - points[e.corner_b])) for e in self._eyes]
        if min(widths) < FORESHORTENED * max(widths):
            return float(probs[int(np.argmax(widths))])
        return float(probs.min())

    def _calibrate(self, t: float, ear: float, pose: tuple[float, float, float] | None) -> None:
        """Collect the first seconds of face frames, then fix the open-eye EAR and the pose centre."""
        if self.calibrated:
            return
        cfg = self.config.calibration
        if self._calib_start is None:
            self._calib_start = t
        self._calib_ears.append(ear)
        if pose is not None:
            self._calib_poses.append((pose[0], pose[1]))
        if t - self._calib_start < cfg.seconds or len(self._calib_ears) < cfg.min_frames:
            return
        self._open_ear = max(float(np.percentile(self._calib_ears, cfg.percentile)), cfg.min_open_ear)
        if cfg.pose_center and self._calib_poses:
            yaw, pitch = np.median(np.array(self._calib_poses), axis=0)
            self._pose_center = (float(yaw), float(pitch))
        log.info(
            "DMS calibrated at t=%.2f s: open-eye EAR %.3f from %d frames, pose centre yaw %.1f pitch %.1f deg",
            t,
            self._open_ear,
            len(self._calib_ears),
            *self._pose_center,
        )
        self._calib_ears, self._calib_poses = [], []

    # --- state machines -----------------------------------------------------------------------------------

    def _update_eyes(self, t: float, ear: float, open_ear: float, score: float | None, events: list[dict]) -> None:
        """Open/closed with hysteresis: on the fused score when there is one, else on EAR alone."""
        cfg = self.config.eyes
        if score is not None:
            closes, opens = score >= cfg.state_closed, score < cfg.state_open
        else:
            closes, opens = ear < cfg.closed_ratio * open_ear, ear > cfg.open_ratio * open_ear
        if not self._closed and closes:
            self._closed, self._closed_start = True, t
        elif self._closed and opens:
            self._end_closure(t, events, reopened=True)
        if not self._closed:
            return
        self._closed_last = t
        if not self._microsleep and t - self._closed_start >= cfg.microsleep_min_s:
            self._microsleep = True
            self._microsleep_count += 1
            events.append({"type": "microsleep", "start": self._closed_start})

    def _end_closure(self, t_end: float, events: list[dict], reopened: bool) -> None:
        """End the current closure at t_end: a microsleep ends, or (if the eyes reopened) a blink is counted.

        The blink test uses the last closed frame, so with blink_max_s == microsleep_min_s every closure
        that did not become a microsleep is a blink.
        """
        if self._microsleep:
            events.append({"type": "microsleep", "start": self._closed_start, "end": t_end})
        elif reopened and self._closed_last - self._closed_start < self.config.eyes.blink_max_s:
            self._blink_count += 1
            self._blink_ends.append(t_end)
            events.append({"type": "blink", "start": self._closed_start, "end": t_end})
        self._closed = self._microsleep = False

    def _add_perclos_frame(self, t: float, hit: bool) -> None:
        self._perclos_frames.append((t, hit))
        self._perclos_hits += hit
        self._drop_old_perclos_frames(t)

    def _drop_old_perclos_frames(self, t: float) -> None:
        oldest = t - self.config.perclos.window_s
        while self._perclos_frames and self._perclos_frames[0][0] <= oldest:
            self._perclos_hits -= self._perclos_frames.popleft()[1]

    def _update_mouth(self, t: float, mar: float, events: list[dict]) -> None:
        cfg = self.config.yawn
        if not self._mouth_open and mar > cfg.mar_open:
            self._mouth_open, self._mouth_start = True, t
        elif self._mouth_open and mar < cfg.mar_close:
            self._end_yawn(t, events)
        if self._mouth_open and not self._yawning and t - self._mouth_start >= cfg.min_s:
            self._yawning = True
            self._yawn_count += 1
            events.append({"type": "yawn", "start": self._mouth_start})

    def _end_yawn(self, t_end: float, events: list[dict]) -> None:
        if self._yawning:
            events.append({"type": "yawn", "start": self._mouth_start, "end": t_end})
        self._mouth_open = self._yawning = False

    def _update_pose(self, t: float, yaw: float, pitch: float, events: list[dict]) -> None:
        cfg = self.config.distraction
        yaw, pitch = abs(yaw - self._pose_center[0]), abs(pitch - self._pose_center[1])
        if not self._away and (yaw > cfg.yaw_deg or pitch > cfg.pitch_deg):
            self._away, self._away_start = True, t
        elif self._away and yaw < cfg.yaw_deg - cfg.hysteresis_deg and pitch < cfg.pitch_deg - cfg.hysteresis_deg:
            self._end_distraction(t, events)
        if self._away and not self._distracted and t - self._away_start >= cfg.min_s:
            self._distracted = True
            self._distraction_count += 1
            events.append({"type": "distraction", "start": self._away_start})

    def _end_distraction(self, t_end: float, events: list[dict]) -> None:
        if self._distracted:
            events.append({"type": "distraction", "start": self._away_start, "end": t_end})
        self._away = self._distracted = False

    # --- face presence ------------------------------------------------------------------------------------

    def _update_without_face(self, t: float, events: list[dict]) -> FrameState:
        if self._missing_start is None:
            self._missing_start = t
        missing = t - self._missing_start
        if missing >= self.config.face.grace_s:
            # Too long to bridge: whatever the eyes, mouth and head were doing ended when the face was lost.
            lost = self._missing_start
            if self._closed:
                self._end_closure(lost, events, reopened=False)
            if self._mouth_open:
                self._end_yawn(lost, events)
            if self._away:
                self._end_distraction(lost, events)
        if not self._face_missing and missing >= self.config.face.missing_alert_s:
            self._face_missing = True
            events.append({"type": "face_missing", "start": self._missing_start})
        return self._state(t, False, None, None, None, None, None, None, events)

    def _face_found(self, t: float, events: list[dict]) -> None:
        if self._face_missing:
            events.append({"type": "face_missing", "start": self._missing_start, "end": t})
        self._missing_start, self._face_missing = None, False

    # --- output -------------------------------------------------------------------------------------------

    def _state(self, t, face, ear_left, ear_right, ear, mar, closure, pose, events) -> FrameState:
        window = self.config.blink_rate.window_s
        while self._blink_ends and self._blink_ends[0] <= t - window:
            self._blink_ends.popleft()
        # Early on, rate over the time seen so far (at least 10 s, so a first blink does not read as 60/min).
        span = min(max(t - self._t_first, 10.0), window)
        blink_rate = 60.0 * len(self._blink_ends) / span

        self._drop_old_perclos_frames(t)
        perclos = self._perclos_hits / len(self._perclos_frames) if self._perclos_frames else None

        alerts, level = self._alerts(t, perclos)
        yaw, pitch, roll = pose if pose is not None else (None, None, None)
        return FrameState(
            t=t,
            face=face,
            ear_left=ear_left,
            ear_right=ear_right,
            ear=ear,
            mar=mar,
            closure=closure,
            eyes_closed=self._closed,
            closed_duration=t - self._closed_start if self._closed else 0.0,
            microsleep=self._microsleep,
            blink_count=self._blink_count,
            blink_rate=blink_rate,
            perclos=perclos,
            yawning=self._yawning,
            yawn_count=self._yawn_count,
            microsleep_count=self._microsleep_count,
            distraction_count=self._distraction_count,
            yaw=yaw,
            pitch=pitch,
            roll=roll,
            distracted=self._distracted,
            face_missing_duration=t - self._missing_start if self._missing_start is not None else 0.0,
            calibrated=self.calibrated,
            open_ear=self.open_ear,
            alert_level=level,
            alerts=alerts,
            events=events,
        )

    def _alerts(self, t: float, perclos: float | None) -> tuple[list[str], int]:
        levels = self.config.alert_levels
        active: list[tuple[str, int]] = []
        if self._microsleep:
            active.append(("microsleep", levels.microsleep))
        pc = self.config.perclos
        if perclos is not None and perclos >= pc.warning:
            span = t - self._perclos_frames[0][0]
            if span >= pc.min_coverage_s:
                active.append(("perclos", 2 if perclos >= pc.critical else 1))
        if self._yawning:
            active.append(("yawn", levels.yawn))
        if self._distracted:
            active.append(("distraction", levels.distraction))
        if self._face_missing:
            active.append(("face_missing", levels.face_missing))
        return [name for name, _ in active], max((lvl for _, lvl in active), default=0)
