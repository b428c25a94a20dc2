"""Head pose (yaw, pitch, roll) from 2D landmarks by fitting a 3D mean face with ``cv2.solvePnP``.

Conventions (radians; the subject faces the camera at (0, 0, 0)):

* yaw > 0: the face turns to the subject's LEFT, i.e. towards the image's right side -- the nose tip moves
  right in the image;
* pitch > 0: the face looks UP -- the nose tip moves up in the image;
* roll > 0: the head tilts so that the image-right eye is LOWER than the image-left eye (a clockwise turn
  on screen, since image y points down).

Frames: the 3D model and the camera share OpenCV's axes for a frontal face -- x towards the image's right,
y down, z away from the camera -- so a frontal face has the identity rotation. The model-to-camera rotation
is ``rotation_matrix(yaw, pitch, roll) = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` (standard right-handed axis
rotations; the minus signs turn OpenCV's axis directions into the conventions above). The camera is a
pinhole with focal length = image width and principal point = the image centre, no distortion.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from landmark.data.schemes import Scheme

logger = logging.getLogger(__name__)

# A generic adult face in millimetres (x right, y down, z away from the camera; origin between the eyes),
# keyed by 300W-68 index. x and y are the median near-frontal 300-W training shape scaled to 90 mm between
# the outer eye corners (so typical photos come out near zero pitch); depths are rough anthropometric values.
# "Left"/"right" are image left/right for a frontal face, as in schemes.py.
MODEL_POINTS_68: dict[int, tuple[float, float, float]] = {
    17: (-60.0, -12.0, 15.0),  # left brow, outer end
    21: (-12.0, -17.0, -2.0),  # left brow, inner end
    22: (12.0, -17.0, -2.0),  # right brow, inner end
    26: (60.0, -12.0, 15.0),  # right brow, outer end
    36: (-45.0, 0.0, 10.0),  # left eye, outer corner
    39: (-19.0, 2.0, 3.0),  # left eye, inner corner
    42: (19.0, 2.0, 3.0),  # right eye, inner corner
    45: (45.0, 0.0, 10.0),  # right eye, outer corner
    30: (0.0, 36.0, -25.0),  # nose tip
    31: (-15.0, 43.0, -5.0),  # left nostril (alar base)
    33: (0.0, 48.0, -12.0),  # under the nose (subnasale)
    35: (15.0, 43.0, -5.0),  # right nostril
    48: (-28.0, 64.0, 5.0),  # left mouth corner
    54: (28.0, 64.0, 5.0),  # right mouth corner
    8: (0.0, 112.0, 5.0),  # chin
}
MODEL_INDICES_68 = tuple(MODEL_POINTS_68)
MODEL_POINTS = np.array([MODEL_POINTS_68[i] for i in MODEL_INDICES_68], dtype=np.float64)  # (N, 3)


def _rx(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) model-to-camera rotation for the angles of the module docstring."""
    return _rz(roll) @ _ry(-yaw) @ _rx(-pitch)


def angles_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """(3,) yaw, pitch, roll of a rotation built by ``rotation_matrix`` (yaw in [-pi/2, pi/2])."""
    yaw = math.asin(float(np.clip(rotation[2, 0], -1.0, 1.0)))
    pitch = -math.atan2(rotation[2, 1], rotation[2, 2])
    roll = math.atan2(rotation[1, 0], rotation[0, 0])
    return np.array([yaw, pitch, roll], dtype=np.float32)


def camera_matrix(image_size: tuple[int, int]) -> np.ndarray:
    """(3, 3) pinhole intrinsics for an image of (width, height): focal = width, centre = image centre."""
    width, height = image_size
    return np.array([[width, 0.0, (width - 1) / 2], [0.0, width, (height - 1) / 2], [0.0, 0.0, 1.0]])


def project_points(
    points_3d: np.ndarray, rotation: np.ndarray, translation: np.ndarray, image_size: tuple[int, int]
) -> np.ndarray:
    """(N, 2) pixel positions of model points (N, 3) under a pose (for tests and drawing pose axes)."""
    camera = (points_3d @ rotation.T) + np.asarray(translation, dtype=np.float64).reshape(1, 3)
    pixels = camera @ camera_matrix(image_size).T
    return pixels[:, :2] / pixels[:, 2:3]


def solve_head_pose(
    points_px: np.ndarray, scheme: Scheme, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(rotation (3, 3), translation (3,) in mm) of the mean face, or None when it cannot be fitted."""
    if scheme.to_68 is None:
        logger.debug("head pose: scheme %s has no 68-point mapping", scheme.name)
        return None
    points = np.asarray(points_px, dtype=np.float64)
    if points.shape != (scheme.num_points, 2):
        logger.debug("head pose: expected (%d, 2) points, got %s", scheme.num_points, points.shape)
        return None
    image_points = points[list(scheme.to_68)][list(MODEL_INDICES_68)]
    spread = float(np.ptp(image_points, axis=0).max()) if np.isfinite(image_points).all() else 0.0
    if spread < 2.0:
        logger.debug("head pose: degenerate or non-finite landmarks (spread %.3g px)", spread)
        return None
    # Start Levenberg-Marquardt from a frontal face at the distance that matches its apparent size: robust
    # for the poses a driver camera sees, where an unguided DLT start can flip the face behind the camera.
    camera = camera_matrix(image_size)
    model_spread = float(np.ptp(MODEL_POINTS[:, :2], axis=0).max())
    depth = camera[0, 0] * model_spread / spread
    centre = image_points.mean(axis=0)
    translation_guess = np.array(
        [(centre[0] - camera[0, 2]) * depth / camera[0, 0], (centre[1] - camera[1, 2]) * depth / camera[1, 1], depth]
    ).reshape(3, 1)
    try:
        ok, rvec, tvec = cv2.solvePnP(
            MODEL_POINTS,
            image_points,
            camera,
            None,
            rvec=np.zeros((3, 1)),
            tvec=translation_guess,
            useExtrinsicGuess=True,
            flags=cv2.SOLVEPNP_ITERATIVE,
        )
    except cv2.error as error:
        logger.debug("head pose: solvePnP failed: %s", error)
        return None
    if not ok or not np.isfinite(rvec).all() or not np.isfinite(tvec).all() or tvec[2, 0] <= 0:
        logger.debug("head pose: no valid solution (ok=%s, t=%s)", ok, tvec.ravel())
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    return rotation, tvec.ravel()


def head_pose(points_px: np.ndarray, scheme: Scheme, image_size: tuple[int, int]) -> np.ndarray:
    """(3,) float32 yaw, pitch, roll in radians; zeros when the landmarks are degenerate (never raises)."""
    solution = solve_head_pose(points_px, scheme, image_size)
    if solution is None:
        return np.zeros(3, dtype=np.float32)
    return angles_from_rotation(solution[0])
