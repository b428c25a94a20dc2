"""Driver-monitoring thresholds: dataclasses with the shipped defaults, and a strict YAML loader.

``configs/dms.yaml`` documents every value; the defaults below are the same numbers, so
``load_dms_config(None)`` and ``load_dms_config("configs/dms.yaml")`` give equal configs. The YAML has one
mapping per section; a missing key keeps its default, an unknown key or a value of the wrong type raises a
one-line ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from landmark.config import read_yaml_text
from landmark.errors import ConfigError


@dataclass(frozen=True)
class CalibrationConfig:
    seconds: float = 5.0
    min_frames: int = 15
    percentile: float = 75.0
    fallback_open_ear: float = 0.28
    min_open_ear: float = 0.12
    pose_center: bool = True


@dataclass(frozen=True)
class EyesConfig:
    closed_ratio: float = 0.5
    open_ratio: float = 0.6
    closed_floor_ratio: float = 0.1
    blink_max_s: float = 0.5
    microsleep_min_s: float = 0.5
    state_weight: float = 0.6
    state_closed: float = 0.65
    state_open: float = 0.5


@dataclass(frozen=True)
class PerclosConfig:
    window_s: float = 60.0
    closure_level: float = 0.8
    min_coverage_s: float = 30.0
    warning: float = 0.15
    critical: float = 0.30


@dataclass(frozen=True)
class BlinkRateConfig:
    window_s: float = 60.0


@dataclass(frozen=True)
class YawnConfig:
    mar_open: float = 0.35
    mar_close: float = 0.25
    min_s: float = 1.0


@dataclass(frozen=True)
class DistractionConfig:
    yaw_deg: float = 30.0
    pitch_deg: float = 20.0
    hysteresis_deg: float = 5.0
    min_s: float = 2.0


@dataclass(frozen=True)
class FaceConfig:
    missing_alert_s: float = 1.5
    grace_s: float = 0.25


@dataclass(frozen=True)
class AlertLevelsConfig:
    microsleep: int = 2
    yawn: int = 1
    distraction: int = 1
    face_missing: int = 1


@dataclass(frozen=True)
class DMSConfig:
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    eyes: EyesConfig = field(default_factory=EyesConfig)
    perclos: PerclosConfig = field(default_factory=PerclosConfig)
    blink_rate: BlinkRateConfig = field(default_factory=BlinkRateConfig)
    yawn: YawnConfig = field(default_factory=YawnConfig)
    distraction: DistractionConfig = field(default_factory=DistractionConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    alert_levels: AlertLevelsConfig = field(default_factory=AlertLevelsConfig)


def load_dms_config(path: str | Path | None = None) -> DMSConfig:
    """Read a DMS config YAML; ``None`` gives the shipped defaults (equal to configs/dms.yaml)."""
    if path is None:
        return DMSConfig()
    path = Path(path)
    text = read_yaml_text(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")

    sections = {}
    section_fields = {f.name: f for f in dataclasses.fields(DMSConfig)}
    for name, values in raw.items():
        if name not in section_fields:
            raise ConfigError(f"{path}: unknown key '{name}' (known: {', '.join(section_fields)})")
        section_cls = section_fields[name].default_factory
        sections[name] = _read_section(path, name, values, section_cls)
    config = DMSConfig(**sections)
    _check_consistency(path, config)
    return config


def _read_section(path: Path, name: str, values: object, section_cls: type) -> object:
    """Build one section dataclass, type-checking each value against the type of its default."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: key '{name}' expected a mapping, got {values!r}")
    defaults = section_cls()
    known = [f.name for f in dataclasses.fields(section_cls)]
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key '{name}.{key}' (known: {', '.join(known)})")
        checked[key] = _check_type(path, f"{name}.{key}", value, type(getattr(defaults, key)))
    return section_cls(**checked)


