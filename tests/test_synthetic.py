"""Synthetic faces and driver videos: exact, deterministic labels in WFLW's layout and a consistent timeline."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmark.commands import make_synthetic
from landmark.data import face3d
from landmark.data.face3d import Camera, Expression, Identity
from landmark.data.readers import read_wflw
from landmark.data.schemes import WFLW_98, EyeIndices, flip_points
from landmark.data.synthetic import Look, draw_person, render_face_image, write_synthetic_wflw
from landmark.data.synthetic_video import render_driver_video, timeline_events
from landmark.errors import LandmarkError

SIZE = 256


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _frontal_points(identity: Identity, expression: Expression, yaw: float = 0.0) -> np.ndarray:
    """Projected landmarks of a face centred in a SIZE x SIZE image, roll 0 (placed by its neutral face, so
    expressions are compared under one and the same pose)."""
    neutral = face3d.build_face(identity, Expression())
    camera = Camera(focal=SIZE * 1.5, cx=(SIZE - 1) / 2, cy=(SIZE - 1) / 2)
    pose = face3d.place_face(neutral, yaw, 0.0, 0.0, camera, ((SIZE - 1) / 2, (SIZE - 1) / 2), 0.5 * SIZE)
    return face3d.project_landmarks(face3d.build_face(identity, expression), pose, camera)


def _aspect_ratio(points: np.ndarray, eye: EyeIndices) -> float:
    gaps = [np.linalg.norm(points[a] - points[b]) for a, b in eye.pairs]
    return float(np.mean(gaps) / np.linalg.norm(points[eye.corner_a] - points[eye.corner_b]))


# --- the dataset -----------------------------------------------------------------------------------------


def test_same_seed_writes_same_bytes(tmp_path: Path) -> None:
    first = write_synthetic_wflw(tmp_path / "a", 5, seed=11, sheet_count=4)
    write_synthetic_wflw(tmp_path / "b", 5, seed=11, sheet_count=4)
    write_synthetic_wflw(tmp_path / "c", 5, seed=12, sheet_count=4)
    a, b, c = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert len(a) == 5 + 2 + 1  # images, two lists, contact sheet
    assert a == b
    assert a.keys() == c.keys() and a != c  # another seed, other faces
    assert first["train"] + first["test"] == 5 and first["test"] == 1


def test_lines_have_wflw_fields_and_parse_back(tmp_path: Path) -> None:
    summary = write_synthetic_wflw(tmp_path, 10, seed=3, test_fraction=0.3, sheet_count=2)
    train_lines = Path(summary["train_list"]).read_text().splitlines()
    test_lines = Path(summary["test_list"]).read_text().splitlines()
    assert (len(train_lines), len(test_lines)) == (7, 3)
    for line in train_lines + test_lines:
        fields = line.split(" ")
        assert len(fields) == 207
        assert fields[-1].startswith("0--Synthetic/synth_") and fields[-1].endswith(".jpg")
        assert all(flag in ("0", "1") for flag in fields[200:206])
    records = read_wflw(tmp_path, "train") + read_wflw(tmp_path, "test")
    assert len(records) == 10
    for record, line in zip(records, train_lines + test_lines, strict=True):
        written = np.array(line.split(" ")[:196], dtype=np.float64).reshape(98, 2)
        np.testing.assert_allclose(record.points, written, atol=1e-9)
        box = np.asarray(record.box)
        assert np.all(record.points.min(axis=0) >= box[:2]) and np.all(record.points.max(axis=0) <= box[2:] + 1e-9)
        image = cv2.imread(str(record.image_path))
        assert image.shape == (SIZE, SIZE, 3)


def test_rendered_points_lie_inside_the_image() -> None:
    rng = np.random.default_rng(5)
    sizes = []
    for _ in range(12):
        image, points, flags, params = render_face_image(rng, size=SIZE)
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert points.shape == (98, 2) and points.dtype == np.float32 and flags.shape == (6,)
        assert np.all(points >= 0) and np.all(points <= SIZE - 1)
        sizes.append(np.ptp(points, axis=0).max() / SIZE)
        pose_flag = max(abs(math.degrees(params[k])) / limit for k, limit in (("yaw", 30), ("pitch", 20), ("roll", 25)))
        assert flags[0] == (pose_flag > 1)
    assert 0.33 <= min(sizes) and max(sizes) <= 0.62


def test_frontal_haar_detection_rate() -> None:
    """The faces must look like faces to OpenCV's frontal Haar cascade (the demo's default detector)."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rng = np.random.default_rng(2024)
    found = tried = 0
    while tried < 20:
        image, points, _, params = render_face_image(rng, size=SIZE)
        angles = [abs(math.degrees(params[k])) for k in ("yaw", "pitch", "roll")]
        if max(angles) > 15 or params["occluder"] is not None or params["blur_sigma"] > 1.5:
            continue
        tried += 1
        boxes = cascade.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 1.1, 3, minSize=(40, 40))
        cx, cy = points.mean(axis=0)
        found += any(x <= cx <= x + w and y <= cy <= y + h for x, y, w, h in boxes)
    assert found / tried >= 0.6


