"""Scoring the driver monitor's events against a ground-truth timeline.

The truth is a timeline JSON written by the synthetic video renderer: the true events (intervals with a
type) and, per frame, the true landmarks and head pose. The detections come from the monitor's JSONL log
(one ``FrameState.to_log`` dict per line), from which ``events_from_log`` rebuilds intervals.

Detected and true events of a type are matched one to one by interval overlap, widened by a tolerance so
that an event detected a few frames late or early still counts; the best-overlapping pairs are matched
first. Per type we report precision, recall, F1 and the mean onset latency (detected start - true start).
For types announced at onset (all but blinks) we also report the mean alert delay: the time of the frame
that announced the event minus the true start.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landmark.data.schemes import scheme_for
from landmark.dms.config import DMSConfig
from landmark.dms.monitor import DriverMonitor
from landmark.errors import DataError

EVENT_TYPES = ("blink", "microsleep", "yawn", "distraction", "face_missing")
# How far a log's first and last times may miss the timeline's, in frames: a decoder may drop a frame at an end.
COVER_FRAMES = 2


@dataclass(frozen=True)
class Event:
    type: str
    start: float
    end: float
    announced: float | None = None  # time of the log line that first reported it (None for truth)


# --- reading files ----------------------------------------------------------------------------------------


def load_timeline(path: str | Path) -> dict:
    """Read and check a renderer timeline JSON; any problem is a one-line DataError."""
    path = Path(path)
    timeline = _read_json(path)
    if not isinstance(timeline, dict):
        raise DataError(f"{path}: expected a JSON object with 'events' and 'frames_truth'")
    for key in ("scheme", "events", "frames_truth"):
        if key not in timeline:
            raise DataError(f"{path}: missing key '{key}'")
    try:
        scheme = scheme_for(timeline["scheme"])
    except ValueError as e:
        raise DataError(f"{path}: key 'scheme': {e}") from None
    events = truth_events(timeline, source=path)  # checks every event
    frames = timeline["frames_truth"]
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{path}: key 'frames_truth' expected a non-empty list of frames")
    fps = timeline.get("fps")
    if fps is not None and not (_is_number(fps) and fps > 0):
        raise DataError(f"{path}: key 'fps' expected a positive number, got {fps!r}")
    count = timeline.get("frames")
    if count is not None and count != len(frames):
        raise DataError(f"{path}: key 'frames' says {count!r} frames but frames_truth has {len(frames)} (truncated?)")
    for i, frame in enumerate(frames):
        where = f"{path}: frames_truth[{i}]"
        if not isinstance(frame, dict) or not _is_number(frame.get("t")):
            raise DataError(f"{where}: expected an object with a numeric 't'")
        if i and frame["t"] <= frames[i - 1]["t"]:
            raise DataError(f"{where}: t {frame['t']} is not after the previous frame's t {frames[i - 1]['t']}")
        points = frame.get("points")
        if points is not None and (not isinstance(points, list) or len(points) != scheme.num_points):
            raise DataError(f"{where}: 'points' expected null or {scheme.num_points} [x, y] pairs")
        if points is not None and not all(_is_number(frame.get(k, 0.0)) for k in ("yaw", "pitch", "roll")):
            raise DataError(f"{where}: 'yaw', 'pitch' and 'roll' must be numbers (degrees)")
    end = frames[-1]["t"] + frame_period(timeline)
    for i, event in enumerate(events):
        if event.end > end + 1e-3:  # slack for times rounded in the JSON
            raise DataError(f"{path}: events[{i}]: ends at {event.end} s, after the last frame (t < {end:.4f} s)")
    return timeline


def frame_period(timeline: dict) -> float:
    """Seconds per frame of a checked timeline: 1 / fps, else the median step of frames_truth (0 for one frame)."""
    if timeline.get("fps"):
        return 1.0 / float(timeline["fps"])
    times = [float(frame["t"]) for frame in timeline["frames_truth"]]
    return float(np.median(np.diff(times))) if len(times) > 1 else 0.0


def check_log_covers(lines: list[dict], timeline: dict, log_path: str | Path, timeline_path: str | Path) -> None:
    """A log scored against a timeline must span the same frames, give or take ``COVER_FRAMES`` frames: a log
    cut short, or one of another video, would otherwise be scored as missed or extra events."""
    frames = timeline["frames_truth"]
    tolerance = COVER_FRAMES * frame_period(timeline) + 1e-3  # logs round t to 0.1 ms
    first, last = float(lines[0]["t"]), float(lines[-1]["t"])
    start, stop = float(frames[0]["t"]), float(frames[-1]["t"])
    if abs(first - start) > tolerance or abs(last - stop) > tolerance:
        raise DataError(
            f"{log_path}: the log runs from t {first:g} to {last:g} s but the timeline {timeline_path} from "
            f"{start:g} to {stop:g} s (a log cut short, or of another video?)"
        )


def load_log(path: str | Path) -> list[dict]:
    """Read a monitor JSONL log (one FrameState.to_log dict per line; blank lines are skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read DMS log ({e.strerror or e})") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {number}: not valid JSON ({e.msg})") from None
        if not isinstance(entry, dict) or not _is_number(entry.get("t")):
            raise DataError(f"{path}: line {number}: expected an object with a numeric 't'")
        if lines and entry["t"] <= lines[-1]["t"]:
            raise DataError(
                f"{path}: line {number}: t {entry['t']} is not after the previous line's t {lines[-1]['t']} "
                "(a reversed, repeated or concatenated log?)"
            )
        events = entry.get("events", [])
        if not isinstance(events, list) or not all(_is_log_event(e) for e in events):
            raise DataError(f"{path}: line {number}: 'events' expected a list of {{'type', 'start'[, 'end']}}")
        for e in events:
            _check_event(e, f"{path}: line {number}")
        lines.append(entry)
    if not lines:
        raise DataError(f"{path}: empty DMS log (expected one JSON line per frame)")
    return lines


