"""Training augmentation, configured by a small YAML dict (``configs/augment/*.yaml``).

Geometry (rotation, scale, translation, horizontal flip, box jitter) is folded into the crop matrix of
``landmark.data.crop``: one warp does crop and augmentation, the landmarks go through the same matrix, so a
landmark drawn into the image lands exactly where its label says, and no point is ever dropped (points that
leave the crop simply get coordinates outside [0, 1]). A flip mirrors the matrix and reorders the points by
the scheme's flip permutation, so index i still means the same facial point.

The photometric part (colour, blur, JPEG, greyscale, occlusion) is albumentations 2.0.8 on the crop; it
does not move pixels, so it never touches the landmarks.

Config keys (all optional; a missing key means "off"):

    rotation: 20                # max |angle| in degrees (uniform in [-r, r]), at most 90
    scale: [0.9, 1.1]           # crop side multiplier range; > 1 zooms out (face smaller)
    translate: 0.05             # max crop-centre shift per axis, fraction of the crop side
    flip: 0.5                   # horizontal flip probability
    color_jitter: {p: 0.3, brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.02}
    brightness_contrast: {p: 0.3, brightness: 0.2, contrast: 0.2}
    gamma: {p: 0.3, gamma: [0.5, 2.0]}            # tone curve: > 1 crushes the shadows, < 1 washes out
    noise: {p: 0.2, std: [0.02, 0.08]}            # Gaussian sensor noise, std as a fraction of 255
    blur: {p: 0.1, sigma: [0.5, 1.5]}            # Gaussian blur
    motion_blur: {p: 0.1, kernel: [3, 7]}         # odd kernel sizes in pixels
    jpeg: {p: 0.2, quality: [50, 95]}
    grayscale: {p: 0.1}
    dropout: {p: 0.1, holes: [1, 2], size: [0.1, 0.25]}  # occluding rectangles, size as crop fraction
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from landmark.config import read_yaml_text
from landmark.data.crop import crop_image, crop_matrix, mirror_crop_matrix, points_to_crop
from landmark.data.schemes import Scheme
from landmark.errors import ConfigError, first_line

# albumentations checks PyPI for a newer version on import; this toolkit runs offline (in a car, in CI).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "augment"

# Photometric blocks: allowed sub-keys with their defaults (p is the probability of applying the block).
PHOTOMETRIC_DEFAULTS: dict[str, dict] = {
    "color_jitter": {"p": 0.0, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02},
    "brightness_contrast": {"p": 0.0, "brightness": 0.2, "contrast": 0.2},
    "gamma": {"p": 0.0, "gamma": [0.5, 2.0]},
    "noise": {"p": 0.0, "std": [0.02, 0.08]},
    "blur": {"p": 0.0, "sigma": [0.5, 1.5]},
    "motion_blur": {"p": 0.0, "kernel": [3, 7]},
    "jpeg": {"p": 0.0, "quality": [50, 95]},
    "grayscale": {"p": 0.0},
    "dropout": {"p": 0.0, "holes": [1, 2], "size": [0.1, 0.25]},
}
GEOMETRY_DEFAULTS: dict[str, object] = {"rotation": 0.0, "scale": [1.0, 1.0], "translate": 0.0, "flip": 0.0}


# --- config validation -------------------------------------------------------------------------------------


def _number(value: object, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{where}: expected a number in [{low}, {high}], got {value!r}")
    return float(value)


def _range(value: object, where: str, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{where}: expected [min, max], got {value!r}")
    a, b = (_number(v, where, low, high) for v in value)
    if a > b:
        raise ConfigError(f"{where}: min {a} is larger than max {b}")
    return a, b


def _check_block(name: str, block: object, where: str) -> dict:
    """Validate one photometric block; returns it with defaults filled in."""
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping like {PHOTOMETRIC_DEFAULTS[name]}, got {block!r}")
    unknown = sorted(set(block) - set(PHOTOMETRIC_DEFAULTS[name]))
    if unknown:
        known = ", ".join(PHOTOMETRIC_DEFAULTS[name])
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {known})")
    out = {**PHOTOMETRIC_DEFAULTS[name], **block}
    out["p"] = _number(out["p"], f"{where}.p", 0.0, 1.0)
    for key in ("brightness", "contrast", "saturation"):
        if key in out:
            out[key] = _number(out[key], f"{where}.{key}", 0.0, 1.0)
    if "hue" in out:
        out["hue"] = _number(out["hue"], f"{where}.hue", 0.0, 0.5)
    if "sigma" in out:
        out["sigma"] = _range(out["sigma"], f"{where}.sigma", 0.1, 10.0)
    if "gamma" in out:
        out["gamma"] = _range(out["gamma"], f"{where}.gamma", 0.1, 10.0)
    if "std" in out:
        out["std"] = _range(out["std"], f"{where}.std", 0.0, 1.0)
    if "kernel" in out:
        out["kernel"] = _range(out["kernel"], f"{where}.kernel", 3, 31)
        if any(int(k) != k or int(k) % 2 == 0 for k in out["kernel"]):
            raise ConfigError(f"{where}.kernel: expected odd integers, got {block.get('kernel')!r}")
    if "quality" in out:
        out["quality"] = _range(out["quality"], f"{where}.quality", 1, 100)
    if "holes" in out:
        out["holes"] = _range(out["holes"], f"{where}.holes", 1, 20)
    if "size" in out:
        out["size"] = _range(out["size"], f"{where}.size", 0.01, 1.0)
    return out


def validate_augment_config(config: dict | None, source: str = "augment config") -> dict:
    """Check an augmentation dict and fill in defaults; errors name ``source`` and the key."""
    config = {} if config is None else config
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: expected a mapping of augmentation settings, got {config!r}")
    unknown = sorted(set(config) - set(GEOMETRY_DEFAULTS) - set(PHOTOMETRIC_DEFAULTS))
    if unknown:
        known = ", ".join([*GEOMETRY_DEFAULTS, *PHOTOMETRIC_DEFAULTS])
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (known: {known})")
    out = {**GEOMETRY_DEFAULTS, **config}
    out["rotation"] = _number(out["rotation"], f"{source}: rotation", 0.0, 90.0)
    out["scale"] = _range(out["scale"], f"{source}: scale", 0.2, 5.0)
    out["translate"] = _number(out["translate"], f"{source}: translate", 0.0, 0.5)
    out["flip"] = _number(out["flip"], f"{source}: flip", 0.0, 1.0)
    for name in PHOTOMETRIC_DEFAULTS:
        out[name] = _check_block(name, config.get(name, {}), f"{source}: {name}")
    return out


def load_augment_config(name_or_path: str | Path) -> dict:
    """Read and validate an augmentation YAML: a path, or a name in ``configs/augment`` ("strong")."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    try:
        config = yaml.safe_load(read_yaml_text(path))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {first_line(error, None)}") from None
    return validate_augment_config(config, str(path))


