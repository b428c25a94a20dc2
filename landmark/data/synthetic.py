"""Synthetic WFLW: rendered faces with exact 98-point labels, written in WFLW's own layout.

No real WFLW images are available offline, so ``make run`` and the tests train and evaluate on faces drawn
here from the parametric 3D face of ``landmark.data.face3d``. The labels are the projected landmark points
of the same geometry that is drawn (contour = the skin mesh's boundary, lids = the drawn lid lines, ...),
so they are exact up to rasterisation (the image is drawn at ``supersample`` times the size with sub-pixel
polygon vertices and averaged down).

``render_face_image`` draws one face; ``write_synthetic_wflw`` writes a dataset:

    out_dir/WFLW_images/0--Synthetic/synth_000000.jpg ...
    out_dir/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
    out_dir/contact_sheet.png   (faces with their landmarks drawn, to check the labels by eye)

The same seed writes the same bytes. ``draw_person`` is shared with the synthetic driver videos.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from landmark.data import face3d
from landmark.data.face3d import Camera, Expression, FaceGeometry, Pose
from landmark.data.readers import WFLW_LIST_DIR, format_wflw_line

SHIFT = 4  # fractional bits of polygon vertices handed to OpenCV (1/16 px)
ATTRIBUTE_NAMES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
IMAGE_SUBFOLDER = "0--Synthetic"

# BGR skin tones from very light to very dark, hair colours, clothing, lipsticks, eye shadows
SKIN_TONES = np.array(
    [[196, 224, 255], [167, 194, 241], [138, 172, 224], [110, 150, 210], [103, 134, 198], [76, 102, 161],
     [55, 75, 120], [44, 58, 92]], dtype=np.float32
)  # fmt: skip
HAIR_COLOURS = np.array(
    [[20, 20, 22], [25, 35, 50], [30, 50, 80], [60, 90, 130], [90, 150, 200], [150, 150, 155], [40, 60, 140]],
    dtype=np.float32,
)
LIPSTICKS = np.array([[40, 20, 200], [80, 30, 150], [120, 60, 220], [60, 40, 120], [30, 30, 160]], np.float32)
EYE_SHADOWS = np.array([[160, 80, 60], [140, 60, 120], [60, 120, 60], [70, 90, 130], [120, 90, 150]], np.float32)


@dataclass
class Look:
    """Appearance: colours (BGR, 0-255) and lighting. Geometry lives in ``face3d``."""

    skin: np.ndarray
    hair: np.ndarray
    lips: np.ndarray
    iris: np.ndarray
    clothing: np.ndarray
    eye_shadow: np.ndarray | None
    light: np.ndarray  # unit vector towards the light, camera frame (x right, y down, z away)
    ambient: float
    diffuse: float
    hair_length: float  # model y (cm) where the hair at the back and sides ends
    makeup: bool


def random_look(rng: np.random.Generator) -> Look:
    """Skin tone, hair, make-up and a light direction/intensity."""
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(tone)
    skin = SKIN_TONES[low] + (tone - low) * (SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[low])
    skin = np.clip(skin * rng.uniform(0.92, 1.08, 3), 0, 255)
    lipstick = rng.random() < 0.12
    shadow = rng.random() < 0.1
    natural_lips = skin * np.array([0.72, 0.68, 1.0]) * rng.uniform(0.8, 0.95)
    lips = LIPSTICKS[rng.integers(len(LIPSTICKS))] * rng.uniform(0.8, 1.1) if lipstick else natural_lips
    side = rng.uniform(-1.0, 1.0)
    light = np.array([side, rng.uniform(-0.7, 0.3), -rng.uniform(0.3, 1.0)])
    return Look(
        skin=skin,
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2),
        lips=np.clip(lips, 0, 255),
        iris=np.array(
            [[40, 60, 90], [30, 40, 60], [110, 100, 60], [80, 110, 70], [60, 80, 110]][rng.integers(5)], np.float32
        ),
        clothing=rng.uniform(20, 230, 3).astype(np.float32),
        eye_shadow=EYE_SHADOWS[rng.integers(len(EYE_SHADOWS))] if shadow else None,
        light=light / np.linalg.norm(light),
        ambient=float(rng.uniform(0.35, 0.6)),
        diffuse=float(rng.uniform(0.45, 0.8)),
        hair_length=float(rng.uniform(-3.0, 12.0)) if rng.random() < 0.9 else -20.0,
        makeup=bool(lipstick or shadow),
    )


# --- drawing primitives ----------------------------------------------------------------------------------


def _fixed(points: np.ndarray, ss: int) -> np.ndarray:
    """Pixel coordinates (0-based, output resolution) -> int32 fixed-point vertices on the ss-times canvas.

    Output pixel i covers canvas pixels ss*i ... ss*i + ss - 1, whose centre is ss*i + (ss - 1) / 2.
    """
    return np.round((points * ss + (ss - 1) / 2) * (1 << SHIFT)).astype(np.int32)


def _fill(canvas: np.ndarray, polygon: np.ndarray, colour, ss: int) -> None:
    cv2.fillPoly(canvas, [_fixed(polygon, ss)], _colour(colour), lineType=cv2.LINE_AA, shift=SHIFT)


def _line(canvas: np.ndarray, polyline: np.ndarray, colour, thickness: float, ss: int, closed=False) -> None:
    width = max(1, int(round(thickness * ss)))
    cv2.polylines(canvas, [_fixed(polyline, ss)], closed, _colour(colour), width, cv2.LINE_AA, SHIFT)


def _colour(colour) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(colour, 0, 255))


def _hull(points: np.ndarray) -> np.ndarray:
    return cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def _shade(look: Look, normals: np.ndarray) -> np.ndarray:
    """Lambert shading factor of outward unit normals (camera frame)."""
    return look.ambient + look.diffuse * np.clip(normals @ look.light, 0.0, None)


def _clipped_fill(canvas, clip_polygon, shapes, ss) -> None:
    """Fill ``shapes`` [(polygon, colour), ...] only inside ``clip_polygon`` (e.g. the iris inside the lids)."""
    box = np.concatenate([clip_polygon] + [p for p, _ in shapes])
    low = np.floor(box.min(axis=0) * ss - 2).astype(int).clip(0)
    high = np.ceil(box.max(axis=0) * ss + ss + 2).astype(int)
    high = np.minimum(high, [canvas.shape[1], canvas.shape[0]])
    if np.any(high <= low):
        return
    roi = canvas[low[1] : high[1], low[0] : high[0]]
    offset = low / ss  # in output pixels
    clip = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(clip, [_fixed(clip_polygon - offset, ss)], 255, cv2.LINE_AA, SHIFT)
    for polygon, colour in shapes:
        layer = np.zeros(roi.shape[:2], np.uint8)
        cv2.fillPoly(layer, [_fixed(polygon - offset, ss)], 255, cv2.LINE_AA, SHIFT)
        alpha = (np.minimum(layer, clip).astype(np.float32) / 255.0)[..., None]
        roi[:] = (roi * (1 - alpha) + np.asarray(colour, np.float32) * alpha).astype(np.uint8)


def _ellipse(centre: np.ndarray, axis_a: np.ndarray, axis_b: np.ndarray, count: int = 28) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, count, endpoint=False)[:, None]
    return centre + np.cos(t) * axis_a + np.sin(t) * axis_b


# --- the person --------------------------------------------------------------------------------------------


class _View:
    """One face under one pose and camera: projects model points and shades model normals."""

    def __init__(self, geometry: FaceGeometry, pose: Pose, camera: Camera, look: Look):
        self.geometry, self.pose, self.camera, self.look = geometry, pose, camera, look
        self.rotation = pose.rotation()

    def cam(self, points: np.ndarray) -> np.ndarray:
        return face3d.to_camera(points, self.pose)

    def px(self, points: np.ndarray) -> np.ndarray:
        return face3d.project(self.cam(points), self.camera)

    def facing(self, model_normal: np.ndarray, model_point: np.ndarray) -> float:
        """> 0 when a surface with this normal at this point faces the camera."""
        return float(-(self.rotation @ model_normal) @ self.cam(model_point[None])[0])

    def shade_at(self, model_point: np.ndarray) -> float:
        """Shading of the skin nearest to a model point (features take the light of the skin under them)."""
        nearest = np.argmin(np.sum((self.geometry.mesh_vertices - model_point) ** 2, axis=1))
        return float(_shade(self.look, (self.rotation @ self.geometry.vertex_normals[nearest])[None])[0])


def torso_pose(pose: Pose) -> Pose:
    """The body follows the head only partly."""
    return Pose(pose.yaw * 0.3, pose.pitch * 0.2, pose.roll * 0.4, pose.translation)


def _draw_body(canvas, view: _View, ss: int) -> None:
    look, geometry = view.look, view.geometry
    x = np.linspace(-23.0, 23.0, 25)
    shoulders = np.stack([x, 15.0 + 4.5 * (np.abs(x) / 23.0) ** 3, np.full_like(x, 6.0)], axis=1)
    bottom = np.array([[30.0, 70.0, 6.0], [-30.0, 70.0, 6.0]])
    body = np.concatenate([shoulders, bottom])
    torso = torso_pose(view.pose)
    body_px = face3d.project(face3d.to_camera(body, torso), view.camera)
    _fill(canvas, body_px, look.clothing * (0.55 + 0.35 * look.ambient), ss)
    neck = np.concatenate(
        [
            view.px(geometry.extras["neck_top"]),
            face3d.project(face3d.to_camera(geometry.extras["neck_bottom"], torso), view.camera),
        ]
    )
    _fill(canvas, _hull(neck), look.skin * (0.45 + 0.3 * look.ambient), ss)


def _draw_head_back(canvas, view: _View, ss: int) -> None:
    """Skull, ears and hair: convex hulls of point clouds behind the face."""
    look, extras = view.look, view.geometry.extras
    _fill(canvas, _hull(view.px(extras["skull"])), look.skin * (0.55 + 0.4 * look.ambient), ss)
    for name, side in (("left_ear", -1.0), ("right_ear", 1.0)):
        ear = extras[name]
        if view.facing(np.array([side, 0.0, -0.3]), ear.mean(axis=0)) > 0:
            _fill(canvas, view.px(ear), look.skin * (0.6 + 0.35 * look.ambient), ss)
    hair = extras["hair"]
    keep = (hair[:, 1] < look.hair_length) | ((hair[:, 2] < -1.0) & (hair[:, 1] < -4.0))
    if look.hair_length > -10 and keep.sum() >= 3:
        _fill(canvas, _hull(view.px(hair[keep])), look.hair * (0.5 + 0.5 * look.ambient), ss)


def _draw_skin(canvas, view: _View, ss: int, triangles: np.ndarray, blur_px: float) -> None:
    """Flat-shaded front-facing triangles, smoothed by a blur normalised inside their own mask.

    Triangles are grouped by (quantised) shade so each group is one ``fillPoly`` call; the blur hides the
    facets without bleeding the background into the skin.
    """
    geometry, look = view.geometry, view.look
    vertices_cam = view.cam(geometry.mesh_vertices)
    tri = geometry.mesh_triangles[triangles]
    normals = geometry.triangle_normals[triangles] @ view.rotation.T
    centroids = vertices_cam[tri].mean(axis=1)
    occlusion = geometry.occlusion[triangles]
    visible = np.sum(normals * centroids, axis=1) < 0
    tri, normals, centroids, occlusion = tri[visible], normals[visible], centroids[visible], occlusion[visible]
    order = np.argsort(-centroids[:, 2])  # far first, so the nose covers what it hides
    tri, normals, occlusion = tri[order], normals[order], occlusion[order]
    corners = _fixed(face3d.project(vertices_cam, view.camera), ss)[tri]  # (T, 3, 2)
    levels = np.round(_shade(look, normals) * occlusion * 48).astype(int)
    if len(tri) == 0:
        return
    low = np.maximum(corners.reshape(-1, 2).min(axis=0) // (1 << SHIFT) - 8, 0)
    high = corners.reshape(-1, 2).max(axis=0) // (1 << SHIFT) + 9
    region = (slice(low[1], high[1]), slice(low[0], high[0]))
    layer = np.zeros_like(canvas[region])
    if layer.size == 0:
        return
    shifted = corners - (low << SHIFT)
    by_level = np.argsort(levels, kind="stable")  # keeps the depth order within each shade
    levels, shifted = levels[by_level], shifted[by_level]
    bounds = np.flatnonzero(np.diff(levels)) + 1
    for group, level in zip(np.split(shifted, bounds), levels[np.concatenate([[0], bounds])], strict=True):
        colour = _colour(np.maximum(look.skin * level / 48, 4.0))  # never black: black means "no skin"
        cv2.fillPoly(layer, list(group), colour, cv2.LINE_8, SHIFT)
    m = (cv2.cvtColor(layer, cv2.COLOR_BGR2GRAY) > 0).astype(np.float32)  # every skin colour is >= 4
    # normalised blur (blur(colour * mask) / blur(mask)) at reduced resolution: smooth, and cheap
    sigma = max(blur_px * ss, 0.5)
    factor = max(1, int(sigma / 1.5))
    small_size = (max(1, m.shape[1] // factor), max(1, m.shape[0] // factor))
    small_m = cv2.resize(m, small_size, interpolation=cv2.INTER_AREA)
    small = cv2.resize(layer, small_size, interpolation=cv2.INTER_AREA).astype(np.float32)  # colour * coverage
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    small /= np.maximum(cv2.GaussianBlur(small_m, (0, 0), sigma / factor), 1e-3)[..., None]
    smooth = cv2.resize(small, (m.shape[1], m.shape[0]), interpolation=cv2.INTER_LINEAR)
    target = canvas[region]
    edge_alpha = cv2.GaussianBlur(m, (0, 0), 0.6 * ss)[..., None]  # soft anti-aliased outline
    target[:] = np.clip(target * (1 - edge_alpha) + smooth * edge_alpha, 0, 255).astype(np.uint8)


def _draw_eye(canvas, view: _View, name: str, eye: int, ss: int) -> None:
    geometry, look = view.geometry, view.look
    curves = geometry.curves
    upper, lower = view.px(curves[f"{name}_eye_upper"]), view.px(curves[f"{name}_eye_lower"])
    crease = view.px(curves[f"{name}_eye_crease"])
    centre = curves[f"{name}_eye_upper"][len(upper) // 2]
    shade = view.shade_at(centre)
    lid_colour = look.skin * 0.8 if look.eye_shadow is None else look.eye_shadow
    _fill(canvas, np.concatenate([crease, lower[::-1]]), lid_colour * shade, ss)
    opening = np.concatenate([upper, lower[::-1][1:-1]])
    if geometry.eye_open_area[eye]:
        iris_c = geometry.iris_centres[eye]
        pupil_px = view.px(iris_c[None])[0]
        axes = [view.px(iris_c[None] + d)[0] - pupil_px for d in ([1, 0, 0], [0, 1, 0])]
        iris = _ellipse(pupil_px, axes[0] * face3d.IRIS_RADIUS, axes[1] * face3d.IRIS_RADIUS)
        pupil = _ellipse(pupil_px, axes[0] * face3d.PUPIL_RADIUS, axes[1] * face3d.PUPIL_RADIUS)
        towards = np.array([look.light[0] - 0.6, look.light[1] - 0.6])  # catchlight: up-left, off the pupil
        towards *= 0.34 / np.linalg.norm(towards)
        glint_at = pupil_px + axes[0] * towards[0] + axes[1] * towards[1]
        glint = _ellipse(glint_at, axes[0] * 0.1, axes[1] * 0.1, 12)
        sclera = np.array([225.0, 228.0, 232.0]) * min(shade, 1.1) * 0.95
        _clipped_fill(
            canvas,
            opening,
            [(opening, sclera), (iris, look.iris * shade), (pupil, (10, 10, 12)), (glint, (235, 235, 235))],
            ss,
        )
    lash = np.array([25.0, 22.0, 22.0]) * shade
    scale = np.linalg.norm(upper[0] - upper[-1]) / 3.0  # pixels per cm, roughly
    _line(canvas, upper, lash, max(0.6, 0.14 * scale), ss)
    _line(canvas, lower, look.skin * 0.5 * shade, max(0.4, 0.05 * scale), ss)


def _draw_mouth(canvas, view: _View, ss: int) -> None:
    geometry, look = view.geometry, view.look
    curves = geometry.curves
    shade = view.shade_at(geometry.landmarks[85])
    outer, inner = view.px(curves["lips_outer"]), view.px(curves["lips_inner"])
    _fill(canvas, outer, look.lips * shade, ss)
    mouth_line = view.px(curves["mouth_line"])
    opening = np.linalg.norm(geometry.landmarks[90] - geometry.landmarks[94])  # cm between the inner lips
    if opening > 0.05:
        teeth_drop = view.px(curves["mouth_line"] + [0.0, 0.4, 0.0])
        teeth = np.concatenate([mouth_line, teeth_drop[::-1]])
        _clipped_fill(canvas, inner, [(inner, np.array([40.0, 30.0, 70.0]) * shade), (teeth, (215, 220, 225))], ss)
    scale = np.linalg.norm(outer[0] - outer[len(outer) // 2]) / 2.5
    _line(canvas, mouth_line, look.lips * 0.4 * shade, max(0.5, 0.06 * scale), ss)


def _draw_nose_details(canvas, view: _View, ss: int) -> None:
    geometry, look = view.geometry, view.look
    curves = geometry.curves
    shade = view.shade_at(geometry.landmarks[57])
    base = view.px(curves["nose_base"])
    scale = np.linalg.norm(base[0] - base[-1]) / 2.9
    underside = np.array([0.0, 0.8, -0.6])
    if view.facing(underside, geometry.landmarks[57]) > 0:
        for name in ("left_nostril", "right_nostril"):
            _fill(canvas, view.px(curves[name]), look.skin * 0.25 * shade, ss)
    _line(canvas, base, look.skin * 0.55 * shade, max(0.5, 0.07 * scale), ss)


def draw_person(canvas: np.ndarray, geometry: FaceGeometry, pose: Pose, camera: Camera, look: Look, ss: int) -> None:
    """Draw body, head and face onto ``canvas`` (BGR uint8, ``ss`` times the output resolution), back to front.

    Order: body and neck, skull/ears/hair, skin mesh, fringe, eyes, brows, mouth, then the nose again on top
    (it can hide part of the far eye when the head is turned), then nostrils.
    """
    view = _View(geometry, pose, camera, look)
    scale = camera.focal / pose.translation[2]  # output pixels per cm, roughly
    _draw_body(canvas, view, ss)
    _draw_head_back(canvas, view, ss)
    everything = np.ones(len(geometry.mesh_triangles), bool)
    _draw_skin(canvas, view, ss, everything, blur_px=0.35 * scale)
    if "fringe" in geometry.curves:
        fringe_shade = view.shade_at(geometry.curves["fringe"].mean(axis=0))
        _fill(canvas, view.px(geometry.curves["fringe"]), look.hair * fringe_shade, ss)
    _draw_eye(canvas, view, "left", 0, ss)
    _draw_eye(canvas, view, "right", 1, ss)
    brow_colour = look.hair * 0.45 + np.array([8.0, 8.0, 8.0])
    for name in ("left_brow", "right_brow"):
        brow = geometry.curves[name]
        _fill(canvas, view.px(brow), brow_colour * view.shade_at(brow.mean(axis=0)), ss)
    _draw_mouth(canvas, view, ss)
    _draw_skin(canvas, view, ss, geometry.nose_triangles, blur_px=0.2 * scale)
    _draw_nose_details(canvas, view, ss)


# --- backgrounds, occluders, camera effects ---------------------------------------------------------------


def random_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth colour field (corner gradient + blotches), then a few random shapes (BGR uint8)."""
    cells = int(rng.integers(2, 9))
    field = rng.uniform(0, 255, (2, 2, 3)).astype(np.float32)
    field = cv2.resize(field, (cells, cells), interpolation=cv2.INTER_LINEAR)
    field += rng.normal(0, rng.uniform(5, 45), (cells, cells, 3)).astype(np.float32)
    field = np.clip(field, 0, 255).astype(np.uint8)
    image = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    scale = max(width, height)
    for _ in range(int(rng.integers(0, 9))):
        colour = _colour(rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        centre = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        if kind == 0:
            size = rng.uniform(0.05, 0.5, 2) * scale
            box = cv2.boxPoints((centre, (float(size[0]), float(size[1])), float(rng.uniform(0, 180))))
            cv2.fillPoly(image, [box.astype(np.int32)], colour, cv2.LINE_AA)
        elif kind == 1:
            axes = (int(rng.uniform(0.02, 0.25) * scale), int(rng.uniform(0.02, 0.25) * scale))
            cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        else:
            end = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
            cv2.line(image, centre, end, colour, int(rng.uniform(0.005, 0.03) * scale) + 1, cv2.LINE_AA)
    return image


def _draw_occluder(
    rng: np.random.Generator, canvas: np.ndarray, points: np.ndarray, face_px: float, ss: int
) -> tuple[str | None, np.ndarray]:
    """Maybe draw a hand, a bar or sunglasses over the face; returns (kind, mask of what it covers)."""
    mask = np.zeros(canvas.shape[:2], np.uint8)
    kind = rng.choice(["none", "hand", "bar", "sunglasses"], p=[0.8, 0.08, 0.06, 0.06])
    if kind == "none":
        return None, mask
    layers = [canvas, mask]
    if kind == "hand":
        skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.7, 1.0)
        target = points[rng.choice([16, 54, 85, 96, 97, 10, 22])]
        centre = target + rng.normal(0, 0.12 * face_px, 2)
        angle = rng.uniform(0, 2 * math.pi)
        along, across = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
        palm = _ellipse(centre, along * 0.2 * face_px, across * 0.16 * face_px)
        for layer, colour in zip(layers, (skin, (255, 255, 255)), strict=True):
            _fill(layer, palm, colour, ss)
            for finger in range(4):
                base = centre + across * (finger - 1.5) * 0.085 * face_px + along * 0.12 * face_px
                tip = base + along * rng.uniform(0.18, 0.3) * face_px
                shade = colour if layer is mask else np.asarray(colour) * (0.9 + 0.04 * finger)
                _line(layer, np.stack([base, tip]), shade, 0.075 * face_px, ss)
    elif kind == "bar":
        colour = rng.uniform(0, 255, 3)
        centre = points[rng.integers(98)] + rng.normal(0, 0.1 * face_px, 2)
        angle = rng.uniform(0, math.pi)
        direction = np.array([math.cos(angle), math.sin(angle)]) * face_px * 2
        bar = np.stack([centre - direction, centre + direction])
        thickness = rng.uniform(0.08, 0.22) * face_px
        for layer, c in zip(layers, (colour, (255, 255, 255)), strict=True):
            _line(layer, bar, c, thickness, ss)
    else:
        lens = rng.uniform(10, 70, 3)
        eye_width = np.linalg.norm(points[60] - points[64])
        tilt = points[72] - points[60]
        along = tilt / (np.linalg.norm(tilt) + 1e-6)
        across = np.array([-along[1], along[0]])
        for layer, c in zip(layers, (lens, (255, 255, 255)), strict=True):
            for pupil in (points[96], points[97]):
                _fill(
                    layer,
                    _ellipse(pupil + across * 0.1 * eye_width, along * 0.8 * eye_width, across * 0.6 * eye_width),
                    c,
                    ss,
                )
            _line(
                layer,
                np.stack([points[96] + along * 0.7 * eye_width, points[97] - along * 0.7 * eye_width]),
                c,
                0.06 * face_px,
                ss,
            )
    return str(kind), mask


