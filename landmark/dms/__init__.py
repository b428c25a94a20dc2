"""Driver monitoring from facial landmarks: eye/mouth signals, a stateful monitor and event scoring."""

from landmark.dms.config import DMSConfig, load_dms_config
from landmark.dms.monitor import DriverMonitor, FrameState
from landmark.dms.signals import aspect_ratios, eye_aspect_ratio, mouth_aspect_ratio

__all__ = [
    "DMSConfig",
    "DriverMonitor",
    "FrameState",
    "aspect_ratios",
    "eye_aspect_ratio",
    "load_dms_config",
    "mouth_aspect_ratio",
]