# --- the augmenter -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """One draw of the geometric augmentation, in ``crop_matrix`` terms."""

    scale: float = 1.0  # multiplies the crop side
    shift: tuple[float, float] = (0.0, 0.0)  # crop-centre shift, fraction of the crop side
    rotation_deg: float = 0.0
    flip: bool = False


def _photometric_pipeline(cfg: dict, seed: int) -> A.Compose | None:
    """albumentations transforms for the enabled photometric blocks (None when all are off)."""
    block = {name: cfg[name] for name in PHOTOMETRIC_DEFAULTS if cfg[name]["p"] > 0}
    transforms = []
    if "color_jitter" in block:
        b = block["color_jitter"]
        transforms.append(A.ColorJitter(b["brightness"], b["contrast"], b["saturation"], b["hue"], p=b["p"]))
    if "brightness_contrast" in block:
        b = block["brightness_contrast"]
        transforms.append(A.RandomBrightnessContrast(b["brightness"], b["contrast"], p=b["p"]))
    if "gamma" in block:  # albumentations takes gamma in percent
        low, high = block["gamma"]["gamma"]
        transforms.append(A.RandomGamma(gamma_limit=(100 * low, 100 * high), p=block["gamma"]["p"]))
    if "noise" in block:
        transforms.append(A.GaussNoise(std_range=tuple(block["noise"]["std"]), p=block["noise"]["p"]))
    if "blur" in block:
        transforms.append(A.GaussianBlur(sigma_limit=block["blur"]["sigma"], p=block["blur"]["p"]))
    if "motion_blur" in block:
        kernel = tuple(int(k) for k in block["motion_blur"]["kernel"])
        transforms.append(A.MotionBlur(blur_limit=kernel, p=block["motion_blur"]["p"]))
    if "jpeg" in block:
        quality = tuple(int(q) for q in block["jpeg"]["quality"])
        transforms.append(A.ImageCompression(quality_range=quality, p=block["jpeg"]["p"]))
    if "grayscale" in block:
        transforms.append(A.ToGray(p=block["grayscale"]["p"]))
    if "dropout" in block:
        b = block["dropout"]
        transforms.append(
            A.CoarseDropout(
                num_holes_range=tuple(int(h) for h in b["holes"]),
                hole_height_range=b["size"],
                hole_width_range=b["size"],
                fill="random_uniform",
                p=b["p"],
            )
        )
    return A.Compose(transforms, seed=seed) if transforms else None


