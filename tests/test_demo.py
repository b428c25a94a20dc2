"""The demo pipeline end to end: headless runs over short videos, the log and video it writes, a dying
camera, window keys with a fake window, the ``landmark demo`` command and the overlay.

The landmark model is the real ``LandmarkPredictor`` with a fake backend that always "sees" the same face
shape filling its crop, so the tracker follows whatever the Haar detector found; no model file is needed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import symmetric_points

from landmark import cli
from landmark.data.schemes import WFLW_98
from landmark.detect import HaarDetector
from landmark.dms import DMSConfig, DriverMonitor
from landmark.inference.predictor import LandmarkPredictor
from landmark.overlay import RED, draw_overlay
from landmark.tracking import TrackerConfig

STAGES = {"decode", "detect", "landmarks", "pose", "dms", "draw", "encode"}


def fake_predictor() -> LandmarkPredictor:
    """A predictor whose 'network' returns one fixed face shape covering the central 80% of each crop."""
    unit = symmetric_points(WFLW_98, 0.0, 0.0, 1.0)
    unit = 0.1 + 0.8 * (unit - unit.min(0)) / (unit.max(0) - unit.min(0))  # normalised crop coordinates
    return LandmarkPredictor(lambda batch: np.repeat(unit[None], len(batch), axis=0), WFLW_98, 112)


@pytest.fixture(scope="module")
def driver_video(tmp_path_factory) -> Path:
    """A 2 s synthetic driver video (320x240, 30 fps), or a skip when the renderer is not there."""
    synthetic_video = pytest.importorskip("landmark.data.synthetic_video")
    folder = tmp_path_factory.mktemp("video")
    synthetic_video.render_driver_video(folder / "drive.mp4", folder / "drive.json", 2.0, seed=1, size=(320, 240))
    return folder / "drive.mp4"


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_headless_run_writes_every_frame_and_one_log_line_per_frame(driver_video: Path, tmp_path: Path):
    from landmark.demo_app import run_pipeline

    summary = run_pipeline(
        driver_video,
        fake_predictor(),
        HaarDetector(),
        output=tmp_path / "out.mp4",
        log=tmp_path / "out.jsonl",
        tracker_config=TrackerConfig(redetect_every=10),
    )
    assert summary["frames"] == 60 and summary["skipped_frames"] == 0 and summary["stop_reason"] is None
    assert frame_count(tmp_path / "out.mp4") == 60
    lines = read_log(tmp_path / "out.jsonl")
    assert [line["frame"] for line in lines] == list(range(60))
    assert lines[0]["track"] == "detected" and lines[1]["track"] == "tracking"
    assert summary["face_frames"] == 60 and all(line["face"] for line in lines)
    assert 6 <= summary["detect_calls"] <= 8  # the first frame, then every 10th
    assert set(lines[5]["ms"]) == STAGES and set(summary["stage_ms"]) == STAGES
    assert all(len(line["box"]) == 4 for line in lines) and lines[-1]["yaw"] is not None


def test_no_face_is_reported_in_every_log_line(tmp_path: Path):
    from landmark.demo_app import run_pipeline

    video = write_video(tmp_path / "empty.mp4", [np.full((120, 160, 3), 70, np.uint8)] * 8)
    summary = run_pipeline(video, fake_predictor(), HaarDetector(), log=tmp_path / "log.jsonl")
    lines = read_log(tmp_path / "log.jsonl")
    assert summary["frames"] == 8 and summary["face_frames"] == 0 and summary["detect_calls"] == 8
    assert {line["track"] for line in lines} == {"no_face"} and not any(line["face"] for line in lines)
    assert lines[-1]["face_missing_duration"] == pytest.approx(7 / 30, abs=1e-3)


class FakeCamera:
    """A camera that delivers ``frames`` and then dies (reads fail)."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = list(frames)

    def isOpened(self) -> bool:  # noqa: N802 -- OpenCV's name
        return True

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


