"""Driver monitoring: EAR/MAR signals, the stateful monitor on synthetic landmark sequences, the config."""

import json
import time

import numpy as np
import pytest
from conftest import place_contour

from landmark.data.schemes import IBUG_68, WFLW_98, Scheme
from landmark.dms import DMSConfig, DriverMonitor, load_dms_config
from landmark.dms.config import CalibrationConfig
from landmark.dms.signals import FaceRatios, aspect_ratios, eye_aspect_ratio, mouth_aspect_ratio
from landmark.errors import ConfigError

FPS = 30.0
OPEN_EAR = 0.3


# --- a synthetic frontal face whose eye and mouth openings we control ------------------------------------


def make_face(scheme: Scheme, ear: float = OPEN_EAR, mar: float = 0.05) -> np.ndarray:
    """(K, 2) pixel points: a loose grid for the points we do not use, eyes and inner lips placed exactly."""
    k = np.arange(scheme.num_points)
    points = np.stack([200 + (k % 10) * 12.0, 200 + (k // 10) * 12.0], axis=1)
    place_contour(points, scheme.left_eye, (280, 240), 40.0, ear * 40.0)
    place_contour(points, scheme.right_eye, (360, 240), 40.0, ear * 40.0)
    place_contour(points, scheme.mouth_inner, (320, 330), 50.0, mar * 50.0)
    return points


class Driver:
    """Feeds a monitor frame by frame at FPS and remembers every state."""

    def __init__(self, monitor: DriverMonitor, scheme: Scheme = WFLW_98) -> None:
        self.monitor, self.scheme, self.t, self.states = monitor, scheme, 0.0, []
        self.frame = 0

    def feed(self, seconds: float, ear=OPEN_EAR, mar=0.05, yaw=0.0, pitch=0.0, face=True, jitter=None):
        for _ in range(int(round(seconds * FPS))):
            e = ear(self.frame) if callable(ear) else ear
            points = make_face(self.scheme, e, mar) if face else None
            self.states.append(self.monitor.update(self.t, points, (yaw, pitch, 0.0) if face else None))
            self.frame += 1
            self.t = self.frame / FPS
        return self

    def events(self, kind=None):
        return [e for s in self.states for e in s.events if kind is None or e["type"] == kind]


def calibrated_driver(config: DMSConfig | None = None, scheme: Scheme = WFLW_98) -> Driver:
    driver = Driver(DriverMonitor(scheme, config), scheme).feed(5.5)
    assert driver.states[-1].calibrated
    return driver


# --- signals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [WFLW_98, IBUG_68])
def test_ear_and_mar_on_built_faces(scheme):
    points = make_face(scheme, ear=0.27, mar=0.62)
    assert eye_aspect_ratio(points, scheme.left_eye) == pytest.approx(0.27)
    assert eye_aspect_ratio(points, scheme.right_eye) == pytest.approx(0.27)
    assert mouth_aspect_ratio(points, scheme) == pytest.approx(0.62)


@pytest.mark.parametrize("scheme", [WFLW_98, IBUG_68])
def test_ear_uses_mean_of_uneven_lid_pairs(scheme):
    points = make_face(scheme, ear=0.3)
    eye = scheme.left_eye
    upper, lower = eye.pairs[0]
    points[upper, 1] -= 4.0  # widen one pair by 4 px on a 40 px eye
    expected = 0.3 + 4.0 / len(eye.pairs) / 40.0
    assert eye_aspect_ratio(points, eye) == pytest.approx(expected)
    assert eye_aspect_ratio(points, scheme.right_eye) == pytest.approx(0.3)


def test_hand_placed_68_point_eye():
    points = np.zeros((68, 2))
    points[36], points[39] = (0, 0), (4, 0)  # corners 4 apart
    points[37], points[41] = (1, -1), (1, 1)  # opening 2
    points[38], points[40] = (3, -0.5), (3, 0.5)  # opening 1
    assert eye_aspect_ratio(points, IBUG_68.left_eye) == pytest.approx(1.5 / 4)


def test_ratios_are_rotation_and_scale_invariant_and_vectorised():
    points = make_face(WFLW_98, ear=0.22, mar=0.4)
    angle = np.deg2rad(25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 2.5 * points @ rot.T + 17.0
    batch = np.stack([points, moved, make_face(WFLW_98, ear=0.05)])  # (T, K, 2)
    np.testing.assert_allclose(aspect_ratios(batch, WFLW_98.left_eye), [0.22, 0.22, 0.05])
    np.testing.assert_allclose(aspect_ratios(batch, WFLW_98.mouth_inner), [0.4, 0.4, 0.05])


def test_degenerate_eye_gives_zero_not_nan():
    assert eye_aspect_ratio(np.zeros((98, 2)), WFLW_98.left_eye) == 0.0


@pytest.mark.parametrize("scheme", [WFLW_98, IBUG_68])
def test_face_ratios_match_the_plain_functions(scheme):
    rng = np.random.default_rng(3)
    ratios = FaceRatios(scheme)
    for _ in range(5):
        points = rng.uniform(0, 200, size=(scheme.num_points, 2))
        expected = [eye_aspect_ratio(points, scheme.left_eye), eye_aspect_ratio(points, scheme.right_eye),
                    mouth_aspect_ratio(points, scheme)]  # fmt: skip
        np.testing.assert_allclose(ratios(points), expected)
    assert np.isnan(ratios(np.zeros((scheme.num_points, 2)))).all()


# --- calibration and eye closure --------------------------------------------------------------------------


def test_calibration_learns_open_ear_despite_blinks():
    # Open at 0.34 with a blink every second (5 of 30 frames closed) during calibration.
    driver = Driver(DriverMonitor(WFLW_98)).feed(6.0, ear=lambda i: 0.02 if i % 30 < 5 else 0.34)
    before = [s for s in driver.states if s.t < 5.0]
    assert not any(s.calibrated for s in before)
    assert all(s.open_ear == CalibrationConfig().fallback_open_ear for s in before)
    assert driver.states[-1].calibrated
    assert driver.states[-1].open_ear == pytest.approx(0.34)
    assert driver.states[-1].blink_count == 6  # the fallback threshold already works before calibration


def test_thresholds_follow_the_calibrated_open_ear():
    # A driver with narrow eyes: open 0.18. Before calibration (fallback 0.28 -> closed < 0.14) an EAR of
    # 0.11 is closed; after calibration (closed < 0.09) the same 0.11 is open.
    driver = calibrated_driver_with(open_ear=0.18)
    driver.feed(0.3, ear=0.11)
    assert not any(s.eyes_closed for s in driver.states[-9:])
    driver.feed(0.3, ear=0.08)
    assert driver.states[-1].eyes_closed


def calibrated_driver_with(open_ear: float) -> Driver:
    driver = Driver(DriverMonitor(WFLW_98)).feed(5.5, ear=open_ear)
    assert driver.states[-1].open_ear == pytest.approx(open_ear)
    return driver


def test_blinks_are_counted_with_their_intervals():
    driver = calibrated_driver()
    for _ in range(3):
        driver.feed(2.0)
        start = driver.t
        driver.feed(0.2, ear=0.03)  # 6 closed frames
        end = driver.t
    driver.feed(1.0)
    blinks = driver.events("blink")
    assert driver.states[-1].blink_count == 3
    assert len(blinks) == 3 and not driver.events("microsleep")
    assert blinks[-1]["start"] == pytest.approx(start) and blinks[-1]["end"] == pytest.approx(end)
    assert max(s.closed_duration for s in driver.states) == pytest.approx(5 / FPS)


def test_long_closure_is_one_microsleep_and_no_blink():
    driver = calibrated_driver()
    start = driver.t
    driver.feed(1.2, ear=0.02)
    end = driver.t
    driver.feed(1.0)
    assert driver.states[-1].blink_count == 0
    onsets = [e for e in driver.events("microsleep") if "end" not in e]
    ends = [e for e in driver.events("microsleep") if "end" in e]
    assert len(onsets) == 1 and len(ends) == 1
    assert onsets[0]["start"] == pytest.approx(start)
    onset_state = next(s for s in driver.states if s.events)
    assert onset_state.t == pytest.approx(start + 0.5)  # announced once the closure reaches 0.5 s
    assert onset_state.microsleep and onset_state.alert_level == 2 and "microsleep" in onset_state.alerts
    assert ends[0]["end"] == pytest.approx(end)
    assert driver.states[-1].microsleep_count == 1 and not driver.states[-1].microsleep


def test_closure_just_short_of_microsleep_is_a_blink():
    driver = calibrated_driver()
    driver.feed(0.5, ear=0.02)  # 15 frames: the last closed one 0.4667 s after the first, reopened at 0.5 s
    driver.feed(1.0)
    assert driver.states[-1].blink_count == 1 and not driver.events("microsleep")


def test_hysteresis_prevents_flicker():
    # open_ear 0.3: closes below 0.15, reopens only above 0.18. An EAR jittering between 0.14 and 0.17
    # must give one closure, not one per frame.
    driver = calibrated_driver()
    driver.feed(0.3, ear=lambda i: 0.14 if i % 2 else 0.17)
    assert all(s.eyes_closed for s in driver.states[-8:])
    driver.feed(0.5)
    assert driver.states[-1].blink_count == 1


# --- PERCLOS and blink rate -------------------------------------------------------------------------------


def test_perclos_counts_frames_at_least_80_percent_closed():
    driver = calibrated_driver()
    # 1 frame in 5 fully closed (closure 1); 1 frame in 5 half closed (EAR 0.15 -> closure 0.56 < 0.8).
    pattern = {0: 0.0, 1: 0.15}
    driver.feed(40.0, ear=lambda i: pattern.get(i % 5, OPEN_EAR))
    last = driver.states[-1]
    assert last.perclos == pytest.approx(0.2, abs=0.01)
    assert last.closure is not None
    assert "perclos" in last.alerts and last.alert_level == 1  # 0.2 >= warning 0.15, < critical 0.30


def test_perclos_window_forgets_old_frames():
    driver = calibrated_driver()
    driver.feed(20.0, ear=0.0)  # eyes shut for 20 s: PERCLOS heads to 1
    assert driver.states[-1].perclos > 0.7
    assert "perclos" not in driver.states[-1].alerts  # window spans < 30 s: too early to alert
    driver.feed(61.0)  # a full window of open eyes
    assert driver.states[-1].perclos == 0.0


def test_perclos_critical_level():
    driver = calibrated_driver()
    driver.feed(35.0, ear=lambda i: 0.0 if i % 5 < 2 else OPEN_EAR)  # 40% closed
    assert driver.states[-1].perclos == pytest.approx(0.4, abs=0.01)
    assert driver.states[-1].alert_level == 2


def test_blink_rate_per_minute():
    driver = calibrated_driver()
    for _ in range(15):  # one blink every 4 s for 60 s
        driver.feed(3.8)
        driver.feed(0.2, ear=0.02)
    driver.feed(0.1)
    assert driver.states[-1].blink_rate == pytest.approx(15.0, abs=1.0)


# --- yawns, distraction and face loss ---------------------------------------------------------------------


def test_yawn_needs_a_long_wide_mouth_opening():
    driver = calibrated_driver()
    driver.feed(0.6, mar=0.7)  # talking / short opening
    driver.feed(1.0)
    assert not driver.events("yawn")
    start = driver.t
    driver.feed(1.5, mar=0.7)
    end = driver.t
    driver.feed(1.0)
    yawns = driver.events("yawn")
    assert [("end" in e) for e in yawns] == [False, True]
    assert yawns[1]["start"] == pytest.approx(start) and yawns[1]["end"] == pytest.approx(end)
    assert driver.states[-1].yawn_count == 1
    assert any("yawn" in s.alerts and s.yawning for s in driver.states)


def test_looking_away_for_three_seconds_is_one_distraction():
    driver = calibrated_driver()
    driver.feed(1.0, yaw=40.0)  # a mirror check
    driver.feed(1.0)
    assert not driver.events("distraction")
    start = driver.t
    driver.feed(3.0, yaw=40.0)
    driver.feed(1.0, yaw=28.0)  # still beyond the return threshold (25 deg): same episode
    end = driver.t
    driver.feed(1.0, yaw=5.0)
    events = driver.events("distraction")
    assert len(events) == 2 and events[0]["start"] == pytest.approx(start)
    assert events[1]["end"] == pytest.approx(end)
    assert driver.states[-1].distraction_count == 1


def test_pitch_beyond_limit_is_a_distraction():
    driver = calibrated_driver()
    driver.feed(2.5, pitch=-25.0)  # looking down at a phone
    assert driver.states[-1].distracted and "distraction" in driver.states[-1].alerts


def test_pose_is_measured_from_the_calibrated_centre():
    # Camera off to the side: the driver's straight-ahead yaw reads 25 deg. 50 deg is 25 deg from centre
    # (not a distraction); 65 deg is 40 deg from it (a distraction).
    driver = Driver(DriverMonitor(WFLW_98)).feed(5.5, yaw=25.0)
    driver.feed(3.0, yaw=50.0)
    assert not driver.events("distraction")
    driver.feed(3.0, yaw=65.0)
    assert len(driver.events("distraction")) == 1


def test_missing_face_for_four_seconds():
    driver = calibrated_driver()
    lost = driver.t
    driver.feed(4.0, face=False)
    back = driver.t
    driver.feed(1.0)
    events = driver.events("face_missing")
    assert len(events) == 2 and events[0]["start"] == pytest.approx(lost)
    assert events[1] == {"type": "face_missing", "start": pytest.approx(lost), "end": pytest.approx(back)}
    onset = next(s for s in driver.states if s.events)
    alert_after = driver.monitor.config.face.missing_alert_s
    assert onset.t == pytest.approx(lost + alert_after) and onset.alerts == ["face_missing"]
    assert onset.face_missing_duration == pytest.approx(alert_after) and onset.ear is None
    assert driver.states[-1].face_missing_duration == 0.0 and driver.states[-1].alert_level == 0


def test_face_lost_during_microsleep_ends_it_at_the_loss():
    driver = calibrated_driver()
    driver.feed(1.0, ear=0.02)
    lost = driver.t
    driver.feed(3.0, face=False)
    driver.feed(1.0)
    ends = [e for e in driver.events("microsleep") if "end" in e]
    assert len(ends) == 1 and ends[0]["end"] == pytest.approx(lost)
    assert driver.states[-1].blink_count == 0


def test_face_lost_during_short_closure_counts_nothing():
    driver = calibrated_driver()
    driver.feed(0.2, ear=0.02)
    driver.feed(1.0, face=False)
    driver.feed(1.0)
    assert driver.events() == [] and driver.states[-1].blink_count == 0


def test_one_frame_dropout_does_not_split_a_blink():
    driver = calibrated_driver()
    start = driver.t
    driver.feed(0.1, ear=0.02)
    driver.feed(1 / FPS, face=False)
    driver.feed(0.1, ear=0.02)
    end = driver.t
    driver.feed(0.5)
    assert driver.states[-1].blink_count == 1
    assert driver.events("blink") == [{"type": "blink", "start": start, "end": end}]


def test_nan_points_count_as_missing_face():
    monitor = DriverMonitor(WFLW_98)
    points = make_face(WFLW_98)
    points[61] = np.nan
    state = monitor.update(0.0, points, (0.0, 0.0, 0.0))
    assert not state.face and state.ear is None
    state = monitor.update(0.1, make_face(WFLW_98), (float("nan"), 0.0, 0.0))  # a failed pose fit
    assert state.face and state.yaw is None and not state.distracted
    json.dumps(state.to_log(1), allow_nan=False)


# --- other schemes, logging, API contract, speed ----------------------------------------------------------


def test_monitor_on_68_points():
    driver = calibrated_driver(scheme=IBUG_68)
    driver.feed(0.2, ear=0.02)
    driver.feed(1.2, ear=0.02, mar=0.7)
    driver.feed(0.5)
    assert driver.states[-1].microsleep_count == 1 and driver.states[-1].yawn_count == 1


def test_log_line_is_strict_json_and_rounded():
    driver = calibrated_driver()
    driver.feed(0.2, ear=0.0312345)
    driver.feed(0.1)
    line = next(s for s in driver.states if s.events).to_log(7)
    text = json.dumps(line, allow_nan=False)
    assert json.loads(text) == line
    assert line["frame"] == 7 and line["events"][0]["type"] == "blink"
    missing = DriverMonitor(WFLW_98).update(0.0, None, None).to_log(0)
    json.dumps(missing, allow_nan=False)
    assert missing["ear"] is None and missing["face"] is False
    expected_keys = {"t", "face", "ear_left", "ear_right", "ear", "mar", "closure", "eyes_closed",
                     "closed_duration", "microsleep", "blink_count", "blink_rate", "perclos", "yawning",
                     "yawn_count", "yaw", "pitch", "roll", "distracted", "face_missing_duration", "calibrated",
                     "open_ear", "alert_level", "alerts", "events"}  # fmt: skip
    assert expected_keys <= set(line)
    assert line["ear"] == round(line["ear"], 4)


def test_reset_forgets_calibration_and_counts():
    driver = calibrated_driver()
    driver.feed(0.2, ear=0.02)
    driver.feed(0.2)
    driver.monitor.reset()
    state = driver.monitor.update(0.0, make_face(WFLW_98), (0.0, 0.0, 0.0))
    assert not state.calibrated and state.blink_count == 0


def test_bad_calls_raise():
    monitor = DriverMonitor(WFLW_98)
    with pytest.raises(ValueError, match="98, 2"):
        monitor.update(0.0, np.zeros((68, 2)), None)
    monitor.update(1.0, None, None)
    with pytest.raises(ValueError, match="backwards"):
        monitor.update(0.5, None, None)


def test_per_frame_cost_is_small():
    monitor = DriverMonitor(WFLW_98)
    faces = [make_face(WFLW_98, ear=0.02 if i % 40 < 4 else 0.3) for i in range(40)]
    for i in range(200):  # warm up
        monitor.update(i / 100, faces[i % 40], (1.0, 2.0, 0.0))
    start = time.perf_counter()
    n = 2000
    for i in range(200, 200 + n):
        monitor.update(i / 100, faces[i % 40], (1.0, 2.0, 0.0))
    per_frame = (time.perf_counter() - start) / n
    assert per_frame < 1e-3  # budget 0.2 ms; generous here for a shared CI machine


# --- config -----------------------------------------------------------------------------------------------


CONFIG_YAML = "configs/dms.yaml"


def repo_config_path():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / CONFIG_YAML


def test_shipped_yaml_equals_defaults():
    assert load_dms_config(repo_config_path()) == load_dms_config(None) == DMSConfig()


def test_yaml_override(tmp_path):
    path = tmp_path / "dms.yaml"
    path.write_text("eyes:\n  microsleep_min_s: 1\n  blink_max_s: 0.4\nyawn:\n  min_s: 2.0\n")
    config = load_dms_config(path)
    assert config.eyes.microsleep_min_s == 1.0 and isinstance(config.eyes.microsleep_min_s, float)
    assert config.yawn.min_s == 2.0 and config.perclos == DMSConfig().perclos


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("eyes:\n  closed_rato: 0.5\n", "unknown key 'eyes.closed_rato'"),
        ("eyez:\n  closed_ratio: 0.5\n", "unknown key 'eyez'"),
        ("eyes:\n  closed_ratio: half\n", "key 'eyes.closed_ratio' expected a number"),
        ("calibration:\n  pose_center: 1\n", "key 'calibration.pose_center' expected true or false"),
        ("calibration:\n  min_frames: 2.5\n", "key 'calibration.min_frames' expected an integer"),
        ("eyes: 3\n", "key 'eyes' expected a mapping"),
        ("eyes:\n  open_ratio: 0.4\n", "key 'eyes.open_ratio' must be"),
        ("eyes:\n  blink_max_s: 0.8\n", "key 'eyes.blink_max_s' must be"),
        ("alert_levels:\n  yawn: 3\n", "key 'alert_levels.yawn' must be"),
        ("eyes: [1, 2\n", "not valid YAML at line"),
        ("- 1\n", "expected a mapping of sections"),
    ],
)
def test_bad_config_is_one_line_error_naming_file_and_key(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_dms_config(path)
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_dms_config(tmp_path / "nope.yaml")
