"""Draw the demo's overlay on a frame: landmarks, face box, head-pose axes, a signal panel and alert banners.

Everything is plain ``cv2`` drawing into the frame in place (a few hundred microseconds at 640x480), so
the overlay never limits the frame rate. ``draw_overlay`` draws it all; the small functions it calls can
be used on their own.

Colours are BGR. Alert levels: 1 (warning) orange, 2 (critical) red.
"""

from __future__ import annotations

import cv2
import numpy as np

from landmark.data.pose import project_points
from landmark.dms import DMSConfig, FrameState

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GREY, GREEN, YELLOW = (255, 255, 255), (160, 160, 160), (80, 220, 80), (0, 220, 255)
ORANGE, RED, CYAN = (0, 150, 255), (0, 0, 255), (255, 220, 0)
LEVEL_COLOURS = {1: ORANGE, 2: RED}
AXIS_LENGTH_MM = 60.0
PANEL_WIDTH = 190


def draw_landmarks(image: np.ndarray, points: np.ndarray, colour=GREEN) -> None:
    """One small dot per landmark."""
    for x, y in np.round(points).astype(np.int32):
        cv2.circle(image, (int(x), int(y)), 1, colour, -1, cv2.LINE_8)


def draw_box(image: np.ndarray, box: np.ndarray, colour=CYAN, label: str | None = None) -> None:
    x0, y0, x1, y1 = (int(round(float(v))) for v in box[:4])
    cv2.rectangle(image, (x0, y0), (x1, y1), colour, 1, cv2.LINE_8)
    if label:
        cv2.putText(image, label, (x0, max(y0 - 4, 10)), FONT, 0.4, colour, 1, cv2.LINE_AA)