def _check_type(path: Path, key: str, value: object, expected: type) -> object:
    # bool is a subclass of int in Python, so it is excluded explicitly from the numeric types.
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        wanted = {bool: "true or false", int: "an integer", float: "a number"}[expected]
        raise ConfigError(f"{path}: key '{key}' expected {wanted}, got {value!r}")
    return float(value) if expected is float else value


def _check_consistency(path: Path, c: DMSConfig) -> None:
    """Reject values that parse but make no sense together, naming the first offending key."""
    rules = [
        ("calibration.seconds", c.calibration.seconds >= 0, ">= 0"),
        ("calibration.min_frames", c.calibration.min_frames >= 1, ">= 1"),
        ("calibration.percentile", 0 <= c.calibration.percentile <= 100, "in [0, 100]"),
        ("calibration.fallback_open_ear", c.calibration.fallback_open_ear > 0, "> 0"),
        ("calibration.min_open_ear", c.calibration.min_open_ear > 0, "> 0"),
        ("eyes.closed_ratio", 0 < c.eyes.closed_ratio < 1, "in (0, 1)"),
        ("eyes.open_ratio", c.eyes.closed_ratio <= c.eyes.open_ratio < 1, "in [eyes.closed_ratio, 1)"),
        ("eyes.closed_floor_ratio", 0 <= c.eyes.closed_floor_ratio < c.eyes.closed_ratio, "in [0, eyes.closed_ratio)"),
        ("eyes.microsleep_min_s", c.eyes.microsleep_min_s > 0, "> 0"),
        ("eyes.blink_max_s", 0 < c.eyes.blink_max_s <= c.eyes.microsleep_min_s, "in (0, eyes.microsleep_min_s]"),
        ("eyes.state_weight", 0 <= c.eyes.state_weight <= 1, "in [0, 1]"),
        ("eyes.state_closed", 0 < c.eyes.state_closed <= 1, "in (0, 1]"),
        ("eyes.state_open", 0 <= c.eyes.state_open <= c.eyes.state_closed, "in [0, eyes.state_closed]"),
        ("perclos.window_s", c.perclos.window_s > 0, "> 0"),
        ("perclos.closure_level", 0 < c.perclos.closure_level <= 1, "in (0, 1]"),
        ("perclos.min_coverage_s", 0 <= c.perclos.min_coverage_s <= c.perclos.window_s, "in [0, perclos.window_s]"),
        ("perclos.warning", 0 < c.perclos.warning <= 1, "in (0, 1]"),
        ("perclos.critical", c.perclos.warning <= c.perclos.critical <= 1, "in [perclos.warning, 1]"),
        ("blink_rate.window_s", c.blink_rate.window_s > 0, "> 0"),
        ("yawn.mar_open", c.yawn.mar_open > 0, "> 0"),
        ("yawn.mar_close", 0 <= c.yawn.mar_close <= c.yawn.mar_open, "in [0, yawn.mar_open]"),
        ("yawn.min_s", c.yawn.min_s >= 0, ">= 0"),
        ("distraction.yaw_deg", c.distraction.yaw_deg > 0, "> 0"),
        ("distraction.pitch_deg", c.distraction.pitch_deg > 0, "> 0"),
        (
            "distraction.hysteresis_deg",
            0 <= c.distraction.hysteresis_deg < min(c.distraction.yaw_deg, c.distraction.pitch_deg),
            "in [0, min(yaw_deg, pitch_deg))",
        ),
        ("distraction.min_s", c.distraction.min_s >= 0, ">= 0"),
        ("face.missing_alert_s", c.face.missing_alert_s > 0, "> 0"),
        ("face.grace_s", 0 <= c.face.grace_s <= c.face.missing_alert_s, "in [0, face.missing_alert_s]"),
    ]
    for name, level in dataclasses.asdict(c.alert_levels).items():
        rules.append((f"alert_levels.{name}", level in (1, 2), "1 (warning) or 2 (critical)"))
    for key, ok, expected in rules:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(c, section), name)
            raise ConfigError(f"{path}: key '{key}' must be {expected}, got {value!r}")