def test_a_camera_dying_mid_run_ends_cleanly_with_complete_outputs(tmp_path: Path):
    from landmark.demo_app import run_pipeline

    frames = [np.full((120, 160, 3), 90, np.uint8)] * 5
    summary = run_pipeline(
        0,
        fake_predictor(),
        HaarDetector(),
        output=tmp_path / "cam.mp4",
        log=tmp_path / "cam.jsonl",
        capture_factory=lambda source: FakeCamera(frames),
    )
    assert summary["frames"] == 5 and "camera 0 stopped delivering frames" in summary["stop_reason"]
    assert len(read_log(tmp_path / "cam.jsonl")) == 5 and frame_count(tmp_path / "cam.mp4") == 5


class FakeWindow:
    """Stands in for the cv2 window: returns the scripted key for each shown frame."""

    def __init__(self, keys: dict[int, str]) -> None:
        self.keys = keys
        self.shown = 0
        self.closed = False

    def show(self, image: np.ndarray, wait_ms: int = 1) -> int:
        key = self.keys.get(self.shown)
        self.shown += 1
        return ord(key) if key else -1

    def wait_key(self, wait_ms: int) -> int:
        return ord(" ")  # un-pause at once

    def close(self) -> None:
        self.closed = True


def test_window_keys_screenshot_pause_and_quit(tmp_path: Path):
    from landmark.demo_app import run_pipeline

    video = write_video(tmp_path / "v.mp4", [np.full((120, 160, 3), 50, np.uint8)] * 20)
    window = FakeWindow({1: "s", 2: " ", 4: "q"})
    summary = run_pipeline(video, fake_predictor(), HaarDetector(), window=window, screenshot_dir=tmp_path)
    assert summary["quit_by_user"] and summary["frames"] == 5 and window.closed
    assert (tmp_path / "landmark_000001.png").is_file()


def test_the_demo_command_says_once_that_it_runs_headless(driver_video, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    options = {}
    monkeypatch.setattr(
        LandmarkPredictor, "from_path", classmethod(lambda cls, *a, **k: options.update(k) or fake_predictor())
    )
    model = tmp_path / "model.onnx"
    model.write_bytes(b"stands in for a model; from_path is faked")
    video, log = tmp_path / "demo.mp4", tmp_path / "demo.jsonl"
    args = ["demo", "--source", str(driver_video), "--model", str(model), "--max-frames", "12", "--flip-test"]
    code = cli.main([*args, "--output", str(video), "--log", str(log), "--redetect-every", "4"])
    err = capsys.readouterr().err
    assert code == 0 and options["flip_test"] is True
    assert err.count("running headless") == 1 and "no display available" in err and str(video) in err
    assert len(read_log(log)) == 12 and frame_count(video) == 12


def test_the_demo_command_names_a_missing_model(tmp_path, capsys):
    code = cli.main(["demo", "--source", str(tmp_path), "--model", str(tmp_path / "missing.onnx"), "--headless"])
    assert code == 2 and "missing.onnx: model file not found" in capsys.readouterr().err


def test_display_problem_without_display(monkeypatch):
    from landmark.demo_app import display_problem

    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert display_problem() == "no DISPLAY"


def _state_after(seconds: float, points: np.ndarray | None, fps: float = 30.0):
    monitor = DriverMonitor(WFLW_98, DMSConfig())
    state = None
    for i in range(int(seconds * fps)):
        state = monitor.update(i / fps, points, (0.0, 0.0, 0.0) if points is not None else None)
    return state


def test_overlay_shows_no_face_and_a_red_banner_for_critical_alerts_quickly():
    points = symmetric_points(WFLW_98, 320.0, 150.0, 12.0)
    image = np.zeros((480, 640, 3), np.uint8)
    no_face = _state_after(3.0, None)  # face missing for 3 s: a face_missing alert (level 1)
    draw_overlay(image, state=no_face)
    assert image[230:250, 200:440].max() > 0  # "NO FACE" text across the middle
    assert tuple(image[-5, 5]) == (0, 150, 255)  # the orange warning banner

    critical = _state_after(1.0, points)
    critical.alerts, critical.alert_level = ["microsleep"], 2
    image = np.zeros((480, 640, 3), np.uint8)
    box = np.array([250, 140, 390, 330], np.float32)
    rotation, translation = np.eye(3), np.array([0.0, 0.0, 600.0])
    timings = []
    for _ in range(30):
        frame = image.copy()
        start = time.perf_counter()
        draw_overlay(frame, points, box, (rotation, translation), critical, DMSConfig(), 123.4, "tracking")
        timings.append(time.perf_counter() - start)
    assert tuple(frame[-5, 5]) == RED
    assert frame[239:242, 330:345, 2].max() == 255  # the head's x axis (red) from the image centre
    assert np.median(timings) < 0.003  # about 0.3 ms on an idle core; generous for a busy test machine


def test_display_problem_with_an_unreachable_display_does_not_abort(monkeypatch):
    from landmark.demo_app import display_problem

    monkeypatch.setenv("DISPLAY", ":97")  # nothing listens there: OpenCV's Qt backend would abort in-process
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert "cannot open a window" in display_problem()


def test_the_demo_command_names_a_missing_source_before_anything_else(tmp_path, capsys):
    code = cli.main(["demo", "--source", str(tmp_path / "nope.mp4"), "--headless"])
    err = capsys.readouterr().err
    assert code == 2 and "nope.mp4: no such video file or image folder" in err
    assert "running headless" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def fake_model(tmp_path, monkeypatch) -> Path:
    """A model path for the demo command, with ``LandmarkPredictor.from_path`` faked (no network needed)."""
    monkeypatch.setattr(LandmarkPredictor, "from_path", classmethod(lambda cls, *a, **k: fake_predictor()))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"stands in for a model; from_path is faked")
    return model