def _motion_kernel(length: int, angle: float) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    d = np.array([math.cos(angle), math.sin(angle)]) * c
    cv2.line(kernel, (round(c - d[0]), round(c - d[1])), (round(c + d[0]), round(c + d[1])), 1.0, 1)
    return kernel / kernel.sum()


def _lighting_field(width: int, height: int, gain: float, side: float) -> np.ndarray:
    """Global brightness: ``gain`` times a left-right ramp of strength ``side`` (side light on the scene)."""
    ramp = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    return np.broadcast_to(gain * (1.0 + side * ramp), (height, width, 1))


# --- one face ------------------------------------------------------------------------------------------------


def _random_angles(rng: np.random.Generator) -> tuple[float, float, float]:
    """Degrees: mostly near-frontal with a long tail up to the dataset's limits."""
    if rng.random() < 0.55:
        yaw, pitch, roll = rng.normal(0, 12), rng.normal(0, 8), rng.normal(0, 8)
    else:
        yaw, pitch, roll = rng.uniform(-45, 45), rng.uniform(-25, 25), rng.uniform(-30, 30)
    return float(np.clip(yaw, -45, 45)), float(np.clip(pitch, -25, 25)), float(np.clip(roll, -30, 30))


def _random_expression(rng: np.random.Generator) -> Expression:
    eyes = rng.random()
    if eyes < 0.68:
        closure = tuple(rng.uniform(0.0, 0.25, 2))
    elif eyes < 0.85:
        closure = (float(rng.uniform(0.85, 1.0)),) * 2
    else:
        closure = tuple(rng.uniform(0.0, 1.0, 2))
    mouth = float(rng.uniform(0.0, 0.1) if rng.random() < 0.55 else rng.uniform(0.0, 1.0))
    gaze = (float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.2, 0.2)))
    return Expression(eye_closure=(float(closure[0]), float(closure[1])), mouth_open=mouth, gaze=gaze)


