"""The metadata of an exported landmark ONNX file: what a runtime needs to use the model correctly.

``build_metadata`` writes it (``landmark export``), ``parse_metadata`` reads it back with numbers as numbers
and refuses values a runtime would silently misuse. This module needs neither torch nor onnx, so the
predictor can read a model's metadata from an ONNX Runtime session on a machine without them.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from landmark import __version__
from landmark.data.crop import IMAGE_MEAN, IMAGE_STD, MAX_INPUT_SIZE
from landmark.data.schemes import Scheme, scheme_for
from landmark.errors import LandmarkError

INPUT_NAME = "image"
OUTPUT_NAME = "landmarks"
DEFAULT_CROP_SCALE = 1.25

CROP_CONVENTION = (
    "square crop of side crop_scale * max(box width, box height) centred on the face box; a 2x3 affine maps "
    "image px -> crop px, applied with cv2.warpAffine INTER_LINEAR, BORDER_CONSTANT 0"
)
LANDMARK_CONVENTION = (
    "normalised crop coordinates (crop_px + 0.5) / input_size; image and crop px are 0-based with pixel "
    "centres at integers"
)
INPUT_CONVENTION = "float32 NCHW, channels in BGR order, (bgr / 255 - image_mean) / image_std"

# Keys every landmark ONNX file carries, and how to turn their text back into values.
METADATA_TYPES: dict[str, type] = {
    "producer": str,
    "landmark_version": str,
    "precision": str,
    "scheme": str,
    "num_points": int,
    "input_size": int,
    "image_mean": float,
    "image_std": float,
    "color_order": str,
    "crop_scale": float,
    "crop_convention": str,
    "landmark_convention": str,
    "input_convention": str,
    "train_config_sha256": str,
}


def config_hash(train_config: dict | None) -> str:
    """sha256 of the canonical JSON of a training config (sorted keys, no spaces), or "none"."""
    if not train_config:
        return "none"
    canonical = json.dumps(train_config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def crop_scale_of(checkpoint: dict[str, Any]) -> float:
    """The crop scale the model was trained with (``data.crop_scale`` of its training config), else 1.25."""
    train_config = checkpoint.get("train_config") or {}
    data = train_config.get("data") or {}
    return float(data.get("crop_scale", DEFAULT_CROP_SCALE))


def build_metadata(
    scheme: Scheme, input_size: int, crop_scale: float, train_config: dict | None, precision: str = "fp32"
) -> dict[str, str]:
    """The ``metadata_props`` of an exported model, as text."""
    return {
        "producer": "landmark",
        "landmark_version": __version__,
        "precision": precision,
        "scheme": scheme.name,
        "num_points": str(scheme.num_points),
        "input_size": str(input_size),
        "image_mean": str(IMAGE_MEAN),
        "image_std": str(IMAGE_STD),
        "color_order": "bgr",
        "crop_scale": str(crop_scale),
        "crop_convention": CROP_CONVENTION,
        "landmark_convention": LANDMARK_CONVENTION,
        "input_convention": INPUT_CONVENTION,
        "train_config_sha256": config_hash(train_config),
    }


def parse_metadata(props: dict[str, str], source: str) -> dict[str, Any]:
    """Typed metadata from the raw text map; ``LandmarkError`` when ``source`` is not a landmark model."""
    missing = [key for key in METADATA_TYPES if key not in props]
    if missing:
        raise LandmarkError(
            f"{source}: not a landmark ONNX model (metadata {', '.join(missing)} missing; export it with "
            "`landmark export`)"
        )
    out: dict[str, Any] = {}
    for key, kind in METADATA_TYPES.items():
        try:
            out[key] = kind(props[key])
        except ValueError:
            raise LandmarkError(f"{source}: metadata {key}: expected {kind.__name__}, got {props[key]!r}") from None
    check_metadata(out, source)
    return out


def check_metadata(meta: dict[str, Any], source: str) -> None:
    """Refuse metadata values a runtime would silently misuse: a negative crop scale mirrors the landmarks, and
    crops are always prepared as ``landmark.data.crop`` does, so a file that asks for another normalisation
    (``image_std: 0``) or channel order would be fed inputs it was not made for."""

    def bad(key: str, expected: str) -> LandmarkError:
        return LandmarkError(f"{source}: metadata {key}: expected {expected}, got {meta[key]!r}")

    try:
        scheme = scheme_for(meta["scheme"])
    except ValueError as err:
        raise LandmarkError(f"{source}: metadata scheme: {err}") from None
    if meta["num_points"] != scheme.num_points:
        raise bad("num_points", f"{scheme.num_points} (scheme {scheme.name})")
    if not 0 < meta["input_size"] <= MAX_INPUT_SIZE:
        raise bad("input_size", f"a crop size of 1 to {MAX_INPUT_SIZE} pixels")
    if not (math.isfinite(meta["crop_scale"]) and meta["crop_scale"] > 0):
        raise bad("crop_scale", "a positive number (the crop side over the face box side, e.g. 1.25)")
    for key, value in (("image_mean", IMAGE_MEAN), ("image_std", IMAGE_STD)):
        if not math.isclose(meta[key], value, rel_tol=1e-6):
            raise bad(key, f"{value} (inputs are prepared as (bgr / 255 - {IMAGE_MEAN}) / {IMAGE_STD})")
    if meta["color_order"] != "bgr":
        raise bad("color_order", "'bgr' (the channel order crops are prepared in)")
