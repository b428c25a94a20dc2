"""Event scoring: matching at the edges, rebuilding events from logs, file errors, the dms-eval command and
the monitor fed the true points of a synthetic timeline built here (no video needed)."""

import argparse
import json

import numpy as np
import pytest
from conftest import place_contour

from landmark.commands import dms_eval
from landmark.data.schemes import WFLW_98
from landmark.dms.config import FaceConfig
from landmark.dms.evaluate import (
    Event,
    check_log_covers,
    events_from_log,
    load_log,
    load_timeline,
    run_monitor_on_truth,
    score_events,
    truth_events,
)
from landmark.errors import DataError

# --- scoring ----------------------------------------------------------------------------------------------

TRUTH = [Event("blink", 1.0, 1.2), Event("blink", 5.0, 5.2), Event("yawn", 10.0, 12.0)]


def test_perfect_detection():
    scores = score_events(list(TRUTH), TRUTH)
    for kind in ("blink", "yawn", "all"):
        assert scores[kind]["precision"] == scores[kind]["recall"] == scores[kind]["f1"] == 1.0
    assert scores["blink"]["onset_latency_s"] == 0.0


def test_nothing_detected():
    scores = score_events([], TRUTH)
    assert scores["blink"]["recall"] == 0.0 and scores["blink"]["f1"] == 0.0
    assert scores["blink"]["precision"] is None  # undefined, not a made-up number
    assert scores["all"]["fn"] == 3


def test_extra_detections_lower_precision_only():
    extra = [Event("blink", 20.0, 20.2), Event("blink", 30.0, 30.2)]
    scores = score_events(list(TRUTH) + extra, TRUTH)
    assert scores["blink"]["precision"] == 0.5 and scores["blink"]["recall"] == 1.0
    assert scores["blink"]["f1"] == pytest.approx(2 / 3)
    assert scores["yawn"]["precision"] == 1.0


def test_tolerance_and_latency():
    late = [Event("yawn", 12.3, 13.0)]  # starts 0.3 s after the true yawn ended
    assert score_events(late, TRUTH, tolerance_s=0.5)["yawn"]["tp"] == 1
    assert score_events(late, TRUTH, tolerance_s=0.1)["yawn"]["tp"] == 0
    scores = score_events([Event("yawn", 10.4, 12.0, announced=11.4)], TRUTH)
    assert scores["yawn"]["onset_latency_s"] == pytest.approx(0.4)
    assert scores["yawn"]["alert_delay_s"] == pytest.approx(1.4)


def test_matching_is_one_to_one_and_per_type():
    merged = [Event("blink", 0.9, 5.3)]  # one detection spanning both true blinks
    scores = score_events(merged, TRUTH)
    assert scores["blink"]["tp"] == 1 and scores["blink"]["fn"] == 1
    wrong_type = [Event("microsleep", 1.0, 1.2)]
    scores = score_events(wrong_type, TRUTH)
    assert scores["microsleep"]["fp"] == 1 and scores["blink"]["tp"] == 0


def test_events_from_log_pairs_onsets_and_ends():
    lines = [
        {"t": 1.0, "events": []},
        {"t": 1.5, "events": [{"type": "microsleep", "start": 1.0}]},
        {"t": 2.2, "events": [{"type": "microsleep", "start": 1.0, "end": 2.2}]},
        {"t": 3.0, "events": [{"type": "blink", "start": 2.8, "end": 3.0}]},
        {"t": 9.0, "events": [{"type": "yawn", "start": 8.0}]},
        {"t": 9.5, "events": []},
    ]
    assert events_from_log(lines) == [
        Event("microsleep", 1.0, 2.2, announced=1.5),
        Event("blink", 2.8, 3.0, announced=3.0),
        Event("yawn", 8.0, 9.5, announced=9.0),  # still open when the log stops
    ]


# --- files ------------------------------------------------------------------------------------------------


def test_load_log_errors(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"t": 0.0, "events": []}\n\n{"t": 0.1, "events": [}\n')
    with pytest.raises(DataError, match=r"log.jsonl: line 3: not valid JSON"):
        load_log(path)
    path.write_text('{"t": 0.0, "events": [{"start": 1.0}]}\n')
    with pytest.raises(DataError, match="line 1: 'events'"):
        load_log(path)
    with pytest.raises(DataError, match="cannot read"):
        load_log(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], r"log.jsonl: empty DMS log"),
        ([{"t": 0.1}, {"t": 0.0}], r"log.jsonl: line 2: t 0.0 is not after the previous line's t 0.1 \(a reversed"),
        ([{"t": 0.0}, {"t": 0.1}, {"t": 0.1}], r"line 3: t 0.1 is not after"),  # a repeated frame
        ([{"t": 0.0, "events": [{"type": "sneeze", "start": 0.0}]}], r"line 1: unknown event type 'sneeze'"),
        ([{"t": 0.0, "events": [{"type": "blink", "start": -5.0, "end": 0.1}]}], r"line 1: blink event .*-5.0"),
        ([{"t": 0.0, "events": [{"type": "yawn", "start": 2.0, "end": 1.0}]}], r"line 1: yawn event .*start <= end"),
    ],
)
def test_load_log_refuses_logs_that_cannot_be_scored(tmp_path, lines, message):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(DataError, match=message):
        load_log(path)


