"""The face tracker: choosing and keeping the driver, periodic re-detection, losing and re-acquiring a track.

The scene is a list of faces (landmark boxes) the test changes between frames. The fake detector reports
them; the fake model "sees" the face nearest the centre of the crop it is given (as a real model would
within its crop) and returns a fixed face shape filling that face's box, or collapsed points when no face
is in the crop.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import symmetric_points

from landmark.data.crop import face_box_from_points, invert_matrix
from landmark.data.schemes import IBUG_68
from landmark.tracking import DETECTED, NO_FACE, TRACKING, FaceTracker, TrackerConfig, choose_driver, implausible

IMAGE = np.zeros((480, 640, 3), np.uint8)
SIZE = (640, 480)


def face_shape(box: np.ndarray) -> np.ndarray:
    """(68, 2) points whose landmark box is exactly ``box``."""
    unit = symmetric_points(IBUG_68, 0.0, 0.0, 1.0)
    unit = (unit - unit.min(0)) / (unit.max(0) - unit.min(0))
    return (box[:2] + unit * (box[2:4] - box[:2])).astype(np.float32)


class Scene:
    def __init__(self, *faces) -> None:
        self.faces = [np.asarray(f, np.float32) for f in faces]


class FakeDetector:
    name = "fake"

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.calls = 0

    def detect(self, image: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.array([[*face, 0.9] for face in self.scene.faces], np.float32).reshape(-1, 5)

    def to_landmark_box(self, box: np.ndarray) -> np.ndarray:
        return np.asarray(box[:4], np.float32)


class _Prediction:
    def __init__(self, landmarks: np.ndarray) -> None:
        self.landmarks = landmarks


class FakePredictor:
    scheme = IBUG_68
    num_points = 68
    input_size = 112
    crop_scale = 1.25

    def __init__(self, scene: Scene) -> None:
        self.scene = scene

    def predict_from_matrices(self, image: np.ndarray, matrices: np.ndarray) -> _Prediction:
        out = []
        for matrix in matrices:
            centre = invert_matrix(matrix) @ np.array([self.input_size / 2 - 0.5, self.input_size / 2 - 0.5, 1.0])
            half = 0.5 * self.input_size / abs(matrix[0, 0])  # half the crop side in image pixels
            inside = [f for f in self.scene.faces if np.abs((f[:2] + f[2:]) / 2 - centre).max() < half]
            if inside:
                nearest = min(inside, key=lambda f: np.hypot(*((f[:2] + f[2:]) / 2 - centre)))
                out.append(face_shape(nearest))
            else:  # nothing face-like in the crop: a real model's points bunch up
                out.append(np.tile(centre.astype(np.float32), (68, 1)))
        return _Prediction(np.stack(out))


def make_tracker(scene: Scene, **config) -> tuple[FaceTracker, FakeDetector]:
    detector = FakeDetector(scene)
    return FaceTracker(detector, FakePredictor(scene), TrackerConfig(**config)), detector


def test_the_detector_runs_on_the_first_frame_then_every_n_frames_while_tracking():
    scene = Scene([270, 170, 370, 290])
    tracker, detector = make_tracker(scene, redetect_every=5)
    states, detected_frames = [], []
    for i in range(16):
        result = tracker.update(IMAGE, i / 30)
        states.append(result.state)
        if result.detections is not None:
            detected_frames.append(i)
    assert states[0] == DETECTED and set(states[1:]) == {TRACKING}
    assert detected_frames == [0, 5, 10, 15]
    assert detector.calls == 4
    np.testing.assert_allclose(result.box, scene.faces[0], atol=1e-3)


def test_the_largest_central_face_is_the_driver_and_stays_the_driver():
    driver, passenger = [260, 160, 380, 310], [20, 200, 100, 300]
    scene = Scene(passenger, driver)
    tracker, _ = make_tracker(scene, redetect_every=3)
    assert tracker.update(IMAGE, 0.0).state == DETECTED
    # A bigger face appears at the edge (someone leaning in): the track keeps the driver it overlaps.
    scene.faces.append(np.array([470, 100, 639, 330], np.float32))
    for i in range(1, 10):
        result = tracker.update(IMAGE, i / 30)
        assert result.state == TRACKING
        np.testing.assert_allclose(result.box, driver, atol=1e-3)


def test_choose_driver_prefers_a_central_face_over_a_slightly_larger_one_in_the_corner():
    central = [270, 190, 370, 290]  # 100 x 100 at the centre
    corner = [0, 0, 110, 110]  # 110 x 110 in the corner
    assert choose_driver(np.array([corner, central], np.float32), SIZE) == 1
    huge_off_centre = [400, 100, 640, 400]
    assert choose_driver(np.array([central, huge_off_centre], np.float32), SIZE) == 1


def test_a_lost_track_is_redetected_at_once_and_the_filter_restarts():
    scene = Scene([100, 100, 200, 220])
    tracker, detector = make_tracker(scene, redetect_every=30, min_cutoff=0.5, beta=0.0)
    tracker.update(IMAGE, 0.0)
    tracker.update(IMAGE, 1 / 30)
    # The face vanishes: the crop shows nothing, the points collapse, and the tracker says why.
    scene.faces = []
    calls = detector.calls
    result = tracker.update(IMAGE, 2 / 30)
    assert result.state == NO_FACE and result.points is None
    assert "collapsed" in result.lost_reason
    assert detector.calls == calls + 1  # re-detected on the same frame, not 28 frames later
    # It comes back elsewhere: a new track, unsmoothed on its first frame (the filter was reset).
    scene.faces = [np.array([400, 200, 520, 340], np.float32)]
    result = tracker.update(IMAGE, 3 / 30)
    assert result.state == DETECTED
    np.testing.assert_allclose(result.points, result.raw_points)
    np.testing.assert_allclose(result.box, scene.faces[0], atol=1e-3)


def test_the_filter_smooths_a_moving_face_while_tracking():
    scene = Scene([200, 150, 320, 290])
    tracker, _ = make_tracker(scene, redetect_every=100, min_cutoff=0.5, beta=0.0)
    tracker.update(IMAGE, 0.0)
    scene.faces[0] = scene.faces[0] + np.array([8, 0, 8, 0], np.float32)  # the face moves 8 px right
    result = tracker.update(IMAGE, 1 / 30)
    moved = result.raw_points[:, 0].mean() - result.points[:, 0].mean()
    assert result.state == TRACKING and 4.0 < moved < 8.0  # the smoothed points lag behind the raw ones


def test_a_track_without_matching_detections_is_dropped_after_the_allowed_misses():
    scene = Scene([250, 150, 370, 290])
    tracker, _ = make_tracker(scene, redetect_every=2, max_missed_detections=2)
    tracker.update(IMAGE, 0.0)
    detector_faces = scene.faces
    tracker.detector.scene = Scene()  # the detector stops seeing it (say, a turned head); the model still does
    states = [tracker.update(IMAGE, i / 30) for i in range(1, 5)]
    assert [s.state for s in states[:3]] == [TRACKING, TRACKING, TRACKING]
    assert states[3].state == NO_FACE and "re-detections" in states[3].lost_reason
    tracker.detector.scene = Scene(*detector_faces)
    assert tracker.update(IMAGE, 5 / 30).state == DETECTED


@pytest.mark.parametrize(
    ("points", "previous", "reason"),
    [
        (face_shape(np.array([100, 100, 110, 200])), None, "collapsed"),
        (face_shape(np.array([600, 400, 760, 560])), None, "left the image"),
        (face_shape(np.array([100, 100, 200, 220])), np.array([100, 100, 140, 150]), "size jumped"),
        (face_shape(np.array([300, 100, 400, 220])), np.array([100, 100, 200, 220]), "jumped"),
        (np.full((68, 2), np.nan, np.float32), None, "non-finite"),
    ],
)
def test_implausible_landmarks_are_named(points, previous, reason):
    eyes = IBUG_68.eye_centres(points)
    assert reason in implausible(points, previous, SIZE, eyes, TrackerConfig())


def test_plausible_landmarks_pass():
    points = face_shape(np.array([100, 100, 200, 220]))
    previous = face_box_from_points(points) + np.array([5, 3, 5, 3], np.float32)
    assert implausible(points, previous, SIZE, IBUG_68.eye_centres(points), TrackerConfig()) is None


@pytest.mark.parametrize(("frontal_yaw_deg", "dropped_within"), [(20.0, 10 + 3), (0.0, 100)])
def test_a_frontal_face_the_detector_stops_finding_is_dropped_quickly(frontal_yaw_deg, dropped_within):
    # The face leaves (an empty seat) but the fake model keeps "seeing" a frontal face in its crop. A frontal
    # track is re-checked after 3 frames and dropped on its second miss; a turned one (emulated by
    # frontal_yaw_deg=0: no face counts as frontal) keeps the patient 10 misses x 10 frames.
    scene = Scene([250, 150, 370, 290])
    tracker, _ = make_tracker(scene, frontal_yaw_deg=frontal_yaw_deg)
    assert tracker.update(IMAGE, 0.0).state == DETECTED
    tracker.detector.scene = Scene()
    states = [tracker.update(IMAGE, i / 30).state for i in range(1, 120)]
    assert states.index(NO_FACE) + 1 == dropped_within


def test_a_turned_track_whose_face_region_changes_is_dropped_at_the_first_miss():
    # A turned head keeps the patient cadence only while its region still looks like the confirmed face:
    # here the "face" (a skin-coloured box) leaves and the model still returns a face on the grey seat.
    face = [250, 150, 370, 290]
    with_face = np.full((480, 640, 3), 90, np.uint8)
    with_face[150:290, 250:370] = (120, 160, 220)  # BGR skin tone
    seat = np.full((480, 640, 3), 90, np.uint8)
    tracker, _ = make_tracker(Scene(face), frontal_yaw_deg=0.0)  # every track counts as turned
    assert tracker.update(with_face, 0.0).state == DETECTED
    tracker.detector.scene = Scene()  # the detector misses from now on
    kept = [tracker.update(with_face, i / 30).state for i in range(1, 25)]
    assert NO_FACE not in kept  # same appearance: kept through two missed re-detections
    states = [tracker.update(seat, i / 30) for i in range(25, 40)]
    first = next(s for s in states if s.state == NO_FACE)
    assert "face region changed" in first.lost_reason
    assert [s.state for s in states].index(NO_FACE) <= 10  # at the next re-detection, not 10 misses later


def test_appearance_change_is_zero_for_the_same_region_and_near_one_for_a_different_one():
    from landmark.tracking import appearance, appearance_change

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    box = np.array([10, 10, 90, 90], np.float32)
    assert appearance_change(appearance(image, box), appearance(image.copy(), box)) < 1e-6
    other = np.full_like(image, 200)
    assert appearance_change(appearance(image, box), appearance(other, box)) > 0.9
    assert appearance(image, np.array([200, 200, 300, 300], np.float32)) is None  # off the image
    grey = rng.integers(0, 256, (100, 100), dtype=np.uint8)  # greyscale (near-infrared) frames work too
    assert appearance(grey, box) is not None