class Augmenter:
    """Crop + augment one face. With ``config=None`` and no box jitter it is the plain evaluation crop.

    ``box_jitter`` simulates face-detector error: the box centre moves by up to ``box_jitter`` of the box
    side per axis and its side scales by a factor in [1 - box_jitter, 1 + box_jitter].
    """

    def __init__(
        self,
        config: dict | None,
        scheme: Scheme,
        box_jitter: float = 0.0,
        seed: int = 0,
        source: str = "augment config",
    ):
        self.config = validate_augment_config(config, source)
        self.scheme = scheme
        self.box_jitter = _number(box_jitter, "box_jitter", 0.0, 0.5)
        self.rng = np.random.default_rng(seed)
        self.photometric = _photometric_pipeline(self.config, seed)

    def reseed(self, seed: int) -> None:
        """Restart the random streams (called once in each DataLoader worker)."""
        self.rng = np.random.default_rng(seed)
        if self.photometric is not None:
            self.photometric.set_random_seed(seed)

    def sample_geometry(self, crop_scale: float) -> Geometry:
        cfg, rng, jitter = self.config, self.rng, self.box_jitter
        scale = rng.uniform(*cfg["scale"]) * rng.uniform(1.0 - jitter, 1.0 + jitter)
        # Box jitter is in box sides; crop_matrix shifts are in crop sides (crop side = crop_scale * box).
        shift = rng.uniform(-cfg["translate"], cfg["translate"], 2) + rng.uniform(-jitter, jitter, 2) / crop_scale
        rotation = rng.uniform(-cfg["rotation"], cfg["rotation"])
        flip = bool(rng.random() < cfg["flip"])
        return Geometry(float(scale), (float(shift[0]), float(shift[1])), float(rotation), flip)

    def __call__(
        self, image: np.ndarray, points: np.ndarray, box: np.ndarray, size: int, crop_scale: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(BGR uint8 crop (S, S, 3), normalised landmarks (K, 2) float32) of one face."""
        geometry = self.sample_geometry(crop_scale)
        matrix = crop_matrix(box, size, crop_scale * geometry.scale, geometry.shift, geometry.rotation_deg)
        if geometry.flip:
            matrix = mirror_crop_matrix(matrix, size)
        crop = crop_image(image, matrix, size)
        crop_points = points_to_crop(points, matrix, size)
        if geometry.flip:
            crop_points = crop_points[list(self.scheme.flip_permutation)]
        if self.photometric is not None:
            # albumentations' colour transforms assume RGB; the project's images are BGR.
            rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
            crop = cv2.cvtColor(self.photometric(image=rgb)["image"], cv2.COLOR_RGB2BGR)
        return crop, crop_points