def test_load_timeline_errors(tmp_path):
    path = tmp_path / "timeline.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_timeline(path)
    good = {"scheme": "wflw98", "events": [], "frames_truth": [{"t": 0.0, "points": [[0, 0]] * 98}]}
    for broken, fragment in [
        ({k: v for k, v in good.items() if k != "events"}, "missing key 'events'"),
        ({**good, "scheme": "dlib5"}, "key 'scheme'"),
        ({**good, "events": [{"type": "blink", "start": 2.0, "end": 1.0}]}, r"events\[0\]"),
        ({**good, "frames_truth": [{"t": 0.0, "points": [[0, 0]] * 68}]}, r"frames_truth\[0\]: 'points'"),
        ({**good, "frames_truth": []}, "'frames_truth' expected a non-empty list"),
        ({**good, "frames": 900}, r"'frames' says 900 frames but frames_truth has 1 \(truncated\?\)"),
        ({**good, "frames_truth": [{"t": 0.1}, {"t": 0.0}]}, r"frames_truth\[1\]: t 0.0 is not after"),
        ({**good, "fps": 0}, "'fps' expected a positive number"),
        ({**good, "events": [{"type": "sneeze", "start": 0.0, "end": 0.0}]}, r"events\[0\]: unknown event type"),
        ({**good, "events": [{"type": "blink", "start": -1.0, "end": 0.0}]}, r"events\[0\]: blink event"),
        ({**good, "fps": 30, "events": [{"type": "yawn", "start": 0.0, "end": 5.0}]}, r"events\[0\]: ends at 5.0 s"),
    ]:
        path.write_text(json.dumps(broken))
        with pytest.raises(DataError, match=fragment) as info:
            load_timeline(path)
        assert "\n" not in str(info.value) and "timeline.json" in str(info.value)


# --- a synthetic timeline, scored end to end --------------------------------------------------------------