# --- the geometry ----------------------------------------------------------------------------------------


def test_mean_face_is_mirror_symmetric() -> None:
    points = _frontal_points(Identity(), Expression())
    np.testing.assert_allclose(flip_points(points, WFLW_98, mirror_x=SIZE - 1), points, atol=1e-3)
    turned = _frontal_points(Identity(), Expression(), yaw=math.radians(20))
    assert np.abs(flip_points(turned, WFLW_98, mirror_x=SIZE - 1) - turned).max() > 1.0


def test_eye_closure_closes_the_lids_and_keeps_the_pupil() -> None:
    ratios = []
    for closure in (0.0, 0.5, 1.0):
        points = _frontal_points(Identity(), Expression(eye_closure=(closure, 0.0)))
        ratios.append((_aspect_ratio(points, WFLW_98.left_eye), _aspect_ratio(points, WFLW_98.right_eye)))
        if closure == 0.0:
            open_pupil = points[96].copy()
        if closure == 1.0:
            np.testing.assert_allclose(points[96], open_pupil, atol=1e-9)
    (open_l, open_r), (half_l, _), (shut_l, shut_r) = ratios
    assert open_l > 0.25 and open_l > half_l > shut_l
    assert shut_l < 1e-6  # the lids meet
    assert abs(shut_r - open_r) < 1e-9  # the other eye is untouched


def test_mouth_opening_parts_the_inner_lips_and_drops_the_chin() -> None:
    closed = _frontal_points(Identity(), Expression(mouth_open=0.0))
    wide = _frontal_points(Identity(), Expression(mouth_open=1.0))
    assert _aspect_ratio(closed, WFLW_98.mouth_inner) < 0.02
    assert _aspect_ratio(wide, WFLW_98.mouth_inner) > 0.4
    assert wide[16, 1] - closed[16, 1] > 5.0  # the chin moves down with the jaw (pixels)


