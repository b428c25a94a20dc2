"""A parametric 3D face whose 98 WFLW landmarks are points of the very geometry that gets drawn.

The face is built in three steps, and every landmark and every drawn vertex goes through all three:

1. **Template** (2D, centimetres, x towards the image's right, y down, origin between the eyes): the face
   outline, eye lids, brows, nose and lips as analytic curves of the identity (proportions) and the
   expression (per-eye closure, mouth opening, gaze). Landmarks are samples of these curves, and the
   polylines that get drawn pass exactly through them.
2. **Lift** to 3D: a depth ``z(x, y)`` (z away from the camera, as in ``landmark.data.pose``): a dome over
   the face outline plus smooth bumps for the nose, brow ridge, eye sockets, cheeks, lips and chin. The skin
   is a triangle mesh over the template whose outer ring *is* the outline, so the 33 contour landmarks are
   mesh boundary vertices and lie exactly on the drawn edge of the face.
3. **Jaw**: opening the mouth drops the lower lip (in the template) and moves the skin below the mouth and
   the chin contour down (in 3D) by the same function for mesh vertices and contour landmarks.

A rigid pose (yaw, pitch, roll in radians, the conventions of ``landmark.data.pose.rotation_matrix``) and a
translation place the model in front of a pinhole camera. Eye closure makes the lids meet (the eye aspect
ratio becomes exactly 0); the pupil landmarks stay at the iris centre on the eyeball even when the lids hide
it. "Left"/"right" are image left/right for a frontal face, as in ``landmark.data.schemes``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from landmark.data.pose import rotation_matrix

NUM_POINTS = 98
HEAD_PIVOT = np.array([0.0, 4.0, 6.0])  # the model rotates about this point (inside the head, near the neck)
POLAR_CENTRE = np.array([0.0, 2.5])  # the skin mesh is a polar grid around this template point
EYEBALL_RADIUS = 1.2
IRIS_RADIUS = 0.6
PUPIL_RADIUS = 0.24


@dataclass(frozen=True)
class Identity:
    """Face proportions; every field is a multiplier of the mean face (1.0) unless noted."""

    face_width: float = 1.0
    face_length: float = 1.0
    jaw_square: float = 2.6  # superellipse exponent of the jaw: 2 is round, higher is squarer
    chin_taper: float = 0.25  # how much narrower the chin is than the cheeks
    depth: float = 1.0
    eye_spacing: float = 1.0
    eye_size: float = 1.0
    eye_tilt: float = 0.0  # cm the outer eye corners sit above the inner ones
    brow_height: float = 1.0
    brow_thickness: float = 1.0
    brow_arch: float = 1.0
    nose_length: float = 1.0
    nose_width: float = 1.0
    nose_height: float = 1.0  # how far the nose sticks out
    mouth_width: float = 1.0
    lip_thickness: float = 1.0
    hairline: float = -5.5  # template y (cm) of the hairline at the midline; < -7.5 means no fringe


@dataclass(frozen=True)
class Expression:
    """Eye closure per eye (image-left, image-right) and mouth opening in [0, 1]; gaze in radians."""

    eye_closure: tuple[float, float] = (0.0, 0.0)
    mouth_open: float = 0.0
    gaze: tuple[float, float] = (0.0, 0.0)  # (yaw, pitch) of both eyes relative to the head


@dataclass(frozen=True)
class Camera:
    """A pinhole camera with square pixels; (cx, cy) in 0-based pixel coordinates."""

    focal: float
    cx: float
    cy: float


@dataclass(frozen=True)
class Pose:
    """Head rotation (radians, ``landmark.data.pose`` conventions) and translation (cm, camera frame)."""

    yaw: float
    pitch: float
    roll: float
    translation: tuple[float, float, float]

    def rotation(self) -> np.ndarray:
        return rotation_matrix(self.yaw, self.pitch, self.roll)


@dataclass
class FaceGeometry:
    """Everything about one face in model coordinates (cm): what is drawn and what is labelled."""

    landmarks: np.ndarray  # (98, 3)
    mesh_vertices: np.ndarray  # (V, 3) skin mesh
    mesh_triangles: np.ndarray  # (T, 3) vertex indices
    nose_triangles: np.ndarray  # (T,) bool: triangles redrawn over the eyes (the nose may hide them)
    occlusion: np.ndarray  # (T,) ambient-occlusion factor around 1: darker in eye sockets, by the nose...
    triangle_normals: np.ndarray  # (T, 3) outward unit normals (model frame)
    vertex_normals: np.ndarray  # (V, 3) outward unit normals, averaged over the triangles around a vertex
    curves: dict[str, np.ndarray]  # name -> (P, 3) polylines / polygons for the features
    iris_centres: np.ndarray  # (2, 3) = landmarks 96 and 97
    eye_open_area: tuple[bool, bool]  # whether each eye shows any opening at all
    template: np.ndarray  # (98, 2) landmarks in the 2D template (before lifting), for inspection
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # head, hair, neck point clouds


def random_identity(rng: np.random.Generator, amount: float = 1.0) -> Identity:
    """A mildly varied face: each proportion within roughly +-8% (times ``amount``) of the mean."""

    def vary(spread: float) -> float:
        return float(1.0 + amount * spread * rng.uniform(-1.0, 1.0))

    return Identity(
        face_width=vary(0.07),
        face_length=vary(0.07),
        jaw_square=float(2.6 + amount * rng.uniform(-0.5, 0.6)),
        chin_taper=float(0.25 + amount * rng.uniform(-0.1, 0.1)),
        depth=vary(0.1),
        eye_spacing=vary(0.06),
        eye_size=vary(0.1),
        eye_tilt=float(amount * rng.uniform(-0.1, 0.25)),
        brow_height=vary(0.12),
        brow_thickness=vary(0.3),
        brow_arch=vary(0.5),
        nose_length=vary(0.08),
        nose_width=vary(0.12),
        nose_height=vary(0.15),
        mouth_width=vary(0.1),
        lip_thickness=vary(0.25),
        hairline=float(rng.uniform(-6.5, -4.2) if rng.random() < 0.85 else -9.0),
    )


# --- 1. template curves --------------------------------------------------------------------------------


def _resample(curve: np.ndarray, count: int) -> np.ndarray:
    """``count`` points evenly spaced by arc length along a dense open polyline (ends included)."""
    steps = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    targets = np.linspace(0.0, arc[-1], count)
    return np.stack([np.interp(targets, arc, curve[:, k]) for k in range(2)], axis=1)


def _superellipse(phi: np.ndarray, half_width: float, half_height: float, exponent: float) -> np.ndarray:
    c, s = np.cos(phi), np.sin(phi)
    x = half_width * np.sign(c) * np.abs(c) ** (2.0 / exponent)
    y = half_height * np.sign(s) * np.abs(s) ** (2.0 / exponent)
    return np.stack([x, y], axis=1)


JAW_SAMPLES = 65  # the jaw part of the outline; contour landmark k is sample 2k
FOREHEAD_SAMPLES = 31  # outline samples strictly between contour 32 and contour 0, over the forehead


@functools.lru_cache(maxsize=64)
def face_outline(identity: Identity) -> np.ndarray:
    """(96, 2) closed template outline: the jaw from contour 0 (image left) via the chin to contour 32,
    then back over the forehead. Even jaw samples 0, 2, ..., 64 are the contour landmarks 0-32."""
    half_width, centre_y = 7.2 * identity.face_width, 0.5
    chin_drop = 10.3 * identity.face_length
    jaw = _superellipse(np.linspace(math.pi, 0.0, 2001), half_width, chin_drop, identity.jaw_square)
    jaw[:, 0] *= 1.0 - identity.chin_taper * (jaw[:, 1] / chin_drop) ** 2  # narrower towards the chin
    jaw[:, 1] += centre_y
    forehead = _superellipse(np.linspace(0.0, -math.pi, 2001), half_width, 8.0 * identity.face_length, 2.3)
    forehead[:, 1] += centre_y
    jaw = _resample(jaw, JAW_SAMPLES)
    forehead = _resample(forehead, FOREHEAD_SAMPLES + 2)[1:-1]
    outline = np.concatenate([jaw, forehead])
    outline.setflags(write=False)  # cached: shared by every caller
    return outline


def _eye_curves(
    identity: Identity, closure: float, side: int, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper lid, lower lid and lid crease at parameters ``s`` (0 = outer corner, 1 = inner corner).

    ``side`` is -1 for the image-left eye, +1 for the image-right eye (mirrored x). Closing blends both
    lids onto one line just below the eye's middle, so at closure 1 they coincide exactly.
    """
    centre_x = 3.2 * identity.eye_spacing
    half = 1.5 * identity.eye_size
    x = side * (centre_x + half - 2.0 * half * s)
    base = -identity.eye_tilt * (1.0 - s) + 0.05 * s
    up_h, low_h = 0.62 * identity.eye_size, 0.40 * identity.eye_size
    bump = np.sin(math.pi * s)
    upper_open = base - up_h * bump**0.8
    lower_open = base + low_h * bump
    closed = base + 0.45 * low_h * bump
    upper = np.stack([x, upper_open + closure * (closed - upper_open)], axis=1)
    lower = np.stack([x, lower_open + closure * (closed - lower_open)], axis=1)
    crease = np.stack([x, upper_open - 0.45 * identity.eye_size * bump**0.6 - 0.05], axis=1)
    return upper, lower, crease


