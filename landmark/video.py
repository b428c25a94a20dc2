"""Frame sources (camera, video file, image folder) and outputs (MP4 video, JSONL log) for the demo.

``open_source("0")`` opens camera 0, ``open_source("drive.mp4")`` a video file, ``open_source("frames/")``
the sorted images of a folder played at a nominal frame rate. Iterating a source yields ``Frame(index, t,
image)``; ``t`` is seconds since the start (wall clock for a camera, position / fps for files), ``index``
counts the frames delivered. What goes wrong is handled here, not in the demo loop:

- a source that cannot be opened raises ``LandmarkError`` naming it;
- an unreadable frame (a corrupt image, a decode error inside a video) is skipped and counted in
  ``source.skipped``;
- a camera that stops delivering frames (unplugged) ends the iteration with ``source.stop_reason`` set,
  or, with ``reconnect=True``, is reopened a bounded number of times with exponential backoff.

``capture_factory`` (default ``cv2.VideoCapture``) and ``sleep`` are parameters so tests can use a fake
camera and no real waiting.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from landmark.errors import LandmarkError
from landmark.files import make_folder

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
DEFAULT_FPS = 30.0
MAX_READ_FAILURES = 5  # unreadable frames in a row before a video ends or a camera counts as lost


@dataclass
class Frame:
    index: int  # frames delivered so far (0, 1, 2, ...)
    t: float  # seconds since the start of the source
    image: np.ndarray  # BGR uint8


def open_source(
    source: str | int,
    fps: float | None = None,
    reconnect: bool = False,
    max_reconnects: int = 5,
    backoff_s: float = 0.5,
    capture_factory: Callable = cv2.VideoCapture,
    sleep: Callable[[float], None] = time.sleep,
) -> CaptureSource | ImageFolderSource:
    """A camera (an integer or a string of digits, or a stream URL), a video file or an image folder."""
    kind = source_kind(source)
    text = str(source)
    if kind == "camera":
        camera = int(text) if text.isdigit() else text
        return CaptureSource(camera, True, fps, reconnect, max_reconnects, backoff_s, capture_factory, sleep)
    if kind == "folder":
        return ImageFolderSource(Path(text), fps or DEFAULT_FPS)
    return CaptureSource(text, False, fps, False, 0, backoff_s, capture_factory, sleep)


def source_kind(source: str | int) -> str:
    """The kind of source: "camera" (a number or an rtsp:// / http:// stream), "folder" or "file".

    ``LandmarkError`` when a path names nothing -- checked before any output is set up, so a typo costs one
    line and nothing else."""
    text = str(source)
    if text.isdigit() or "://" in text:  # camera streams behave like cameras
        return "camera"
    path = Path(text)
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "file"
    raise LandmarkError(f"{text}: no such video file or image folder (a camera is a number such as 0)")


class CaptureSource:
    """Frames from ``cv2.VideoCapture`` (or a look-alike): a camera, a stream or a video file."""

    def __init__(
        self,
        source: str | int,
        is_camera: bool,
        fps: float | None,
        reconnect: bool,
        max_reconnects: int,
        backoff_s: float,
        capture_factory: Callable,
        sleep: Callable[[float], None],
    ) -> None:
        self.source = source
        self.is_camera = is_camera
        self.description = f"camera {source}" if is_camera else f"video {source}"
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self._factory = capture_factory
        self._sleep = sleep
        self.skipped = 0
        self.reconnects = 0
        self.stop_reason: str | None = None  # set when the source ended abnormally (a lost camera)
        self._cap = self._open()
        if self._cap is None:
            hint = "is it connected and not in use?" if is_camera else "not a video format OpenCV can decode?"
            raise LandmarkError(f"{self.description}: cannot open it ({hint})")
        reported_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps or (reported_fps if 0.0 < reported_fps < 1000.0 else DEFAULT_FPS)
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not is_camera else 0
        self.frame_count: int | None = count if count > 0 else None

    def _open(self):
        cap = self._factory(self.source)
        if cap is not None and cap.isOpened():
            return cap
        if cap is not None:
            cap.release()
        return None

    def _reopen(self) -> bool:
        """Reconnect to a lost camera: up to ``max_reconnects`` attempts, waiting longer before each."""
        self._cap.release()
        for attempt in range(1, self.max_reconnects + 1):
            delay = min(self.backoff_s * 2 ** (attempt - 1), 5.0)
            logger.warning(
                "%s lost; reconnect attempt %d/%d in %.1f s", self.description, attempt, self.max_reconnects, delay
            )
            self._sleep(delay)
            cap = self._open()
            if cap is not None:
                self._cap = cap
                self.reconnects += 1
                logger.info("%s reconnected", self.description)
                return True
        self._cap = _ClosedCapture()
        return False

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        position = 0  # frames read from a file, good or bad: its time axis
        failures = 0
        while True:
            ok, image = self._cap.read()
            if ok and image is not None and image.size > 0:
                failures = 0
                t = time.monotonic() - start if self.is_camera else position / self.fps
                position += 1
                yield Frame(index, t, image)
                index += 1
                continue
            if not self.is_camera and not self._unread_frames_left(position):
                return  # the end of the file
            failures += 1
            position += 1
            self.skipped += 1
            if failures < MAX_READ_FAILURES:
                continue
            if not self.is_camera:
                logger.warning("%s: %d unreadable frames in a row; stopping", self.description, failures)
                return
            if self.reconnect and self._reopen():
                failures = 0
                continue
            self.skipped -= failures  # frames of a dead camera were never there to skip
            self.stop_reason = f"{self.description} stopped delivering frames (unplugged?)"
            if self.reconnect:
                self.stop_reason += f"; gave up after {self.max_reconnects} reconnect attempts"
            return

    def _unread_frames_left(self, position: int) -> bool:
        """A failed read inside a file (a corrupt frame) rather than at its end?"""
        return self.frame_count is not None and position < self.frame_count

    def close(self) -> None:
        self._cap.release()


class _ClosedCapture:
    """Stands in for a capture that could not be reopened."""

    def read(self) -> tuple[bool, None]:
        return False, None

    def release(self) -> None:
        pass


class ImageFolderSource:
    """The images of a folder in name order, at a nominal ``fps``; unreadable files are skipped."""

    def __init__(self, folder: Path, fps: float) -> None:
        self.paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise LandmarkError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.description = f"image folder {folder}"
        self.is_camera = False
        self.fps = fps
        self.frame_count: int | None = len(self.paths)
        self.skipped = 0
        self.reconnects = 0
        self.stop_reason: str | None = None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for position, path in enumerate(self.paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                logger.warning("%s: cannot read this image; skipped", path)
                self.skipped += 1
                continue
            yield Frame(index, position / self.fps, image)
            index += 1

    def close(self) -> None:
        pass


class VideoWriter:
    """MP4 (mp4v) writer opened on the first frame, written under a temporary name and renamed on close.

    Frames of another size than the first (an image folder of mixed sizes) are resized to it.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.temp_path = self.path.with_name(f".{self.path.stem}.part{self.path.suffix}")
        self.fps = fps
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            make_folder(self.path.parent)
            writer = cv2.VideoWriter(str(self.temp_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not writer.isOpened():  # e.g. frames of 1 pixel a side, which mp4v cannot encode
                writer.release()
                raise LandmarkError(
                    f"{self.path}: cannot open an MP4 (mp4v) video writer for the source's {size[0]}x{size[1]} frames"
                )
            self._writer, self._size = writer, size
        if size != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Rename the video into place, or (``keep=False``, a failed run) delete it and leave an older file be."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if keep:
            os.replace(self.temp_path, self.path)
        else:
            self.temp_path.unlink(missing_ok=True)


class JsonlLog:
    """One JSON object per line, flushed at once so a crash or Ctrl-C loses at most the current frame.

    Like ``VideoWriter`` it writes a temporary file beside ``path`` (``.NAME.part.jsonl``) that ``close`` renames,
    so a run that fails never leaves an older log of that name empty or half overwritten.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.temp_path = self.path.with_name(f".{self.path.stem}.part{self.path.suffix}")
        make_folder(self.path.parent)
        try:
            self._file = open(self.temp_path, "w", encoding="utf-8")  # noqa: SIM115 -- closed by close()
        except OSError as error:
            raise LandmarkError(f"{self.path}: cannot write the log ({error.strerror})") from None
        self.lines = 0

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        self.lines += 1

    def close(self, keep: bool = True) -> None:
        """Rename the log into place, or (``keep=False``, a failed run) delete it and leave an older file be."""
        if self._file.closed:
            return
        self._file.close()
        if keep:
            os.replace(self.temp_path, self.path)
        else:
            self.temp_path.unlink(missing_ok=True)
