"""Eye crops framed like the CEW eye images, reproducible from landmarks alone.

A crop is centred on the mean of an eye's contour points, rotated so the two eye corners are level, and
``WIDTH_SCALE`` (1.5) corner distances wide and high, resized to ``EYE_SIZE`` x ``EYE_SIZE`` (24 x 24) grey
pixels: the framing of the Closed Eyes in the Wild crops (``../shared/data/cew_eyes``), so a model trained on
them reads the eyes the landmark model locates. Only OpenCV and NumPy: this runs in the demo.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from landmark.data.schemes import EyeIndices, Scheme

EYE_SIZE = 24  # pixels, square, grey
WIDTH_SCALE = 1.5  # crop side in eye-corner distances


def eye_crop_matrix(
    points: np.ndarray, eye: EyeIndices, size: int = EYE_SIZE, width_scale: float = WIDTH_SCALE
) -> np.ndarray:
    """(2, 3) affine map from image pixels to a ``size`` crop of one eye (see the module docstring).

    The eye's corners land on one row of the crop, ``1 / width_scale`` of its width apart, symmetric about
    the centre column when the contour is symmetric.
    """
    pts = np.asarray(points, dtype=np.float64)
    a, b = pts[eye.corner_a], pts[eye.corner_b]
    centre = pts[list(eye.indices)].mean(axis=0)
    dx, dy = b - a
    width = math.hypot(dx, dy)
    scale = size / (width_scale * max(width, 1e-6))
    angle = math.atan2(dy, dx)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    # rotate by -angle about the centre, scale, and move the centre to the crop's centre
    half = (size - 1) / 2
    return np.array(
        [
            [cos, sin, half - cos * centre[0] - sin * centre[1]],
            [-sin, cos, half + sin * centre[0] - cos * centre[1]],
        ]
    )


def warp_eye(image: np.ndarray, matrix: np.ndarray, size: int = EYE_SIZE) -> np.ndarray:
    """The (size, size) uint8 grey crop of a BGR or grey image under ``matrix`` (from ``eye_crop_matrix``).

    An eye much larger than the crop is first warped at an intermediate size and then reduced with area
    averaging, as a camera (or the CEW crops' resize) would, rather than point-sampled with aliasing.
    """
    scale = math.hypot(matrix[0, 0], matrix[0, 1])
    factor = max(1, min(4, int(1.0 / max(scale, 1e-6))))  # 1 when the eye is about crop-sized or smaller
    big = size * factor
    m = np.array(matrix, dtype=np.float64) * factor
    m[:, 2] += (factor - 1) / 2  # pixel centres: crop pixel (i + 0.5) * factor - 0.5 at the larger size
    crop = cv2.warpAffine(image, m, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    if factor > 1:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return crop


def eye_crops(image: np.ndarray, points: np.ndarray, scheme: Scheme, size: int = EYE_SIZE) -> np.ndarray:
    """(2, size, size) uint8 grey crops of the image-left and image-right eye of one face's (K, 2) points."""
    return np.stack(
        [warp_eye(image, eye_crop_matrix(points, eye, size), size) for eye in (scheme.left_eye, scheme.right_eye)]
    )


def normalise_crops(crops: np.ndarray) -> np.ndarray:
    """(N, 1, S, S) float32 network input from (N, S, S) uint8 crops: each crop to zero mean, unit spread.

    Per-crop standardisation removes exposure and contrast, which differ between cameras, faces and the
    CEW photos, and leaves the shape of the lids and the iris.
    """
    x = np.asarray(crops, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return ((x - mean) / np.maximum(std, 4.0))[:, None]
