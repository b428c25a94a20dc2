"""The face crop: the ONE implementation shared by training, evaluation, export checks and the demo.

A crop is a 2x3 affine matrix M mapping image pixel coordinates to crop pixel coordinates (both 0-based with
pixel centres at integers), applied with ``cv2.warpAffine(..., flags=INTER_LINEAR, BORDER_CONSTANT)`` so
parts of the crop outside the image are zero. Landmarks inside the crop are normalised as
``(crop_px + 0.5) / S``: [0, 1] spans the crop's outer pixel edges and a horizontal mirror is ``x -> 1 - x``.

Geometric augmentation goes through ``crop_matrix`` too (scale, shift, rotation), so a single warp does
crop and augmentation and the landmarks follow exactly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

IMAGE_MEAN = 0.5  # network input = (bgr / 255 - IMAGE_MEAN) / IMAGE_STD, per channel
IMAGE_STD = 0.5
# The largest crop side a model may take (model configs and ONNX metadata are checked against it): face
# crops are small; beyond this a typo (input_size 100000) would only exhaust memory before any error.
MAX_INPUT_SIZE = 1024


def face_box_from_points(points: np.ndarray) -> np.ndarray:
    """(4,) float32 x_min, y_min, x_max, y_max of the landmarks."""
    points = np.asarray(points, dtype=np.float32)
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)


def crop_matrix(
    box: np.ndarray,
    size: int,
    scale: float = 1.25,
    shift: tuple[float, float] = (0.0, 0.0),
    rotation_deg: float = 0.0,
) -> np.ndarray:
    """(2, 3) float64 matrix of a square ``size`` x ``size`` crop around ``box``.

    The crop is centred on the box centre moved by ``shift`` (a fraction of the crop side, image axes), has
    side ``scale * max(box width, box height)`` image pixels, and is rotated by ``rotation_deg`` about its
    centre. Positive angles turn the face counter-clockwise on screen, as ``cv2.getRotationMatrix2D`` does.
    """
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    side = scale * max(x_max - x_min, y_max - y_min, 1e-6)
    centre_x = 0.5 * (x_min + x_max) + shift[0] * side
    centre_y = 0.5 * (y_min + y_max) + shift[1] * side
    # crop_px = k * R @ (image_px - centre) + (S/2 - 0.5): the centre lands in the middle of the crop, where
    # the crop pixel centres run from 0 to S-1 (see the normalisation in the module docstring).
    k = size / side
    angle = math.radians(rotation_deg)
    cos, sin = k * math.cos(angle), k * math.sin(angle)
    linear = np.array([[cos, sin], [-sin, cos]])
    offset = np.array([size / 2 - 0.5, size / 2 - 0.5]) - linear @ np.array([centre_x, centre_y])
    return np.concatenate([linear, offset[:, None]], axis=1)


def mirror_crop_matrix(matrix: np.ndarray, size: int) -> np.ndarray:
    """The same crop mirrored left-right: crop x -> S - 1 - x (normalised x -> 1 - x)."""
    mirrored = np.asarray(matrix, dtype=np.float64).copy()
    mirrored[0] = -mirrored[0]
    mirrored[0, 2] += size - 1
    return mirrored


def crop_image(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp a BGR image into the ``size`` x ``size`` crop; outside the image is zero."""
    return cv2.warpAffine(
        image,
        np.asarray(matrix, dtype=np.float64),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply (..., 2, 3) matrices to (..., K, 2) points (broadcasting a single matrix over a batch)."""
    return np.einsum("...ij,...kj->...ki", matrix[..., :2], points) + matrix[..., None, :, 2]


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    """Inverse of (..., 2, 3) affine matrices: crop pixels -> image pixels."""
    matrix = np.asarray(matrix, dtype=np.float64)
    linear_inv = np.linalg.inv(matrix[..., :2])
    offset = -np.einsum("...ij,...j->...i", linear_inv, matrix[..., 2])
    return np.concatenate([linear_inv, offset[..., None]], axis=-1)


def points_to_crop(points_px: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Image pixel points (..., K, 2) -> normalised crop coordinates (float32)."""
    crop_px = _apply(np.asarray(matrix, dtype=np.float64), np.asarray(points_px, dtype=np.float64))
    return ((crop_px + 0.5) / size).astype(np.float32)


def points_from_crop(points_norm: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Normalised crop coordinates (..., K, 2) -> image pixel points (float32); inverts ``points_to_crop``.

    ``matrix`` is one (2, 3) crop or a stack (N, 2, 3) matching a batch of faces (N, K, 2).
    """
    crop_px = np.asarray(points_norm, dtype=np.float64) * size - 0.5
    return _apply(invert_matrix(matrix), crop_px).astype(np.float32)


def image_to_tensor(crop_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 (S, S, 3) crop -> float32 (3, S, S) network input, channels kept in BGR order."""
    scaled = crop_bgr.astype(np.float32) / 255.0
    return np.ascontiguousarray(((scaled - IMAGE_MEAN) / IMAGE_STD).transpose(2, 0, 1))


def images_to_batch(crops: list[np.ndarray]) -> np.ndarray:
    """A list of BGR uint8 crops -> float32 (N, 3, S, S) batch (numpy; ``torch.from_numpy`` for torch)."""
    return np.stack([image_to_tensor(crop) for crop in crops])