def _eye_centre(identity: Identity, side: int) -> np.ndarray:
    """Template centre of the open eye (where the iris sits for a straight gaze)."""
    upper, lower, _ = _eye_curves(identity, 0.0, side, np.array([0.5]))
    return (upper[0] + lower[0]) / 2


def _brow_curves(identity: Identity, side: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower brow edges at ``s`` (0 = outer end, 1 = inner end)."""
    outer = 3.2 * identity.eye_spacing + 2.6
    inner = 3.2 * identity.eye_spacing - 2.0
    x = side * (outer + (inner - outer) * s)
    centre = (
        -2.1 * identity.brow_height
        - 0.55 * identity.brow_arch * np.exp(-(((s - 0.4) / 0.42) ** 2))
        + 0.3 * (1.0 - s) ** 2
    )
    thickness = 0.7 * identity.brow_thickness * (0.45 + 0.55 * s**0.7)
    return np.stack([x, centre - thickness / 2], axis=1), np.stack([x, centre + thickness / 2], axis=1)


def _nose_layout(identity: Identity) -> tuple[float, float]:
    """Template y of the nose tip and the nose's half width at the nostrils."""
    return 4.1 * identity.nose_length, 1.45 * identity.nose_width


def _mouth_layout(identity: Identity, mouth_open: float) -> dict[str, float]:
    tip_y, _ = _nose_layout(identity)
    drop = 2.0 * mouth_open  # how far the lower lip and the chin move down, cm
    return {
        "y": tip_y + 0.85 + 1.75,
        "half_width": 2.5 * identity.mouth_width * (1.0 - 0.12 * mouth_open),
        "upper": 0.55 * identity.lip_thickness,
        "lower": 0.7 * identity.lip_thickness,
        "drop": drop,
    }


def _lip_curves(identity: Identity, mouth_open: float, u: np.ndarray) -> dict[str, np.ndarray]:
    """Outer/inner upper/lower lip lines at ``u`` in [-1, 1] (image left to right corner)."""
    m = _mouth_layout(identity, mouth_open)
    body = np.clip(1.0 - u**2, 0.0, 1.0)
    corner_y = m["y"] + 0.15 * m["drop"]
    opening = m["drop"] * body**0.7
    cupid = 1.0 - 0.22 * np.exp(-((u / 0.16) ** 2))
    x_outer, x_inner = u * m["half_width"], u * m["half_width"] * 0.88
    line = corner_y + (m["y"] - corner_y) * body - 0.05 * body  # the closed mouth line
    return {
        "outer_upper": np.stack([x_outer, corner_y + (m["y"] - corner_y) * body - m["upper"] * body**0.6 * cupid], 1),
        "outer_lower": np.stack([x_outer, line + opening * 0.95 + m["lower"] * body**0.6], 1),
        "inner_upper": np.stack([x_inner, line - 0.25 * mouth_open * body], 1),
        "inner_lower": np.stack([x_inner, line + opening], 1),
    }


def template_landmarks(identity: Identity, expression: Expression) -> np.ndarray:
    """(98, 2) template positions of the WFLW landmarks (contour before the jaw drop)."""
    points = np.zeros((NUM_POINTS, 2))
    points[0:33] = face_outline(identity)[0:JAW_SAMPLES:2]
    quarters = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    lower_brow = np.array([0.8, 0.6, 0.4, 0.2])
    for side, upper_idx, lower_idx in ((-1, slice(33, 38), slice(38, 42)), (1, slice(42, 47), slice(47, 51))):
        if side < 0:  # left brow: 33 outer -> 37 inner along the top, 38 (inner) -> 41 (outer) below
            upper, _ = _brow_curves(identity, side, quarters)
            _, lower = _brow_curves(identity, side, lower_brow)
        else:  # right brow: 42 inner -> 46 outer along the top, 47 (outer) -> 50 (inner) below
            upper, _ = _brow_curves(identity, side, quarters[::-1])
            _, lower = _brow_curves(identity, side, lower_brow[::-1])
        points[upper_idx], points[lower_idx] = upper, lower
    tip_y, nose_half = _nose_layout(identity)
    points[51:55] = np.stack([np.zeros(4), np.linspace(0.3, tip_y, 4)], axis=1)
    base = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    points[55:60] = np.stack([base * nose_half, tip_y + 0.85 - 0.4 * np.abs(base) ** 1.5], axis=1)
    for eye, side in ((0, -1), (1, 1)):
        closure = expression.eye_closure[eye]
        if side < 0:  # 60 outer corner, 61-63 upper, 64 inner corner, 65-67 lower (inner -> outer)
            upper, lower, _ = _eye_curves(identity, closure, side, quarters)
            points[60:65] = upper
            points[65:68] = lower[[3, 2, 1]]
        else:  # 68 inner corner, 69-71 upper, 72 outer corner, 73-75 lower (outer -> inner)
            upper, lower, _ = _eye_curves(identity, closure, side, quarters[::-1])
            points[68:73] = upper
            points[73:76] = lower[[3, 2, 1]]
    outer_u = np.array([-1.0, -0.66, -0.3, 0.0, 0.3, 0.66, 1.0])
    lips = _lip_curves(identity, expression.mouth_open, outer_u)
    points[76:83] = lips["outer_upper"]  # 76 left corner ... 82 right corner
    points[83:88] = lips["outer_lower"][[5, 4, 3, 2, 1]]  # right -> left
    inner = _lip_curves(identity, expression.mouth_open, np.array([-1.0, -0.45, 0.0, 0.45, 1.0]))
    points[88:93] = inner["inner_upper"]  # 88 left corner ... 92 right corner
    points[93:96] = inner["inner_lower"][[3, 2, 1]]  # right -> left
    points[96] = _eye_centre(identity, -1)
    points[97] = _eye_centre(identity, 1)
    return points


# --- 2. lifting to 3D ------------------------------------------------------------------------------------


def _polar(identity: Identity, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius s (1 on the outline) and angle of template points around ``POLAR_CENTRE``."""
    outline = face_outline(identity) - POLAR_CENTRE
    angles = np.arctan2(outline[:, 1], outline[:, 0])
    radii = np.linalg.norm(outline, axis=1)
    rel = xy - POLAR_CENTRE
    theta = np.arctan2(rel[:, 1], rel[:, 0])
    order = np.argsort(angles)
    limit = np.interp(theta, angles[order], radii[order], period=2 * math.pi)
    return np.linalg.norm(rel, axis=1) / limit, theta


def _dome(identity: Identity, s: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Base depth: an elliptic cap over the outline, deeper at the sides than at the chin and forehead."""
    down, up = np.clip(np.sin(theta), 0, None), np.clip(-np.sin(theta), 0, None)
    margin = 1.08 + 0.9 * down**4 + 0.4 * up**4
    return -8.0 * identity.depth * np.sqrt(np.clip(1.0 - (np.minimum(s, 1.0) / margin) ** 2, 0.0, None))


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(((x - cx) / sx) ** 2) - ((y - cy) / sy) ** 2)


def _nose_height(identity: Identity, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """How far the nose sticks out of the dome (cm): a ridge growing to the tip, plus the alar wings."""
    tip_y, nose_half = _nose_layout(identity)
    t = np.clip(y / tip_y, 0.0, 1.0)
    ridge = np.where(
        y < 0.0,
        0.45 * np.exp(-((y / 1.2) ** 2)),
        np.where(y <= tip_y, 0.45 + 1.95 * t**1.6, 2.4 * np.exp(-(((y - tip_y) / 0.6) ** 2))),
    )
    width = 0.5 * identity.nose_width + 0.55 * identity.nose_width * t**2
    wings = 0.75 * (
        _gauss(x, y, -0.7 * nose_half, tip_y + 0.35, 0.55, 0.45)
        + _gauss(x, y, 0.7 * nose_half, tip_y + 0.35, 0.55, 0.45)
    )
    return identity.nose_height * (ridge * np.exp(-((x / width) ** 2)) + wings * (y < tip_y + 1.2))


def lift(identity: Identity, xy: np.ndarray) -> np.ndarray:
    """(N, 3) model points of template points (N, 2): the face's depth at each (x, y)."""
    x, y = xy[:, 0], xy[:, 1]
    s, theta = _polar(identity, xy)
    eye_x = 3.2 * identity.eye_spacing
    mouth = _mouth_layout(identity, 0.0)
    z = _dome(identity, s, theta)
    z = z - _nose_height(identity, x, y)
    z = z - 0.4 * np.exp(-(((y + 1.9) / 1.0) ** 2)) * np.exp(-(((np.abs(x) - eye_x) / 2.5) ** 2))  # brow ridge
    z = z + 0.55 * (_gauss(x, y, -eye_x, 0.1, 1.6, 1.1) + _gauss(x, y, eye_x, 0.1, 1.6, 1.1))  # eye sockets
    z = z - 0.3 * (_gauss(np.abs(x), y, 3.9, 3.6, 1.6, 1.5))  # cheekbones
    z = z - 0.55 * _gauss(x, y, 0.0, mouth["y"] + 0.1, 2.3, 0.9)  # lips
    z = z - 0.4 * _gauss(x, y, 0.0, 9.8 * identity.face_length, 1.8, 1.0)  # chin
    return np.stack([x, y, z], axis=1)


def _jaw_weight(identity: Identity, template_y: np.ndarray) -> np.ndarray:
    """0 above the mouth, 1 below the lower lip: how much of the jaw drop a skin point follows."""
    mouth = _mouth_layout(identity, 0.0)
    t = np.clip((template_y - mouth["y"]) / 0.9, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def drop_jaw(identity: Identity, mouth_open: float, template_xy: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Move lifted skin points below the mouth down (and a little back) as the mouth opens."""
    drop = _mouth_layout(identity, mouth_open)["drop"] * 0.95
    w = _jaw_weight(identity, template_xy[:, 1])
    moved = points.copy()
    moved[:, 1] += drop * w
    moved[:, 2] += 0.3 * drop * w
    return moved


# --- 3. the whole face -----------------------------------------------------------------------------------

MESH_RINGS = 11


def _skin_mesh(identity: Identity) -> tuple[np.ndarray, np.ndarray]:
    """Template vertices (polar grid: centre + rings towards the outline) and triangles of the skin."""
    outline = face_outline(identity)
    count = len(outline)
    rings = ((np.arange(MESH_RINGS) + 1) / MESH_RINGS) ** 0.85
    vertices = [POLAR_CENTRE[None, :]]
    for s in rings:
        vertices.append(POLAR_CENTRE + s * (outline - POLAR_CENTRE))
    vertices = np.concatenate(vertices)
    triangles = []
    j = np.arange(count)
    k = (j + 1) % count
    triangles.append(np.stack([np.zeros(count, int), 1 + j, 1 + k], axis=1))
    for ring in range(MESH_RINGS - 1):
        a, b = 1 + ring * count, 1 + (ring + 1) * count
        triangles.append(np.stack([a + j, b + j, b + k], axis=1))
        triangles.append(np.stack([a + j, b + k, a + k], axis=1))
    return vertices, np.concatenate(triangles)


def _dense(s_count: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, s_count)


def _feature_curves(identity: Identity, expression: Expression) -> dict[str, np.ndarray]:
    """Template polylines / polygons of the drawn features (they pass through the landmarks)."""
    curves: dict[str, np.ndarray] = {}
    # the landmark parameters (quarters) are in every dense sampling: 0, 1/24, ..., 1
    s = _dense(25)
    for name, side, closure in (("left", -1, expression.eye_closure[0]), ("right", 1, expression.eye_closure[1])):
        upper, lower, crease = _eye_curves(identity, closure, side, s)
        curves[f"{name}_eye_upper"] = upper
        curves[f"{name}_eye_lower"] = lower
        curves[f"{name}_eye_crease"] = crease
        brow_up, brow_low = _brow_curves(identity, side, np.linspace(0.0, 1.0, 41))
        curves[f"{name}_brow"] = np.concatenate([brow_up, brow_low[::-1]])
    # dense samples plus the landmark parameters, so the drawn lips pass through the lip landmarks
    u = np.unique(np.round(np.concatenate([np.linspace(-1.0, 1.0, 41), [-0.66, -0.45, -0.3, 0.3, 0.45, 0.66]]), 6))
    lips = _lip_curves(identity, expression.mouth_open, u)
    curves["lips_outer"] = np.concatenate([lips["outer_upper"], lips["outer_lower"][::-1][1:-1]])
    curves["lips_inner"] = np.concatenate([lips["inner_upper"], lips["inner_lower"][::-1][1:-1]])
    curves["mouth_line"] = lips["inner_upper"]
    tip_y, nose_half = _nose_layout(identity)
    base = np.linspace(-1.0, 1.0, 41)
    curves["nose_base"] = np.stack([base * nose_half, tip_y + 0.85 - 0.4 * np.abs(base) ** 1.5], axis=1)
    t = np.linspace(0.0, 2 * math.pi, 17)[:-1]
    for name, side in (("left", -1), ("right", 1)):
        curves[f"{name}_nostril"] = np.stack(
            [side * 0.5 * nose_half + 0.28 * nose_half * np.cos(t), tip_y + 0.62 + 0.13 * np.sin(t)], axis=1
        )
    return curves


def _fringe(identity: Identity) -> np.ndarray | None:
    """Template polygon of the hair over the forehead (between the outline's top and the hairline)."""
    if identity.hairline < -7.4:
        return None
    top = face_outline(identity)[JAW_SAMPLES:]  # forehead samples, image right -> left
    hairline_y = identity.hairline + 1.3 * (top[:, 0] / 6.0) ** 2
    lower = np.stack([top[:, 0], np.maximum(top[:, 1], hairline_y)], axis=1)
    lower = POLAR_CENTRE + 0.995 * (lower - POLAR_CENTRE)  # just inside the outline, so it lifts safely
    return np.concatenate([top, lower[::-1]])


def _unit_sphere(count: int) -> np.ndarray:
    """``count`` evenly spread unit vectors (Fibonacci sphere), deterministic."""
    i = np.arange(count) + 0.5
    polar = np.arccos(1 - 2 * i / count)
    azimuth = math.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.cos(polar), np.sin(azimuth) * np.sin(polar)], 1)


def _head_clouds(identity: Identity) -> dict[str, np.ndarray]:
    """Point clouds whose projected convex hulls are drawn behind the face: skull, hair, ears, neck."""
    sphere = _unit_sphere(240)
    radii = np.array([7.6 * identity.face_width, 9.2 * identity.face_length, 9.8])
    skull = sphere * radii + np.array([0.0, -0.3, 2.8])
    hair = sphere * radii * 1.06 + np.array([0.0, -0.6, 2.8])
    clouds = {"skull": skull, "hair": hair}
    t = np.linspace(0.0, 2 * math.pi, 20)[:-1]
    for name, side in (("left_ear", -1), ("right_ear", 1)):
        x = side * 7.55 * identity.face_width * np.ones_like(t)
        clouds[name] = np.stack([x, 1.8 + 2.9 * np.sin(t), 0.8 + 1.6 * np.cos(t)], axis=1)
    ring = np.stack([np.cos(t), np.zeros_like(t), np.sin(t)], axis=1) * np.array([5.0, 0.0, 4.6])
    clouds["neck_top"] = ring + np.array([0.0, 6.0, 4.0])
    clouds["neck_bottom"] = ring * 1.15 + np.array([0.0, 19.0, 4.5])
    return clouds


def _ambient_occlusion(identity: Identity, xy: np.ndarray) -> np.ndarray:
    """How much ambient light reaches template points: recesses (eye sockets, the sides of the nose, under
    the lower lip) are darker whatever the light direction -- which is also what face detectors look for."""
    x, y = xy[:, 0], xy[:, 1]
    eye_x = 3.2 * identity.eye_spacing
    tip_y, _ = _nose_layout(identity)
    mouth_y = _mouth_layout(identity, 0.0)["y"]
    dark = 0.42 * (_gauss(x, y, -eye_x, -0.2, 2.0, 1.3) + _gauss(x, y, eye_x, -0.2, 2.0, 1.3))
    dark -= 0.1 * (_gauss(x, y, -eye_x - 0.3, 3.0, 1.8, 1.0) + _gauss(x, y, eye_x + 0.3, 3.0, 1.8, 1.0))  # cheeks
    dark += 0.15 * (_gauss(x, y, -1.3, 1.5, 0.6, 1.6) + _gauss(x, y, 1.3, 1.5, 0.6, 1.6))
    dark += 0.15 * _gauss(x, y, 0.0, mouth_y + 1.15, 1.6, 0.45) + 0.15 * _gauss(x, y, 0.0, tip_y + 1.1, 1.2, 0.4)
    return np.clip(1.0 - dark, 0.4, 1.1)


def _normals(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward unit normals of the triangles and of the vertices (the skin is a height field facing -z)."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    normals *= -np.sign(normals[:, 2:3] + 1e-12)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    per_vertex = np.stack(
        [sum(np.bincount(triangles[:, k], normals[:, d], len(vertices)) for k in range(3)) for d in range(3)], axis=1
    )
    return normals, per_vertex / (np.linalg.norm(per_vertex, axis=1, keepdims=True) + 1e-12)


def build_face(identity: Identity, expression: Expression) -> FaceGeometry:
    """The 3D face (model coordinates, cm) for an identity and expression: landmarks + drawable geometry."""
    template = template_landmarks(identity, expression)
    mesh_xy, triangles = _skin_mesh(identity)
    mesh = drop_jaw(identity, expression.mouth_open, mesh_xy, lift(identity, mesh_xy))
    landmarks = lift(identity, template)
    # contour landmarks are the outline's even jaw samples: take them from the mesh's outer ring so they are
    # the very vertices that bound the drawn skin (same lift, same jaw drop)
    outer_ring = 1 + (MESH_RINGS - 1) * len(face_outline(identity))
    landmarks[0:33] = mesh[outer_ring : outer_ring + JAW_SAMPLES : 2]

    iris = np.zeros((2, 3))
    gaze_yaw, gaze_pitch = expression.gaze
    direction = np.array(
        [math.sin(gaze_yaw) * math.cos(gaze_pitch), -math.sin(gaze_pitch), -math.cos(gaze_yaw) * math.cos(gaze_pitch)]
    )
    for eye, side in ((0, -1), (1, 1)):
        front = lift(identity, _eye_centre(identity, side)[None, :])[0] - np.array([0.0, 0.0, 0.25])
        eyeball = front + np.array([0.0, 0.0, EYEBALL_RADIUS])
        iris[eye] = eyeball + EYEBALL_RADIUS * direction
    landmarks[96:98] = iris

    flat = _feature_curves(identity, expression)
    fringe = _fringe(identity)
    if fringe is not None:
        flat["fringe"] = fringe
    lifted = lift(identity, np.concatenate(list(flat.values())))  # one call for all curves: cheaper
    ends = np.cumsum([len(xy) for xy in flat.values()])
    curves = dict(zip(flat, np.split(lifted, ends[:-1]), strict=True))
    centroid = mesh_xy[triangles].mean(axis=1)
    triangle_normals, vertex_normals = _normals(mesh, triangles)
    tip_y, nose_half = _nose_layout(identity)
    # narrow along the bridge so the redrawn nose never reaches the inner eye corners
    half_width = np.where(centroid[:, 1] < 2.0, 0.9, 1.25 * nose_half)
    nose = (np.abs(centroid[:, 0]) < half_width) & (centroid[:, 1] > -0.6) & (centroid[:, 1] < tip_y + 1.3)
    return FaceGeometry(
        landmarks=landmarks,
        mesh_vertices=mesh,
        mesh_triangles=triangles,
        nose_triangles=nose,
        occlusion=_ambient_occlusion(identity, centroid),
        triangle_normals=triangle_normals,
        vertex_normals=vertex_normals,
        curves=curves,
        iris_centres=iris,
        eye_open_area=(expression.eye_closure[0] < 0.999, expression.eye_closure[1] < 0.999),
        template=template,
        extras=_head_clouds(identity),
    )


# --- pose and camera -------------------------------------------------------------------------------------


def to_camera(points: np.ndarray, pose: Pose) -> np.ndarray:
    """(N, 3) model points -> camera frame (cm): rotate about the head pivot, then translate."""
    return (points - HEAD_PIVOT) @ pose.rotation().T + np.asarray(pose.translation)


def project(points_cam: np.ndarray, camera: Camera) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) 0-based pixel coordinates (pinhole)."""
    z = points_cam[:, 2:3]
    return points_cam[:, :2] * (camera.focal / z) + np.array([camera.cx, camera.cy])


def project_landmarks(geometry: FaceGeometry, pose: Pose, camera: Camera) -> np.ndarray:
    """(98, 2) float64 pixel positions of the landmarks."""
    return project(to_camera(geometry.landmarks, pose), camera)


def place_face(
    geometry: FaceGeometry,
    yaw: float,
    pitch: float,
    roll: float,
    camera: Camera,
    centre_px: tuple[float, float],
    size_px: float,
) -> Pose:
    """The pose whose projected landmark box is centred at ``centre_px`` and ``size_px`` on its longer side."""
    rotation = rotation_matrix(yaw, pitch, roll)
    rotated = (geometry.landmarks - HEAD_PIVOT) @ rotation.T
    mid = (rotated.min(axis=0) + rotated.max(axis=0)) / 2
    extent = float(np.max(rotated.max(axis=0)[:2] - rotated.min(axis=0)[:2]))
    depth = camera.focal * extent / size_px  # distance of the box centre from the camera
    centre = np.asarray(centre_px, dtype=np.float64)
    t = np.array([0.0, 0.0, depth - mid[2]])
    t[:2] = (centre - [camera.cx, camera.cy]) * depth / camera.focal - mid[:2]
    for _ in range(3):  # perspective makes the first guess slightly off: correct size, then centre
        points = project(rotated + t, camera)
        low, high = points.min(axis=0), points.max(axis=0)
        depth = (t[2] + mid[2]) * float(np.max(high - low)) / size_px
        t[2] = depth - mid[2]
        points = project(rotated + t, camera)
        low, high = points.min(axis=0), points.max(axis=0)
        t[:2] += (centre - (low + high) / 2) * depth / camera.focal
    return Pose(yaw, pitch, roll, (float(t[0]), float(t[1]), float(t[2])))
