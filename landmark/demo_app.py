"""The real-time demo pipeline: frames in; tracked landmarks, head pose, driver-monitoring state and an
annotated video, a JSONL log and per-stage timings out.

One loop serves the window demo, the headless run and the benchmark (``landmark bench --demo``)::

    decode -> detect (every few frames) -> landmarks (crop from the last landmarks) [-> eye state: both eyes
    cropped from the raw landmarks, one call of the tiny eye model] -> pose (One Euro smoothed landmarks,
    solvePnP) -> DMS (EAR fused with the eye state) -> draw -> encode (video + log) [-> display]

``run_pipeline`` returns a summary: frames, wall-clock FPS, the mean milliseconds of each stage per frame,
detector calls, skipped frames and why the source stopped. The driver monitor gets the raw landmarks (the
smoothing filter would blunt the 100 ms eyelid motion of a blink; its own state machines have hysteresis),
the drawing and head pose get the smoothed ones. The eye-state model's time counts in the landmarks stage.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from landmark.config import default_model_path
from landmark.data.pose import angles_from_rotation, solve_head_pose
from landmark.dms import DMSConfig, DriverMonitor
from landmark.errors import LandmarkError
from landmark.overlay import draw_overlay
from landmark.progress import progress_bar
from landmark.tracking import FaceTracker, TrackerConfig
from landmark.video import JsonlLog, VideoWriter, open_source

logger = logging.getLogger(__name__)

STAGES = ("decode", "detect", "landmarks", "pose", "dms", "draw", "encode")
WINDOW_NAME = "landmark demo (q quit, space pause, s screenshot, r reset)"


# --- display ---------------------------------------------------------------------------------------------


def display_problem() -> str | None:
    """Why no window can be shown here (no X/Wayland display, or an OpenCV build without GUI), or None.

    The window is tried in a child process: OpenCV's Qt backend aborts the whole process (it does not
    raise) when DISPLAY names a display it cannot reach, and the headless wheel raises ``cv2.error``.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no DISPLAY"
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "opening a window timed out"
    if result.returncode != 0:
        return "OpenCV cannot open a window here (no GUI support, or the display is unreachable)"
    return None


class Window:
    """The cv2 window: ``show(image) -> key`` (-1 when none was pressed)."""

    def __init__(self, name: str = WINDOW_NAME) -> None:
        self.name = name
        cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE)

    def show(self, image: np.ndarray, wait_ms: int = 1) -> int:
        cv2.imshow(self.name, image)
        return cv2.waitKey(wait_ms)

    def wait_key(self, wait_ms: int) -> int:
        return cv2.waitKey(wait_ms)

    def close(self) -> None:
        cv2.destroyWindow(self.name)


# --- the pipeline ----------------------------------------------------------------------------------------


def frame_log(frame_index: int, state, track, stage_ms: dict[str, float]) -> dict:
    """One JSONL line: the DMS state (frame index, time t, signals, alerts, events), the track (state, landmark
    box, number of detections when the detector ran, why a track was lost) and each stage's milliseconds."""
    record = state.to_log(frame_index)
    record["track"] = track.state
    record["box"] = None if track.box is None else [round(float(v), 1) for v in track.box]
    record["detections"] = None if track.detections is None else len(track.detections)
    record["lost_reason"] = track.lost_reason
    record["ms"] = {name: round(ms, 3) for name, ms in stage_ms.items()}
    return record


