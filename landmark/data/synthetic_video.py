"""Synthetic driver videos with an exact timeline, to evaluate the driver-monitoring logic.

``render_driver_video`` renders one synthetic face (``landmark.data.face3d`` + ``synthetic.draw_person``) in
a car-cabin-like scene following a script drawn from the seed: natural blinks every 3-5 s, one microsleep
(eyes closed 1.0-1.5 s, with a slight nod), two yawns (mouth wide open 1.5-3 s), two head turns (|yaw|
40-55 degrees held 2.5-4 s, one each way) and one moment out of frame (the driver slides out of view for
1.5-2 s). Otherwise the head moves a little, all the time. Episodes that do not fit in a short video are left
out (the timeline lists what was rendered).

The timeline JSON::

    {"fps": 30, "frames": N, "width": 640, "height": 480, "scheme": "wflw98", "seed": K,
     "events": [{"type": "blink"|"microsleep"|"yawn"|"distraction"|"face_missing", "start": s, "end": s}],
     "frames_truth": [{"t": s, "points": [[x, y] * 98] | null, "yaw": deg, "pitch": deg, "roll": deg,
                       "eye_closure": [left, right], "mouth_open": m}, ...]}

Frame ``i`` shows time ``t = i / fps``. Points are 0-based pixel coordinates (they may fall outside the
frame while the face leaves it); ``null`` when fewer than half of the 98 landmarks are inside the frame.
Angles are in DEGREES here (``landmark.data.pose`` sign conventions); eye closure is per image-left /
image-right eye, 0 open to 1 shut.

Events are computed from the per-frame truth, so they agree with what was rendered exactly. Each event is
a maximal run of consecutive frames meeting its condition; ``start`` is the time of the run's first frame
and ``end`` the time just after its last frame (``(last + 1) / fps``), so ``end - start`` = frames / fps:

* ``blink`` / ``microsleep``: both eyes' closure > 0.8 (and the face in view); a run belongs to a
  microsleep when it overlaps the scripted microsleep, otherwise it is a blink;
* ``yawn``: mouth opening > 0.5;
* ``distraction``: |yaw| > 30 or |pitch| > 20 degrees (and the face in view);
* ``face_missing``: points are null.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from landmark.data import face3d
from landmark.data.face3d import Camera, Expression, Pose
from landmark.data.synthetic import draw_person, random_look, torso_pose
from landmark.errors import LandmarkError

CLOSED_EYE = 0.8  # closure above which an eye counts as closed for blink/microsleep events
OPEN_MOUTH = 0.5  # mouth opening above which a yawn is in progress
DISTRACTION_YAW = 30.0  # degrees
DISTRACTION_PITCH = 20.0  # degrees


@dataclass(frozen=True)
class Episode:
    """One scripted happening: ``kind`` between ``start`` and ``end`` seconds, ramping in and out."""

    kind: str  # "blink", "microsleep", "yawn", "turn", "away"
    start: float
    end: float
    rise: float
    fall: float
    amount: float  # closure / mouth opening / yaw in degrees / direction of leaving (+-1)


def _envelope(t: float, e: Episode) -> float:
    """0 outside the episode, 1 in its middle, smooth ramps of ``rise`` and ``fall`` seconds."""
    if t <= e.start or t >= e.end:
        return 0.0
    up = min(1.0, (t - e.start) / e.rise)
    down = min(1.0, (e.end - t) / e.fall)
    x = min(up, down)
    return x * x * (3.0 - 2.0 * x)


# --- the script --------------------------------------------------------------------------------------------


def _major_episodes(rng: np.random.Generator, seconds: float) -> list[Episode]:
    """Microsleep, yawns, head turns and leaving the frame, in random order, spread over the video."""
    turn_side = 1.0 if rng.random() < 0.5 else -1.0
    plans = [
        ("microsleep", 0.15 + rng.uniform(1.0, 1.5) + 0.2, 0.15, 0.2, 1.0),
        ("yawn", 0.5 + rng.uniform(1.5, 3.0) + 0.6, 0.5, 0.6, rng.uniform(0.85, 1.0)),
        ("yawn", 0.5 + rng.uniform(1.5, 3.0) + 0.6, 0.5, 0.6, rng.uniform(0.85, 1.0)),
        ("turn", 0.4 + rng.uniform(2.5, 4.0) + 0.4, 0.4, 0.4, turn_side * rng.uniform(40.0, 55.0)),
        ("turn", 0.4 + rng.uniform(2.5, 4.0) + 0.4, 0.4, 0.4, -turn_side * rng.uniform(40.0, 55.0)),
        ("away", 0.3 + rng.uniform(1.5, 2.0) + 0.3, 0.3, 0.3, 1.0 if rng.random() < 0.5 else -1.0),
    ]
    plans = [plans[i] for i in rng.permutation(len(plans))]
    gap = 1.5  # at least this much calm before each episode (and after the last)
    available = seconds - 1.0
    while plans and sum(p[1] + gap for p in plans) > available:
        plans.pop()
    if not plans:
        return []
    slack = available - sum(p[1] + gap for p in plans)
    extra = rng.dirichlet(np.ones(len(plans) + 1)) * slack
    episodes, t = [], 1.0
    for (kind, duration, rise, fall, amount), pause in zip(plans, extra[:-1], strict=True):
        t += gap + pause
        episodes.append(Episode(kind, t, t + duration, rise, fall, float(amount)))
        t += duration
    return episodes


def _blinks(rng: np.random.Generator, seconds: float, busy: list[Episode]) -> list[Episode]:
    """Blinks every 3-5 s (0.15-0.3 s each), skipped where the eyes or face are already busy."""
    blinks, t = [], float(rng.uniform(0.8, 3.0))
    while t < seconds - 0.5:
        duration = float(rng.uniform(0.15, 0.3))
        clash = any(t < e.end + 0.4 and t + duration > e.start - 0.4 for e in busy)
        if not clash:
            blinks.append(Episode("blink", t, t + duration, 0.3 * duration, 0.4 * duration, 1.0))
        t += float(rng.uniform(3.0, 5.0))
    return blinks


def make_script(rng: np.random.Generator, seconds: float) -> list[Episode]:
    """All episodes of a video, sorted by start time."""
    major = _major_episodes(rng, seconds)
    busy = [e for e in major if e.kind in ("microsleep", "yawn", "away")]
    return sorted(major + _blinks(rng, seconds, busy), key=lambda e: e.start)


def _wander(rng: np.random.Generator, amplitude: float) -> Callable[[float], float]:
    """Small smooth motion: a sum of three slow sines with random periods and phases."""
    periods = rng.uniform(2.0, 9.0, 3)
    phases = rng.uniform(0.0, 2 * math.pi, 3)
    weights = rng.uniform(0.5, 1.0, 3)
    weights *= amplitude / weights.sum()
    return lambda t: float(np.sum(weights * np.sin(2 * math.pi * t / periods + phases)))


@dataclass(frozen=True)
class FrameState:
    yaw: float  # degrees
    pitch: float
    roll: float
    shift: tuple[float, float, float]  # cm, added to the resting translation
    closure: float
    mouth: float


def _state_at(
    t: float, script: list[Episode], motion: dict[str, Callable[[float], float]], away_cm: float
) -> FrameState:
    yaw, pitch, roll = motion["yaw"](t), motion["pitch"](t), motion["roll"](t)
    closure, mouth = 0.0, 0.02
    shift = np.array([motion["x"](t), motion["y"](t), motion["z"](t)])
    for e in script:
        w = _envelope(t, e)
        if w == 0.0:
            continue
        if e.kind in ("blink", "microsleep"):
            closure = max(closure, w * e.amount)
            if e.kind == "microsleep":
                pitch -= 9.0 * w  # the head drops a little
                roll += 4.0 * w
        elif e.kind == "yawn":
            mouth = max(mouth, w * e.amount)
            closure = max(closure, 0.35 * w)
            pitch += 8.0 * w
        elif e.kind == "turn":
            yaw += w * e.amount
            pitch -= 4.0 * w
        elif e.kind == "away":
            shift[0] += w * e.amount * away_cm
    # expressions rounded to 0.01: what is drawn, what the truth records, and a cache key for the geometry
    closure, mouth = round(closure, 2), round(mouth, 2)
    return FrameState(yaw, pitch, roll, (float(shift[0]), float(shift[1]), float(shift[2])), closure, mouth)


# --- drawing the cabin -------------------------------------------------------------------------------------


def cabin_background(
    rng: np.random.Generator, width: int, height: int, head_px: tuple[float, float], face_px: float
) -> np.ndarray:
    """A static car interior: roof liner, a side window, the B-pillar and the seat's headrest."""
    tone = rng.uniform(40, 90)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(
        np.array([tone, tone * 0.95, tone * 0.9], np.float32) * (1.1 - 0.5 * ys), (height, width, 3)
    )
    image = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))
    side = 1 if rng.random() < 0.5 else -1
    x0 = int(width * (0.62 if side > 0 else 0.0))
    x1 = int(width * (1.0 if side > 0 else 0.38))
    window = np.array(
        [[x0, int(0.12 * height)], [x1, int(0.08 * height)], [x1, int(0.62 * height)], [x0, int(0.55 * height)]]
    )
    sky = np.array([230, 200, 170], np.float32) * rng.uniform(0.8, 1.05)
    cv2.fillPoly(image, [window], tuple(float(c) for c in sky), cv2.LINE_AA)
    for _ in range(4):  # blurry things outside
        centre = (int(rng.uniform(x0, x1)), int(rng.uniform(0.35, 0.6) * height))
        axes = (int(rng.uniform(0.03, 0.12) * width), int(rng.uniform(0.03, 0.1) * height))
        colour = tuple(float(c) for c in rng.uniform(60, 200, 3))
        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
    pillar_x = x0 if side > 0 else x1
    cv2.rectangle(image, (pillar_x - int(0.03 * width), 0), (pillar_x + int(0.03 * width), height), (30, 30, 32), -1)
    cv2.rectangle(image, (0, 0), (width, int(0.07 * height)), (150, 150, 155), -1)  # roof liner
    image = cv2.GaussianBlur(image, (0, 0), 1.2)
    headrest = (int(head_px[0]), int(head_px[1] - 0.2 * face_px))  # mostly hidden behind the head
    cv2.ellipse(image, headrest, (int(0.75 * face_px), int(0.45 * face_px)), 0, 0, 360, (28, 28, 30), -1, cv2.LINE_AA)
    x, y = head_px
    seat = np.array([[x - 1.3 * face_px, height], [x - 1.1 * face_px, y + 0.3 * face_px]])
    seat = np.concatenate([seat, seat[::-1] * [-1, 1] + [2 * x, 0]])  # mirrored about the head
    cv2.fillPoly(image, [seat.astype(np.int32)], (35, 35, 38), cv2.LINE_AA)
    return image


