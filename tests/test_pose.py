"""Head pose: recovery of known rotations and the documented sign conventions."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from landmark.data.pose import (
    MODEL_INDICES_68,
    MODEL_POINTS,
    angles_from_rotation,
    head_pose,
    project_points,
    rotation_matrix,
)
from landmark.data.readers import read_300w
from landmark.data.schemes import IBUG_68, WFLW_98, flip_points

IMAGE_SIZE = (320, 240)
NOSE_TIP, LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 30, 36, 45  # 300W-68 indices (image left / right)


def synthetic_landmarks(yaw: float, pitch: float, roll: float, scheme=IBUG_68) -> np.ndarray:
    """Project the mean face under a known pose and fill a full (K, 2) landmark array for ``scheme``."""
    projected = project_points(MODEL_POINTS, rotation_matrix(yaw, pitch, roll), [8.0, -5.0, 450.0], IMAGE_SIZE)
    points_68 = np.tile(projected.mean(axis=0), (68, 1))  # points the model does not use: anything
    points_68[list(MODEL_INDICES_68)] = projected
    points = np.tile(projected.mean(axis=0), (scheme.num_points, 1))
    points[list(scheme.to_68)] = points_68
    return points


def test_rotation_helpers_round_trip():
    rng = np.random.default_rng(0)
    for angles in rng.uniform(-1.2, 1.2, (20, 3)):
        rotation = rotation_matrix(*angles)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(angles_from_rotation(rotation), angles, atol=1e-6)


@pytest.mark.parametrize("scheme", [IBUG_68, WFLW_98])
def test_recovers_known_angles(scheme):
    rng = np.random.default_rng(1)
    for angles in rng.uniform(math.radians(-40), math.radians(40), (25, 3)):
        estimate = head_pose(synthetic_landmarks(*angles, scheme), scheme, IMAGE_SIZE)
        assert estimate.shape == (3,) and estimate.dtype == np.float32
        assert np.degrees(np.abs(estimate - angles)).max() < 1.0, (np.degrees(angles), np.degrees(estimate))


def test_sign_conventions():
    frontal = synthetic_landmarks(0, 0, 0)
    twenty = math.radians(20)

    # yaw > 0: the face turns to the subject's left = the image's right; the nose tip moves right.
    points = synthetic_landmarks(twenty, 0, 0)
    assert points[NOSE_TIP, 0] > frontal[NOSE_TIP, 0] + 5
    assert head_pose(points, IBUG_68, IMAGE_SIZE)[0] > math.radians(19)

    # pitch > 0: the face looks up; the nose tip moves up (smaller y).
    points = synthetic_landmarks(0, twenty, 0)
    assert points[NOSE_TIP, 1] < frontal[NOSE_TIP, 1] - 5
    assert head_pose(points, IBUG_68, IMAGE_SIZE)[1] > math.radians(19)

    # roll > 0: the image-right eye is lower (larger y) than the image-left eye.
    points = synthetic_landmarks(0, 0, twenty)
    assert points[RIGHT_EYE_OUTER, 1] > points[LEFT_EYE_OUTER, 1] + 5
    assert head_pose(points, IBUG_68, IMAGE_SIZE)[2] > math.radians(19)

    assert np.abs(head_pose(frontal, IBUG_68, IMAGE_SIZE)).max() < math.radians(0.5)


def test_mirroring_negates_yaw_and_roll():
    angles = np.radians([25.0, -10.0, 12.0])
    points = synthetic_landmarks(*angles)
    points[:, 0] += (IMAGE_SIZE[0] - 1) / 2 - points[:, 0].mean()  # centre, so the mirror keeps the camera
    original = head_pose(points, IBUG_68, IMAGE_SIZE)
    mirrored = head_pose(flip_points(points, IBUG_68, IMAGE_SIZE[0] - 1), IBUG_68, IMAGE_SIZE)
    np.testing.assert_allclose(mirrored, original * [-1, 1, -1], atol=math.radians(0.5))


@pytest.mark.parametrize(
    "points",
    [np.zeros((68, 2)), np.full((68, 2), np.nan), np.full((68, 2), np.inf), np.zeros((5, 2)), np.ones(3)],
)
def test_degenerate_points_give_zeros(points, caplog):
    with caplog.at_level(logging.DEBUG, logger="landmark.data.pose"):
        result = head_pose(points, IBUG_68, IMAGE_SIZE)
    np.testing.assert_array_equal(result, [0, 0, 0])
    assert "head pose" in caplog.text


def test_real_faces_are_mostly_frontal(shared_data):
    records = read_300w(shared_data / "faces300w" / "train")[:200]
    angles = np.stack([head_pose(r.points, IBUG_68, (300, 300)) for r in records])
    assert np.isfinite(angles).all() and np.abs(angles).max() < math.radians(90)
    assert np.abs(np.degrees(np.median(angles, axis=0))).max() < 8