def face_points(eye_closure: float, mouth_open: float, rng) -> np.ndarray:
    """A frontal 98-point face: open EAR 0.3 scaled down by the closure, inner-lip MAR 0.8 * mouth_open."""
    k = np.arange(98)
    points = np.stack([200 + (k % 10) * 12.0, 200 + (k // 10) * 12.0], axis=1)
    ear = 0.3 * (1.0 - eye_closure)
    place_contour(points, WFLW_98.left_eye, (280, 240), 40.0, ear * 40.0)
    place_contour(points, WFLW_98.right_eye, (360, 240), 40.0, ear * 40.0)
    place_contour(points, WFLW_98.mouth_inner, (320, 330), 50.0, (0.05 + 0.8 * mouth_open) * 50.0)
    return points + rng.normal(0.0, 0.4, size=points.shape)  # a little annotation-level jitter


def synthetic_timeline(seconds: float = 80.0, fps: int = 30) -> dict:
    blink_starts = [7.0, 11.0, 15.5, 19.0, 26.5, 33.0, 45.0, 48.5, 56.0, 64.0, 71.5, 78.0]
    events = [{"type": "blink", "start": s, "end": s + 0.2} for s in blink_starts]
    events += [
        {"type": "microsleep", "start": 22.0, "end": 23.5},
        {"type": "microsleep", "start": 52.0, "end": 54.0},
        {"type": "yawn", "start": 29.0, "end": 31.5},
        {"type": "yawn", "start": 66.0, "end": 69.0},
        {"type": "distraction", "start": 36.0, "end": 39.0},
        {"type": "distraction", "start": 59.0, "end": 62.0},
        {"type": "face_missing", "start": 40.5, "end": 44.5},
    ]

    def level(kind: str, t: float, ramp: float) -> tuple[float, dict | None]:
        """0..1 envelope of the active event of this type: ramps up, holds, ramps down (like a real lid)."""
        for e in events:
            if e["type"] == kind and e["start"] <= t < e["end"]:
                return min(1.0, (t - e["start"]) / ramp, (e["end"] - t) / ramp), e
        return 0.0, None

    rng = np.random.default_rng(5)
    frames = []
    for i in range(int(seconds * fps)):
        t = i / fps
        closure = max(level("blink", t, 0.07)[0], level("microsleep", t, 0.15)[0])
        mouth = max(0.1, level("yawn", t, 0.4)[0])
        away, event = level("distraction", t, 0.4)
        yaw, pitch = (45.0 * away, 0.0) if event and event["start"] < 50 else (0.0, -30.0 * away)
        yaw, pitch = yaw + rng.normal(0, 1.0), pitch + rng.normal(0, 1.0)
        points = None if level("face_missing", t, 1e-6)[1] else face_points(closure, mouth, rng).tolist()
        frames.append({"t": t, "points": points, "yaw": yaw, "pitch": pitch, "eye_closure": [closure, closure],
                       "mouth_open": mouth})  # fmt: skip
    return {"fps": fps, "frames": len(frames), "width": 640, "height": 480, "scheme": "wflw98", "seed": 5,
            "events": events, "frames_truth": frames}  # fmt: skip


@pytest.fixture(scope="module")
def timeline():
    return synthetic_timeline()


def test_monitor_on_true_points_finds_the_events(timeline):
    lines = run_monitor_on_truth(timeline)
    assert len(lines) == timeline["frames"]
    scores = score_events(events_from_log(lines), truth_events(timeline))
    for kind in ("blink", "microsleep", "yawn", "distraction", "face_missing"):
        assert scores[kind]["f1"] >= 0.95, (kind, scores[kind])
        assert 0.0 <= scores[kind]["onset_latency_s"] < 0.4, (kind, scores[kind])  # ramps delay onsets
    assert scores["microsleep"]["alert_delay_s"] == pytest.approx(0.6, abs=0.1)
    assert scores["face_missing"]["alert_delay_s"] == pytest.approx(FaceConfig().missing_alert_s, abs=0.05)


def test_dms_eval_refuses_a_log_that_does_not_cover_the_timeline(timeline, tmp_path):
    """A log cut short or of another (shorter or longer) video was scored as missed events, exit 0."""
    timeline_path = tmp_path / "timeline.json"
    timeline_path.write_text(json.dumps(timeline))
    lines = run_monitor_on_truth(timeline)
    parser = argparse.ArgumentParser()
    dms_eval.add_parser(parser.add_subparsers())
    for kept, ok in [(lines[:-2], True), (lines[2:], True), (lines[:-3], False), (lines[: len(lines) // 2], False)]:
        log_path = tmp_path / "dms.jsonl"
        log_path.write_text("".join(json.dumps(line) + "\n" for line in kept))
        args = parser.parse_args(["dms-eval", "--timeline", str(timeline_path), "--log", str(log_path), "--json", "-"])
        if ok:  # a frame or two lost at either end (a decoder's last frame) is fine
            assert args.run(args) == 0
            continue
        with pytest.raises(DataError, match=r"dms.jsonl: the log runs from t 0 to .* timeline .*timeline.json from 0"):
            args.run(args)
    longer = [{**line, "t": line["t"] + 80.0} for line in lines]  # the log of a 160 s video
    with pytest.raises(DataError, match="a log cut short, or of another video"):
        check_log_covers(lines + longer, timeline, "dms.jsonl", timeline_path)


def test_dms_eval_command(timeline, tmp_path, capsys):
    timeline_path = tmp_path / "timeline.json"
    timeline_path.write_text(json.dumps(timeline))
    log_path = tmp_path / "dms.jsonl"
    lines = run_monitor_on_truth(timeline)
    for line in lines[len(lines) // 2 :]:  # a monitor that went blind halfway finds only the first half's events
        line["events"] = []
    log_path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    parser = argparse.ArgumentParser()
    dms_eval.add_parser(parser.add_subparsers())
    out_path = tmp_path / "scores.json"
    args = parser.parse_args(["dms-eval", "--timeline", str(timeline_path), "--log", str(log_path),
                              "--json", str(out_path)])  # fmt: skip
    assert args.run(args) == 0
    table = capsys.readouterr().out
    assert "microsleep" in table and "F1" in table
    report = json.loads(out_path.read_text())
    assert 0.3 < report["scores"]["blink"]["recall"] < 0.7 and report["scores"]["blink"]["precision"] == 1.0
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file behind

    args = parser.parse_args(["dms-eval", "--timeline", str(timeline_path), "--truth-points", "--json", "-"])
    assert args.run(args) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout is pure JSON; the table went to stderr
    assert report["scores"]["all"]["f1"] >= 0.95 and "recall" in captured.err
