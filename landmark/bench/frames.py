"""Video frames held in memory, so that a benchmark times the pipeline and not the video decoder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from landmark.errors import LandmarkError


def read_video_frames(path: str | Path, limit: int | None = None) -> tuple[list[np.ndarray], float]:
    """(the BGR frames of a video file, at most ``limit``; its frame rate)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise LandmarkError(f"{path}: cannot open this video")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
    frames = []
    try:
        while limit is None or len(frames) < limit:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise LandmarkError(f"{path}: no frames could be decoded")
    return frames, fps


class FramesInMemory:
    """A ``cv2.VideoCapture`` look-alike that replays decoded frames: pass ``lambda _: FramesInMemory(...)`` as
    ``run_pipeline``'s ``capture_factory`` and the demo reads them as it would read the video file.

    Frames are handed out as they are, not copied (a copy would be timed as decoding): the caller must not
    let the pipeline draw on them if they are to be replayed.
    """

    def __init__(self, frames: list[np.ndarray], fps: float) -> None:
        self.frames = frames
        self.fps = fps
        self.position = 0

    def isOpened(self) -> bool:  # OpenCV's method name
        return True

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(len(self.frames))
        return 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.position >= len(self.frames):
            return False, None
        self.position += 1
        return True, self.frames[self.position - 1]

    def release(self) -> None:
        pass