def _draw_seatbelt(frame: np.ndarray, pose: Pose, camera: Camera) -> None:
    belt = np.array([[14.0, 15.0, 2.0], [19.0, 15.5, 2.5], [-12.0, 60.0, 2.0], [-19.0, 60.0, 2.0]])
    px = face3d.project(face3d.to_camera(belt, torso_pose(pose)), camera)
    cv2.fillPoly(frame, [np.round(px * 16).astype(np.int32)], (25, 25, 28), cv2.LINE_AA, 4)


# --- the video ---------------------------------------------------------------------------------------------


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """(first, last) frame index of each maximal run of True."""
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def timeline_events(frames_truth: list[dict], fps: float, microsleep_windows: list[tuple[float, float]]) -> list[dict]:
    """The events of the module docstring, from per-frame truth."""
    present = [f["points"] is not None for f in frames_truth]
    closed = [p and min(f["eye_closure"]) > CLOSED_EYE for f, p in zip(frames_truth, present, strict=True)]
    yawning = [f["mouth_open"] > OPEN_MOUTH for f in frames_truth]
    away = [
        p and (abs(f["yaw"]) > DISTRACTION_YAW or abs(f["pitch"]) > DISTRACTION_PITCH)
        for f, p in zip(frames_truth, present, strict=True)
    ]
    events = []

    def add(kind: str, first: int, last: int) -> None:
        events.append({"type": kind, "start": round(first / fps, 6), "end": round((last + 1) / fps, 6)})

    for first, last in _runs(closed):
        t0, t1 = first / fps, (last + 1) / fps
        sleepy = any(t0 < end and t1 > start for start, end in microsleep_windows)
        add("microsleep" if sleepy else "blink", first, last)
    for first, last in _runs(yawning):
        add("yawn", first, last)
    for first, last in _runs(away):
        add("distraction", first, last)
    for first, last in _runs([not p for p in present]):
        add("face_missing", first, last)
    return sorted(events, key=lambda e: (e["start"], e["type"]))