def attribute_flags(params: dict) -> np.ndarray:
    """WFLW's six flags (pose, expression, illumination, make-up, occlusion, blur) from render parameters.

    pose: |yaw| > 30, |pitch| > 20 or |roll| > 25 degrees; expression: mouth opening > 0.4 or an eye's
    closure > 0.7; illumination: a strong side light with little ambient light, or a dark scene (gain < 0.5);
    make-up: lipstick or eye shadow; occlusion: an occluder covers >= 3 landmarks; blur: Gaussian sigma
    > 1.2 px or a motion blur of >= 5 px.
    """
    yaw, pitch, roll = (abs(math.degrees(params[k])) for k in ("yaw", "pitch", "roll"))
    light = np.asarray(params["light"])
    return np.array(
        [
            yaw > 30 or pitch > 20 or roll > 25,
            params["mouth_open"] > 0.4 or max(params["eye_closure"]) > 0.7,
            (abs(light[0]) > 0.75 and params["diffuse"] > 0.6 and params["ambient"] < 0.45) or params["gain"] < 0.5,
            params["makeup"],
            params["occluded_points"] >= 3,
            params["blur_sigma"] > 1.2 or params["motion_blur"] >= 5,
        ],
        dtype=np.uint8,
    )


def render_face_image(
    rng: np.random.Generator, size: int = 256, supersample: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """One synthetic face: (BGR uint8 image, (98, 2) float32 0-based pixel points, (6,) uint8 flags, params).

    The face's landmark box spans 35-60% of the image side; pose, expression, identity, skin, hair,
    lighting, background, occluders and blur are random. Angles in ``params`` are radians.
    """
    ss = supersample
    identity = face3d.random_identity(rng)
    expression = _random_expression(rng)
    yaw, pitch, roll = _random_angles(rng)
    look = random_look(rng)
    geometry = face3d.build_face(identity, expression)
    camera = Camera(focal=size * float(rng.uniform(1.0, 2.5)), cx=(size - 1) / 2, cy=(size - 1) / 2)
    face_px = float(rng.uniform(0.35, 0.6)) * size
    margin = face_px / 2 + 0.04 * size
    centre = (float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin)))
    pose = face3d.place_face(
        geometry, math.radians(yaw), math.radians(pitch), math.radians(roll), camera, centre, face_px
    )
    points = face3d.project_landmarks(geometry, pose, camera)

    canvas = random_background(rng, size * ss, size * ss)
    draw_person(canvas, geometry, pose, camera, look, ss)
    occluder, mask = _draw_occluder(rng, canvas, points, face_px, ss)
    inside = np.clip(np.round(points * ss + (ss - 1) / 2).astype(int), 0, size * ss - 1)
    occluded = int(np.count_nonzero(mask[inside[:, 1], inside[:, 0]] > 127))

    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA) if ss > 1 else canvas
    dark_scene = rng.random() < 0.1
    gain = float(rng.uniform(0.35, 0.6) if dark_scene else rng.uniform(0.75, 1.2))
    # auto-exposure: a camera exposes for the face, so dark skin is not also underexposed (unless the scene
    # is deliberately dark)
    skin_luma = float(look.skin @ [0.114, 0.587, 0.299]) * (look.ambient + 0.5 * look.diffuse)
    exposure = 1.0 if dark_scene else float(np.clip(110.0 / max(skin_luma, 1.0), 1.0, 1.7))
    side = float(look.light[0] * rng.uniform(0.0, 0.5))
    image = image.astype(np.float32) * _lighting_field(size, size, gain * exposure, side)
    blur_sigma = float(rng.uniform(0.5, 2.5)) if rng.random() < 0.25 else 0.0
    motion = int(rng.integers(3, 10)) if rng.random() < 0.08 else 0
    if blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
    if motion:
        image = cv2.filter2D(image, -1, _motion_kernel(motion, float(rng.uniform(0, math.pi))))
    noise = float(rng.uniform(1.0, 6.0))
    image += rng.standard_normal(image.shape, dtype=np.float32) * noise
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)

    params = {
        "yaw": math.radians(yaw),
        "pitch": math.radians(pitch),
        "roll": math.radians(roll),
        "eye_closure": list(expression.eye_closure),
        "mouth_open": expression.mouth_open,
        "gaze": list(expression.gaze),
        "face_px": face_px,
        "focal": camera.focal,
        "light": look.light.tolist(),
        "ambient": look.ambient,
        "diffuse": look.diffuse,
        "gain": gain,
        "exposure": exposure,
        "makeup": look.makeup,
        "occluder": occluder,
        "occluded_points": occluded,
        "blur_sigma": blur_sigma,
        "motion_blur": motion,
        "noise": noise,
    }
    return image, points.astype(np.float32), attribute_flags(params), params