def draw_pose_axes(image: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> None:
    """The head's axes from between the eyes: x (to the image right of a frontal face) red, y (down) green,
    and the facing direction (towards the camera for a frontal face) blue."""
    size = (image.shape[1], image.shape[0])
    axes = np.array([[0, 0, 0], [AXIS_LENGTH_MM, 0, 0], [0, AXIS_LENGTH_MM, 0], [0, 0, -AXIS_LENGTH_MM]], np.float64)
    pixels = project_points(axes, rotation, translation, size)
    if not np.isfinite(pixels).all() or np.abs(pixels).max() > 1e5:
        return
    origin = tuple(int(v) for v in np.round(pixels[0]))
    for end, colour in zip(pixels[1:], (RED, GREEN, (255, 0, 0)), strict=True):
        cv2.line(image, origin, tuple(int(v) for v in np.round(end)), colour, 2, cv2.LINE_AA)


def draw_gauge(
    image: np.ndarray, origin: tuple[int, int], label: str, value: float | None, top: float, marks=(), width: int = 110
) -> None:
    """A horizontal bar for ``value`` in [0, top] with threshold ``marks`` (value, colour) as ticks."""
    x, y = origin
    cv2.putText(image, label, (x, y + 9), FONT, 0.4, WHITE, 1, cv2.LINE_AA)
    bx = x + 40
    cv2.rectangle(image, (bx, y), (bx + width, y + 10), GREY, 1)
    if value is not None:
        filled = int(round(width * min(max(value / top, 0.0), 1.0)))
        cv2.rectangle(image, (bx, y + 1), (bx + filled, y + 9), WHITE, -1)
        cv2.putText(image, f"{value:.2f}", (bx + width + 4, y + 9), FONT, 0.35, WHITE, 1, cv2.LINE_AA)
    for mark, colour in marks:
        mx = bx + int(round(width * min(max(mark / top, 0.0), 1.0)))
        cv2.line(image, (mx, y - 2), (mx, y + 12), colour, 2)


def _darken(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Halve the brightness of a rectangle so white text stays readable over any background."""
    roi = image[max(y0, 0) : y1, max(x0, 0) : x1]
    roi >>= 1


def draw_panel(
    image: np.ndarray, state: FrameState | None, config: DMSConfig, fps: float | None, track_state: str | None
) -> None:
    """Top-left panel: FPS, track state, EAR and MAR gauges with their thresholds, PERCLOS, blinks, pose."""
    lines = 7
    _darken(image, 0, 0, PANEL_WIDTH + 40, 14 + 16 * lines)
    y = 14
    header = f"{fps:5.1f} FPS" if fps is not None else "-- FPS"
    if track_state:
        header += f"  {track_state}"
    cv2.putText(image, header, (6, y), FONT, 0.42, WHITE, 1, cv2.LINE_AA)
    y += 8
    open_ear = state.open_ear if state is not None else config.calibration.fallback_open_ear
    ear_marks = ((config.eyes.closed_ratio * open_ear, RED), (config.eyes.open_ratio * open_ear, GREEN))
    draw_gauge(image, (6, y), "EAR", state.ear if state else None, 0.5, ear_marks)
    y += 16
    mar_marks = ((config.yawn.mar_close, GREEN), (config.yawn.mar_open, RED))
    draw_gauge(image, (6, y), "MAR", state.mar if state else None, 1.0, mar_marks)
    y += 26
    if state is None:
        return
    perclos = "--" if state.perclos is None else f"{100 * state.perclos:.0f}%"
    cv2.putText(image, f"PERCLOS {perclos}", (6, y), FONT, 0.42, WHITE, 1, cv2.LINE_AA)
    y += 16
    blinks = f"blinks {state.blink_count}  {state.blink_rate:.0f}/min"
    cv2.putText(image, blinks, (6, y), FONT, 0.42, WHITE, 1, cv2.LINE_AA)
    y += 16
    if state.yaw is not None:
        pose = f"yaw {state.yaw:+.0f} pitch {state.pitch:+.0f} roll {state.roll:+.0f}"
        cv2.putText(image, pose, (6, y), FONT, 0.38, WHITE, 1, cv2.LINE_AA)
    y += 16
    if not state.calibrated and state.face:
        cv2.putText(image, "CALIBRATING", (6, y), FONT, 0.5, YELLOW, 1, cv2.LINE_AA)


def draw_banner(image: np.ndarray, text: str, colour) -> None:
    """A full-width coloured banner along the bottom edge."""
    height, width = image.shape[:2]
    cv2.rectangle(image, (0, height - 34), (width - 1, height - 1), colour, -1)
    (text_w, _), _ = cv2.getTextSize(text, FONT, 0.8, 2)
    cv2.putText(image, text, ((width - text_w) // 2, height - 10), FONT, 0.8, WHITE, 2, cv2.LINE_AA)


def draw_no_face(image: np.ndarray, missing_s: float) -> None:
    height, width = image.shape[:2]
    text = f"NO FACE  {missing_s:.1f} s"
    (text_w, _), _ = cv2.getTextSize(text, FONT, 1.0, 2)
    cv2.putText(image, text, ((width - text_w) // 2, height // 2), FONT, 1.0, RED, 2, cv2.LINE_AA)


def draw_overlay(
    image: np.ndarray,
    points: np.ndarray | None = None,
    box: np.ndarray | None = None,
    pose: tuple[np.ndarray, np.ndarray] | None = None,
    state: FrameState | None = None,
    config: DMSConfig | None = None,
    fps: float | None = None,
    track_state: str | None = None,
) -> np.ndarray:
    """Draw everything the demo shows onto ``image`` (in place) and return it.

    ``points`` (K, 2) and ``box`` (4,) in image pixels; ``pose`` the (rotation, translation) of
    ``landmark.data.pose.solve_head_pose``; ``state`` the driver monitor's ``FrameState``.
    """
    config = config if config is not None else DMSConfig()
    if box is not None:
        draw_box(image, box)
    if points is not None:
        draw_landmarks(image, points)
    if pose is not None:
        draw_pose_axes(image, *pose)
    draw_panel(image, state, config, fps, track_state)
    if state is not None and not state.face:
        draw_no_face(image, state.face_missing_duration)
    if state is not None and state.alerts:
        draw_banner(
            image,
            " / ".join(a.replace("_", " ").upper() for a in state.alerts),
            LEVEL_COLOURS.get(state.alert_level, ORANGE),
        )
    return image