def render_driver_video(
    video_path: str | Path,
    timeline_path: str | Path,
    seconds: float,
    seed: int,
    fps: int = 30,
    size: tuple[int, int] = (640, 480),
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Render the video (MP4, ``mp4v``) and its timeline JSON; returns a summary with the events."""
    width, height = size
    n_frames = int(round(seconds * fps))
    if n_frames <= 0:
        raise ValueError(f"a video needs at least one frame, got {seconds} s at {fps} fps")
    rng = np.random.default_rng(seed)
    script = make_script(rng, seconds)
    motion = {
        "yaw": _wander(rng, 6.0),
        "pitch": _wander(rng, 4.0),
        "roll": _wander(rng, 3.0),
        "x": _wander(rng, 1.0),
        "y": _wander(rng, 0.6),
        "z": _wander(rng, 1.5),
    }
    identity = face3d.random_identity(rng)
    look = random_look(rng)
    look.ambient = max(look.ambient, 0.5)  # a driver camera is exposed for the face (IR-ish)
    look.hair_length = min(max(look.hair_length, -2.0), 9.0)
    camera = Camera(focal=float(width), cx=(width - 1) / 2, cy=(height - 1) / 2)
    face_px = 0.36 * height * float(rng.uniform(0.9, 1.15))
    head_px = (width * float(rng.uniform(0.42, 0.58)), height * float(rng.uniform(0.4, 0.48)))
    neutral = face3d.build_face(identity, Expression())
    rest = face3d.place_face(neutral, 0.0, 0.0, 0.0, camera, head_px, face_px)
    away_cm = (width / 2 + 1.5 * face_px) * rest.translation[2] / camera.focal
    background = cabin_background(rng, width, height, head_px, face_px)
    # sensor noise, precomputed: saturating add of the positive part, subtract of the negative part
    noise = [np.round(rng.normal(0, 2.5, (height, width, 3))) for _ in range(6)]
    noise = [(np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)) for n in noise]
    geometries: dict[tuple[float, float], face3d.FaceGeometry] = {}  # most frames share an expression

    video_path, timeline_path = Path(video_path), Path(timeline_path)
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise LandmarkError(f"{video_path}: cannot open an MP4 (mp4v) video writer")
    frames_truth = []
    try:
        for i in range(n_frames):
            t = i / fps
            state = _state_at(t, script, motion, away_cm)
            key = (state.closure, state.mouth)
            if key not in geometries:
                expression = Expression(eye_closure=(state.closure, state.closure), mouth_open=state.mouth)
                geometries[key] = face3d.build_face(identity, expression)
            geometry = geometries[key]
            translation = tuple(r + s for r, s in zip(rest.translation, state.shift, strict=True))
            pose = Pose(math.radians(state.yaw), math.radians(state.pitch), math.radians(state.roll), translation)
            frame = background.copy()
            draw_person(frame, geometry, pose, camera, look, ss=1)
            _draw_seatbelt(frame, pose, camera)
            up, down = noise[i % len(noise)]
            frame = cv2.subtract(cv2.add(frame, up), down)
            writer.write(frame)
            points = face3d.project_landmarks(geometry, pose, camera)
            inside = (
                (points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) & (points[:, 1] <= height - 1)
            )
            frames_truth.append(
                {
                    "t": round(t, 6),
                    "points": np.round(points, 3).tolist() if inside.sum() * 2 >= len(points) else None,
                    "yaw": round(state.yaw, 4),
                    "pitch": round(state.pitch, 4),
                    "roll": round(state.roll, 4),
                    "eye_closure": [round(state.closure, 4)] * 2,
                    "mouth_open": round(state.mouth, 4),
                }
            )
            if progress is not None:
                progress(1)
    finally:
        writer.release()

    sleeps = [(e.start, e.end) for e in script if e.kind == "microsleep"]
    events = timeline_events(frames_truth, fps, sleeps)
    timeline = {
        "fps": fps,
        "frames": n_frames,
        "width": width,
        "height": height,
        "scheme": "wflw98",
        "seed": seed,
        "events": events,
        "frames_truth": frames_truth,
    }
    timeline_path.write_text(json.dumps(timeline, separators=(",", ":")) + "\n")
    return {
        "video": str(video_path),
        "timeline": str(timeline_path),
        "frames": n_frames,
        "fps": fps,
        "width": width,
        "height": height,
        "events": events,
    }