class _Timer:
    """Per-stage millisecond totals: ``lap(name)`` adds the time since the previous lap."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.frame: dict[str, float] = {}
        self._last = time.perf_counter()

    def start_frame(self) -> None:
        self.frame = dict.fromkeys(STAGES, 0.0)
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.add(name, 1000 * (now - self._last))
        self._last = now

    def lap_split(self, first: str, first_ms: float, rest: str) -> None:
        """A lap made of two stages, the first timed by the caller: ``first_ms`` to ``first``, the rest to ``rest``."""
        now = time.perf_counter()
        lap_ms = 1000 * (now - self._last)
        self.add(first, first_ms)
        self.add(rest, max(lap_ms - first_ms, 0.0))
        self._last = now

    def add(self, name: str, ms: float) -> None:
        self.frame[name] = self.frame.get(name, 0.0) + ms
        self.totals[name] += ms


def run_pipeline(
    source: str | int,
    predictor,
    detector,
    output: str | Path | None = None,
    log: str | Path | None = None,
    window: Window | None = None,
    max_frames: int | None = None,
    dms_config: DMSConfig | None = None,
    tracker_config: TrackerConfig | None = None,
    reconnect: bool = False,
    fps: float | None = None,
    draw: bool = True,
    progress: bool = False,
    screenshot_dir: str | Path = ".",
    capture_factory: Callable = cv2.VideoCapture,
    sleep: Callable[[float], None] = time.sleep,
    eye_model=None,
) -> dict:
    """Run the demo over a source and return a summary (frames, fps, mean ms per stage, skipped frames, ...).

    ``window`` None runs headless. ``fps`` is the nominal rate of an image folder (default 30).
    ``capture_factory`` and ``sleep`` let tests replace the camera and the reconnect backoff.
    ``eye_model`` (a ``landmark.eyes.model.EyeStateModel``) reads both eyes of the tracked face each frame
    and the driver monitor fuses it with EAR; None leaves the monitor on EAR alone.
    """
    dms_config = dms_config if dms_config is not None else DMSConfig()
    src = open_source(source, fps=fps, reconnect=reconnect, capture_factory=capture_factory, sleep=sleep)
    tracker = FaceTracker(detector, predictor, tracker_config)
    monitor = DriverMonitor(predictor.scheme, dms_config)
    writer = VideoWriter(output, src.fps) if output else None
    log_file = JsonlLog(log) if log else None
    total = src.frame_count if max_frames is None or src.frame_count is None else min(src.frame_count, max_frames)
    bar = progress_bar(total=total, desc="demo", unit="frame", disable=not progress or total is None)
    timer = _Timer()
    frames = face_frames = detect_calls = 0
    quit_by_user = False
    fps_ema: float | None = None
    frame_s: float | None = None
    frames_iter = iter(src)
    start = time.perf_counter()
    last_frame_end = start
    keep_outputs = False  # an error discards the new video and log, so older files of those names survive
    try:
        while max_frames is None or frames < max_frames:
            timer.start_frame()
            frame = next(frames_iter, None)
            if frame is None:
                break
            timer.lap("decode")
            image = frame.image
            size = (image.shape[1], image.shape[0])

            track = tracker.update(image, frame.t)
            eye_prob = None
            if eye_model is not None and track.raw_points is not None:  # before drawing changes the pixels
                eye_prob = eye_model.predict_face(image, track.raw_points, predictor.scheme)
            timer.lap_split("detect", track.detect_ms, "landmarks")  # the rest: landmarks, filter, checks
            detect_calls += track.detections is not None

            pose, pose_deg = None, None
            if track.points is not None:
                face_frames += 1
                pose = solve_head_pose(track.points, predictor.scheme, size)
                if pose is not None:
                    pose_deg = tuple(float(a) for a in np.degrees(angles_from_rotation(pose[0])))
            timer.lap("pose")

            state = monitor.update(frame.t, track.raw_points, pose_deg, eye_prob)
            timer.lap("dms")

            if draw and (writer is not None or window is not None):
                draw_overlay(image, track.points, track.box, pose, state, dms_config, fps_ema, track.state)
            timer.lap("draw")

            if writer is not None:
                writer.write(image)
            timer.lap("encode")
            if log_file is not None:  # the line carries this frame's timings; writing it counts as encode too
                log_file.write(frame_log(frame.index, state, track, timer.frame))
                timer.lap("encode")

            frames += 1
            bar.update(1)
            now = time.perf_counter()  # the overlay's FPS: 1 / a running mean of the frame time
            frame_s = now - last_frame_end if frame_s is None else 0.9 * frame_s + 0.1 * (now - last_frame_end)
            fps_ema = 1.0 / max(frame_s, 1e-6)
            last_frame_end = now

            if window is not None:
                action = _handle_key(window, window.show(image), image, frame.index, screenshot_dir)
                if action == "quit":
                    quit_by_user = True
                    break
                if action == "reset":
                    monitor.reset()
                    timer.totals = dict.fromkeys(STAGES, 0.0)
                    frames = face_frames = detect_calls = 0
                    start = time.perf_counter()
        keep_outputs = True
    except KeyboardInterrupt:  # Ctrl-C is how a live demo ends: keep what it wrote
        keep_outputs = True
        raise
    finally:
        bar.close()
        src.close()
        if writer is not None:
            writer.close(keep_outputs)
        if log_file is not None:
            log_file.close(keep_outputs)
        if window is not None:
            window.close()
    seconds = time.perf_counter() - start
    if src.stop_reason:
        logger.warning("%s", src.stop_reason)
    return {
        "source": src.description,
        "frames": frames,
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 2) if seconds > 0 else 0.0,
        "stage_ms": {name: round(ms / max(frames, 1), 3) for name, ms in timer.totals.items()},
        "detect_calls": detect_calls,
        "face_frames": face_frames,
        "skipped_frames": src.skipped,
        "reconnects": src.reconnects,
        "stop_reason": src.stop_reason,
        "quit_by_user": quit_by_user,
        "output": str(output) if output else None,
        "log": str(log) if log else None,
    }


def _handle_key(window: Window, key: int, image: np.ndarray, index: int, screenshot_dir: str | Path) -> str | None:
    """q/Esc quit, space pause (until space again), s screenshot, r reset statistics."""
    key &= 0xFF
    if key in (ord("q"), 27):
        return "quit"
    if key == ord("s"):
        path = Path(screenshot_dir) / f"landmark_{index:06d}.png"
        cv2.imwrite(str(path), image)
        logger.info("screenshot: %s", path)
    if key == ord("r"):
        return "reset"
    if key == ord(" "):
        while True:
            key = window.wait_key(50) & 0xFF
            if key in (ord("q"), 27):
                return "quit"
            if key == ord(" "):
                break
    return None


# --- the benchmark hook ------------------------------------------------------------------------------------


def benchmark_demo(
    video: str | Path,
    predictor,
    detector=None,
    workdir: str | Path | None = None,
    max_frames: int | None = None,
    redetect_every: int = 10,
    check_plausible: bool = True,
    eye_model=None,
) -> dict:
    """Headless end-to-end FPS on a video: decode, detect/track, landmarks, pose, DMS, drawing and encoding
    (an MP4 and a JSONL log in ``workdir``, a temporary folder by default). Returns ``run_pipeline``'s summary.

    ``check_plausible=False`` keeps an untrained (random-weight) model on its track, so the timing shows the
    tracking path rather than a detector call on every frame.
    """
    import tempfile

    from landmark.detect import build_detector

    detector = detector if detector is not None else build_detector()
    config = TrackerConfig(redetect_every=redetect_every, check_plausible=check_plausible)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(workdir) if workdir is not None else Path(temp)
        return run_pipeline(
            video,
            predictor,
            detector,
            output=folder / "bench.mp4",
            log=folder / "bench.jsonl",
            max_frames=max_frames,
            tracker_config=config,
            eye_model=eye_model,
        )


def check_model_path(model: str | Path | None) -> Path:
    """The model to load: the given path, or the shipped default; a clear error when there is neither."""
    if model is None:
        return default_model_path()
    path = Path(model)
    if not path.is_file():
        raise LandmarkError(f"{path}: model file not found")
    return path
