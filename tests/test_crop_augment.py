"""The shared crop and the augmentation: exact landmark geometry, flips, configs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import draw_dots, symmetric_points

from landmark.data.augment import Augmenter, load_augment_config, validate_augment_config
from landmark.data.crop import (
    crop_image,
    crop_matrix,
    face_box_from_points,
    image_to_tensor,
    images_to_batch,
    points_from_crop,
    points_to_crop,
)
from landmark.data.schemes import IBUG_68, WFLW_98, flip_points
from landmark.errors import ConfigError

GEOMETRY_ONLY = {"rotation": 30, "scale": [0.9, 1.1], "translate": 0.08, "flip": 0.5}


def asymmetric_face(rng: np.random.Generator, scheme=IBUG_68, image_size=(200, 280)):
    """The symmetric grid face, squeezed and sheared so that it is no longer mirror-symmetric."""
    points = symmetric_points(scheme, (image_size[0] - 1) / 2, 30.0, 14.0)
    points[:, 0] += 0.15 * (points[:, 1] - 100) + rng.uniform(-2, 2, len(points))
    return points, draw_dots(image_size, points)


def test_crop_matrix_geometry():
    box = np.array([40.0, 60.0, 140.0, 140.0])  # 100 wide, 80 high, centre (90, 100)
    matrix = crop_matrix(box, 64, scale=1.0)
    # The centre maps to the middle of the crop and the longer side spans exactly [0, 1].
    np.testing.assert_allclose(
        points_to_crop([[90, 100], [40, 100], [140, 100]], matrix, 64), [[0.5, 0.5], [0.0, 0.5], [1.0, 0.5]], atol=1e-6
    )
    # Shift moves the crop centre by a fraction of the side; +90 degrees turns image-right into crop-up.
    shifted = crop_matrix(box, 64, scale=2.0, shift=(0.25, 0.0))
    np.testing.assert_allclose(points_to_crop([[140, 100]], shifted, 64), [[0.5, 0.5]], atol=1e-6)
    rotated = crop_matrix(box, 64, scale=1.0, rotation_deg=90)
    np.testing.assert_allclose(points_to_crop([[140, 100]], rotated, 64), [[0.5, 0.0]], atol=1e-6)


def test_points_from_crop_inverts_points_to_crop_for_a_batch():
    rng = np.random.default_rng(0)
    boxes = [np.array([10, 20, 10 + w, 20 + w]) for w in rng.uniform(30, 200, 4)]
    matrices = np.stack(
        [crop_matrix(b, 112, 1.3, tuple(rng.uniform(-0.1, 0.1, 2)), rng.uniform(-30, 30)) for b in boxes]
    )
    points = rng.uniform(0, 300, (4, 68, 2))
    normalised = points_to_crop(points, matrices, 112)
    np.testing.assert_allclose(points_from_crop(normalised, matrices, 112), points, atol=1e-3)
    # One matrix broadcasts over a batch, and single faces match the batched result.
    single = points_to_crop(points[2], matrices[2], 112)
    np.testing.assert_allclose(single, normalised[2], atol=1e-6)
    np.testing.assert_allclose(points_from_crop(normalised[:, None], matrices[0], 112).shape, (4, 1, 68, 2))


def test_image_to_tensor_normalisation_and_layout():
    crop = np.zeros((4, 4, 3), np.uint8)
    crop[..., 0] = 255  # blue channel (BGR)
    tensor = image_to_tensor(crop)
    assert tensor.dtype == np.float32 and tensor.shape == (3, 4, 4)
    np.testing.assert_allclose(tensor[0], 1.0)
    np.testing.assert_allclose(tensor[1:], -1.0)
    assert images_to_batch([crop, crop]).shape == (2, 3, 4, 4)


def test_crop_pads_with_zeros_outside_the_image():
    image = np.full((50, 50, 3), 200, np.uint8)
    crop = crop_image(image, crop_matrix(np.array([0, 0, 50, 50]), 32, scale=2.0), 32)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[16, 16].tolist() == [200, 200, 200]


def dot_centroid(crop: np.ndarray, x: float, y: float, radius: int = 4) -> np.ndarray | None:
    """Intensity-weighted centroid of the dot expected near crop pixel (x, y), or None near the border."""
    size = crop.shape[0]
    cx, cy = int(round(x)), int(round(y))
    if not (radius <= cx < size - radius and radius <= cy < size - radius):
        return None
    window = crop[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1, 1].astype(np.float64)
    window = np.clip(window - 20, 0, None)  # ignore the faint tails of neighbouring dots
    ys, xs = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    total = window.sum()
    return np.array([cx + (xs * window).sum() / total, cy + (ys * window).sum() / total])


@pytest.mark.parametrize("config", [GEOMETRY_ONLY, {**GEOMETRY_ONLY, "blur": {"p": 1.0, "sigma": [0.5, 0.8]}}])
def test_drawn_dots_land_on_their_transformed_landmarks(config):
    rng = np.random.default_rng(1)
    points, image = asymmetric_face(rng)
    box = face_box_from_points(points)
    augmenter = Augmenter(config, IBUG_68, box_jitter=0.1, seed=5)
    twin = Augmenter(config, IBUG_68, box_jitter=0.1, seed=5)  # same geometry draws, to see the flips
    size, checked, flips = 256, 0, 0
    for _ in range(12):
        flips += twin.sample_geometry(1.25).flip
        crop, landmarks = augmenter(image, points, box, size, 1.25)
        crop_px = landmarks * size - 0.5
        for x, y in crop_px:
            centroid = dot_centroid(crop, x, y)
            if centroid is not None:
                assert np.abs(centroid - (x, y)).max() < 1.0, (centroid, (x, y))
                checked += 1
        # Reordered after a flip: point 36 (image-left eye corner) is left of point 45 again.
        assert crop_px[36, 0] < crop_px[45, 0]
    assert checked > 12 * 50
    assert 0 < flips < 12


def test_flip_reorders_points_by_the_scheme():
    rng = np.random.default_rng(2)
    for scheme in (IBUG_68, WFLW_98):
        points, image = asymmetric_face(rng, scheme, (200, 320))
        box = face_box_from_points(points)
        plain_crop, plain = Augmenter(None, scheme)(image, points, box, 112, 1.25)
        flip_crop, flipped = Augmenter({"flip": 1.0}, scheme)(image, points, box, 112, 1.25)
        np.testing.assert_allclose(flipped, flip_points(plain, scheme, 1.0), atol=1e-5)
        assert np.abs(flip_crop[:, ::-1].astype(int) - plain_crop).max() <= 1


def test_symmetric_face_flips_to_the_same_labels(synthetic_face):
    path, points = synthetic_face
    image = cv2.imread(str(path))
    box = face_box_from_points(points)
    plain_crop, plain = Augmenter(None, IBUG_68)(image, points, box, 112, 1.25)
    flip_crop, flipped = Augmenter({"flip": 1.0}, IBUG_68)(image, points, box, 112, 1.25)
    np.testing.assert_allclose(flip_points(plain, IBUG_68, 1.0), plain, atol=1e-5)
    np.testing.assert_allclose(flipped, plain, atol=1e-5)
    assert np.abs(flip_crop.astype(int) - plain_crop).mean() < 0.5


def test_strong_augmentation_keeps_all_points():
    rng = np.random.default_rng(3)
    points, image = asymmetric_face(rng)
    augmenter = Augmenter(load_augment_config("strong"), IBUG_68, box_jitter=0.15, seed=0)
    for _ in range(50):
        crop, landmarks = augmenter(image, points, face_box_from_points(points), 112, 1.25)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        assert landmarks.shape == (68, 2) and np.isfinite(landmarks).all()
    # Identical seeds give identical draws; different seeds do not.
    box = face_box_from_points(points)
    a, b, c = (
        Augmenter(load_augment_config("strong"), IBUG_68, seed=s)(image, points, box, 64, 1.25) for s in (9, 9, 10)
    )
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.abs(a[1] - c[1]).max() > 1e-3


def test_config_files_load_and_none_is_identity():
    for name in ("default", "strong", "none", "camera"):
        config = load_augment_config(name)
        assert set(config) >= {"rotation", "scale", "translate", "flip", "dropout"}
    assert load_augment_config("none") == validate_augment_config({})
    assert load_augment_config("strong")["rotation"] == 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rotation: 10\nshear: 5\n", r"aug.yaml: unknown key 'shear'"),
        ("blur: {p: 0.1, radius: 3}\n", r"aug.yaml: blur: unknown key 'radius'"),
        ("rotation: 120\n", r"aug.yaml: rotation: expected a number in \[0.0, 90.0\], got 120"),
        ("flip: yes\n", r"aug.yaml: flip: expected a number"),
        ("scale: [1.2, 0.9]\n", r"aug.yaml: scale: min 1.2 is larger than max 0.9"),
        ("motion_blur: {p: 0.5, kernel: [3, 8]}\n", r"aug.yaml: motion_blur.kernel: expected odd integers"),
        ("- rotation\n", r"aug.yaml: expected a mapping"),
        ("gamma: {p: 0.3, gamma: [2.0, 0.5]}\n", r"aug.yaml: gamma.gamma: min 2.0 is larger than max 0.5"),
        ("noise: {p: 0.2, std: [0.0, 3.0]}\n", r"aug.yaml: noise.std: .*1.0"),
        ("rotation: [\n", r"aug.yaml: invalid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    (tmp_path / "aug.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_augment_config(tmp_path / "aug.yaml")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_augment_config(tmp_path / "nope.yaml")


def test_camera_augmentation_darkens_brightens_and_adds_noise():
    # configs/augment/camera.yaml reaches what a driver camera does to a face: both ends of the exposure
    # range, a tone curve and sensor noise (RandomGamma, GaussNoise), on top of the default blocks.
    rng = np.random.default_rng(3)
    points, _ = asymmetric_face(rng)
    image = np.full((240, 240, 3), 128, np.uint8)
    augmenter = Augmenter(load_augment_config("camera"), IBUG_68, seed=0)
    names = [type(t).__name__ for t in augmenter.photometric.transforms]
    assert {"RandomGamma", "GaussNoise", "RandomBrightnessContrast", "ToGray"} <= set(names)
    means, noisy = [], 0
    for _ in range(60):
        crop, _ = augmenter(image, points, face_box_from_points(points), 64, 1.25)
        centre = crop[24:40, 24:40].astype(np.float64)  # inside the photo whatever the geometry draws
        means.append(centre.mean())
        noisy += np.abs(np.diff(centre, axis=1)).mean() > 2  # flat grey stays flat unless noise lands on it
    assert min(means) < 100 and max(means) > 156
    assert 5 <= noisy <= 30  # p = 0.2 (and the odd dropout hole)