def test_a_source_too_small_to_encode_is_one_line_and_keeps_the_old_log(tmp_path, fake_model, capsys):
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((1, 1, 3), np.uint8))
    video, log = tmp_path / "keep.mp4", tmp_path / "keep.jsonl"
    log.write_text('{"frame": 0}\n')
    args = ["demo", "--source", str(tmp_path / "one.png"), "--model", str(fake_model), "--headless"]
    assert cli.main([*args, "--output", str(video), "--log", str(log)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error: " in err[-1] and "1x1 frames" in err[-1] and not any("Traceback" in line for line in err)
    assert log.read_text() == '{"frame": 0}\n' and not video.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl", "model.onnx", "one.png"]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--output", "{tmp}/same.mp4", "--log", "{tmp}/same.mp4"], "--log {tmp}/same.mp4: is also the --output"),
        (["--output", "{source}", "--log", "{tmp}/x.jsonl"], "--output {source}: is the --source video"),
        (["--output", "{tmp}"], "--output {tmp}: is a folder, expected a file path"),
        (["--output", "{tmp}/noext"], "--output {tmp}/noext: expected a video file name ending in .mp4"),
        (["--output", "{tmp}/afile/a.mp4"], "--output {tmp}/afile/a.mp4: {tmp}/afile is a file, not a folder"),
        (["--output", "{tmp}/x.mp4", "--log", "{tmp}/afile/x.jsonl"], "--log {tmp}/afile/x.jsonl: {tmp}/afile is a"),
        pytest.param(
            ["--output", "/proc/x/a.mp4"],
            "--output /proc/x/a.mp4: cannot write in /proc (",
            marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc"),
        ),
    ],
)
def test_the_demo_command_refuses_unusable_outputs_before_the_run(flags, expected, tmp_path, fake_model, capsys):
    source = write_video(tmp_path / "drive.mp4", [np.full((120, 160, 3), 70, np.uint8)] * 3)
    (tmp_path / "afile").write_text("keep\n")
    names = {"tmp": tmp_path, "source": source}
    args = ["demo", "--source", str(source), "--model", str(fake_model), "--headless"]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main([*args, *[flag.format(**names) for flag in flags]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("landmark demo: error: ") and expected.format(**names) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing replaced


class InterruptingDetector:
    """Finds no face, and stands for Ctrl-C after ``frames`` frames."""

    def __init__(self, frames: int) -> None:
        self.frames = frames

    def detect(self, image: np.ndarray) -> np.ndarray:
        if self.frames == 0:
            raise KeyboardInterrupt
        self.frames -= 1
        return np.zeros((0, 5), np.float32)


def test_ctrl_c_keeps_the_video_and_log_written_so_far(tmp_path: Path):
    from landmark.demo_app import run_pipeline

    video = write_video(tmp_path / "v.mp4", [np.full((120, 160, 3), 70, np.uint8)] * 8)
    output, log = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(video, fake_predictor(), InterruptingDetector(3), output=output, log=log)
    assert len(read_log(log)) == 3 and frame_count(output) == 3