# --- a dataset in WFLW's layout ----------------------------------------------------------------------------

# landmark groups coloured on the contact sheet (BGR)
_SHEET_GROUPS = (
    (range(0, 33), (255, 255, 255)),  # contour
    (range(33, 51), (0, 220, 255)),  # brows
    (range(51, 60), (255, 200, 0)),  # nose
    (range(60, 76), (0, 255, 0)),  # eyes
    (range(76, 96), (60, 60, 255)),  # lips
    (range(96, 98), (255, 0, 255)),  # pupils
)


def landmark_box(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Integer face box (x_min, y_min, x_max, y_max): the landmarks' bounding box, clipped to the image."""
    low = np.floor(points.min(axis=0)).clip(0, [width - 1, height - 1])
    high = np.ceil(points.max(axis=0)).clip(0, [width - 1, height - 1])
    return np.concatenate([low, high]).astype(np.int64)


def draw_landmarks(image: np.ndarray, points: np.ndarray, radius: float = 1.2) -> np.ndarray:
    """A copy of ``image`` with the 98 points drawn as small dots, one colour per facial part."""
    out = image.copy()
    scale = 1 << SHIFT
    for indices, colour in _SHEET_GROUPS:
        for x, y in points[list(indices)]:
            centre = (int(round(x * scale)), int(round(y * scale)))
            cv2.circle(out, centre, int(round(radius * scale)), colour, -1, cv2.LINE_AA, SHIFT)
    return out


def contact_sheet(images: list[np.ndarray], points: list[np.ndarray], columns: int = 6) -> np.ndarray:
    """A grid of faces with their landmarks drawn, to check the labels by eye."""
    tiles = [draw_landmarks(image, p) for image, p in zip(images, points, strict=True)]
    rows = -(-len(tiles) // columns)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (rows * columns - len(tiles))
    return np.vstack([np.hstack(tiles[r * columns : (r + 1) * columns]) for r in range(rows)])


def write_synthetic_wflw(
    out_dir: str | Path,
    n: int,
    seed: int,
    test_fraction: float = 0.2,
    size: int = 256,
    sheet_count: int = 24,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Render ``n`` faces and write them in WFLW's layout under ``out_dir``; returns a summary dict.

    Face ``i`` is drawn from its own child seed of ``seed``, so the same seed writes the same bytes.
    ``round(n * test_fraction)`` faces, chosen by the seed, go to the test list. ``progress`` is called
    with 1 after each face (e.g. ``tqdm.update``).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    out_dir = Path(out_dir)
    image_dir = out_dir / "WFLW_images" / IMAGE_SUBFOLDER
    list_dir = out_dir / WFLW_LIST_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    list_dir.mkdir(parents=True, exist_ok=True)

    root = np.random.SeedSequence(seed)
    split_seed, *face_seeds = root.spawn(n + 1)
    n_test = int(round(n * test_fraction))
    is_test = np.zeros(n, bool)
    is_test[np.random.default_rng(split_seed).permutation(n)[:n_test]] = True

    lines: dict[str, list[str]] = {"train": [], "test": []}
    sheet_images, sheet_points = [], []
    flag_counts = np.zeros(len(ATTRIBUTE_NAMES), np.int64)
    for i, face_seed in enumerate(face_seeds):
        image, points, flags, _ = render_face_image(np.random.default_rng(face_seed), size=size)
        rel_path = f"{IMAGE_SUBFOLDER}/synth_{i:06d}.jpg"
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise OSError(f"could not encode {rel_path}")
        (out_dir / "WFLW_images" / rel_path).write_bytes(encoded.tobytes())
        box = landmark_box(points, size, size)
        lines["test" if is_test[i] else "train"].append(format_wflw_line(points, box, flags, rel_path))
        flag_counts += flags
        if len(sheet_images) < sheet_count:
            sheet_images.append(image)
            sheet_points.append(points)
        if progress is not None:
            progress(1)

    list_paths = {}
    for split, split_lines in lines.items():
        list_paths[split] = list_dir / f"list_98pt_rect_attr_{split}.txt"
        list_paths[split].write_text("".join(line + "\n" for line in split_lines))
    sheet_path = out_dir / "contact_sheet.png"
    cv2.imwrite(str(sheet_path), contact_sheet(sheet_images, sheet_points))
    return {
        "root": str(out_dir),
        "images": n,
        "train": len(lines["train"]),
        "test": len(lines["test"]),
        "train_list": str(list_paths["train"]),
        "test_list": str(list_paths["test"]),
        "contact_sheet": str(sheet_path),
        "size": size,
        "seed": seed,
        "attributes": {name: int(c) for name, c in zip(ATTRIBUTE_NAMES, flag_counts, strict=True)},
    }