def _read_json(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def _is_log_event(e: object) -> bool:
    return (
        isinstance(e, dict)
        and isinstance(e.get("type"), str)
        and _is_number(e.get("start"))
        and ("end" not in e or _is_number(e["end"]))
    )


def _check_event(e: dict, where: str) -> None:
    """A known event type, a start at or after 0 and an end (when given) not before the start."""
    if e["type"] not in EVENT_TYPES:
        raise DataError(f"{where}: unknown event type {e['type']!r}; expected one of {', '.join(EVENT_TYPES)}")
    if e["start"] < 0 or e.get("end", e["start"]) < e["start"]:
        raise DataError(f"{where}: {e['type']} event expected 0 <= start <= end, got {e['start']}..{e.get('end')}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- events -----------------------------------------------------------------------------------------------


def truth_events(timeline: dict, source: str | Path = "timeline") -> list[Event]:
    """The timeline's true events as Event intervals."""
    events = timeline.get("events")
    if not isinstance(events, list):
        raise DataError(f"{source}: key 'events' expected a list")
    out = []
    for i, e in enumerate(events):
        ok = isinstance(e, dict) and isinstance(e.get("type"), str)
        ok = ok and _is_number(e.get("start")) and _is_number(e.get("end")) and e["end"] >= e["start"]
        if not ok:
            raise DataError(f"{source}: events[{i}]: expected {{'type': str, 'start': s, 'end': s >= start}}")
        _check_event(e, f"{source}: events[{i}]")
        out.append(Event(e["type"], float(e["start"]), float(e["end"])))
    return out


def events_from_log(lines: list[dict]) -> list[Event]:
    """Rebuild event intervals from log lines' ``events``.

    An onset entry ({"type", "start"}) opens an event of its type; the matching end entry (with "end")
    closes it. An end entry without an onset (blinks) is an event by itself. An event still open when the
    log stops ends at the last line's time.
    """
    events: list[Event] = []
    open_events: dict[str, tuple[float, float]] = {}  # type -> (start, announced at)
    for line in lines:
        for e in line.get("events", []):
            kind, start = e["type"], float(e["start"])
            if "end" not in e:
                open_events[kind] = (start, float(line["t"]))
                continue
            announced = open_events.pop(kind, (start, float(line["t"])))[1]
            events.append(Event(kind, start, float(e["end"]), announced))
    last_t = float(lines[-1]["t"]) if lines else 0.0
    for kind, (start, announced) in open_events.items():
        events.append(Event(kind, start, last_t, announced))
    return sorted(events, key=lambda e: (e.start, e.type))


def match_events(detected: list[Event], truth: list[Event], tolerance_s: float) -> list[tuple[Event, Event]]:
    """One-to-one (detected, true) pairs of the same type whose intervals overlap within the tolerance.

    Pairs are taken greedily, largest overlap first; with events of one type rarely overlapping each other,
    this gives the same result as an optimal assignment.
    """
    candidates = []
    for i, d in enumerate(detected):
        for j, g in enumerate(truth):
            if d.type != g.type:
                continue
            overlap = min(d.end, g.end) - max(d.start, g.start) + tolerance_s
            if overlap > 0:
                candidates.append((-overlap, i, j))
    candidates.sort()
    used_d, used_g, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_d and j not in used_g:
            used_d.add(i)
            used_g.add(j)
            pairs.append((detected[i], truth[j]))
    return pairs


def score_events(detected: list[Event], truth: list[Event], tolerance_s: float = 0.5) -> dict:
    """Per event type (and "all" types together): counts, precision, recall, F1 and mean latencies.

    Undefined ratios are None: precision with nothing detected, recall with nothing to find, F1 with
    neither. Latencies are in seconds, over the matched pairs (None without any).
    """
    pairs = match_events(detected, truth, tolerance_s)
    types = [t for t in EVENT_TYPES if any(e.type == t for e in truth + detected)]
    types += sorted({e.type for e in truth + detected} - set(EVENT_TYPES))
    scores = {}
    for kind in types:
        kind_pairs = [(d, g) for d, g in pairs if d.type == kind]
        n_det = sum(e.type == kind for e in detected)
        n_true = sum(e.type == kind for e in truth)
        scores[kind] = _scores(n_det, n_true, kind_pairs)
    scores["all"] = _scores(len(detected), len(truth), pairs)
    scores["all"]["onset_latency_s"] = scores["all"]["alert_delay_s"] = None  # mixing types means nothing
    return scores


def _scores(n_det: int, n_true: int, pairs: list[tuple[Event, Event]]) -> dict:
    tp = len(pairs)
    delays = [d.announced - g.start for d, g in pairs if d.announced is not None and d.type != "blink"]
    return {
        "truth": n_true,
        "detected": n_det,
        "tp": tp,
        "fp": n_det - tp,
        "fn": n_true - tp,
        "precision": tp / n_det if n_det else None,
        "recall": tp / n_true if n_true else None,
        "f1": 2 * tp / (n_det + n_true) if n_det + n_true else None,
        "onset_latency_s": float(np.mean([d.start - g.start for d, g in pairs])) if pairs else None,
        "alert_delay_s": float(np.mean(delays)) if delays else None,
    }


# --- the monitor fed the true landmarks -------------------------------------------------------------------


def run_monitor_on_truth(timeline: dict, config: DMSConfig | None = None) -> list[dict]:
    """Run the monitor on the timeline's true points and poses; one log line per frame.

    This measures the DMS logic alone: how well it would do with a perfect landmark detector.
    """
    monitor = DriverMonitor(scheme_for(timeline["scheme"]), config)
    lines = []
    for index, frame in enumerate(timeline["frames_truth"]):
        points = frame.get("points")
        if points is None:
            state = monitor.update(float(frame["t"]), None, None)
        else:
            pose = (float(frame.get("yaw", 0.0)), float(frame.get("pitch", 0.0)), float(frame.get("roll", 0.0)))
            state = monitor.update(float(frame["t"]), np.asarray(points, dtype=np.float64), pose)
        lines.append(state.to_log(index))
    return lines
