"""Frame sources and outputs: cameras that fail (with a fake capture), unreadable frames, image folders,
the MP4 writer and the per-line flushed JSONL log."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmark.errors import LandmarkError
from landmark.video import MAX_READ_FAILURES, JsonlLog, VideoWriter, open_source

FRAME = np.full((48, 64, 3), 128, np.uint8)


class FakeCapture:
    """A ``cv2.VideoCapture`` look-alike: ``frames`` is a list of images or None (a failed read); after
    the list, reads fail for good (an unplugged camera, or the end of a file)."""

    def __init__(self, frames: list, opened: bool = True, fps: float = 25.0, count: int = 0) -> None:
        self.frames = list(frames)
        self.opened = opened
        self.props = {cv2.CAP_PROP_FPS: fps, cv2.CAP_PROP_FRAME_COUNT: count}
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 -- OpenCV's name
        return self.opened

    def read(self):
        if not self.frames:
            return False, None
        frame = self.frames.pop(0)
        return (frame is not None), frame

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def release(self) -> None:
        self.released = True


def factory(*captures: FakeCapture):
    """A capture factory handing out the given captures in turn (one per open attempt), then dead ones."""
    queue = list(captures)
    return lambda source: queue.pop(0) if queue else FakeCapture([], opened=False)


def test_a_camera_that_cannot_be_opened_is_one_error_naming_it():
    with pytest.raises(LandmarkError, match="camera 3: cannot open it"):
        open_source("3", capture_factory=factory(FakeCapture([], opened=False)))


def test_a_missing_file_is_one_error_naming_it(tmp_path: Path):
    with pytest.raises(LandmarkError, match="nope.mp4: no such video file or image folder"):
        open_source(tmp_path / "nope.mp4")


def test_a_camera_unplugged_mid_run_ends_the_frames_with_a_reason():
    source = open_source(0, capture_factory=factory(FakeCapture([FRAME] * 3)))
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2]
    assert "camera 0 stopped delivering frames" in source.stop_reason
    assert source.skipped == 0  # the failed reads of a dead camera are not "skipped frames"


def test_reconnect_reopens_a_lost_camera_with_backoff():
    waits = []
    captures = factory(FakeCapture([FRAME] * 2), FakeCapture([], opened=False), FakeCapture([FRAME] * 3))
    source = open_source(
        0, reconnect=True, max_reconnects=3, backoff_s=0.5, capture_factory=captures, sleep=waits.append
    )
    frames = list(source)
    assert len(frames) == 5 and [f.index for f in frames] == list(range(5))
    assert source.reconnects == 1
    assert waits[:2] == [0.5, 1.0]  # first attempt failed, the second (after a longer wait) worked
    # The new camera died too and nothing more could be opened: a reason that says we gave up.
    assert "gave up after 3 reconnect attempts" in source.stop_reason


def test_reconnect_gives_up_after_the_allowed_attempts():
    waits = []
    captures = factory(FakeCapture([FRAME]), *(FakeCapture([], opened=False) for _ in range(2)))
    source = open_source(
        0, reconnect=True, max_reconnects=2, backoff_s=1.0, capture_factory=captures, sleep=waits.append
    )
    assert len(list(source)) == 1
    assert waits == [1.0, 2.0] and source.reconnects == 0 and "gave up" in source.stop_reason


def test_unreadable_frames_in_a_video_are_skipped_and_counted(tmp_path: Path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"")  # the fake capture reads it; the file only has to exist
    frames_in = [FRAME, None, FRAME, None, None, FRAME]
    source = open_source(path, capture_factory=factory(FakeCapture(frames_in, fps=10.0, count=6)))
    frames = list(source)
    assert len(frames) == 3 and source.skipped == 3 and source.stop_reason is None
    # Times follow the file's frame positions, not the count of good frames.
    assert [f.t for f in frames] == pytest.approx([0.0, 0.2, 0.5])


def test_a_video_that_only_fails_stops_after_a_bounded_number_of_reads(tmp_path: Path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"")
    source = open_source(path, capture_factory=factory(FakeCapture([None] * 100, count=100)))
    assert list(source) == [] and source.skipped == MAX_READ_FAILURES


def test_an_image_folder_plays_in_name_order_and_skips_unreadable_files(tmp_path: Path):
    for i, value in enumerate((10, 20, 30)):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), np.full((20, 30, 3), value, np.uint8))
    (tmp_path / "frame_001b.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(tmp_path, fps=10.0)
    frames = list(source)
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 30]
    assert source.skipped == 1 and source.frame_count == 4
    assert [f.t for f in frames] == pytest.approx([0.0, 0.1, 0.3])


def test_an_empty_image_folder_is_an_error(tmp_path: Path):
    with pytest.raises(LandmarkError, match="no images"):
        open_source(tmp_path)


def test_the_video_writer_renames_its_temporary_file_on_close(tmp_path: Path):
    path = tmp_path / "out.mp4"
    writer = VideoWriter(path, fps=10.0)
    for value in range(0, 250, 50):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.write(np.zeros((24, 32, 3), np.uint8))  # another size is resized, not an error
    assert not path.exists() and writer.temp_path.exists()
    writer.close()
    assert path.exists() and not writer.temp_path.exists()
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (64, 48)
    capture.release()


def test_the_jsonl_log_is_readable_after_every_line(tmp_path: Path):
    log = JsonlLog(tmp_path / "log.jsonl")
    log.write({"frame": 0, "face": True})
    log.write({"frame": 1, "face": False})
    lines = log.temp_path.read_text().splitlines()  # before close: flushed per line
    assert [json.loads(line)["frame"] for line in lines] == [0, 1]
    log.close()
    assert (tmp_path / "log.jsonl").read_text().splitlines() == lines and not log.temp_path.exists()


def test_outputs_of_a_failed_run_leave_older_files_untouched(tmp_path: Path):
    old_log, old_video = tmp_path / "keep.jsonl", tmp_path / "keep.mp4"
    old_log.write_text('{"frame": 0}\n')
    old_video.write_bytes(b"an older video")
    log = JsonlLog(old_log)
    assert old_log.read_text() == '{"frame": 0}\n'  # not truncated when the new log opens
    log.write({"frame": 0, "face": False})
    writer = VideoWriter(old_video, fps=10.0)
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.close(keep=False)
    log.close(keep=False)
    assert old_log.read_text() == '{"frame": 0}\n' and old_video.read_bytes() == b"an older video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl", "keep.mp4"]  # no temporary file left


def test_frames_too_small_to_encode_are_one_line_errors(tmp_path: Path):
    writer = VideoWriter(tmp_path / "tiny.mp4", fps=10.0)
    with pytest.raises(LandmarkError, match=r"tiny\.mp4: cannot open an MP4 \(mp4v\) video writer for .* 1x1 frames"):
        writer.write(np.zeros((1, 1, 3), np.uint8))
    writer.close()  # nothing to rename, no error
    assert not any(tmp_path.iterdir())