def test_labels_sit_on_the_drawn_features() -> None:
    """Pupils are dark and the open mouth is dark exactly where the labels say, on a plain background."""
    identity = Identity(hairline=-9.0)
    geometry = face3d.build_face(identity, Expression(mouth_open=0.8))
    camera = Camera(focal=SIZE * 1.5, cx=(SIZE - 1) / 2, cy=(SIZE - 1) / 2)
    pose = face3d.place_face(geometry, 0.1, 0.05, 0.1, camera, (130.0, 125.0), 0.5 * SIZE)
    light = np.array([0.2, -0.3, -1.0])
    look = Look(
        skin=np.array([140.0, 170.0, 220.0]), hair=np.array([30.0, 40.0, 60.0]), lips=np.array([90.0, 90.0, 190.0]),
        iris=np.array([60.0, 80.0, 110.0]), clothing=np.array([90.0, 90.0, 90.0]), eye_shadow=None,
        light=light / np.linalg.norm(light), ambient=0.5, diffuse=0.6, hair_length=-20.0, makeup=False,
    )  # fmt: skip
    canvas = np.full((SIZE * 2, SIZE * 2, 3), 200, np.uint8)
    draw_person(canvas, geometry, pose, camera, look, ss=2)
    image = cv2.cvtColor(cv2.resize(canvas, (SIZE, SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    points = face3d.project_landmarks(geometry, pose, camera)

    def at(xy: np.ndarray) -> int:
        return int(image[int(round(xy[1])), int(round(xy[0]))])

    cheek = at((points[4] + points[54]) / 2)
    assert at(points[96]) < 40 and at(points[97]) < 40  # pupils
    assert at((points[90] + points[94]) / 2) < 0.5 * cheek  # inside the open mouth
    assert at(points[51] + [0, -25]) > 0.6 * cheek  # forehead skin above the nose, not hair or background


# --- the video -------------------------------------------------------------------------------------------


def test_driver_video_frames_timeline_and_events(tmp_path: Path) -> None:
    video, timeline_path = tmp_path / "drive.mp4", tmp_path / "drive.json"
    fps, seconds, size = 10, 36.0, (320, 240)
    summary = render_driver_video(video, timeline_path, seconds, seed=4, fps=fps, size=size)
    n = int(seconds * fps)
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == n == summary["frames"]

    timeline = json.loads(timeline_path.read_text())
    assert (timeline["fps"], timeline["frames"], timeline["width"], timeline["height"]) == (fps, n, *size)
    assert timeline["scheme"] == "wflw98" and timeline["seed"] == 4
    frames = timeline["frames_truth"]
    assert len(frames) == n
    assert all(abs(f["t"] - i / fps) < 1e-6 for i, f in enumerate(frames))
    assert all(f["points"] is None or np.asarray(f["points"]).shape == (98, 2) for f in frames)

    events = timeline["events"]
    kinds = {e["type"] for e in events}
    assert kinds == {"blink", "microsleep", "yawn", "distraction", "face_missing"}
    assert sum(e["type"] == "yawn" for e in events) == 2
    assert sum(e["type"] == "microsleep" for e in events) == 1
    for e in events:
        inside = frames[round(e["start"] * fps) : round(e["end"] * fps)]
        if e["type"] == "microsleep":
            assert 0.9 <= e["end"] - e["start"] <= 1.8
            assert all(min(f["eye_closure"]) > 0.8 for f in inside)
        if e["type"] == "blink":
            assert e["end"] - e["start"] <= 0.35
        if e["type"] == "face_missing":
            assert all(f["points"] is None for f in inside)
        if e["type"] == "distraction":
            assert all(abs(f["yaw"]) > 30 or abs(f["pitch"]) > 20 for f in inside)
    # the listed events are exactly those of the per-frame truth (nothing missing, nothing extra)
    assert timeline_events(frames, fps, [(e["start"], e["end"]) for e in events if e["type"] == "microsleep"]) == events


# --- the command -----------------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="landmark")
    make_synthetic.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["make-synthetic", *argv])


def test_command_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["--out", str(tmp_path / "synth"), "--n", "3", "--seed", "2"])
    assert args.run(args) == 0
    assert len(read_wflw(tmp_path / "synth", "train")) + len(read_wflw(tmp_path / "synth", "test")) == 3
    assert (tmp_path / "synth" / "contact_sheet.png").is_file()
    assert "contact sheet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", "x", "--n", "0"], "--n must be > 0"),
        (["--out", "x", "--n", "5", "--test-fraction", "1.0"], "--test-fraction"),
        (["--out", "x"], "--n"),
        (["--video", "v.mp4"], "--timeline"),
        (["--video", "v.avi", "--timeline", "t.json"], ".mp4"),
        (["--video", "v.mp4", "--timeline", "t.json", "--seconds", "0"], "--seconds"),
        (["--out", "x", "--n", "3", "--video", "v.mp4", "--timeline", "t.json"], "either"),
        ([], "either"),
    ],
)
def test_command_rejects_bad_flags(argv: list[str], message: str, tmp_path: Path) -> None:
    args = _parse(argv)
    with pytest.raises(LandmarkError, match=message.replace(".", r"\.")):
        args.run(args)


def test_command_refuses_an_out_folder_that_already_holds_files(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    args = _parse(["--out", str(out), "--n", "3", "--seed", "2"])
    assert args.run(args) == 0
    before = _hashes(out)
    args = _parse(["--out", str(out), "--n", "2"])
    with pytest.raises(LandmarkError, match=r"already holds files; choose another --out or delete it first"):
        args.run(args)
    assert _hashes(out) == before
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    args = _parse(["--out", str(tmp_path / "empty"), "--n", "1"])
    assert args.run(args) == 0


def test_command_refuses_one_path_for_the_video_and_its_timeline(tmp_path: Path) -> None:
    same = tmp_path / "drive.mp4"
    args = _parse(["--video", str(same), "--timeline", str(same), "--seconds", "0.1"])
    with pytest.raises(LandmarkError, match=r"--timeline .*drive\.mp4: is also the --video file"):
        args.run(args)
    assert not same.exists()
